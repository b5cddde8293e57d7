"""The bdev layer (names, aliases, open descriptors, claims, hot removal) and the AIO/malloc modules.

Behaviour follows lib/bdev/bdev.c, lib/bdev/bdev_rpc.c, module/bdev/aio and module/bdev/malloc:

* every bdev gets its UUID as an alias unless its name *is* that UUID;
* a bdev claimed by a module (lvstore, raid, NVMe-oF namespace) cannot be opened for writing
  by anyone else (``-EPERM``);
* unregistering a bdev ("delete") hot-removes it: every open descriptor gets a remove event and
  its owner lets go (a namespace disappears from its subsystem, a raid loses a base bdev, an
  lvstore is unloaded).  SPDK never refuses to delete a bdev because it is in use.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .app import (
    DECODE_FAILED,
    INVALID_PARAMS,
    RUNTIME,
    STARTUP,
    E,
    F,
    RpcError,
    decode,
    errno_error,
    new_uuid,
    rpc,
)

if TYPE_CHECKING:
    from .target import Target

IO_TYPES = ["read", "write", "unmap", "flush", "reset", "nvme_admin", "nvme_io", "nvme_io_md", "write_zeroes",
            "zcopy", "get_zone_info", "zone_management", "zone_append", "compare", "compare_and_write", "abort",
            "seek_hole", "seek_data", "copy", "nvme_iov_md", "nvme_nssr", "write_uncorrectable"]
QOS_TYPES = ["rw_ios_per_sec", "rw_mbytes_per_sec", "r_mbytes_per_sec", "w_mbytes_per_sec"]


@dataclass(eq=False)
class Desc:
    """An open descriptor: ``on_remove`` is the owner's hot-remove event handler."""

    bdev: Bdev
    write: bool
    owner: str
    on_remove: Callable[[Desc], None] | None = None
    closed: bool = False


@dataclass(eq=False)
class Bdev:
    name: str
    block_size: int
    num_blocks: int
    product_name: str
    module: str
    uuid: str = ""
    io_types: frozenset[str] = frozenset({"read", "write", "flush", "reset"})
    optimal_io_boundary: int = 0
    aliases: list[str] = field(default_factory=list)
    claim_type: str | None = None
    claim_module: str | None = None
    descs: list[Desc] = field(default_factory=list)
    qos: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    removing: bool = False
    ctx: Any = None  # the module's object behind the bdev
    numa_id: int | None = None  # reported only when the module set one (malloc: -1, "any")
    # preferred_write_alignment/_granularity, optimal_write_size, preferred_unmap_alignment/_granularity
    write_hints: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    memory_domains: list[str] = field(default_factory=list)
    raid_sb: dict[str, Any] | None = None  # a raid superblock written on this bdev
    iostat: dict[str, int] = field(default_factory=dict)  # bdev_get_iostat counters (fakespdk_bdev_io)

    @property
    def size(self) -> int:
        return self.block_size * self.num_blocks

    def supported(self, io_type: str) -> bool:
        if io_type in self.io_types:
            return True
        return io_type == "write_zeroes" and "write" in self.io_types  # emulated by the bdev layer

    def info(self, driver_specific: dict[str, Any], memory_domains: list[str] | None = None) -> dict[str, Any]:
        """``rpc_dump_bdev_info``."""
        if memory_domains is None:
            memory_domains = self.memory_domains
        d: dict[str, Any] = {
            "name": self.name,
            "aliases": list(self.aliases),
            "product_name": self.product_name,
            "block_size": self.block_size,
            "num_blocks": self.num_blocks,
            "preferred_write_alignment": self.write_hints[0],
            "preferred_write_granularity": self.write_hints[1],
            "optimal_write_size": self.write_hints[2],
            "preferred_unmap_alignment": self.write_hints[3],
            "preferred_unmap_granularity": self.write_hints[4],
            "uuid": self.uuid,
        }
        if self.numa_id is not None:
            d["numa_id"] = self.numa_id
        d.update({
            "assigned_rate_limits": dict(zip(QOS_TYPES, self.qos)),
            "claimed": self.claim_type is not None,
        })
        if self.claim_type is not None:
            d["claim_type"] = self.claim_type
        d["zoned"] = False
        d["supported_io_types"] = {t: self.supported(t) for t in IO_TYPES}
        if memory_domains:
            d["memory_domains"] = [{"dma_device_type": x} for x in memory_domains]
        d["driver_specific"] = driver_specific
        return d


