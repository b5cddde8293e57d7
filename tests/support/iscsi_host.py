"""The host side of iSCSI tests: Debian's libiscsi tools, and libiscsi itself for data.

``iscsi-ls``, ``iscsi-inq``, ``iscsi-readcapacity16`` and ``iscsi-perf`` come from the
``libiscsi-bin`` package. It ships no tool that writes data of one's choosing (there is no
``iscsi-dd`` in it), so blocks are written and read back through the same library those
tools use (``libiscsi.so.7``), called with ctypes in a worker thread: login with the given
initiator name (and CHAP credentials), WRITE(16) and READ(16) of LUN 0 in its logical block
size (from ``iscsi-readcapacity16``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import shutil
from dataclasses import dataclass
from urllib.parse import quote

TOOLS = ("iscsi-ls", "iscsi-inq", "iscsi-readcapacity16", "iscsi-perf")
SESSION_NORMAL = 2
HEADER_DIGEST_NONE = 0


def missing() -> str:
    """Why the host side cannot run here ("" when it can)."""
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} not found (Debian package libiscsi-bin)"
    if _lib() is None:
        return "libiscsi.so.7 not found (Debian package libiscsi7)"
    return ""


def url(portal: str, target: str, lun: int | None = 0, user: str = "", secret: str = "") -> str:
    auth = f"{quote(user, safe='')}%{quote(secret, safe='')}@" if user else ""
    return f"iscsi://{auth}{portal}/{target}" + (f"/{lun}" if lun is not None else "")


@dataclass
class Result:
    returncode: int
    output: str


async def tool(*argv: str, timeout: float = 60.0) -> Result:
    p = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(p.communicate(), timeout)
    except asyncio.TimeoutError:
        p.kill()
        out, _ = await p.communicate()
        return Result(-9, out.decode(errors="replace") + "\n(timed out)")
    return Result(p.returncode or 0, out.decode(errors="replace"))


async def capacity(portal: str, target: str, initiator: str, **chap: str) -> tuple[int, int]:
    """(size in bytes, logical block size) of LUN 0, from iscsi-readcapacity16."""
    r = await tool("iscsi-readcapacity16", "-i", initiator, url(portal, target, **chap))
    if r.returncode != 0:
        raise IscsiError(f"iscsi-readcapacity16 failed: {r.output}")
    fields = dict(line.split(":", 1) for line in r.output.splitlines() if ":" in line)
    return int(fields["Total size"]), int(fields["LOGICAL BLOCK LENGTH IN BYTES"])


_LIB: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL | None:
    global _LIB
    if _LIB is None:
        name = ctypes.util.find_library("iscsi") or "libiscsi.so.7"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
        vp, cp, i, u32, u64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64
        lib.iscsi_create_context.restype = vp
        lib.iscsi_create_context.argtypes = [cp]
        lib.iscsi_destroy_context.argtypes = [vp]
        for f in (lib.iscsi_set_targetname,):
            f.argtypes = [vp, cp]
        lib.iscsi_set_session_type.argtypes = [vp, i]
        lib.iscsi_set_header_digest.argtypes = [vp, i]
        lib.iscsi_set_initiator_username_pwd.argtypes = [vp, cp, cp]
        lib.iscsi_full_connect_sync.argtypes = [vp, cp, i]
        lib.iscsi_get_error.restype = cp
        lib.iscsi_get_error.argtypes = [vp]
        lib.iscsi_logout_sync.argtypes = [vp]
        lib.iscsi_write16_sync.restype = ctypes.POINTER(ctypes.c_int)   # the task; its first field is the status
        lib.iscsi_write16_sync.argtypes = [vp, i, u64, ctypes.c_char_p, u32, i, i, i, i, i, i]
        lib.iscsi_read16_iov_sync.restype = ctypes.POINTER(ctypes.c_int)
        lib.iscsi_read16_iov_sync.argtypes = [vp, i, u64, u32, i, i, i, i, i, i, vp, i]
        lib.scsi_free_scsi_task.argtypes = [ctypes.POINTER(ctypes.c_int)]
        _LIB = lib
    return _LIB


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class IscsiError(Exception):
    pass


class Session:
    """One logged-in session to LUN 0 of a target (blocking calls: use from a worker thread)."""

    def __init__(self, portal: str, target: str, initiator: str, user: str = "", secret: str = "",
                 block_size: int = 512):
        lib = _lib()
        if lib is None:
            raise IscsiError("libiscsi.so.7 is not installed")
        self.lib, self.block_size = lib, block_size
        self.ctx = lib.iscsi_create_context(initiator.encode())
        if not self.ctx:
            raise IscsiError("iscsi_create_context failed")
        lib.iscsi_set_targetname(self.ctx, target.encode())
        lib.iscsi_set_session_type(self.ctx, SESSION_NORMAL)
        lib.iscsi_set_header_digest(self.ctx, HEADER_DIGEST_NONE)
        if user:
            lib.iscsi_set_initiator_username_pwd(self.ctx, user.encode(), secret.encode())
        if lib.iscsi_full_connect_sync(self.ctx, portal.encode(), 0) != 0:
            err = self.error()
            lib.iscsi_destroy_context(self.ctx)
            self.ctx = None
            raise IscsiError(f"login to {target} at {portal} as {initiator} failed: {err}")

    def error(self) -> str:
        e = self.lib.iscsi_get_error(self.ctx)
        return e.decode(errors="replace") if e else "unknown error"

    def _done(self, task, what: str) -> None:
        if not task:
            raise IscsiError(f"{what} failed: {self.error()}")
        status = task[0]
        self.lib.scsi_free_scsi_task(task)
        if status != 0:
            raise IscsiError(f"{what} failed with SCSI status {status}: {self.error()}")

    def write(self, offset: int, data: bytes) -> None:
        bs = self.block_size
        assert offset % bs == 0 and len(data) % bs == 0
        chunk = 256 * 1024
        for at in range(0, len(data), chunk):
            part = data[at:at + chunk]
            task = self.lib.iscsi_write16_sync(self.ctx, 0, (offset + at) // bs, part, len(part), bs, 0, 0, 0, 0, 0)
            self._done(task, "WRITE(16)")

    def read(self, offset: int, length: int) -> bytes:
        bs = self.block_size
        out = bytearray()
        chunk = 256 * 1024
        for at in range(0, length, chunk):
            n = min(chunk, length - at)
            buf = ctypes.create_string_buffer(n)
            iov = _IoVec(ctypes.cast(buf, ctypes.c_void_p), n)
            task = self.lib.iscsi_read16_iov_sync(self.ctx, 0, (offset + at) // bs, n, bs, 0, 0, 0, 0, 0,
                                                  ctypes.addressof(iov), 1)
            self._done(task, "READ(16)")
            out += buf.raw
        return bytes(out)

    def close(self) -> None:
        if self.ctx:
            self.lib.iscsi_logout_sync(self.ctx)
            self.lib.iscsi_destroy_context(self.ctx)
            self.ctx = None


async def write(portal: str, target: str, initiator: str, offset: int, data: bytes, **kw) -> None:
    if "block_size" not in kw:
        kw["block_size"] = (await capacity(portal, target, initiator, user=kw.get("user", ""),
                                           secret=kw.get("secret", "")))[1]

    def run() -> None:
        s = Session(portal, target, initiator, **kw)
        try:
            s.write(offset, data)
        finally:
            s.close()
    await asyncio.to_thread(run)


async def read(portal: str, target: str, initiator: str, offset: int, length: int, **kw) -> bytes:
    if "block_size" not in kw:
        kw["block_size"] = (await capacity(portal, target, initiator, user=kw.get("user", ""),
                                           secret=kw.get("secret", "")))[1]

    def run() -> bytes:
        s = Session(portal, target, initiator, **kw)
        try:
            return s.read(offset, length)
        finally:
            s.close()
    return await asyncio.to_thread(run)
