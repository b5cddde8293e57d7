"""Replicas and snapshots: thin lvols in the node's pool, named by the caller's ids.

The lvol name carries the id (``replica-<uuid>``, ``snap-<uuid>``), so after a
restart the agent finds everything again by reading SPDK: nothing else needs to
be stored on the node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from ..qos import QosLimits
from ..spdk import SpdkBusy, SpdkExists, SpdkNoSpace, SpdkNotFound, SpdkNotPermitted, SpdkRpc
from ..spdk.rpc import MiB
from .pool import Pool

log = logging.getLogger(__name__)

REPLICA_PREFIX = "replica-"
SNAPSHOT_PREFIX = "snap-"

L = TypeVar("L")


def require_lvol(lvol: L | None, lvol_name: str, what: str) -> L:
    """The lvol looked up by ``lvol_name``, or NotFound for the ``what`` (replica, snapshot) it names."""
    if lvol is None:
        raise NotFound(f"{what} {lvol_name.split('-', 1)[1]} not found on this node")
    return lvol


def check_size(size_bytes: int) -> int:
    """A replica size as asked for: positive and whole MiB (the pool then rounds it up to clusters)."""
    if size_bytes <= 0:
        raise InvalidArgument("size_bytes", "must be positive")
    if size_bytes % MiB:
        raise InvalidArgument("size_bytes", f"{size_bytes} is not a multiple of 1 MiB")
    return size_bytes


def check_same_replica(replica_id: str, size_bytes: int, thin: bool, want: int, want_thin: bool) -> None:
    """A create of a replica that exists is a retry only if it asks for what exists."""
    if size_bytes != want or thin != want_thin:
        raise AlreadyExists(f"replica {replica_id} exists with size {size_bytes} "
                            f"thin={thin}, not size {want} thin={want_thin}")


def check_not_shrinking(replica_id: str, size_bytes: int, want: int) -> None:
    if want < size_bytes:
        raise FailedPrecondition(f"replica {replica_id} is {size_bytes} bytes; shrinking is not supported")


@dataclass
class LvolInfo:
    name: str
    alias: str
    uuid: str
    size_bytes: int
    allocated_bytes: int
    thin: bool
    snapshot: bool
    base_snapshot: str | None
    clones: list[str]
    qos: QosLimits = QosLimits()         # the rate limits SPDK enforces on the lvol (a direct head's)

    @property
    def object_id(self) -> str:
        return self.name.split("-", 1)[1]


class ReplicaStore:
    """Create, find, resize and delete replica and snapshot lvols."""

    def __init__(self, rpc: SpdkRpc, pool: Pool):
        self.rpc = rpc
        self.pool = pool

    def alias(self, lvol_name: str) -> str:
        return f"{self.pool.lvs_name}/{lvol_name}"

    def _info(self, b: dict) -> LvolInfo | None:
        lv = (b.get("driver_specific") or {}).get("lvol")
        if not lv or lv.get("lvol_store_uuid") != self.pool.uuid:
            return None
        alias = next((a for a in b.get("aliases") or [] if a.startswith(self.pool.lvs_name + "/")), "")
        if not alias:
            return None
        return LvolInfo(
            name=alias.split("/", 1)[1], alias=alias, uuid=b["uuid"],
            size_bytes=int(b["num_blocks"]) * int(b["block_size"]),
            allocated_bytes=int(lv.get("num_allocated_clusters", 0)) * self.pool.cluster_size,
            thin=bool(lv.get("thin_provision")), snapshot=bool(lv.get("snapshot")),
            base_snapshot=lv.get("base_snapshot"), clones=list(lv.get("clones") or []),
            qos=QosLimits.from_spdk(b.get("assigned_rate_limits")))

    async def lvols(self) -> dict[str, LvolInfo]:
        """Every lvol of the pool by name (one call)."""
        out: dict[str, LvolInfo] = {}
        for b in await self.rpc.bdev_get_bdevs():
            info = self._info(b)
            if info is not None:
                out[info.name] = info
        return out

    async def get(self, lvol_name: str) -> LvolInfo | None:
        """One lvol by name (one call)."""
        try:
            found = await self.rpc.bdev_get_bdevs(self.alias(lvol_name))
        except SpdkNotFound:
            return None
        return self._info(found[0]) if found else None

    async def require(self, lvol_name: str, what: str) -> LvolInfo:
        return require_lvol(await self.get(lvol_name), lvol_name, what)

    async def create(self, replica_id: str, size_bytes: int, thin: bool = True) -> LvolInfo:
        want = self.pool.round_size(check_size(size_bytes))
        name = REPLICA_PREFIX + replica_id
        try:
            # create first: the common case costs one call, and SPDK refuses a name it already has
            await self.rpc.bdev_lvol_create(name, want, self.pool.lvs_name, thin_provision=thin)
            log.info("replica created replica_id=%s size=%d thin=%s", replica_id, want, thin)
        except SpdkExists:
            existing = await self.require(name, "replica")
        except SpdkNoSpace as e:
            raise ResourceExhausted(f"pool {self.pool.lvs_name} has no room for {want} bytes: {e.message}")
        else:
            return await self.require(name, "replica")
        # checked outside the handler, so a mismatch is not reported as raised during SpdkExists
        check_same_replica(replica_id, existing.size_bytes, existing.thin, want, thin)
        return existing

    async def resize(self, replica_id: str, size_bytes: int) -> LvolInfo:
        want = self.pool.round_size(check_size(size_bytes))
        lv = await self.require(REPLICA_PREFIX + replica_id, "replica")
        check_not_shrinking(replica_id, lv.size_bytes, want)
        if want > lv.size_bytes:
            try:
                await self.rpc.bdev_lvol_resize(lv.alias, want)
            except SpdkNoSpace as e:
                raise ResourceExhausted(f"pool has no room to grow replica {replica_id}: {e.message}")
            log.info("replica resized replica_id=%s size=%d", replica_id, want)
        return await self.require(lv.name, "replica")

    async def delete(self, lvol_name: str) -> bool:
        lv = await self.get(lvol_name)
        if lv is None:
            return False
        try:
            await self.rpc.bdev_lvol_delete(lv.alias)
        except SpdkNotFound:
            return False
        except (SpdkBusy, SpdkNotPermitted) as e:
            raise FailedPrecondition(f"{lvol_name} cannot be deleted now (in use, or a snapshot with several "
                                     f"clones): {e.message}")
        log.info("lvol deleted name=%s", lvol_name)
        return True

    async def snapshot(self, replica_id: str, snapshot_id: str) -> LvolInfo:
        """Snapshot a replica. Snapshot ids are caller-chosen UUIDs: an existing one is a retry."""
        name = SNAPSHOT_PREFIX + snapshot_id
        existing = await self.get(name)
        if existing is not None:
            return existing
        lv = await self.require(REPLICA_PREFIX + replica_id, "replica")
        try:
            await self.rpc.bdev_lvol_snapshot(lv.alias, name)
        except SpdkNoSpace as e:
            raise ResourceExhausted(f"pool has no room for snapshot {snapshot_id}: {e.message}")
        log.info("snapshot created snapshot_id=%s replica_id=%s", snapshot_id, replica_id)
        return await self.require(name, "snapshot")

    async def clone(self, snapshot_id: str, replica_id: str) -> LvolInfo:
        snap_name = SNAPSHOT_PREFIX + snapshot_id
        name = REPLICA_PREFIX + replica_id
        existing = await self.get(name)
        if existing is not None:
            if existing.base_snapshot != snap_name:
                raise AlreadyExists(f"replica {replica_id} exists and is not a clone of snapshot {snapshot_id}")
            return existing
        snap = await self.require(snap_name, "snapshot")
        await self.rpc.bdev_lvol_clone(snap.alias, name)
        log.info("clone created replica_id=%s snapshot_id=%s", replica_id, snapshot_id)
        return await self.require(name, "replica")