class BdevLayer:
    def __init__(self, target: Target):
        self.t = target
        self.bdevs: list[Bdev] = []
        self.names: dict[str, Bdev] = {}
        self.examine_hooks: list[Callable[[Bdev], None]] = []
        self.info_hooks: dict[str, Callable[[Bdev], dict[str, Any]]] = {}
        self.destruct_hooks: dict[str, Callable[[Bdev], None]] = {}
        self.write_hooks: dict[str, Callable[[Bdev, int, int], None]] = {}
        self.sb_hooks: dict[str, Callable[[Bdev, dict[str, Any] | None], None]] = {}
        self.domain_hooks: dict[str, Callable[[Bdev], list[str]]] = {}
        self.examine_depth = 0
        self.deferred: list[Callable[[], None]] = []

    # --- names ---
    def get(self, name: str) -> Bdev | None:
        b = self.names.get(name)
        return None if b is None or b.removing else b

    def register(self, bdev: Bdev, *, examine: bool = True) -> None:
        if not bdev.name:
            raise errno_error(E.EINVAL)
        if not bdev.uuid:
            bdev.uuid = new_uuid()
        if bdev.name != bdev.uuid and bdev.uuid in self.names:
            raise errno_error(E.EEXIST)
        if bdev.name in self.names:
            raise errno_error(E.EEXIST)
        if bdev.name != bdev.uuid:
            bdev.aliases.insert(0, bdev.uuid)
            self.names[bdev.uuid] = bdev
        self.names[bdev.name] = bdev
        self.bdevs.append(bdev)
        if examine:
            self.examine(bdev)

    def examine(self, bdev: Bdev) -> None:
        """Run the modules' examine on a new bdev.  Work a module would finish asynchronously in
        SPDK (a raid going online after writing its superblock) is deferred until the outermost
        examine is done, so bdevs registered in the same burst (an lvstore's lvols) see the state
        SPDK's would."""
        self.examine_depth += 1
        try:
            for hook in self.examine_hooks:
                hook(bdev)
        finally:
            self.examine_depth -= 1
        while self.examine_depth == 0 and self.deferred:
            self.deferred.pop(0)()

    def alias_add(self, bdev: Bdev, alias: str) -> None:
        if alias in self.names:
            raise errno_error(E.EEXIST)
        bdev.aliases.append(alias)
        self.names[alias] = bdev

    def alias_del(self, bdev: Bdev, alias: str) -> None:
        if alias in bdev.aliases:
            bdev.aliases.remove(alias)
            self.names.pop(alias, None)

    # --- open / claim ---
    def open(self, name: str, write: bool, owner: str,
             on_remove: Callable[[Desc], None] | None = None) -> Desc:
        bdev = self.get(name)
        if bdev is None:
            raise errno_error(E.ENODEV)
        return self.open_bdev(bdev, write, owner, on_remove)

    def open_bdev(self, bdev: Bdev, write: bool, owner: str,
                  on_remove: Callable[[Desc], None] | None = None) -> Desc:
        if bdev.removing:
            raise errno_error(E.ENODEV)
        if write and bdev.claim_type is not None:
            raise errno_error(E.EPERM)
        d = Desc(bdev, write, owner, on_remove)
        bdev.descs.append(d)
        return d

    def close(self, desc: Desc) -> None:
        if not desc.closed:
            desc.closed = True
            if desc in desc.bdev.descs:
                desc.bdev.descs.remove(desc)

    def claim(self, bdev: Bdev, module: str, claim_type: str = "exclusive_write") -> None:
        if bdev.claim_type is not None:
            raise errno_error(E.EPERM)
        bdev.claim_type = claim_type
        bdev.claim_module = module

    def release(self, bdev: Bdev) -> None:
        bdev.claim_type = None
        bdev.claim_module = None

    # --- removal ---
    def unregister(self, bdev: Bdev) -> None:
        """``spdk_bdev_unregister``: hot-remove every user, then forget the bdev."""
        if bdev not in self.bdevs or bdev.removing:
            return
        bdev.removing = True
        for d in list(bdev.descs):
            if not d.closed and d.on_remove is not None:
                d.on_remove(d)
            self.close(d)
        self.bdevs.remove(bdev)
        for n in [bdev.name, *bdev.aliases]:
            if self.names.get(n) is bdev:
                del self.names[n]
        hook = self.destruct_hooks.get(bdev.module)
        if hook is not None:
            hook(bdev)

    def notify_blockcnt_change(self, bdev: Bdev, num_blocks: int) -> None:
        if num_blocks == bdev.num_blocks:
            return
        if bdev.descs and num_blocks < bdev.num_blocks:
            raise errno_error(E.EBUSY)
        bdev.num_blocks = num_blocks

    def write(self, bdev: Bdev, offset: int, length: int) -> None:
        """Someone wrote ``length`` bytes at ``offset`` (the fake sees only its own metadata writes
        and raid rebuilds): thin lvols below allocate the clusters written."""
        hook = self.write_hooks.get(bdev.module)
        if hook is not None and length > 0:
            hook(bdev, offset, length)

    def put_raid_sb(self, bdev: Bdev, sb: dict[str, Any] | None) -> None:
        """Write (or with None, wipe) a raid superblock on ``bdev``; modules persist it."""
        bdev.raid_sb = sb
        hook = self.sb_hooks.get(bdev.module)
        if hook is not None:
            hook(bdev, sb)

    def memory_domains(self, bdev: Bdev) -> list[str]:
        hook = self.domain_hooks.get(bdev.module)
        return hook(bdev) if hook else bdev.memory_domains

    def info(self, bdev: Bdev) -> dict[str, Any]:
        hook = self.info_hooks.get(bdev.module)
        return bdev.info(hook(bdev) if hook else {}, self.memory_domains(bdev))


