"""NVMe/TCP connections with nvme-cli, and finding a namespace's block device through udev.

One subsystem per volume: a host connects once per path (address) of the volume's subsystem, and
the kernel's native multipath joins the paths into one block device, found by namespace UUID.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from .run import run

SYS_SUBSYS = Path("/sys/class/nvme-subsystem")


@dataclass(frozen=True)
class NvmePath:
    transport: str
    traddr: str
    trsvcid: str

    @classmethod
    def parse(cls, text: str) -> "NvmePath":
        """``tcp:10.0.0.1:4420`` (IPv6 addresses keep their colons: the port is after the last one)."""
        transport, _, rest = text.partition(":")
        addr, _, port = rest.rpartition(":")
        if not transport or not addr or not port.isdigit():
            raise ValueError(f"{text!r} is not transport:address:port")
        return cls(transport, addr.strip("[]"), port)


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def _address_fields(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.replace("\n", ",").split(",") if "=" in item)


def subsystem_dirs(nqn: str) -> list[Path]:
    if not SYS_SUBSYS.is_dir():
        return []
    return [d for d in SYS_SUBSYS.iterdir() if _read(d / "subsysnqn") == nqn]


def controllers(nqn: str) -> dict[str, tuple[NvmePath, str]]:
    """Controller name -> (path, state) for the subsystem ``nqn``."""
    out: dict[str, tuple[NvmePath, str]] = {}
    for d in subsystem_dirs(nqn):
        for c in d.iterdir():
            if c.name.startswith("nvme") and (c / "address").exists():
                a = _address_fields(_read(c / "address"))
                out[c.name] = (NvmePath(_read(c / "transport"), a.get("traddr", ""), a.get("trsvcid", "")),
                               _read(c / "state"))
    return out


def subsystem_of_namespace(ns_uuid: str) -> str | None:
    """The NQN of the connected subsystem that holds a namespace with this UUID."""
    if not SYS_SUBSYS.is_dir():
        return None
    for d in SYS_SUBSYS.iterdir():
        for ns in d.glob("nvme*n*"):
            if _read(ns / "uuid") == ns_uuid:
                return _read(d / "subsysnqn")
    return None


async def connect(nqn: str, path: NvmePath, host_nqn: str, *, ctrl_loss_tmo: int = -1,
                  reconnect_delay: int = 1, dhchap_secret: str = "", dhchap_ctrl_secret: str = "") -> bool:
    """Connect one path unless a controller of that subsystem already uses it; True if it connected.
    With DH-HMAC-CHAP secrets, the host proves its own (and checks the target's controller secret)."""
    have = await asyncio.to_thread(controllers, nqn)
    if any(p == path for p, _ in have.values()):
        return False
    module = Path(f"/sys/module/nvme_{path.transport}")
    if not module.exists():
        await run(["modprobe", f"nvme-{path.transport}"], check=False, timeout=60)
    argv = ["nvme", "connect", "-t", path.transport, "-a", path.traddr, "-s", path.trsvcid, "-n", nqn,
            "--hostnqn", host_nqn, "--ctrl-loss-tmo", str(ctrl_loss_tmo), "--reconnect-delay", str(reconnect_delay)]
    if dhchap_secret:
        argv += ["--dhchap-secret", dhchap_secret]
    if dhchap_ctrl_secret:
        argv += ["--dhchap-ctrl-secret", dhchap_ctrl_secret]
    res = await run(argv, check=False, timeout=60, hide=(dhchap_secret, dhchap_ctrl_secret))
    if res.rc != 0:
        have = await asyncio.to_thread(controllers, nqn)   # a concurrent connect may have won
        if any(p == path for p, _ in have.values()):
            return False
        raise ConnectionError(f"nvme connect to {path.traddr}:{path.trsvcid} ({nqn}) failed: "
                              f"{(res.stderr or res.stdout).strip()}")
    return True


async def disconnect(nqn: str) -> None:
    if await asyncio.to_thread(subsystem_dirs, nqn):
        await run(["nvme", "disconnect", "-n", nqn], timeout=60)


def _find_device(ns_uuid: str) -> str | None:
    import pyudev

    ctx = pyudev.Context()
    for dev in ctx.list_devices(subsystem="block", DEVTYPE="disk"):
        if not dev.sys_name.startswith("nvme"):
            continue
        try:
            value = dev.attributes.asstring("uuid")
        except (KeyError, UnicodeDecodeError):
            continue
        if value == ns_uuid and dev.device_node and Path(dev.device_node).exists():
            return dev.device_node
    return None


async def find_device(ns_uuid: str, timeout: float = 30.0) -> str:
    """The block device (/dev/nvmeXnY, the multipath device when there are several paths) of the
    namespace with this UUID, waiting for udev to create it."""
    deadline = time.monotonic() + timeout
    while True:
        dev = await asyncio.to_thread(_find_device, ns_uuid)
        if dev:
            return dev
        if time.monotonic() > deadline:
            raise TimeoutError(f"no block device for namespace {ns_uuid} after {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def rescan(nqn: str) -> None:
    """Ask every controller of the subsystem to re-read its namespaces (after a resize)."""
    for name in (await asyncio.to_thread(controllers, nqn)):
        await run(["nvme", "ns-rescan", f"/dev/{name}"], check=False, timeout=30)


def controller_states(nqn: str) -> list[str]:
    return [state for _, state in controllers(nqn).values()]
