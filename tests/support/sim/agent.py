"""A node agent over the simulated data plane: what the real AgentServicer calls on a NodeAgent.

``SimAgent`` keeps what a real agent keeps in memory (the exports, heads and attachments it was
told to hold, write holds) and acts on its node's ``SimTarget`` where the real one calls SPDK. A
new ``SimAgent`` on the same target is an agent restart; on a new target, a node restart.
Errors are the ones the real agent raises in the same situations, so the servicer turns them into
the same status codes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace

from meshblock import __version__, iqn, nqn
from meshblock.agent.attachments import AttachSpec, AttachState, check_attachment_id
from meshblock.agent.config import AgentConfig
from meshblock.agent.exports import ExportState
from meshblock.agent.heads import LegState, raid_name
from meshblock.agent.model import Head, HeadView, ReplicaView, holdable_head
from meshblock.agent.pool import PoolInfo
from meshblock.agent.replicas import (
    REPLICA_PREFIX,
    SNAPSHOT_PREFIX,
    LvolInfo,
    check_not_shrinking,
    check_same_replica,
    check_size,
    require_lvol,
)
from meshblock.errors import AlreadyExists, FailedPrecondition, NotFound, ResourceExhausted, Unavailable
from meshblock.util import KeyedLock, check_nqn

from .fabric import Attachment, Member, Raid, SimDisk, SimLvol, SimTarget, Subsystem

log = logging.getLogger(__name__)

SPDK_VERSION = "SPDK sim"


class SimPool:
    """The part of meshblock.agent.pool.Pool that registration and the agent read."""

    def __init__(self, disk: SimDisk):
        self.disk = disk
        self.lvs_name = disk.lvs_name
        self.ready = True

    @property
    def lvol_block_size(self) -> int:
        return self.disk.block_size

    @property
    def cluster_size(self) -> int:
        return self.disk.cluster_size

    async def info(self) -> PoolInfo:
        d = self.disk
        return PoolInfo(name=d.lvs_name, uuid=d.uuid, total_bytes=d.total_bytes, free_bytes=d.free_bytes,
                        cluster_size=d.cluster_size, block_size=d.block_size)


class SimAgent:
    """Duck-typed meshblock.agent.node.NodeAgent over a SimTarget."""

    def __init__(self, config: AgentConfig, target: SimTarget, op_delay: float = 0.0,
                 on_head: Callable[[str, str], None] | None = None):
        self.config = config
        self.target = target
        self.disk = target.disk
        self.pool = SimPool(target.disk)
        self.op_delay = op_delay             # seconds each call that would reach SPDK takes
        self.on_head = on_head or (lambda volume_id, node_id: None)
        self.exports: dict[str, frozenset[str]] = {}
        self.export_fps: dict[str, dict[str, str]] = {}   # replica id -> host NQN -> secret fingerprints
        self.attachments: dict[str, AttachSpec] = {}
        self.heads: dict[str, Head] = {}
        self._holds: dict[str, asyncio.TimerHandle] = {}
        self.locks = KeyedLock()
        self.stopped = False

    @property
    def node_id(self) -> str:
        return self.config.node_id

    def stop(self) -> None:
        self.stopped = True
        for timer in self._holds.values():
            timer.cancel()
        self._holds.clear()

    async def _spdk(self) -> None:
        """What every call that reaches SPDK costs, and what it finds when the target is gone."""
        if self.op_delay:
            await asyncio.sleep(self.op_delay)
        self._require_running()

    def _require_running(self) -> None:
        if self.stopped or not self.target.running:
            raise Unavailable("SPDK target is stopped; try again shortly")

    # --- node ------------------------------------------------------------------------------
    def info(self) -> dict:
        c = self.config
        return dict(node_id=self.node_id, name=c.name, host_nqn=c.host_nqn, nvmf_address=c.nvmf_address,
                    nvmf_port=c.nvmf_port, labels=dict(c.labels), spdk_version=SPDK_VERSION,
                    agent_version=__version__, iscsi_address=c.iscsi_address, iscsi_port=c.iscsi_port)

    async def health(self) -> dict:
        up = self.target.running and not self.stopped
        return dict(healthy=up, target_state="running" if up else "stopped", target_restarts=0, target_pid=0,
                    spdk_version=SPDK_VERSION, pool_ready=up, message="" if up else "target stopped")

    async def pool_status(self) -> dict:
        await self._spdk()
        d = self.disk
        return dict(name=d.lvs_name, uuid=d.uuid, total_bytes=d.total_bytes, free_bytes=d.free_bytes,
                    provisioned_bytes=sum(lv.size_bytes for lv in d.lvols.values()), cluster_size=d.cluster_size,
                    replica_count=sum(n.startswith(REPLICA_PREFIX) for n in d.lvols),
                    snapshot_count=sum(n.startswith(SNAPSHOT_PREFIX) for n in d.lvols),
                    devices=[f"sim:{self.node_id}"])

    # --- lvols -----------------------------------------------------------------------------
    def _lvol(self, name: str) -> LvolInfo | None:
        lv = self.disk.lvols.get(name)
        return None if lv is None else self.disk.info(lv)

    def _require(self, name: str, what: str) -> SimLvol:
        return require_lvol(self.disk.lvols.get(name), name, what)

    def _new_lvol(self, name: str, size: int, thin: bool, **kw) -> SimLvol:
        return self.disk.add(SimLvol(name=name, uuid=str(uuid.uuid4()), size_bytes=size,
                                     allocated_bytes=0 if thin else size, thin=thin, **kw))

    def _export_state(self, rid: str) -> ExportState | None:
        hosts = self.exports.get(rid)
        if hosts is None:
            return None
        return ExportState(nqn=nqn("replica", rid), address=self.config.nvmf_address, port=self.config.nvmf_port,
                           hosts=sorted(hosts), namespace_uuid=rid, host_keys=dict(self.export_fps.get(rid, {})))

    def _view(self, lv: SimLvol) -> ReplicaView:
        return ReplicaView(self.disk.info(lv), self._export_state(lv.name.split("-", 1)[1]))

    # --- replicas --------------------------------------------------------------------------
    async def create_replica(self, rid: str, size_bytes: int, thin: bool) -> ReplicaView:
        self._require_running()
        async with self.locks(rid):
            want = self.disk.round(check_size(size_bytes))
            await self._spdk()
            name = REPLICA_PREFIX + rid
            lv = self.disk.lvols.get(name)
            if lv is not None:
                check_same_replica(rid, lv.size_bytes, lv.thin, want, thin)
                return self._view(lv)
            if not thin and want > self.disk.free_bytes:
                raise ResourceExhausted(f"pool {self.disk.lvs_name} has no room for {want} bytes: "
                                        "No space left on device")
            lv = self._new_lvol(name, want, thin)
            log.info("replica created replica_id=%s size=%d thin=%s node_id=%s", rid, want, thin, self.node_id)
            return self._view(lv)

    async def resize_replica(self, rid: str, size_bytes: int) -> ReplicaView:
        self._require_running()
        async with self.locks(rid):
            want = self.disk.round(check_size(size_bytes))
            await self._spdk()
            lv = self._require(REPLICA_PREFIX + rid, "replica")
            check_not_shrinking(rid, lv.size_bytes, want)
            if want > lv.size_bytes:
                grow = want - lv.size_bytes if not lv.thin else 0
                if grow > self.disk.free_bytes:
                    raise ResourceExhausted(f"pool has no room to grow replica {rid}: No space left on device")
                lv.size_bytes = want
                lv.allocated_bytes += grow
            return self._view(lv)

    async def get_replica(self, rid: str) -> ReplicaView:
        await self._spdk()
        return self._view(self._require(REPLICA_PREFIX + rid, "replica"))

    async def list_replicas(self) -> list[ReplicaView]:
        await self._spdk()
        return [self._view(lv) for name, lv in sorted(self.disk.lvols.items()) if name.startswith(REPLICA_PREFIX)]

    def _delete_lvol(self, name: str) -> bool:
        lv = self.disk.lvols.get(name)
        if lv is None:
            return False
        if lv.snapshot and len(lv.clones) > 1:
            raise FailedPrecondition(f"{name} cannot be deleted now (in use, or a snapshot with several clones): "
                                     "Operation not permitted")
        if lv.snapshot and lv.clones:
            # a snapshot with one clone is merged into it: the clone takes its clusters and its origin
            clone = self.disk.lvols.get(lv.clones[0])
            if clone is not None:
                clone.allocated_bytes = min(clone.size_bytes, clone.allocated_bytes + lv.allocated_bytes)
                clone.base_snapshot = lv.base_snapshot
            if lv.base_snapshot and lv.base_snapshot in self.disk.lvols:
                parent = self.disk.lvols[lv.base_snapshot]
                parent.clones = [lv.clones[0] if c == name else c for c in parent.clones]
        elif lv.base_snapshot and lv.base_snapshot in self.disk.lvols:
            parent = self.disk.lvols[lv.base_snapshot]
            parent.clones = [c for c in parent.clones if c != name]
        self.disk.remove(name)
        # SPDK hot-removes the bdev: namespaces on it vanish
        self.target.fabric.lvol_gone(self.target, lv.uuid)
        log.info("lvol deleted name=%s node_id=%s", name, self.node_id)
        return True

    async def delete_replica(self, rid: str) -> bool:
        self._require_running()
        async with self.locks(rid):
            await self._spdk()
            self.exports.pop(rid, None)
            self.export_fps.pop(rid, None)
            self.target.remove_subsystem(nqn("replica", rid))
            return self._delete_lvol(REPLICA_PREFIX + rid)

    async def export_replica(self, rid: str, hosts: list[str], host_keys: tuple = ()) -> ExportState:
        self._require_running()
        allowed = frozenset(check_nqn("allowed_host_nqns", h) for h in hosts)
        async with self.locks(rid):
            await self._spdk()
            lv = self._require(REPLICA_PREFIX + rid, "replica")
            self.exports[rid] = allowed
            self.export_fps[rid] = {h: k.fingerprints for h, k in host_keys}
            c = self.config
            self.target.ensure_subsystem(Subsystem(nqn=nqn("replica", rid), bdev=lv.uuid, namespace_uuid=rid,
                                                   address=c.nvmf_address, port=c.nvmf_port, hosts=allowed))
            return ExportState(nqn=nqn("replica", rid), address=c.nvmf_address, port=c.nvmf_port,
                               hosts=sorted(allowed), namespace_uuid=rid, host_keys=dict(self.export_fps[rid]))

    async def unexport_replica(self, rid: str) -> bool:
        self._require_running()
        async with self.locks(rid):
            await self._spdk()
            had = self.exports.pop(rid, None) is not None
            self.export_fps.pop(rid, None)
            return self.target.remove_subsystem(nqn("replica", rid)) or had

    # --- snapshots -------------------------------------------------------------------------
    async def create_snapshot(self, rid: str, sid: str) -> LvolInfo:
        self._require_running()
        async with self.locks(rid):
            await self._spdk()
            name = SNAPSHOT_PREFIX + sid
            existing = self._lvol(name)
            if existing is not None:
                return existing
            lv = self._require(REPLICA_PREFIX + rid, "replica")
            # the snapshot takes the origin's clusters; the origin becomes a thin clone of it
            snap = self._new_lvol(name, lv.size_bytes, thin=False, snapshot=True, base_snapshot=lv.base_snapshot,
                                  clones=[lv.name])
            snap.allocated_bytes = lv.allocated_bytes
            if lv.base_snapshot and lv.base_snapshot in self.disk.lvols:
                parent = self.disk.lvols[lv.base_snapshot]
                parent.clones = [name if c == lv.name else c for c in parent.clones]
            lv.allocated_bytes, lv.base_snapshot = 0, name
            log.info("snapshot created snapshot_id=%s replica_id=%s node_id=%s", sid, rid, self.node_id)
            return self.disk.info(snap)

    async def delete_snapshot(self, sid: str) -> bool:
        self._require_running()
        async with self.locks(sid):
            await self._spdk()
            return self._delete_lvol(SNAPSHOT_PREFIX + sid)

    async def list_snapshots(self) -> list[LvolInfo]:
        await self._spdk()
        return [self.disk.info(lv) for name, lv in sorted(self.disk.lvols.items()) if name.startswith(SNAPSHOT_PREFIX)]

    async def clone_snapshot(self, sid: str, rid: str) -> ReplicaView:
        self._require_running()
        async with self.locks(rid):
            await self._spdk()
            snap_name, name = SNAPSHOT_PREFIX + sid, REPLICA_PREFIX + rid
            existing = self.disk.lvols.get(name)
            if existing is not None:
                if existing.base_snapshot != snap_name:
                    raise AlreadyExists(f"replica {rid} exists and is not a clone of snapshot {sid}")
                return self._view(existing)
            snap = self._require(snap_name, "snapshot")
            lv = self._new_lvol(name, snap.size_bytes, thin=True, base_snapshot=snap_name)
            snap.clones.append(name)
            return self._view(lv)

    # --- attachments -----------------------------------------------------------------------
    def _attach_state(self, spec: AttachSpec) -> AttachState:
        connected = self.target.connected(spec.controller)
        size = 0
        if connected:
            try:
                size = self.target.fabric.reach(spec.subnqn, spec.address, spec.port, spec.host_nqn).size_bytes
            except Unavailable:
                connected = False
        return AttachState(spec=spec, bdev_names=[spec.controller + "n1"], size_bytes=size, connected=connected)

    async def attach(self, aid: str, subnqn: str, address: str, port: int, transport: str) -> AttachState:
        check_attachment_id(aid)
        check_nqn("subsystem_nqn", subnqn)
        if transport.lower() not in ("", "tcp"):
            raise FailedPrecondition(f"transport {transport!r} is not supported; use tcp")
        spec = AttachSpec(attachment_id=aid, subnqn=subnqn, address=address, port=port,
                          host_nqn=self.config.host_nqn)
        async with self.locks("att:" + aid):
            await self._spdk()
            cur = self.target.attachments.get(spec.controller)
            if cur is not None and (cur.subnqn, cur.address, cur.port) != (subnqn, address, port):
                raise AlreadyExists(f"attachment {aid} exists for a different target")
            if cur is None:
                self.target.attach(Attachment(spec.controller, subnqn, address, port, spec.host_nqn))
            self.attachments[aid] = spec
            return self._attach_state(spec)

    async def detach(self, aid: str) -> bool:
        check_attachment_id(aid)
        async with self.locks("att:" + aid):
            await self._spdk()
            had = self.attachments.pop(aid, None) is not None
            return self.target.detach("att-" + aid) or had

    async def list_attachments(self) -> list[AttachState]:
        await self._spdk()
        return [self._attach_state(spec) for _, spec in sorted(self.attachments.items())]

    # --- heads -----------------------------------------------------------------------------
    def _head_address(self, head: Head) -> tuple[str, int]:
        c = self.config
        if head.iscsi is not None:
            return c.iscsi_address, c.iscsi_port
        if head.direct:
            return c.nvmf_address, c.nvmf_port
        return c.nvmf_address, c.head_port

    def _attach_leg(self, leg) -> tuple[SimLvol, SimTarget] | None:
        att = Attachment(f"att-leg-{leg.replica_id}", leg.subsystem_nqn, leg.address, leg.port,
                         self.config.host_nqn)
        try:
            lv = self.target.attach(att)
        except Unavailable as e:
            log.info("replica %s not reachable for the head on node %s: %s", leg.replica_id, self.node_id, e)
            return None
        remote = self.target.fabric.targets.get(self.target.fabric.addresses[(leg.address, leg.port)])
        return lv, remote

    def _ensure_raid(self, head: Head) -> Raid | None:
        """RaidComposer.ensure over the simulated target."""
        t = self.target
        slots = max(head.replica_count, len(head.legs))
        reach = {leg.replica_id: r for leg in head.legs if (r := self._attach_leg(leg)) is not None}
        raid = t.raid(head.volume_id)
        if raid is not None and raid.offline:
            t.delete_raid(head.volume_id)
            raid = None
        if raid is None:
            seeds = sorted(reach) if head.standby else [rid for rid in sorted(reach) if rid in head.in_sync]
            if head.raid_level == "raid5f" and len(seeds) < slots - 1:
                if head.standby:
                    return None
                raise Unavailable(f"volume {head.volume_id} needs {slots - 1} of its {slots} shards in sync and "
                                  f"reachable (reachable: {sorted(reach) or 'none'}, in sync: "
                                  f"{sorted(head.in_sync) or 'none'})")
            if not seeds:
                if head.standby:
                    return None
                raise Unavailable(f"no in-sync replica of volume {head.volume_id} is reachable (reachable: "
                                  f"{sorted(reach) or 'none'}, in sync: {sorted(head.in_sync) or 'none'})")
            if head.raid_level == "raid5f":
                layout: list[Member | None] = [None] * slots
                for leg in head.legs:
                    if leg.replica_id in seeds:
                        layout[leg.slot] = Member(leg.replica_id, reach[leg.replica_id][0].size_bytes)
            else:
                n = max(slots, len(seeds), 2)
                layout = [Member(rid, reach[rid][0].size_bytes) for rid in seeds] + [None] * (n - len(seeds))
            raid = t.raids[head.volume_id] = Raid(head.volume_id, head.raid_level, layout, head.strip_size_kb,
                                                  standby=head.standby)
            log.info("raid created volume_id=%s node_id=%s from %s", head.volume_id, self.node_id, ",".join(seeds))
        raid.standby = head.standby
        if not head.standby:
            t.fail_unreachable(raid)
            if raid.offline:            # its I/O failed every source: start again, as the next call would
                t.delete_raid(head.volume_id)
                return self._ensure_raid(head)
            for rid, (lv, remote) in sorted(reach.items()):
                if raid.member(rid) is not None:
                    continue
                if raid.level == "raid5f" and raid.rebuilding() is not None:
                    continue        # one rebuild at a time: later
                t.add_member(raid, rid, lv, remote)
        return raid

    def _raid_view(self, head: Head) -> tuple[str, int, list[LegState]]:
        raid = self.target.raid(head.volume_id)
        if raid is None:
            return "missing", 0, [LegState(leg.replica_id, "missing") for leg in head.legs]
        now = self.target.fabric.clock()
        legs = []
        for leg in head.legs:
            m = raid.member(leg.replica_id)
            if m is None or (raid.standby and not self.target.connected(f"att-leg-{m.replica_id}")):
                legs.append(LegState(leg.replica_id, "missing"))
            elif m.state == "rebuilding":
                pct = min(100.0, 100.0 * (now - m.started) / max(m.ends - m.started, 1e-9))
                legs.append(LegState(leg.replica_id, "rebuilding", pct,
                                     int(m.size_bytes * pct / 100 // self.disk.block_size)))
            else:
                legs.append(LegState(leg.replica_id, "in_sync"))
        return raid.state, raid.size_bytes(), legs

    def _apply_head(self, head: Head) -> HeadView:
        c, t = self.config, self.target
        if head.direct:
            leg = head.legs[0]
            if leg.node_id != self.node_id:
                raise FailedPrecondition(f"replica {leg.replica_id} is not on this node; give its export")
            lv = self._require(REPLICA_PREFIX + leg.replica_id, "replica")
            t.ensure_subsystem(Subsystem(nqn=head.nqn, bdev=lv.uuid, namespace_uuid=head.namespace_uuid,
                                         address=c.nvmf_address, port=c.nvmf_port, hosts=head.hosts,
                                         ana_reporting=True))
            return HeadView(head, c.nvmf_address, c.nvmf_port, lv.size_bytes, [LegState(leg.replica_id, "in_sync")])
        raid = self._ensure_raid(head)
        address, port = self._head_address(head)
        if head.iscsi is not None:
            t.ensure_subsystem(Subsystem(nqn=head.iscsi.target_iqn, bdev=raid_name(head.volume_id),
                                         namespace_uuid=head.namespace_uuid, address=address, port=port,
                                         hosts=head.iscsi.initiators, iscsi=True))
        elif raid is not None:
            t.ensure_subsystem(Subsystem(nqn=head.nqn, bdev=raid_name(head.volume_id),
                                         namespace_uuid=head.namespace_uuid, address=address, port=port,
                                         hosts=head.hosts, ana_reporting=True, ana_state=head.ana_state))
        elif head.ana_state != "inaccessible":
            raise Unavailable(f"raid of volume {head.volume_id} is missing")
        state, size, legs = self._raid_view(head)
        return HeadView(head, address, port, size, legs, state)

    def _set_ana(self, head: Head, state: str, required: bool = False) -> None:
        sub = self.target.subsystems.get(head.nqn)
        if sub is None:
            if required:
                raise NotFound(f"subsystem {head.nqn} does not exist")
            return
        if sub.ana_state != state:
            sub.ana_state = state
            log.info("ANA state set nqn=%s state=%s node_id=%s", head.nqn, state, self.node_id)

    def _drop_leg(self, volume_id: str, replica_id: str) -> None:
        raid = self.target.raids.get(volume_id)
        if raid is not None and raid.member(replica_id) is not None:
            self.target.drop_member(raid, replica_id, "no longer a leg of the head")
        self.target.detach(f"att-leg-{replica_id}")

    def _reseed(self, head: Head) -> None:
        raid = self.target.raid(head.volume_id)
        if raid is None:
            return
        if not any(m.replica_id in head.in_sync for m in raid.members() if m.state == "in_sync"):
            raise Unavailable(f"the standby raid of volume {head.volume_id} holds no in-sync replica")
        for m in raid.members():
            if m.replica_id not in head.in_sync:
                self.target.drop_member(raid, m.replica_id, "left the promoted raid to be rebuilt")

    async def ensure_head(self, head: Head) -> HeadView:
        self._require_running()
        if head.iscsi is None:
            for h in head.hosts:
                check_nqn("allowed_host_nqns", h)
            check_nqn("nqn", head.nqn)
        async with self.locks("head:" + head.volume_id):
            await self._spdk()
            old = self.heads.get(head.volume_id)
            if old is not None and not old.direct:
                for rid in sorted({leg.replica_id for leg in old.legs} - {leg.replica_id for leg in head.legs}):
                    self._drop_leg(head.volume_id, rid)
            role_changed = old is not None and old.standby != head.standby
            if old is not None and old.direct == head.direct and not role_changed:
                head = replace(head, ana_state=old.ana_state)
            if role_changed and head.standby:
                self._set_ana(head, "inaccessible")
            if role_changed and not head.standby:
                self._reseed(head)
            view = self._apply_head(head)
            if (old is None or role_changed) and head.iscsi is None:
                self._set_ana(head, head.ana_state)
            self.heads[head.volume_id] = head
            if not head.standby:
                self.on_head(head.volume_id, self.node_id)
            return view

    async def set_head_access(self, volume_id: str, state: str, hold_s: float = 0.0) -> HeadView:
        self._require_running()
        async with self.locks("head:" + volume_id):
            await self._spdk()
            head = holdable_head(self.heads, volume_id)
            self._set_ana(head, state, required=True)
            self.heads[volume_id] = replace(head, ana_state=state)
            timer = self._holds.pop(volume_id, None)
            if timer is not None:
                timer.cancel()
            if state == "inaccessible" and hold_s > 0:
                self._holds[volume_id] = asyncio.get_running_loop().call_later(
                    hold_s, lambda: asyncio.ensure_future(self._hold_expired(volume_id)))
        return next(v for v in await self.list_heads() if v.head.volume_id == volume_id)

    async def _hold_expired(self, volume_id: str) -> None:
        self._holds.pop(volume_id, None)
        head = self.heads.get(volume_id)
        if head is None or head.ana_state != "inaccessible" or self.stopped:
            return
        try:
            await self.set_head_access(volume_id, "optimized")
        except Exception as e:  # noqa: BLE001 - as the real agent: logged, reset by the next EnsureHead
            log.error("releasing the writes of volume %s failed: %s", volume_id, e)

    async def lease_lost(self) -> list[str]:
        """As NodeAgent.lease_lost: hosts disconnected and ANA inaccessible on every replicated
        NVMe/TCP head this node serves; those heads are forgotten."""
        stopped = []
        for volume_id in sorted(self.heads):
            async with self.locks("head:" + volume_id):
                head = self.heads.get(volume_id)
                if head is None or head.standby or head.direct or head.iscsi is not None:
                    continue
                timer = self._holds.pop(volume_id, None)
                if timer is not None:
                    timer.cancel()
                if head.nqn in self.target.subsystems:
                    self.target.set_hosts(head.nqn, frozenset())
                self._set_ana(head, "inaccessible")
                del self.heads[volume_id]
                stopped.append(volume_id)
        return stopped

    async def delete_head(self, volume_id: str) -> bool:
        self._require_running()
        async with self.locks("head:" + volume_id):
            await self._spdk()
            t = self.target
            head = self.heads.pop(volume_id, None)
            timer = self._holds.pop(volume_id, None)
            if timer is not None:
                timer.cancel()
            removed = False
            volume_nqn = head.nqn if head else nqn("volume", volume_id)
            if volume_nqn:
                removed = t.remove_subsystem(volume_nqn)
            if head is None or head.iscsi is not None:
                target_iqn = head.iscsi.target_iqn if head is not None and head.iscsi else iqn("volume", volume_id)
                removed = t.remove_subsystem(target_iqn) or removed
            raid = t.raids.get(volume_id)
            if raid is not None:
                legs = {m.replica_id for m in raid.members()} | (
                    {leg.replica_id for leg in head.legs} if head is not None else set())
                t.delete_raid(volume_id)
                for rid in legs:
                    t.detach(f"att-leg-{rid}")
                removed = removed or head is None
            elif head is not None and not head.direct:
                for leg in head.legs:
                    t.detach(f"att-leg-{leg.replica_id}")
            return removed or head is not None

    async def list_heads(self) -> list[HeadView]:
        await self._spdk()
        out = []
        for head in self.heads.values():
            if head.direct:
                lv = self.disk.lvols.get(REPLICA_PREFIX + head.legs[0].replica_id)
                out.append(HeadView(head, self.config.nvmf_address, self.config.nvmf_port,
                                    lv.size_bytes if lv else 0,
                                    [LegState(head.legs[0].replica_id, "in_sync" if lv else "missing")]))
            else:
                state, size, legs = self._raid_view(head)
                address, port = self._head_address(head)
                out.append(HeadView(head, address, port, size, legs, state))
        return out