# --- AIO ---------------------------------------------------------------------------------------

@dataclass
class AioDisk:
    filename: str
    readonly: bool
    fallocate: bool
    block_size_override: bool
    fd: int = -1


def _fd_blocklen(fd: int) -> int:
    """``spdk_fd_get_blocklen``: BLKSSZGET on block devices, 0 (unknown) on regular files."""
    try:
        st = os.fstat(fd)
    except OSError:
        return 0
    if stat.S_ISBLK(st.st_mode):
        try:
            import fcntl
            import struct
            buf = fcntl.ioctl(fd, 0x1268, b"\0" * 4)  # BLKSSZGET
            return struct.unpack("I", buf)[0]
        except OSError:
            return 0
    return 0


def _fd_size(fd: int) -> int:
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    if stat.S_ISBLK(st.st_mode):
        return os.lseek(fd, 0, os.SEEK_END)
    return 0


AIO_CREATE = {"name": F("string", True), "filename": F("string", True), "block_size": F("uint32"),
              "readonly": F("bool"), "fallocate": F("bool"), "uuid": F("uuid"), "nowait": F("bool")}


@rpc("bdev_aio_create")
def bdev_aio_create(t: Target, params: Any) -> str:
    p = decode(params, AIO_CREATE, DECODE_FAILED)
    readonly = p.get("readonly", False)
    flags = os.O_RDONLY if readonly else os.O_RDWR
    try:
        fd = os.open(p["filename"], flags)
    except OSError as e:
        raise errno_error(e.errno or E.EIO) from None
    try:
        if p.get("nowait"):
            st = os.fstat(fd)
            if not stat.S_ISBLK(st.st_mode):
                raise errno_error(E.ENOTSUP)
        size = _fd_size(fd)
        detected = _fd_blocklen(fd)
        block_size = p.get("block_size", 0)
        if block_size == 0:
            if detected == 0:
                raise errno_error(E.EINVAL)  # "Block size could not be auto-detected"
            block_size, override = detected, False
        else:
            if block_size < detected:
                raise errno_error(E.EINVAL)
            override = True
        if block_size < 512 or block_size & (block_size - 1):
            raise errno_error(E.EINVAL)
        if size % block_size:
            raise errno_error(E.EINVAL)
        disk = AioDisk(p["filename"], readonly, p.get("fallocate", False), override, fd)
        io = {"read", "write", "flush", "reset"} | ({"unmap", "write_zeroes"} if disk.fallocate else set())
        bdev = Bdev(p["name"], block_size, size // block_size, "AIO disk", "aio", uuid=p.get("uuid", ""),
                    io_types=frozenset(io), ctx=disk)
        t.bdev.register(bdev)  # examine (lvstore load) runs here, before the answer, as in SPDK
    except BaseException:
        os.close(fd)
        raise
    return p["name"]


