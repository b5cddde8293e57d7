"""Logical volume stores and logical volumes (module/bdev/lvol, lib/lvol, lib/blob).

Cluster accounting copies the blobstore: ``spdk_bs_init`` reserves whole clusters for its
metadata (super block, used-page/used-cluster/used-blobid masks and one metadata page per
cluster), thick lvols own all their clusters, thin ones only what was written (the fake sees no
writes, except a raid rebuild, which writes every block of its target).  Snapshot, clone,
inflate, decouple, resize and delete follow the blob rules, including their error codes: the
synchronous checks answer ``-errno``, the ones SPDK reports from a completion callback answer
``-32602`` (``-32603`` for delete) with the errno text.

An lvstore on an AIO bdev is persisted in ``<file>.fakespdk.json`` next to the file; creating an
AIO bdev on that file again loads it, as SPDK's examine does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .app import (
    DECODE_FAILED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    E,
    F,
    RpcError,
    async_errno_error,
    decode,
    errno_error,
    new_uuid,
    parse_uuid,
    rpc,
)
from .bdev import Bdev, Desc

if TYPE_CHECKING:
    from .target import Target

MiB = 1 << 20
LVS_NAME_MAX = 64
LVOL_NAME_MAX = 64
BS_PAGE_SIZE = 4096
MD_MASK_HDR = 5  # sizeof(struct spdk_bs_md_mask), packed
SIDECAR_SUFFIX = ".fakespdk.json"
SIDECAR_VERSION = 1


def _div_up(a: int, b: int) -> int:
    return -(-a // b)


def _ranges(clusters: set[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for c in sorted(clusters):
        if out and out[-1][1] == c:
            out[-1][1] = c + 1
        else:
            out.append([c, c + 1])
    return out


def _unranges(ranges: list[list[int]]) -> set[int]:
    s: set[int] = set()
    for a, b in ranges:
        s.update(range(a, b))
    return s


@dataclass(eq=False)
class Lvol:
    lvs: LvolStore
    name: str
    uuid: str
    num_clusters: int
    thin: bool
    clear_method: str = "default"
    read_only: bool = False
    parent: Lvol | None = None
    clusters: set[int] = field(default_factory=set)
    snapshot_entry: bool = False  # blobstore keeps a snapshot entry once a blob had a clone
    bdev: Bdev | None = None
    raid_sb: dict[str, Any] | None = None  # a raid superblock written into the lvol's data

    @property
    def alias(self) -> str:
        return f"{self.lvs.name}/{self.name}"

    def clones(self) -> list[Lvol]:
        return [lv for lv in self.lvs.lvols if lv.parent is self]

    @property
    def is_snapshot(self) -> bool:
        return self.snapshot_entry

    @property
    def is_clone(self) -> bool:
        return self.parent is not None


@dataclass(eq=False)
class LvolStore:
    name: str
    uuid: str
    base: Bdev
    cluster_size: int
    block_size: int
    total_clusters: int
    md_len: int
    md_clusters: int
    clear_method: str = "unmap"
    lvols: list[Lvol] = field(default_factory=list)
    desc: Desc | None = None
    sidecar: str | None = None
    removing: bool = False

    @property
    def total_data_clusters(self) -> int:
        return self.total_clusters - self.md_clusters

    @property
    def used_clusters(self) -> int:
        return sum(len(lv.clusters) for lv in self.lvols)

    @property
    def free_clusters(self) -> int:
        return self.total_data_clusters - self.used_clusters

    def max_growable_size(self) -> int:
        mask_pages = _div_up(MD_MASK_HDR + _div_up(self.md_len, 8), BS_PAGE_SIZE)
        return (mask_pages * BS_PAGE_SIZE - MD_MASK_HDR) * 8 * self.cluster_size

    def info(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "name": self.name, "base_bdev": self.base.name,
                "total_data_clusters": self.total_data_clusters, "free_clusters": self.free_clusters,
                "block_size": self.block_size, "cluster_size": self.cluster_size,
                "max_growable_size": self.max_growable_size()}

    def allocate(self, lv: Lvol, wanted: set[int]) -> None:
        new = wanted - lv.clusters
        if len(new) > self.free_clusters:
            raise _Nospc()
        lv.clusters |= new


class _Nospc(Exception):
    pass


def md_pages(num_blocks: int, block_size: int, cluster_size: int, md_pages_ratio: int = 100) -> int:
    total_clusters = num_blocks // (cluster_size // block_size)
    md_len = md_pages_ratio * total_clusters // 100
    page_mask_len = _div_up(MD_MASK_HDR + _div_up(md_len, 8), BS_PAGE_SIZE)
    cluster_mask_len = _div_up(MD_MASK_HDR + _div_up(total_clusters, 8), BS_PAGE_SIZE)
    return 1 + page_mask_len + max(page_mask_len, cluster_mask_len) + page_mask_len + md_len


def blobstore_geometry(num_blocks: int, block_size: int, cluster_size: int,
                       md_pages_ratio: int = 100) -> tuple[int, int, int]:
    """(total_clusters, md_len, md_clusters) as ``spdk_lvs_init``/``spdk_bs_init`` compute them."""
    total_clusters = num_blocks // (cluster_size // block_size)
    md_len = md_pages_ratio * total_clusters // 100
    page_mask_len = _div_up(MD_MASK_HDR + _div_up(md_len, 8), BS_PAGE_SIZE)
    cluster_mask_len = _div_up(MD_MASK_HDR + _div_up(total_clusters, 8), BS_PAGE_SIZE)
    max_cluster_mask_len = max(page_mask_len, cluster_mask_len)
    blobid_mask_len = page_mask_len
    num_md_pages = 1 + page_mask_len + max_cluster_mask_len + blobid_mask_len + md_len
    pages_per_cluster = cluster_size // BS_PAGE_SIZE
    return total_clusters, md_len, _div_up(num_md_pages, pages_per_cluster)


class LvolModule:
    def __init__(self, t: Target):
        self.t = t
        self.stores: list[LvolStore] = []

    # --- lookups ---
    def by_name(self, name: str) -> LvolStore | None:
        return next((s for s in self.stores if s.name == name and not s.removing), None)

    def by_uuid(self, uuid: str) -> LvolStore | None:
        return next((s for s in self.stores if s.uuid == uuid and not s.removing), None)

    def uuid_xor_name(self, uuid: str | None, name: str | None) -> LvolStore:
        if (uuid is None) == (name is None):
            raise errno_error(E.EINVAL)
        s = self.by_uuid(uuid) if uuid is not None else self.by_name(name)  # type: ignore[arg-type]
        if s is None:
            raise errno_error(E.ENODEV)
        return s

    def lvol_from_bdev_name(self, name: str) -> Lvol:
        b = self.t.bdev.get(name)
        if b is None or b.module != "lvol":
            raise errno_error(E.ENODEV)
        return b.ctx

    # --- persistence ---
    def save(self, s: LvolStore) -> None:
        if s.sidecar is None or s.removing:
            return
        try:
            ino = os.stat(s.base.ctx.filename).st_ino
        except OSError:
            ino = None
        doc = {
            "fakespdk_lvstore": SIDECAR_VERSION,
            "file_inode": ino,
            "name": s.name, "uuid": s.uuid, "cluster_size": s.cluster_size, "block_size": s.block_size,
            "total_clusters": s.total_clusters, "md_len": s.md_len, "md_clusters": s.md_clusters,
            "clear_method": s.clear_method,
            "lvols": [{"name": lv.name, "uuid": lv.uuid, "num_clusters": lv.num_clusters, "thin": lv.thin,
                       "read_only": lv.read_only, "clear_method": lv.clear_method,
                       "parent": lv.parent.uuid if lv.parent else None,
                       "size_bytes": lv.num_clusters * s.cluster_size,
                       "allocated_clusters": _ranges(lv.clusters), "raid_sb": lv.raid_sb} for lv in s.lvols],
        }
        tmp = f"{s.sidecar}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, s.sidecar)

    def forget(self, s: LvolStore) -> None:
        if s.sidecar:
            try:
                os.unlink(s.sidecar)
            except FileNotFoundError:
                pass

    def examine(self, bdev: Bdev) -> None:
        """The lvol module's examine: load an lvstore persisted on an AIO file."""
        if bdev.module != "aio":
            return
        path = bdev.ctx.filename + SIDECAR_SUFFIX
        try:
            with open(path) as f:
                doc = json.load(f)
            if doc.get("fakespdk_lvstore") != SIDECAR_VERSION:
                return
            if doc.get("file_inode") not in (None, os.stat(bdev.ctx.filename).st_ino):
                return  # the file was replaced: the lvstore metadata went with the old one
        except (OSError, ValueError):
            return
        if doc["block_size"] != bdev.block_size:
            return
        if self.by_name(doc["name"]) or self.by_uuid(doc["uuid"]) or bdev.claim_type is not None:
            return  # "lvolstore with name ... already exists": load fails, bdev stays unclaimed
        desc = self.t.bdev.open_bdev(bdev, True, "lvol", self._base_removed)
        self.t.bdev.claim(bdev, "lvol", "read_many_write_one")  # spdk_bs_bdev_claim
        s = LvolStore(doc["name"], doc["uuid"], bdev, doc["cluster_size"], doc["block_size"],
                      doc["total_clusters"], doc["md_len"], doc["md_clusters"], doc.get("clear_method", "unmap"),
                      desc=desc, sidecar=path)
        by_uuid: dict[str, Lvol] = {}
        for d in doc["lvols"]:
            lv = Lvol(s, d["name"], d["uuid"], d["num_clusters"], d["thin"], d.get("clear_method", "default"),
                      d["read_only"], clusters=_unranges(d["allocated_clusters"]), raid_sb=d.get("raid_sb"))
            by_uuid[lv.uuid] = lv
            s.lvols.append(lv)
        for d, lv in zip(doc["lvols"], s.lvols):
            if d["parent"]:
                lv.parent = by_uuid.get(d["parent"])
                if lv.parent is not None:
                    lv.parent.snapshot_entry = True
        self.stores.append(s)
        for lv in s.lvols:
            self._create_bdev(lv)

    # --- bdevs ---
    def _create_bdev(self, lv: Lvol) -> None:
        s = lv.lvs
        b = Bdev(lv.uuid, s.block_size, lv.num_clusters * s.cluster_size // s.block_size, "Logical Volume",
                 "lvol", uuid=lv.uuid,
                 io_types=frozenset({"read", "reset", "seek_data", "seek_hole"} |
                                    (set() if lv.read_only else {"write", "unmap", "write_zeroes"})),
                 optimal_io_boundary=s.cluster_size // s.block_size, ctx=lv, raid_sb=lv.raid_sb)
        self.t.bdev.register(b)
        lv.bdev = b
        self.t.bdev.alias_add(b, lv.alias)

    def _base_removed(self, desc: Desc) -> None:
        s = next((s for s in self.stores if s.desc is desc), None)
        if s is not None:
            self.unload(s)

    def unload(self, s: LvolStore) -> None:
        """Close the lvstore (base bdev gone or shutdown): lvol bdevs go away, metadata stays."""
        self.save(s)
        s.removing = True
        for lv in list(s.lvols):
            if lv.bdev is not None:
                self.t.bdev.unregister(lv.bdev)
                lv.bdev = None
        if s in self.stores:
            self.stores.remove(s)
        if s.desc is not None:
            self.t.bdev.release(s.base)
            self.t.bdev.close(s.desc)

    def destroy_lvol(self, lv: Lvol) -> None:
        """``vbdev_lvol_destroy`` → ``spdk_lvol_destroy`` → ``spdk_bs_delete_blob``."""
        s = lv.lvs
        clones = lv.clones()
        if len(clones) > 1:
            raise RpcError(INTERNAL_ERROR, _s(E.EPERM))
        if lv.bdev is not None:
            b, lv.bdev = lv.bdev, None
            self.t.bdev.unregister(b)
        if len(clones) == 1:
            c = clones[0]
            c.clusters |= {i for i in lv.clusters if i < c.num_clusters} - c.clusters
            c.parent = lv.parent
        s.lvols.remove(lv)
        self.save(s)

    def destroy_store(self, s: LvolStore) -> None:
        s.removing = True
        while s.lvols:
            self.destroy_lvol(next(lv for lv in s.lvols if not lv.clones()))
        if s in self.stores:
            self.stores.remove(s)
        if s.desc is not None:
            self.t.bdev.release(s.base)
            self.t.bdev.close(s.desc)
        self.forget(s)

    def shutdown(self) -> None:
        for s in list(self.stores):
            self.save(s)

    def put_raid_sb(self, bdev: Bdev, sb: dict[str, Any] | None) -> None:
        lv: Lvol = bdev.ctx
        lv.raid_sb = sb
        self.save(lv.lvs)

    def write(self, bdev: Bdev, offset: int, length: int) -> None:
        """A write to an lvol bdev allocates the clusters it touches (thin lvols, clones)."""
        lv: Lvol = bdev.ctx
        cs = lv.lvs.cluster_size
        first, last = offset // cs, min(lv.num_clusters, _div_up(offset + length, cs))
        try:
            lv.lvs.allocate(lv, set(range(first, last)))
        except _Nospc:
            pass  # the write fails with -ENOSPC; nothing is allocated
        self.save(lv.lvs)


def _s(err: int) -> str:
    return os.strerror(err)


def _check_name(s: LvolStore, name: str) -> None:
    """``lvs_verify_lvol_name``."""
    if not name or len(name.encode()) >= LVOL_NAME_MAX:
        raise errno_error(E.EINVAL)
    if any(lv.name == name for lv in s.lvols):
        raise errno_error(E.EEXIST)


# --- RPCs ----------------------------------------------------------------------------------------

LVS_CLEAR = ["unmap", "write_zeroes", "none"]
LVOL_CLEAR = ["default", "none", "unmap", "write_zeroes"]


@rpc("bdev_lvol_create_lvstore")
def bdev_lvol_create_lvstore(t: Target, params: Any) -> str:
    spec = {"bdev_name": F("string", True), "lvs_name": F("string", True), "cluster_sz": F("uint32"),
            "clear_method": F(("enum", LVS_CLEAR)), "num_md_pages_per_cluster_ratio": F("uint32"),
            "md_page_size": F("uint32")}
    p = decode(params, spec, DECODE_FAILED)
    name = p["lvs_name"]
    cluster_sz = p.get("cluster_sz") or 4 * MiB
    ratio = p.get("num_md_pages_per_cluster_ratio") or 100
    md_page_size = p.get("md_page_size", 0)
    if not name or len(name.encode()) >= LVS_NAME_MAX:
        raise errno_error(E.EINVAL)
    if md_page_size and (md_page_size < 4096 or md_page_size > 65536 or md_page_size & (md_page_size - 1)):
        raise errno_error(E.EINVAL)
    base = t.bdev.get(p["bdev_name"])
    if base is None:
        raise errno_error(E.ENODEV)
    if base.claim_type is not None:
        raise errno_error(E.EPERM)  # spdk_bdev_create_bs_dev_ext opens the bdev for writing
    if cluster_sz < base.block_size or cluster_sz % base.block_size:
        raise errno_error(E.EINVAL)
    if t.lvol.by_name(name):
        raise errno_error(E.EEXIST)
    # from here SPDK reports through the completion callback: -32602 with the errno text
    if ratio * (base.num_blocks // (cluster_sz // base.block_size)) // 100 == 0 or cluster_sz % BS_PAGE_SIZE:
        raise async_errno_error(INVALID_PARAMS, E.EINVAL)  # bs_opts_verify
    total, md_len, md_clusters = blobstore_geometry(base.num_blocks, base.block_size, cluster_sz, ratio)
    if base.size < cluster_sz:
        raise async_errno_error(INVALID_PARAMS, E.ENOSPC)  # bs_alloc
    if cluster_sz < max(BS_PAGE_SIZE, md_page_size):
        raise async_errno_error(INVALID_PARAMS, E.EINVAL)
    if md_clusters > total:
        raise async_errno_error(INVALID_PARAMS, E.ENOMEM)
    desc = t.bdev.open_bdev(base, True, "lvol", t.lvol._base_removed)
    t.bdev.claim(base, "lvol", "read_many_write_one")  # spdk_bs_bdev_claim
    s = LvolStore(name, new_uuid(), base, cluster_sz, base.block_size, total, md_len, md_clusters,
                  p.get("clear_method", "unmap"), desc=desc,
                  sidecar=(base.ctx.filename + SIDECAR_SUFFIX) if base.module == "aio" else None)
    t.lvol.stores.append(s)
    t.lvol.save(s)
    # spdk_bs_init zeroes the metadata region and writes the super block: that is written data
    # for whatever is below (a thin lvol, a raid of them)
    t.bdev.write(base, 0, md_pages(base.num_blocks, base.block_size, cluster_sz, ratio) * BS_PAGE_SIZE)
    return s.uuid


@rpc("bdev_lvol_get_lvstores")
def bdev_lvol_get_lvstores(t: Target, params: Any) -> list[dict[str, Any]]:
    if params is None:
        return [s.info() for s in t.lvol.stores if not s.removing]
    p = decode(params, {"uuid": F("string"), "lvs_name": F("string")}, DECODE_FAILED)
    return [t.lvol.uuid_xor_name(p.get("uuid"), p.get("lvs_name")).info()]


@rpc("bdev_lvol_delete_lvstore")
def bdev_lvol_delete_lvstore(t: Target, params: Any) -> bool:
    p = decode(params, {"uuid": F("string"), "lvs_name": F("string")}, DECODE_FAILED)
    s = t.lvol.uuid_xor_name(p.get("uuid"), p.get("lvs_name"))
    t.lvol.destroy_store(s)
    return True


@rpc("bdev_lvol_rename_lvstore")
def bdev_lvol_rename_lvstore(t: Target, params: Any) -> bool:
    p = decode(params, {"old_name": F("string", True), "new_name": F("string", True)}, DECODE_FAILED)
    s = t.lvol.by_name(p["old_name"])
    if s is None:
        raise RpcError(-E.ENOENT, f"Lvol store {p['old_name']} not found")
    new = p["new_name"]
    if new == s.name:
        return True
    if t.lvol.by_name(new) is not None:
        raise async_errno_error(INVALID_PARAMS, E.EEXIST)
    for lv in s.lvols:
        if lv.bdev is not None:
            t.bdev.alias_del(lv.bdev, lv.alias)
    s.name = new
    for lv in s.lvols:
        if lv.bdev is not None:
            t.bdev.alias_add(lv.bdev, lv.alias)
    t.lvol.save(s)
    return True


LVOL_CREATE = {"lvol_name": F("string", True), "size_in_mib": F("uint64", True), "thin_provision": F("bool"),
               "uuid": F("string"), "lvs_name": F("string"), "clear_method": F(("enum", LVOL_CLEAR))}


@rpc("bdev_lvol_create")
def bdev_lvol_create(t: Target, params: Any) -> str:
    p = decode(params, LVOL_CREATE, DECODE_FAILED)
    s = t.lvol.uuid_xor_name(p.get("uuid"), p.get("lvs_name"))
    name = p["lvol_name"]
    _check_name(s, name)
    thin = p.get("thin_provision", False)
    n = _div_up(p["size_in_mib"] * MiB, s.cluster_size)
    if not thin and n > s.free_clusters:
        raise async_errno_error(INVALID_PARAMS, E.ENOSPC)
    lv = Lvol(s, name, new_uuid(), n, thin, p.get("clear_method", "default"))
    if not thin:
        lv.clusters = set(range(n))
    s.lvols.append(lv)
    t.lvol._create_bdev(lv)
    t.lvol.save(s)
    return lv.uuid


@rpc("bdev_lvol_snapshot")
def bdev_lvol_snapshot(t: Target, params: Any) -> str:
    p = decode(params, {"lvol_name": F("string", True), "snapshot_name": F("string", True)}, DECODE_FAILED)
    orig = t.lvol.lvol_from_bdev_name(p["lvol_name"])
    s = orig.lvs
    try:
        _check_name(s, p["snapshot_name"])
    except RpcError as e:
        raise RpcError(INVALID_PARAMS, e.message) from None
    if orig.read_only:
        raise async_errno_error(INVALID_PARAMS, E.EINVAL)
    snap = Lvol(s, p["snapshot_name"], new_uuid(), orig.num_clusters, orig.thin, orig.clear_method,
                read_only=True, parent=orig.parent, clusters=orig.clusters)
    orig.clusters = set()
    orig.thin = True
    orig.parent = snap
    snap.snapshot_entry = True
    s.lvols.append(snap)
    t.lvol._create_bdev(snap)
    t.lvol.save(s)
    return snap.uuid


@rpc("bdev_lvol_clone")
def bdev_lvol_clone(t: Target, params: Any) -> str:
    p = decode(params, {"snapshot_name": F("string", True), "clone_name": F("string", True)}, DECODE_FAILED)
    snap = t.lvol.lvol_from_bdev_name(p["snapshot_name"])
    s = snap.lvs
    try:
        _check_name(s, p["clone_name"])
    except RpcError as e:
        raise RpcError(INVALID_PARAMS, e.message) from None
    if not snap.read_only:
        raise async_errno_error(INVALID_PARAMS, E.EINVAL)  # "Clone not from read-only blob"
    clone = Lvol(s, p["clone_name"], new_uuid(), snap.num_clusters, True, snap.clear_method, parent=snap)
    snap.snapshot_entry = True
    s.lvols.append(clone)
    t.lvol._create_bdev(clone)
    t.lvol.save(s)
    return clone.uuid


@rpc("bdev_lvol_rename")
def bdev_lvol_rename(t: Target, params: Any) -> bool:
    p = decode(params, {"old_name": F("string", True), "new_name": F("string", True)}, DECODE_FAILED)
    lv = t.lvol.lvol_from_bdev_name(p["old_name"])
    new = p["new_name"]
    if new == lv.name:
        return True
    if any(x.name == new for x in lv.lvs.lvols):
        raise async_errno_error(INVALID_PARAMS, E.EEXIST)
    assert lv.bdev is not None
    new_alias = f"{lv.lvs.name}/{new}"
    if t.bdev.get(new_alias) is not None:
        raise async_errno_error(INVALID_PARAMS, E.EEXIST)
    t.bdev.alias_del(lv.bdev, lv.alias)
    lv.name = new
    t.bdev.alias_add(lv.bdev, lv.alias)
    t.lvol.save(lv.lvs)
    return True


def _inflate(t: Target, lv: Lvol, allocate_all: bool) -> None:
    s = lv.lvs
    if lv.parent is None and not allocate_all:
        raise async_errno_error(INVALID_PARAMS, E.EINVAL)  # "Cannot decouple parent of blob with no parent"
    if not lv.thin:
        return
    if lv.read_only:
        raise async_errno_error(INVALID_PARAMS, E.EPERM)
    if allocate_all:
        wanted = set(range(lv.num_clusters))
    else:
        assert lv.parent is not None
        wanted = {i for i in lv.parent.clusters if i < lv.num_clusters}
    try:
        s.allocate(lv, wanted)
    except _Nospc:
        raise async_errno_error(INVALID_PARAMS, E.ENOSPC) from None
    if allocate_all:
        lv.thin = False
        lv.parent = None
    else:
        assert lv.parent is not None
        lv.parent = lv.parent.parent
    t.lvol.save(s)


@rpc("bdev_lvol_inflate")
def bdev_lvol_inflate(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_FAILED)
    _inflate(t, t.lvol.lvol_from_bdev_name(p["name"]), True)
    return True


@rpc("bdev_lvol_decouple_parent")
def bdev_lvol_decouple_parent(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_FAILED)
    _inflate(t, t.lvol.lvol_from_bdev_name(p["name"]), False)
    return True


@rpc("bdev_lvol_resize")
def bdev_lvol_resize(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True), "size_in_mib": F("uint64", True)}, DECODE_FAILED)
    lv = t.lvol.lvol_from_bdev_name(p["name"])
    s = lv.lvs
    n = _div_up(p["size_in_mib"] * MiB, s.cluster_size)
    if lv.read_only:
        raise async_errno_error(INVALID_PARAMS, E.EPERM)
    if n != lv.num_clusters:
        if n > lv.num_clusters and not lv.thin:
            if n - lv.num_clusters > s.free_clusters:
                raise async_errno_error(INVALID_PARAMS, E.ENOSPC)
            lv.clusters |= set(range(lv.num_clusters, n))
        lv.clusters = {c for c in lv.clusters if c < n}
        lv.num_clusters = n
        t.lvol.save(s)
    assert lv.bdev is not None
    try:
        t.bdev.notify_blockcnt_change(lv.bdev, n * s.cluster_size // s.block_size)
    except RpcError as e:
        raise async_errno_error(INVALID_PARAMS, e.code) from None
    return True


@rpc("bdev_lvol_set_read_only")
def bdev_lvol_set_read_only(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_FAILED)
    lv = t.lvol.lvol_from_bdev_name(p["name"])
    lv.read_only = True
    t.lvol.save(lv.lvs)
    return True


@rpc("bdev_lvol_delete")
def bdev_lvol_delete(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_FAILED)
    name = p["name"]
    lv: Lvol | None = None
    b = t.bdev.get(name)
    if b is not None and b.module == "lvol":
        lv = b.ctx
    if lv is None and parse_uuid(name):
        lv = next((x for s in t.lvol.stores for x in s.lvols if x.uuid == parse_uuid(name)), None)
    if lv is None and "/" in name:
        lvs_name, lvol_name = name.split("/", 1)
        lv = next((x for s in t.lvol.stores if s.name == lvs_name for x in s.lvols if x.name == lvol_name), None)
    if lv is None:
        raise errno_error(E.ENODEV)
    if lv.lvs.removing:
        raise RpcError(INTERNAL_ERROR, _s(E.ENODEV))
    if len(lv.clones()) > 1:
        raise RpcError(INTERNAL_ERROR, _s(E.EPERM))
    t.lvol.destroy_lvol(lv)
    return True


def _lvol_info(lv: Lvol) -> dict[str, Any]:
    s = lv.lvs
    return {"alias": lv.alias, "uuid": lv.uuid, "name": lv.name, "is_thin_provisioned": lv.thin,
            "is_snapshot": lv.is_snapshot, "is_clone": lv.is_clone, "is_esnap_clone": False,
            "is_degraded": False, "num_allocated_clusters": len(lv.clusters),
            "lvs": {"name": s.name, "uuid": s.uuid}}


@rpc("bdev_lvol_get_lvols")
def bdev_lvol_get_lvols(t: Target, params: Any) -> list[dict[str, Any]]:
    if params is None:
        stores = [s for s in t.lvol.stores if not s.removing]
    else:
        p = decode(params, {"lvs_uuid": F("string"), "lvs_name": F("string")}, DECODE_FAILED)
        stores = [t.lvol.uuid_xor_name(p.get("lvs_uuid"), p.get("lvs_name"))]
    return [_lvol_info(lv) for s in stores for lv in s.lvols if lv.bdev is not None]


def _bdev_info(b: Bdev) -> dict[str, Any]:
    lv: Lvol = b.ctx
    s = lv.lvs
    d: dict[str, Any] = {"lvol_store_uuid": s.uuid, "base_bdev": s.base.name, "thin_provision": lv.thin,
                         "num_allocated_clusters": len(lv.clusters), "snapshot": lv.is_snapshot,
                         "clone": lv.is_clone}
    if lv.is_clone:
        assert lv.parent is not None
        d["base_snapshot"] = lv.parent.name
    if lv.is_snapshot:
        clones = lv.clones()
        if clones:
            d["clones"] = [c.name for c in clones]
    d["esnap_clone"] = False
    return {"lvol": d}


def setup(t: Target) -> None:
    t.bdev.examine_hooks.append(t.lvol.examine)
    t.bdev.info_hooks["lvol"] = _bdev_info
    t.bdev.write_hooks["lvol"] = t.lvol.write
    t.bdev.sb_hooks["lvol"] = t.lvol.put_raid_sb
