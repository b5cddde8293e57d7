"""Kernel NVMe-oF helpers for guests: nvmet exports (target side) and the nvme-cli initiator."""

from __future__ import annotations

import shlex
import time
import uuid as uuidlib
from dataclasses import dataclass, field

from .errors import GuestError
from .guest import CommandResult, Guest

NVMET = "/sys/kernel/config/nvmet"


@dataclass
class NvmetExport:
    """One nvmet subsystem with a file-backed namespace, listening on TCP."""

    nqn: str
    address: str
    ports: list[int]
    hosts: list[str]
    backing: str
    size: int
    ns_uuid: str
    ns_nguid: str
    port_ids: list[int] = field(default_factory=list)
    nsid: int = 1


def nvmet_export(guest: Guest, *, nqn: str, address: str, hosts: list[str], ports: list[int] = (4420,),
                 size: int = 256 << 20, backing: str | None = None, ns_uuid: str | None = None,
                 ns_nguid: str | None = None, buffered_io: bool = True) -> NvmetExport:
    """Export a new sparse file (on the guest's tmpfs /tmp by default) through nvmet-tcp.

    Only ``hosts`` may connect.  nvmet's file backend on tmpfs needs buffered I/O
    (tmpfs has no O_DIRECT), hence ``buffered_io``.
    """
    ns_uuid = ns_uuid or str(uuidlib.uuid4())
    ns_nguid = ns_nguid or str(uuidlib.uuid4())
    backing = backing or f"/tmp/nvmet-{ns_uuid}.img"
    used = guest.run(f"ls {NVMET}/ports 2>/dev/null").stdout.split()
    port_ids = []
    pid = 1
    for _ in ports:
        while str(pid) in used or pid in port_ids:
            pid += 1
        port_ids.append(pid)
    exp = NvmetExport(nqn=nqn, address=address, ports=list(ports), hosts=list(hosts), backing=backing,
                      size=size, ns_uuid=ns_uuid, ns_nguid=ns_nguid, port_ids=port_ids)
    q = shlex.quote
    sub = f"{NVMET}/subsystems/{nqn}"
    lines = [
        "set -e",
        "modprobe -a nvmet nvmet-tcp",
        f"truncate -s {size} {q(backing)}",
        f"mkdir {q(sub)}",
        f"echo 0 > {q(sub)}/attr_allow_any_host",
        f"mkdir {q(sub)}/namespaces/{exp.nsid}",
        f"echo -n {q(backing)} > {q(sub)}/namespaces/{exp.nsid}/device_path",
        f"echo {1 if buffered_io else 0} > {q(sub)}/namespaces/{exp.nsid}/buffered_io",
        f"echo {ns_uuid} > {q(sub)}/namespaces/{exp.nsid}/device_uuid",
        f"echo {ns_nguid} > {q(sub)}/namespaces/{exp.nsid}/device_nguid",
        f"echo 1 > {q(sub)}/namespaces/{exp.nsid}/enable",
    ]
    for h in hosts:
        lines += [f"mkdir -p {q(NVMET + '/hosts/' + h)}",
                  f"ln -s {q(NVMET + '/hosts/' + h)} {q(sub)}/allowed_hosts/{q(h)}"]
    for port, pid in zip(ports, port_ids):
        pdir = f"{NVMET}/ports/{pid}"
        lines += [f"mkdir {pdir}", f"echo tcp > {pdir}/addr_trtype", f"echo ipv4 > {pdir}/addr_adrfam",
                  f"echo {q(address)} > {pdir}/addr_traddr", f"echo {port} > {pdir}/addr_trsvcid",
                  f"ln -s {q(sub)} {pdir}/subsystems/{q(nqn)}"]
    res = guest.run("\n".join(lines), timeout=60)
    if not res.ok:
        nvmet_remove(guest, exp)
        res.check()
    return exp