def _aio_info(b: Bdev) -> dict[str, Any]:
    d: AioDisk = b.ctx
    return {"aio": {"filename": d.filename, "block_size_override": d.block_size_override,
                    "readonly": d.readonly, "fallocate": d.fallocate, "nowait": False}}


def _aio_destruct(b: Bdev) -> None:
    d: AioDisk = b.ctx
    if d.fd >= 0:
        os.close(d.fd)
        d.fd = -1


def _unregister_by_name(t: Target, name: str, module: str) -> None:
    """``spdk_bdev_unregister_by_name``."""
    b = t.bdev.get(name)
    if b is None or b.module != module:
        raise errno_error(E.ENODEV)
    t.bdev.unregister(b)


@rpc("bdev_aio_delete")
def bdev_aio_delete(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_FAILED)
    _unregister_by_name(t, p["name"], "aio")
    return True


# --- malloc --------------------------------------------------------------------------------------

MALLOC_CREATE = {"name": F("string"), "block_size": F("uint32", True), "num_blocks": F("uint64", True),
                 "uuid": F("uuid"), "optimal_io_boundary": F("uint32"), "md_size": F("uint32"),
                 "md_interleave": F("bool"), "dif_type": F("int32"), "dif_is_head_of_md": F("bool"),
                 "physical_block_size": F("uint32"), "dif_pi_format": F("uint32"), "numa_id": F("int32")}


@rpc("bdev_malloc_create")
def bdev_malloc_create(t: Target, params: Any) -> str:
    p = decode(params, MALLOC_CREATE, DECODE_FAILED)
    if p["num_blocks"] == 0 or p["block_size"] % 512:
        raise errno_error(E.EINVAL)
    if p.get("physical_block_size", 0) % 512:
        raise errno_error(E.EINVAL)
    if p["num_blocks"] * p["block_size"] > t.mem_size_mb * (1 << 20):
        raise errno_error(E.ENOMEM)
    name = p.get("name")
    if not name:
        i = 0
        while t.bdev.get(f"Malloc{i}") is not None:
            i += 1
        name = f"Malloc{i}"
    io = {"read", "write", "flush", "reset", "unmap", "write_zeroes", "zcopy", "abort", "compare", "copy"}
    bdev = Bdev(name, p["block_size"], p["num_blocks"], "Malloc disk", "malloc", uuid=p.get("uuid", ""),
                io_types=frozenset(io), optimal_io_boundary=p.get("optimal_io_boundary", 0),
                numa_id=p.get("numa_id", -1))
    t.bdev.register(bdev)
    return name


