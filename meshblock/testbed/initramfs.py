"""The guests' initramfs: busybox, a few modules and the boot scripts, as an uncompressed newc cpio.

It is rebuilt for every test-bed session (it takes milliseconds), so the boot
scripts and the agent in ``guest/`` can change without rebuilding the cached image.
Each of the image's kernels gets its own, with that kernel's modules.
"""

from __future__ import annotations

import stat
from pathlib import Path

from .image import DEFAULT_KERNEL, Image

GUEST_DIR = Path(__file__).resolve().parent / "guest"
GUEST_FILES = ("rc.sh", "agent.py", "inittab")


class _Cpio:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name_b = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.parts.append(hdr + name_b + b"\0" * (-(len(hdr) + len(name_b)) % 4))
        self.parts.append(data + b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        out = b"".join(self.parts)
        return out + b"\0" * (-len(out) % 512)


def build_initramfs(image: Image, out: Path, kernel: str = DEFAULT_KERNEL) -> Path:
    """Write the initramfs for booting ``image`` with its kernel called ``kernel`` to ``out``."""
    modules = image.get_kernel(kernel).initramfs_modules
    c = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "modules", "mbtb"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("bin/busybox", image.busybox.read_bytes(), 0o755)
    c.file("init", (GUEST_DIR / "init.sh").read_bytes(), 0o755)
    for f in sorted(modules.iterdir()):
        c.file(f"modules/{f.name}", f.read_bytes())
    for name in GUEST_FILES:
        c.file(f"mbtb/{name}", (GUEST_DIR / name).read_bytes(), 0o755)
    out.write_bytes(c.finish())
    return out