def nvmet_remove(guest: Guest, exp: NvmetExport) -> None:
    """Undo :func:`nvmet_export` (every step tolerates what is already gone)."""
    q = shlex.quote
    sub = f"{NVMET}/subsystems/{exp.nqn}"
    lines = []
    for pid in exp.port_ids:
        lines += [f"rm -f {NVMET}/ports/{pid}/subsystems/{q(exp.nqn)}", f"rmdir {NVMET}/ports/{pid}"]
    for h in exp.hosts:
        lines.append(f"rm -f {q(sub)}/allowed_hosts/{q(h)}")
    lines += [f"echo 0 > {q(sub)}/namespaces/{exp.nsid}/enable", f"rmdir {q(sub)}/namespaces/{exp.nsid}",
              f"rmdir {q(sub)}"]
    for h in exp.hosts:
        lines.append(f"rmdir {q(NVMET + '/hosts/' + h)}")
    lines.append(f"rm -f {q(exp.backing)}")
    guest.run("\n".join(line + " 2>/dev/null" for line in lines) + "\ntrue", timeout=60)


def nvme_connect(guest: Guest, nqn: str, address: str, port: int = 4420, *, hostnqn: str | None = None,
                 hostid: str | None = None, dhchap_secret: str = "", dhchap_ctrl_secret: str = "",
                 keep_alive_tmo: int | None = None, timeout: float = 60.0) -> CommandResult:
    """``nvme connect`` over TCP (as the guest's own identity unless ``hostnqn`` is given), with
    DH-HMAC-CHAP secrets and a keep-alive timeout (seconds) when given; not checked."""
    # nvme-cli needs nvme-fabrics (and /sys/class/nvme-subsystem) before it can connect.
    guest.check(["modprobe", "-a", "nvme-tcp", "nvme-fabrics"])
    argv = ["nvme", "connect", "-t", "tcp", "-a", address, "-s", str(port), "-n", nqn]
    if hostnqn:
        argv.append(f"--hostnqn={hostnqn}")
    if hostid:
        argv.append(f"--hostid={hostid}")
    if dhchap_secret:
        argv.append(f"--dhchap-secret={dhchap_secret}")
    if dhchap_ctrl_secret:
        argv.append(f"--dhchap-ctrl-secret={dhchap_ctrl_secret}")
    if keep_alive_tmo is not None:
        argv.append(f"--keep-alive-tmo={keep_alive_tmo}")
    return guest.run(argv, timeout=timeout)


def nvme_disconnect(guest: Guest, nqn: str) -> CommandResult:
    return guest.run(["nvme", "disconnect", "-n", nqn], timeout=60)


def controllers(guest: Guest, nqn: str) -> dict[str, str]:
    """Controllers (nvmeN -> state) of this guest connected to subsystem ``nqn``."""
    out = guest.run(
        "for c in /sys/class/nvme/nvme*; do [ -e $c/subsysnqn ] || continue; "
        "echo \"${c##*/} $(cat $c/subsysnqn) $(cat $c/state)\"; done").stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == nqn:
            found[parts[0]] = parts[2]
    return found


@dataclass
class NamespaceDevice:
    device: str          # /dev/nvmeXnY (the multipath head when native multipath is on)
    by_id: str           # the udev link that led to it
    uuid: str
    nguid: str
    wwid: str


def find_namespace(guest: Guest, ns_uuid: str, timeout: float = 60.0) -> NamespaceDevice:
    """Wait until udev has made /dev/disk/by-id/nvme-uuid.<uuid> and return the device it names."""
    link = f"/dev/disk/by-id/nvme-uuid.{ns_uuid}"
    script = f"""
        udevadm settle --timeout=30 >/dev/null 2>&1
        [ -e {link} ] || exit 3
        dev=$(readlink -f {link})
        b=/sys/block/${{dev##*/}}
        printf '%s\\n%s\\n%s\\n%s\\n' "$dev" "$(cat $b/uuid)" "$(cat $b/nguid 2>/dev/null)" "$(cat $b/wwid)"
    """
    deadline = time.monotonic() + timeout
    while True:
        r = guest.run(script, timeout=60)
        if r.ok:
            dev, uuid, nguid, wwid = (r.stdout.splitlines() + ["", "", "", ""])[:4]
            return NamespaceDevice(device=dev, by_id=link, uuid=uuid, nguid=nguid, wwid=wwid)
        if time.monotonic() > deadline:
            listing = guest.run("ls -l /dev/disk/by-id/ /sys/block/; dmesg | tail -20").stdout
            raise GuestError(f"{guest.name}: no {link} after {timeout:.0f}s\n{listing}")
        time.sleep(0.5)


def wait_gone(guest: Guest, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while guest.run(["test", "-e", path]).ok:
        if time.monotonic() > deadline:
            raise GuestError(f"{guest.name}: {path} still there after {timeout:.0f}s")
        time.sleep(0.3)