@rpc("bdev_malloc_delete")
def bdev_malloc_delete(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_FAILED)
    _unregister_by_name(t, p["name"], "malloc")
    return True


NULL_CREATE = {"name": F("string", True), "num_blocks": F("uint64", True), "block_size": F("uint32", True),
               "physical_block_size": F("uint32"), "uuid": F("string"), "md_size": F("uint32"),
               "dif_type": F("int32"), "dif_is_head_of_md": F("bool"), "dif_pi_format": F("uint32")}


@rpc("bdev_null_create")
def bdev_null_create(t: Target, params: Any) -> str:
    try:
        p = decode(params, NULL_CREATE, DECODE_FAILED)
    except RpcError:
        raise RpcError(-32603, "spdk_json_decode_object failed") from None
    if p["num_blocks"] == 0 or p["block_size"] % 512:
        raise errno_error(E.EINVAL)
    io = {"read", "write", "write_zeroes", "flush", "reset", "abort"}
    bdev = Bdev(p["name"], p["block_size"], p["num_blocks"], "Null disk", "null", uuid=p.get("uuid", ""),
                io_types=frozenset(io))
    t.bdev.register(bdev)
    return p["name"]


@rpc("bdev_null_delete")
def bdev_null_delete(t: Target, params: Any) -> bool:
    try:
        p = decode(params, {"name": F("string", True)}, DECODE_FAILED)
    except RpcError:
        raise RpcError(-32603, "spdk_json_decode_object failed") from None
    _unregister_by_name(t, p["name"], "null")
    return True


# --- generic bdev RPCs -----------------------------------------------------------------------------

@rpc("bdev_get_bdevs")
async def bdev_get_bdevs(t: Target, params: Any) -> list[dict[str, Any]]:
    p = decode(params, {"name": F("string"), "timeout": F("uint64")}, DECODE_FAILED) if params is not None else {}
    name = p.get("name")
    if name is None:
        return [t.bdev.info(b) for b in t.bdev.bdevs]
    timeout_ms = p.get("timeout", 0)
    deadline = time.monotonic() + timeout_ms / 1000.0
    while True:
        b = t.bdev.get(name)
        if b is not None:
            return [t.bdev.info(b)]
        if timeout_ms == 0:
            raise errno_error(E.ENODEV)
        if time.monotonic() >= deadline:
            raise errno_error(E.ETIMEDOUT)
        import asyncio
        await asyncio.sleep(0.1)


def _iostat(b: Bdev) -> dict[str, Any]:
    d: dict[str, Any] = {"name": b.name}
    for k in ("bytes_read", "num_read_ops", "bytes_written", "num_write_ops", "bytes_unmapped", "num_unmap_ops",
              "bytes_copied", "num_copy_ops", "read_latency_ticks", "max_read_latency_ticks",
              "min_read_latency_ticks", "write_latency_ticks", "max_write_latency_ticks",
              "min_write_latency_ticks", "unmap_latency_ticks", "max_unmap_latency_ticks",
              "min_unmap_latency_ticks", "copy_latency_ticks", "max_copy_latency_ticks",
              "min_copy_latency_ticks"):
        d[k] = b.iostat.get(k, 0)
    return d


@rpc("fakespdk_bdev_io", hidden=True)
def fakespdk_bdev_io(t: Target, params: Any) -> bool:
    """Count I/O on a bdev as if it had completed there (the fake stores no data): ``ops`` reads
    or writes of ``bytes`` in all, taking ``latency_ticks`` together (ticks are nanoseconds)."""
    p = decode(params, {"name": F("string", True), "op": F(("enum", ["read", "write"]), True),
                        "ops": F("uint64", True), "bytes": F("uint64", True), "latency_ticks": F("uint64")},
               DECODE_FAILED)
    b = t.bdev.get(p["name"])
    if b is None:
        raise errno_error(E.ENODEV)
    op, st = p["op"], b.iostat
    ops_key, bytes_key = ("num_read_ops", "bytes_read") if op == "read" else ("num_write_ops", "bytes_written")
    st[ops_key] = st.get(ops_key, 0) + p["ops"]
    st[bytes_key] = st.get(bytes_key, 0) + p["bytes"]
    st[f"{op}_latency_ticks"] = st.get(f"{op}_latency_ticks", 0) + p.get("latency_ticks", 0)
    return True


