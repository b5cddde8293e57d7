"""iSCSI sessions with open-iscsi's iscsiadm, and finding a LUN's block device through sysfs.

A volume exported over iSCSI is LUN 0 of its own target (one per volume), so the target name
identifies the volume on the host: its sessions, its SCSI disk, its node records. Logins go through
an interface record of open-iscsi's own (``meshblock``) that carries the node plugin's initiator
name, so the name is the plugin's setting whatever /etc/iscsi/initiatorname.iscsi says.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from .run import run

SYS_SESSIONS = Path("/sys/class/iscsi_session")
INITIATOR_FILE = Path("/etc/iscsi/initiatorname.iscsi")
# iscsiadm's exit codes (open-iscsi's iscsi_err.h) that mean "already so"
ERR_NO_OBJS_FOUND = 21           # logout: no session of that target
ERR_SESS_EXISTS = 15             # login: a session to that portal exists
IFACE = "meshblock"


@dataclass(frozen=True)
class Chap:
    user: str
    secret: str


def initiator_name(path: Path = INITIATOR_FILE) -> str:
    """The InitiatorName= of open-iscsi's configuration ("" when there is none)."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "InitiatorName" and not line.lstrip().startswith("#"):
            return value.strip()
    return ""


def portal(address: str, port: str | int) -> str:
    """iscsiadm's portal form: ``10.0.0.1:3260``, ``[fd00::1]:3260``."""
    address = address.strip("[]")
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def sessions(target: str) -> list[Path]:
    """The sysfs directories of this host's sessions with target ``target``."""
    if not SYS_SESSIONS.is_dir():
        return []
    return sorted(d for d in SYS_SESSIONS.iterdir() if _read(d / "targetname") == target)


def session_states(target: str) -> list[str]:
    """Each session's state (LOGGED_IN, FAILED, FREE)."""
    return [_read(d / "state") for d in sessions(target)]


def _lun_device(target: str, lun: int) -> str | None:
    for d in sessions(target):
        for block in sorted((d / "device").glob(f"target*/*:*:*:{lun}/block/*")):
            node = Path("/dev") / block.name
            if node.exists():
                return str(node)
    return None


async def find_device(target: str, lun: int = 0, timeout: float = 30.0) -> str:
    """The SCSI disk (/dev/sdX) of LUN ``lun`` of ``target``, waiting for the kernel's scan and udev."""
    deadline = time.monotonic() + timeout
    while True:
        dev = await asyncio.to_thread(_lun_device, target, lun)
        if dev:
            return dev
        if time.monotonic() > deadline:
            raise TimeoutError(f"no block device for LUN {lun} of {target} after {timeout:.0f}s")
        await asyncio.sleep(0.2)


def _node(target: str, where: str | None = None) -> list[str]:
    argv = ["iscsiadm", "-m", "node", "-T", target]
    return argv + ["-p", where, "-I", IFACE] if where else argv


async def ensure_iface(initiator: str) -> None:
    """The ``meshblock`` interface record (TCP, any local address) with this initiator name."""
    iface = ["iscsiadm", "-m", "iface", "-I", IFACE]
    shown = await run(iface, check=False, timeout=30)
    if shown.rc != 0:
        await run([*iface, "-o", "new"], timeout=30)
    elif f"iface.initiatorname = {initiator}" in shown.stdout:
        return
    await run([*iface, "-o", "update", "-n", "iface.initiatorname", "-v", initiator], timeout=30)


async def _update(target: str, where: str, settings: list[tuple[str, str]]) -> None:
    for name, value in settings:
        await run([*_node(target, where), "-o", "update", "-n", name, "-v", value], timeout=30)


async def login(target: str, where: str, initiator: str, chap: Chap | None) -> bool:
    """Log in to ``target`` at portal ``where`` as ``initiator`` unless a session is there; True if it
    logged in.

    The node record is (re)written each time so that CHAP settings follow the volume's, and marked
    manual: only this driver logs in, never iscsid at boot."""
    await ensure_iface(initiator)
    exists = await run([*_node(target, where)], check=False, timeout=30)
    if exists.rc != 0:
        await run([*_node(target, where), "-o", "new"], timeout=30)
    settings = [("node.startup", "manual")]
    if chap:
        settings += [("node.session.auth.authmethod", "CHAP"), ("node.session.auth.username", chap.user),
                     ("node.session.auth.password", chap.secret)]
    else:
        settings += [("node.session.auth.authmethod", "None")]
    await _update(target, where, settings)
    res = await run([*_node(target, where), "--login"], check=False, timeout=120)
    if res.rc == 0:
        return True
    if res.rc == ERR_SESS_EXISTS:
        return False
    output = (res.stderr or res.stdout).strip()
    if "authorization failure" in output.lower() or "authentication failure" in output.lower():
        raise PermissionError(f"iSCSI login to {target} at {where} was refused: {output}")
    raise ConnectionError(f"iSCSI login to {target} at {where} failed: {output}")


async def logout(target: str) -> None:
    """Log out of every session with ``target`` and forget its node records."""
    res = await run([*_node(target), "--logout"], check=False, timeout=120)
    if res.rc not in (0, ERR_NO_OBJS_FOUND):
        raise ConnectionError(f"iSCSI logout from {target} failed: {(res.stderr or res.stdout).strip()}")
    res = await run([*_node(target), "-o", "delete"], check=False, timeout=30)
    if res.rc not in (0, ERR_NO_OBJS_FOUND):
        raise ConnectionError(f"deleting the iSCSI node records of {target} failed: "
                              f"{(res.stderr or res.stdout).strip()}")


async def rescan(target: str) -> None:
    """Re-read the sizes of the target's LUNs (after a resize)."""
    await run([*_node(target), "--rescan"], check=False, timeout=60)
