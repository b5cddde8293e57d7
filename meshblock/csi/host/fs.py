"""File systems and mounts: probe, mkfs, mount, bind-mount, unmount, grow, statistics."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from .run import run

MKFS = {"ext4": ["mkfs.ext4", "-F", "-q", "-E", "nodiscard,lazy_itable_init=1"],
        "xfs": ["mkfs.xfs", "-f", "-q", "-K"]}


@dataclass(frozen=True)
class Mount:
    source: str          # the mounted device (or the bind source's device)
    target: str
    fstype: str
    options: tuple[str, ...]
    root: str            # the path inside the source that is mounted ("/" for a whole file system)
    major_minor: str


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts() -> list[Mount]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            a = left.split()
            b = right.split()
            out.append(Mount(source=_unescape(b[1]) if len(b) > 1 else "", target=_unescape(a[4]),
                             fstype=b[0] if b else "", options=tuple(a[5].split(",")), root=_unescape(a[3]),
                             major_minor=a[2]))
    return out


def mounts_at(target: str) -> list[Mount]:
    t = os.path.realpath(target) if os.path.exists(target) else target
    return [m for m in mounts() if m.target in (target, t)]


def major_minor(device: str) -> str:
    st = os.stat(device)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def users_of(device: str) -> list[Mount]:
    """Mounts of the device's file system and bind mounts of the device node itself."""
    mm = major_minor(device)
    real = os.path.realpath(device)
    return [m for m in mounts() if m.major_minor == mm or m.source in (device, real)
            or (m.fstype == "devtmpfs" and m.root == "/" + os.path.basename(real))]


async def probe(device: str) -> str | None:
    """The file system or partition-table type on the device, None when it is blank."""
    res = await run(["blkid", "-p", "-o", "export", device], check=False, timeout=60)
    if res.rc == 2:
        return None
    if res.rc != 0:
        raise RuntimeError(f"blkid {device} failed: {res.stderr.strip()}")
    fields = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    return fields.get("TYPE") or (f"partition table {fields['PTTYPE']}" if "PTTYPE" in fields else "unknown")


# Options that keep every write of the file system a multiple of ``sector`` bytes, aligned (its
# block, and for xfs its sector, log and metadata units): for devices that take no smaller write, such
# as erasure-coded volumes, which report 512-byte sectors but write whole 4 KiB stripes only.
SECTOR_OPTIONS = {"ext4": lambda n: ["-b", str(n)], "xfs": lambda n: ["-s", f"size={n}"]}


async def mkfs(device: str, fstype: str, sector: int = 0) -> None:
    extra = SECTOR_OPTIONS[fstype](sector) if sector and fstype in SECTOR_OPTIONS else []
    await run(MKFS[fstype] + extra + [device], timeout=600)


async def mount(source: str, target: str, *, fstype: str = "", options: list[str] | None = None) -> None:
    argv = ["mount"]
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", ",".join(options)]
    await run(argv + [source, target], timeout=300)


async def bind(source: str, target: str, *, readonly: bool, options: list[str] | None = None) -> None:
    await run(["mount", "--bind", source, target], timeout=60)
    extra = list(options or [])
    if readonly or extra:
        # bind mounts take ro and most flags only on a remount
        await run(["mount", "-o", ",".join(["remount", "bind"] + (["ro"] if readonly else []) + extra), target],
                  timeout=60)


async def umount(target: str) -> None:
    while await asyncio.to_thread(mounts_at, target):
        await run(["umount", target], timeout=300)


async def grow(device: str, mountpoint: str, fstype: str) -> None:
    if fstype == "xfs":
        await run(["xfs_growfs", mountpoint], timeout=600)
    elif fstype.startswith("ext"):
        await run(["resize2fs", device], timeout=600)
    else:
        raise RuntimeError(f"cannot grow a {fstype} file system")


def device_size(device: str) -> int:
    name = os.path.basename(os.path.realpath(device))
    return int(Path(f"/sys/class/block/{name}/size").read_text()) * 512