@rpc("bdev_get_iostat")
def bdev_get_iostat(t: Target, params: Any) -> dict[str, Any]:
    spec = {"names": F(("array", "string", 1024)), "per_channel": F("bool"),
            "reset_mode": F(("enum", ["all", "maxmin", "error", "none"]))}
    p = decode(params, spec, DECODE_FAILED) if params is not None else {}
    names = p.get("names")
    if p.get("per_channel") and (names is None or len(names) != 1):
        raise errno_error(E.EINVAL)
    if names is None:
        bdevs = list(t.bdev.bdevs)
    else:
        bdevs = []
        for n in names:
            b = t.bdev.get(n)
            if b is None:
                raise errno_error(E.ENODEV)
            bdevs.append(b)
    head = {"tick_rate": 1_000_000_000, "ticks": time.monotonic_ns()}
    if p.get("per_channel"):
        st = _iostat(bdevs[0])
        name = st.pop("name")
        return {**head, "name": name, "channels": [{"thread_id": 1, **st}]}
    return {**head, "bdevs": [_iostat(b) for b in bdevs]}


@rpc("bdev_wait_for_examine")
def bdev_wait_for_examine(t: Target, params: Any) -> bool:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "bdev_wait_for_examine requires no parameters")
    return True


@rpc("bdev_examine")
def bdev_examine(t: Target, params: Any) -> bool:
    decode(params, {"name": F("string", True)}, (INVALID_PARAMS, "spdk_json_decode_object failed"))
    return True


@rpc("bdev_set_qos_limit")
def bdev_set_qos_limit(t: Target, params: Any) -> bool:
    spec = {"name": F("string", True), "rw_ios_per_sec": F("uint64"), "rw_mbytes_per_sec": F("uint64"),
            "r_mbytes_per_sec": F("uint64"), "w_mbytes_per_sec": F("uint64")}
    p = decode(params, spec, DECODE_FAILED)
    b = t.bdev.get(p["name"])
    if b is None:
        raise errno_error(E.ENODEV)
    given = [p.get(k) for k in QOS_TYPES]
    if all(v is None for v in given):
        raise RpcError(-E.EINVAL, "No rate limits specified")
    if any(b.qos) and not b.descs:
        # QoS on, no I/O channel: the RPC's own open restarts QoS (bdev_start_qos), and the change
        # meets that restart in progress (spdk_bdev_set_qos_rate_limits: -EAGAIN), every time
        raise RpcError(INVALID_PARAMS, "Failed to configure rate limit: Resource temporarily unavailable")
    for i, v in enumerate(given):
        if v is None:
            continue
        if i == 0 and v % 1000:
            v += 1000 - v % 1000  # SPDK rounds IOPS up to a multiple of 1000
        b.qos[i] = v
    return True


@rpc("bdev_set_options", state_mask=STARTUP)
def bdev_set_options(t: Target, params: Any) -> bool:
    return True


@rpc("bdev_nvme_set_options", state_mask=STARTUP | RUNTIME)
def bdev_nvme_set_options(t: Target, params: Any) -> bool:
    if t.nvme.ctrlrs:
        raise RpcError(-E.EPERM, "RPC not permitted with nvme controllers already attached")
    return True


def setup(t: Target) -> None:
    t.bdev.info_hooks["aio"] = _aio_info
    t.bdev.info_hooks["malloc"] = lambda b: {}
    t.bdev.destruct_hooks["aio"] = _aio_destruct
