"""The level-triggered reconciler: drives agents toward the desired state in the store.

Each pass reads the desired state (volumes, replicas, snapshots, nodes) and what
the leader knows of the nodes (up, agent instance), and converges every object
with idempotent agent calls.  What has been applied is remembered per agent
instance, so an agent restart (a new instance) makes the next pass re-apply
everything that agent holds; a controller failover starts with an empty memory
and so re-applies everything once.  Long operations persist their stage in the
volume record before each step, so a crash resumes at that step.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import grpc
from prometheus_client import Counter, Gauge

from .. import nqn
from ..faults import crash_point
from ..model import GroupSnapshot, Node, Replica, ReplicaState, Snapshot, SnapshotState, Volume, VolumeState
from ..proto.meshblock.v1 import agent_pb2 as apb
from ..replication.erasure import SHARD_BLOCK_BYTES
from ..store.base import Conflict
from ..util import all_of
from .agents import AgentClients
from .groups import GroupSnapshotter
from .liveness import Liveness
from .repo import Repo

log = logging.getLogger(__name__)

PASSES = Counter("meshblock_reconcile_passes_total", "Reconciler passes")
ERRORS = Counter("meshblock_reconcile_errors_total", "Objects whose reconciliation failed in a pass", ["kind"])
VOLUMES = Gauge("meshblock_volumes", "Volumes by state", ["state"])


@dataclass
class Reconciler:
    repo: Repo
    agents: AgentClients
    liveness: Liveness
    interval: float = 2.0
    rebuild_interval: float = 0.5     # passes come this often while a rebuild runs (its end is seen sooner)
    orphan_grace: float = 60.0
    call_timeout: float = 30.0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    synced: dict[str, int] = field(default_factory=dict)          # volume id -> generation applied
    _replica_ok: dict[str, tuple[str, int]] = field(default_factory=dict)  # replica -> (instance, size)
    _head_ok: dict[str, tuple] = field(default_factory=dict)      # volume -> what its head was given (and when)
    _orphans: dict[tuple[str, str], float] = field(default_factory=dict)
    replace_after: float = 600.0      # seconds a replica may stay out before a new one is placed
    rebuild: dict[str, "RebuildProgress"] = field(default_factory=dict)    # replica id -> progress
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _failed_last_pass: bool = False   # a waiter then lets the interval pace the retries
    _pass_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    group_hold_limit: float = 10.0    # seconds a group snapshot may hold its volumes' writes
    standby_heads: bool = True        # replicated NVMe/TCP volumes are exported by every replica node
    _standby_ok: dict[tuple[str, str], str] = field(default_factory=dict)  # (volume, node) -> agent instance
    groups: GroupSnapshotter = field(init=False)

    def __post_init__(self) -> None:
        self.groups = GroupSnapshotter(self, self.group_hold_limit)

    def kick(self) -> None:
        self.wake.set()

    async def run(self) -> None:
        last_sweep = time.monotonic()
        sweep_every = min(30.0, max(1.0, self.orphan_grace / 2))
        await self.liveness.settle()
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), self.rebuild_interval if self.rebuild else self.interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            sweep = time.monotonic() - last_sweep >= sweep_every
            if sweep:
                last_sweep = time.monotonic()
            try:
                await self.reconcile_all(sweep=sweep)
            except Exception:  # noqa: BLE001 - a pass failing must not stop the loop
                log.exception("reconcile pass failed")

    async def wait_for(self, pred, timeout: float) -> bool:
        """Wait until ``pred()`` is true after some pass (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not await pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if not self._failed_last_pass:
                    self.kick()
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    return await pred()
        return True

    async def reconcile_all(self, sweep: bool = False) -> None:
        async with self._pass_lock:
            PASSES.inc()
            nodes = {n.id: n for n in await self.repo.list(Node)}
            # volumes first: a volume created after this read has its replicas in the next read,
            # never the other way round (a volume seen without its replicas would look faulted)
            volumes = await self.repo.list(Volume)
            reps: dict[str, list[Replica]] = defaultdict(list)
            for r in await self.repo.list(Replica):
                reps[r.volume_id].append(r)
            sem = asyncio.Semaphore(16)
            failed = False

            async def one(v: Volume) -> None:
                nonlocal failed
                async with sem:
                    try:
                        await self.reconcile_volume(v, reps.get(v.id, []), nodes)
                    except Conflict:
                        self.kick()  # changed under us: look again at once
                    except Exception as e:  # noqa: BLE001
                        failed = True
                        ERRORS.labels("volume").inc()
                        log.warning("volume %s volume_id=%s not reconciled: %s", v.name, v.id, e)

            await asyncio.gather(*(one(v) for v in volumes))
            self._failed_last_pass = failed
            live_ids = {v.id for v in volumes}
            for vid, rs in reps.items():   # replicas whose volume record is gone (deleted volumes)
                # a volume created after the volumes were read has its replicas in the later read:
                # only a volume that is still absent now is really gone
                if vid not in live_ids and await self.repo.get(Volume, vid) is None:
                    for r in rs:
                        await self._delete_replica(r, nodes)
            snaps = await self.repo.list(Snapshot)
            for g in await self.repo.list(GroupSnapshot):
                try:
                    await self.groups.reconcile(g, nodes, snaps, reps)
                except Conflict:
                    self.kick()
                except Exception as e:  # noqa: BLE001
                    ERRORS.labels("group_snapshot").inc()
                    log.warning("group snapshot %s not reconciled: %s", g.name, e)
            for s in snaps:
                if s.group_id and s.state == SnapshotState.CREATING:
                    continue   # its group takes it
                try:
                    await self.reconcile_snapshot(s, nodes, reps.get(s.volume_id, []))
                except Conflict:
                    self.kick()
                except Exception as e:  # noqa: BLE001
                    ERRORS.labels("snapshot").inc()
                    log.warning("snapshot %s not reconciled: %s", s.id, e)
            if sweep:
                await self.sweep_orphans(nodes)
            counts: dict[str, int] = defaultdict(int)
            for v in volumes:
                counts[v.state.value] += 1
            for st in VolumeState:
                VOLUMES.labels(st.value).set(counts.get(st.value, 0))
        async with self._changed:
            self._changed.notify_all()

    # --- helpers -------------------------------------------------------------------------------
    def _stub(self, node: Node):
        return self.agents.stub(node.endpoint)

    def _up(self, node: Node | None) -> bool:
        return node is not None and self.liveness.is_up(node.id)

    async def _delete_replica(self, r: Replica, nodes: dict[str, Node]) -> bool:
        """Delete a replica's lvol and its record; False while its node is down (retried later)."""
        node = nodes.get(r.node_id)
        if node is not None:
            if not self._up(node):
                if r.state != ReplicaState.DELETING:
                    r.state = ReplicaState.DELETING
                    await self.repo.commit(put=[r])
                return False
            await self._stub(node).DeleteReplica(apb.DeleteReplicaRequest(replica_id=r.id),
                                                 timeout=self.call_timeout)
            crash_point("delete.replica-deleted")
        await self.repo.commit(delete=[r])
        self._replica_ok.pop(r.id, None)
        log.info("replica deleted replica_id=%s node_id=%s volume_id=%s", r.id, r.node_id, r.volume_id)
        return True

    async def _set_stage(self, v: Volume, stage: str) -> None:
        if v.stage != stage:
            v.stage = stage
            await self.repo.commit(put=[v])

    # --- volumes -------------------------------------------------------------------------------
    async def reconcile_volume(self, v: Volume, reps: list[Replica], nodes: dict[str, Node]) -> None:
        if v.state == VolumeState.DELETING:
            await self._delete_volume(v, reps, nodes)
            return
        active = [r for r in reps if r.state != ReplicaState.DELETING]
        try:
            await self._converge_live(v, active, nodes)
        finally:
            # replicas on their way out go after the head has let go of them
            for r in reps:
                if r.state == ReplicaState.DELETING:
                    await self._delete_replica(r, nodes)

    async def _converge_live(self, v: Volume, active: list[Replica], nodes: dict[str, Node]) -> None:
        if v.state == VolumeState.CREATING:
            await self._set_stage(v, "creating-replicas")
        replicated = v.replicas > 1 or len(active) > 1
        await all_of(*(self._converge_replica(v, r, nodes, replicated) for r in active))   # each on its node
        if v.replicas > 1 or len(active) > 1:
            await self._converge_replicated(v, active, nodes)
            return
        online = [r for r in active if r.state == ReplicaState.ONLINE]
        head_ok, reason = False, ""
        if online:
            head = online[0] if not v.head_node_id else next((r for r in online if r.node_id == v.head_node_id), None)
            if head is not None:
                if v.state == VolumeState.CREATING:
                    await self._set_stage(v, "exporting")
                try:
                    head_ok = await self._converge_head(v, head, nodes[head.node_id])
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        raise   # transient: the next pass tries again
                    reason = e.details() or ""   # the node cannot export it (e.g. no iSCSI target)
                    log.warning("volume %s: head on node %s refused: %s", v.name, head.node_id, reason)
        await self._settle(v, head_ok, len(online), active, reason)

    async def _settle(self, v: Volume, head_ok: bool, in_sync: int, active: list[Replica],
                      reason: str = "") -> None:
        """Record the volume's state from what the pass found."""
        if head_ok and in_sync >= v.replicas:
            new = VolumeState.AVAILABLE
        elif head_ok:
            new = VolumeState.DEGRADED
        elif v.state == VolumeState.CREATING and any(r.state == ReplicaState.CREATING for r in active):
            new = VolumeState.CREATING
        else:
            new = VolumeState.FAULTED
        msg = "" if head_ok else ("no replica reachable" if not in_sync else
                                  "head not exported" + (f": {reason}" if reason else ""))
        if new != v.state or (new != VolumeState.CREATING and v.stage) or msg != v.message:
            if new != v.state:
                log.info("volume %s volume_id=%s %s -> %s", v.name, v.id, v.state.value, new.value)
            v.move_to(new)
            v.stage = "" if new != VolumeState.CREATING else v.stage
            v.message = msg
            await self.repo.commit(put=[v])
        if head_ok:
            self.synced[v.id] = v.generation

    async def _converge_replica(self, v: Volume, r: Replica, nodes: dict[str, Node], replicated: bool) -> None:
        """Make sure the replica's lvol exists at the volume's size. For a replicated volume the head
        decides whether it is in sync; a single replica is online once its lvol is there."""
        node = nodes.get(r.node_id)
        if not self._up(node):
            if r.state not in (ReplicaState.OFFLINE, ReplicaState.CREATING):
                r.state = ReplicaState.OFFLINE
                r.offline_since = r.offline_since or time.time()
                await self.repo.commit(put=[r])
            return
        assert node is not None
        inst = self.liveness.instance(node.id) or ""
        if self._replica_ok.get(r.id) != (inst, v.size_bytes):
            stub = self._stub(node)
            if r.state == ReplicaState.CREATING and not r.source_snapshot_replica:
                # not made yet (or made by a pass that crashed): create is idempotent, skip the lookup
                got = await stub.CreateReplica(apb.CreateReplicaRequest(replica_id=r.id, size_bytes=v.replica_bytes),
                                               timeout=self.call_timeout)
            elif r.source_snapshot_replica:
                got = await stub.CloneSnapshot(apb.CloneSnapshotRequest(snapshot_id=r.source_snapshot_replica,
                                                                        replica_id=r.id), timeout=self.call_timeout)
            else:
                try:
                    got = await stub.GetReplica(apb.GetReplicaRequest(replica_id=r.id), timeout=self.call_timeout)
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    if r.state != ReplicaState.CREATING and not replicated:
                        # the only copy vanished from its node: never re-create it empty silently
                        log.error("replica %s of volume %s is missing on node %s", r.id, v.name, node.name)
                        if r.state != ReplicaState.OFFLINE:
                            r.state = ReplicaState.OFFLINE
                            await self.repo.commit(put=[r])
                        return
                    got = await stub.CreateReplica(apb.CreateReplicaRequest(replica_id=r.id,
                                                                            size_bytes=v.replica_bytes),
                                                   timeout=self.call_timeout)
            if got.size_bytes < v.replica_bytes:
                got = await stub.ResizeReplica(apb.ResizeReplicaRequest(replica_id=r.id, size_bytes=v.replica_bytes),
                                               timeout=self.call_timeout)
            crash_point("create.replica-made")
            self._replica_ok[r.id] = (inst, v.size_bytes)
            if r.size_bytes != got.size_bytes:
                r.size_bytes = got.size_bytes
        if replicated:
            return
        if r.state != ReplicaState.ONLINE or r.revision == 0:
            r.state = ReplicaState.ONLINE
            await self.repo.commit(put=[r])
        elif r.size_bytes != v.size_bytes and r.size_bytes:
            await self.repo.commit(put=[r])

    async def _converge_replicated(self, v: Volume, active: list[Replica], nodes: dict[str, Node]) -> None:
        """raid1 head over all replicas; the replica exports admit only the head (the fence)."""
        up = [r for r in active if self._up(nodes.get(r.node_id))
              and self._replica_ok.get(r.id, ("", 0))[0] == self.liveness.instance(r.node_id)]
        fresh = v.state == VolumeState.CREATING
        in_sync = {r.id for r in active if r.state == ReplicaState.ONLINE or (fresh and r.state == ReplicaState.CREATING)}
        head_node = nodes.get(v.head_node_id) if v.head_node_id else None
        failover = False
        if not self._up(head_node):
            candidates = [r for r in up if r.id in in_sync] or []
            if not candidates:
                await self._settle(v, False, 0, active)
                return
            # a standby that already exports the volume takes over first: hosts have a path to it
            candidates.sort(key=lambda r: r.node_id not in v.standby_paths)
            if head_node is not None:
                failover = True
                log.warning("volume %s: head node %s is down; moving the head to %s", v.name, head_node.name,
                            nodes[candidates[0].node_id].name)
            head_node = nodes[candidates[0].node_id]
            if failover and not v.ec_data:
                # the old head died with writes in flight: replicas may differ in those blocks, so the new
                # head starts from one replica and rebuilds the others from it (an erasure-coded volume
                # keeps its shards: each needs the others, and a torn stripe is one unacknowledged
                # block, see docs/erasure-coding.md)
                seed = candidates[0].id
                for r in active:
                    if r.id != seed and r.state == ReplicaState.ONLINE:
                        r.state = ReplicaState.REBUILDING
                        await self.repo.commit(put=[r])
                in_sync = {seed}
            v.head_node_id = head_node.id
            # where hosts find it until the new head reports: its standby export, if it had one
            addr, _, port = v.standby_paths.pop(head_node.id, "").rpartition(":")
            v.export_address, v.export_port = addr, int(port or 0)
            v.stage = "moving-head" if failover else "exporting"
            await self.repo.commit(put=[v])
            self._head_ok.pop(v.id, None)
        assert head_node is not None
        # a whole, settled volume whose nodes have not restarted needs no agent calls every pass;
        # it is still re-checked every HEAD_RECHECK seconds (a leg can drop without a restart)
        standbys = self._standby_nodes(v, active, nodes, head_node.id)
        self._standby_ok.pop((v.id, head_node.id), None)
        confirmed = [n for n in standbys if self._standby_ok.get((v.id, n.id)) == self.liveness.instance(n.id)]
        key = (self.liveness.instance(head_node.id), v.nqn, v.target_iqn, tuple(sorted(v.hosts)), v.replicas,
               v.size_bytes, tuple(sorted((r.id, self.liveness.instance(r.node_id)) for r in active)),
               tuple(n.id for n in standbys), tuple(n.id for n in confirmed))
        whole = (v.state == VolumeState.AVAILABLE and len(active) == v.replicas
                 and all(r.state == ReplicaState.ONLINE for r in active))
        cached = self._head_ok.get(v.id)
        if whole and cached is not None and cached[0] == key and time.monotonic() - cached[1] < HEAD_RECHECK:
            self.synced[v.id] = v.generation
            return
        # the replica exports admit the head and the standbys that have been told they are standbys
        # (a node that headed the volume before is demoted before its NQN is let in again)
        newcomers = [n for n in standbys if n not in confirmed]
        if newcomers:
            # told before any export changes (where the replica exports are follows from the records)
            known = [apb.HeadLeg(replica_id=r.id, node_id=r.node_id, subsystem_nqn=nqn("replica", r.id),
                                 address=nodes[r.node_id].nvmf_address, port=nodes[r.node_id].nvmf_port,
                                 slot=max(r.shard, 0))
                     for r in head_members(v, active) if r.node_id in nodes]
            demote = head_spec(v, known, in_sync_replica_ids=sorted(in_sync), replica_count=raid_slots(v, active))
            told = await self._ensure_heads(v, [(n, self._with_cntlids(demote, n, standby=True)) for n in newcomers])
            for n, st in zip(newcomers, told):
                if st is not None:
                    self._standby_ok[(v.id, n.id)] = self.liveness.instance(n.id) or ""
                    confirmed.append(n)
        legs = await self._export_replicas(v, active, nodes, [head_node.host_nqn] + [n.host_nqn for n in confirmed])
        crash_point("replicated.fenced")
        spec = head_spec(v, legs, in_sync_replica_ids=sorted(in_sync), replica_count=raid_slots(v, active))
        # the head and the standbys (only those the replicas admit) are independent: all at once
        ready = [n for n in standbys if self._standby_ok.get((v.id, n.id)) == self.liveness.instance(n.id)]
        st, *standby_states = await self._ensure_heads(
            v, [(head_node, self._with_cntlids(spec, head_node))]
            + [(n, self._with_cntlids(spec, n, standby=True)) for n in ready])
        if st is None:
            await self._settle(v, False, 0, active)
            return
        if (v.head_node_id, v.export_address, v.export_port) != (head_node.id, st.address, st.port):
            v.head_node_id, v.export_address, v.export_port = head_node.id, st.address, st.port
            await self.repo.commit(put=[v])
        await self._converge_standbys(v, standbys, dict(zip((n.id for n in ready), standby_states)), nodes)
        by_id = {r.id: r for r in active}
        now_t = time.monotonic()
        for leg in st.legs:
            r = by_id.get(leg.replica_id)
            if r is None:
                continue
            want = {"in_sync": ReplicaState.ONLINE, "rebuilding": ReplicaState.REBUILDING}.get(
                leg.state, ReplicaState.OFFLINE if r.state == ReplicaState.ONLINE else r.state)
            if leg.state == "rebuilding":
                prog = self.rebuild.get(r.id)
                if prog is None or leg.rebuild_percent < prog.percent:
                    prog = self.rebuild[r.id] = RebuildProgress(now_t, leg.rebuild_percent)
                prog.update(now_t, leg.rebuild_percent)
            else:
                self.rebuild.pop(r.id, None)
            if want == ReplicaState.OFFLINE and not r.offline_since:
                r.offline_since = time.time()
            if want != ReplicaState.OFFLINE:
                r.offline_since = 0.0
            if r.state != want:
                log.info("replica %s of volume %s: %s -> %s", r.id, v.name, r.state.value, want.value)
                r.state = want
                await self.repo.commit(put=[r])
        members = {r.id for r in head_members(v, active)}
        for r in active:   # replicas whose node is down never reached the head (waiting shards stay as they are)
            if r.id in members and r.id not in {leg.replica_id for leg in st.legs} and \
                    r.state != ReplicaState.OFFLINE:
                r.state = ReplicaState.OFFLINE
                r.offline_since = r.offline_since or time.time()
                await self.repo.commit(put=[r])
        await self._rebalance(v, active, nodes, head_node.id)
        online = sum(1 for r in active if r.state == ReplicaState.ONLINE)
        await self._settle(v, st.raid_state == "online", online, active)
        self._head_ok[v.id] = (key, time.monotonic())

    async def _export_replicas(self, v: Volume, active: list[Replica], nodes: dict[str, Node],
                               allowed: list[str]) -> list[apb.HeadLeg]:
        async def export(r: Replica, node: Node) -> apb.HeadLeg:
            e = await self._stub(node).ExportReplica(apb.ExportReplicaRequest(replica_id=r.id,
                                                                              allowed_host_nqns=allowed),
                                                     timeout=self.call_timeout)
            return apb.HeadLeg(replica_id=r.id, node_id=node.id, subsystem_nqn=e.nqn, address=e.address,
                               port=e.port, slot=max(r.shard, 0))

        return await all_of(*(export(r, nodes[r.node_id]) for r in head_members(v, active)
                              if self._up(nodes.get(r.node_id))
                              and self._replica_ok.get(r.id, ("", 0))[0] == self.liveness.instance(r.node_id)))

    # --- standby heads ---------------------------------------------------------------------------
    def _standby_nodes(self, v: Volume, active: list[Replica], nodes: dict[str, Node], head_id: str) -> list[Node]:
        """The up nodes, other than the head's, with a replica of ``v``: each exports the volume too."""
        if not self.standby_heads or v.protocol != "nvmf":
            return []
        out: dict[str, Node] = {}
        for r in active:
            n = nodes.get(r.node_id)
            if n is not None and n.id != head_id and self._up(n) and \
                    self._replica_ok.get(r.id, ("", 0))[0] == self.liveness.instance(n.id):
                out[n.id] = n
        return sorted(out.values(), key=lambda n: n.id)

    @staticmethod
    def _with_cntlids(spec: apb.HeadSpec, node: Node, standby: bool = False) -> apb.HeadSpec:
        out = apb.HeadSpec()
        out.CopyFrom(spec)
        out.standby = standby
        if spec.protocol != "iscsi":
            out.cntlid_min, out.cntlid_max = node.cntlid_range
        return out

    async def _ensure_heads(self, v: Volume, specs: list[tuple[Node, apb.HeadSpec]]) -> list:
        """EnsureHead on every node at once; a node's status, or None where its agent refused."""
        async def one(n: Node, spec: apb.HeadSpec):
            try:
                return await self._stub(n).EnsureHead(spec, timeout=self.call_timeout)
            except grpc.aio.AioRpcError as e:
                log.warning("volume %s: %s on %s not ready: %s", v.name,
                            "standby head" if spec.standby else "head", n.name, e.details())
                return None
        return await all_of(*(one(n, spec) for n, spec in specs))

    async def _converge_standbys(self, v: Volume, standbys: list[Node], states: dict,
                                 nodes: dict[str, Node]) -> None:
        """Record the standby heads (``states``: what each admitted standby's EnsureHead answered);
        heads on nodes that are no longer standbys go."""
        paths: dict[str, str] = {}
        for n in standbys:
            st = states.get(n.id)
            if st is not None and st.raid_state == "online":
                paths[n.id] = f"{st.address}:{st.port}"
        for node_id in sorted(set(v.standby_paths) - {n.id for n in standbys} - {v.head_node_id}):
            node = nodes.get(node_id)
            if node is not None and self._up(node):
                # a node that no longer holds a replica (or stays behind a failed head) stops exporting
                await self._stub(node).DeleteHead(apb.DeleteHeadRequest(volume_id=v.id), timeout=self.call_timeout)
                self._standby_ok.pop((v.id, node_id), None)
            elif node is not None:
                paths[node_id] = v.standby_paths[node_id]   # down: removed when it is back
        if paths != v.standby_paths:
            v.standby_paths = paths
            await self.repo.commit(put=[v])

    async def _rebalance(self, v: Volume, active: list[Replica], nodes: dict[str, Node], head_id: str) -> None:
        """Keep ``v.replicas`` replicas on schedulable nodes.

        A replica out longer than ``replace_after`` is replaced at once (its data is gone). A replica
        on a draining node, or one more than the volume asks for, is removed only once enough others
        are in sync, so redundancy never drops below what it was. The raid has spare slots, so a new
        replica is added and rebuilt before the one it replaces leaves.
        """
        from .placement import Candidate, PlacementError, domain, place

        def draining(r: Replica) -> bool:
            n = nodes.get(r.node_id)
            return n is not None and n.draining

        lost = [r for r in active if r.state == ReplicaState.OFFLINE and r.offline_since
                and time.time() - r.offline_since > self.replace_after]
        keepers = [r for r in active if r not in lost and not draining(r)]
        changed = False
        for r in lost:
            r.state = ReplicaState.DELETING
            await self.repo.commit(put=[r])
            log.warning("volume %s: replica %s on node %s was out for over %.0f s; replacing it", v.name, r.id,
                        nodes[r.node_id].name if r.node_id in nodes else r.node_id, self.replace_after)
            changed = True
        missing = v.replicas - len(keepers)
        if missing > 0:
            provisioned: dict[str, int] = {}
            for r in await self.repo.list(Replica):
                provisioned[r.node_id] = provisioned.get(r.node_id, 0) + r.size_bytes
            cands = [Candidate(node_id=n.id, name=n.name, up=self._up(n),
                               schedulable=not (n.cordoned or n.draining), labels=n.labels,
                               total_bytes=n.total_bytes, provisioned_bytes=provisioned.get(n.id, 0),
                               block_size=n.pool_block_size)
                     for n in nodes.values()]
            # a raid's members share one block size: the one the volume's replicas have
            sizes = [nodes[r.node_id].pool_block_size for r in keepers if r.node_id in nodes]
            block_size = SHARD_BLOCK_BYTES if v.ec_data else next((b for b in sizes if b), 0)
            by_id = {c.node_id: c for c in cands}
            taken = {domain(by_id[r.node_id], v.spread) for r in keepers if r.node_id in by_id}
            try:
                chosen = place(v.replica_bytes, missing, cands, spread=v.spread,
                               exclude_nodes={r.node_id for r in active}, taken_domains=taken,
                               block_size=block_size).node_ids
            except PlacementError as e:
                log.warning("volume %s: %d replica(s) cannot be placed yet: %s", v.name, missing, e)
                chosen = []
            # an erasure-coded volume's new shard takes a position no kept shard holds
            free_slots = sorted(set(range(v.replicas)) - {r.shard for r in keepers}) if v.ec_data else []
            for i, node_id in enumerate(chosen):
                new = Replica(id=str(uuid.uuid4()), volume_id=v.id, node_id=node_id, size_bytes=v.replica_bytes,
                              state=ReplicaState.REBUILDING, created_at=time.time(),
                              shard=free_slots[i] if i < len(free_slots) else -1)
                await self.repo.commit(create=[new])
                crash_point("rebalance.placed")
                log.info("volume %s: new replica %s on node %s", v.name, new.id, nodes[node_id].name)
                changed = True
        # removals wait until the replicas that stay are in sync
        in_sync_keepers = [r for r in keepers if r.state == ReplicaState.ONLINE]
        extra = [r for r in active if r not in lost and r not in keepers]          # on draining nodes
        surplus = len(keepers) - v.replicas
        if surplus > 0:   # fewer replicas asked for: drop the least useful ones, never the head's
            order = sorted(keepers, key=lambda r: (r.state == ReplicaState.ONLINE, r.node_id == head_id))
            extra += order[:surplus]
        if v.ec_data:
            extra = self._leaving_shard(v, active, extra)
        elif not len([r for r in in_sync_keepers if r not in extra]) >= v.replicas:
            extra = []
        if extra:
            for r in extra:
                r.state = ReplicaState.DELETING
                await self.repo.commit(put=[r])
                crash_point("rebalance.removing")
                log.info("volume %s: replica %s on node %s removed", v.name, r.id,
                         nodes[r.node_id].name if r.node_id in nodes else r.node_id)
                changed = True
        if changed:
            self.kick()

    @staticmethod
    def _leaving_shard(v: Volume, active: list[Replica], leaving: list[Replica]) -> list[Replica]:
        """The one shard on a draining node that may leave now, if any.

        A raid5f has no spare slot: a shard's replacement can only join (and be rebuilt) once the
        shard has left its position, and the volume is degraded meanwhile. So one shard leaves at a
        time, and only when its replacement is placed and every other shard is in sync."""
        for r in sorted(leaving, key=lambda r: r.shard):
            others = [x for x in active if x is not r and x.shard != r.shard]
            replaced = any(x is not r and x.shard == r.shard and x not in leaving for x in active)
            if replaced and len(others) == v.replicas - 1 and all(x.state == ReplicaState.ONLINE for x in others):
                return [r]
        return []

    async def _converge_head(self, v: Volume, r: Replica, node: Node) -> bool:
        inst = self.liveness.instance(node.id) or ""
        key = (inst, v.nqn, v.target_iqn, v.namespace_uuid, tuple(sorted(v.hosts)), r.id)
        if self._head_ok.get(v.id) == key and v.head_node_id == node.id:
            return True
        if v.protocol == "iscsi":
            # iSCSI is served by the node's polling head target, which reaches the replica in the
            # (sleeping) data target over NVMe/TCP on the node's own address
            e = await self._stub(node).ExportReplica(apb.ExportReplicaRequest(
                replica_id=r.id, allowed_host_nqns=[node.host_nqn]), timeout=self.call_timeout)
            leg = apb.HeadLeg(replica_id=r.id, node_id=node.id, subsystem_nqn=e.nqn, address=e.address, port=e.port)
            spec = head_spec(v, [leg], in_sync_replica_ids=[r.id], replica_count=1)
        else:
            spec = head_spec(v, [apb.HeadLeg(replica_id=r.id, node_id=node.id)])
        st = await self._stub(node).EnsureHead(spec, timeout=self.call_timeout)
        crash_point("create.exported")
        self._head_ok[v.id] = key
        if (v.head_node_id, v.export_address, v.export_port) != (node.id, st.address, st.port):
            v.head_node_id, v.export_address, v.export_port = node.id, st.address, st.port
            await self.repo.commit(put=[v])
        return True

    async def _delete_volume(self, v: Volume, reps: list[Replica], nodes: dict[str, Node]) -> None:
        if v.standby_paths:
            waiting = [i for i in v.standby_paths if nodes.get(i) is not None and not self._up(nodes[i])]
            gone = [i for i in sorted(v.standby_paths) if i not in waiting]
            await all_of(*(self._stub(nodes[i]).DeleteHead(apb.DeleteHeadRequest(volume_id=v.id),
                                                            timeout=self.call_timeout) for i in gone if i in nodes))
            for i in gone:
                v.standby_paths.pop(i)
                self._standby_ok.pop((v.id, i), None)
            if gone:
                await self.repo.commit(put=[v])
            if waiting:
                return  # removed when their nodes are back
        if v.head_node_id:
            await self._set_stage(v, "removing-export")
            node = nodes.get(v.head_node_id)
            if self._up(node):
                await self._stub(node).DeleteHead(apb.DeleteHeadRequest(volume_id=v.id), timeout=self.call_timeout)
                crash_point("delete.unexported")
            elif node is not None:
                return  # the export lives on a node that is down: remove it when the node is back
            self._head_ok.pop(v.id, None)
            v.head_node_id = ""
            await self.repo.commit(put=[v])
        await self._set_stage(v, "deleting-replicas")
        done = await all_of(*(self._delete_replica(r, nodes) for r in reps))
        pending = [r for r, ok in zip(reps, done) if not ok]
        if pending:
            log.info("volume %s: %d replica(s) wait for their nodes to come back before deletion", v.name,
                     len(pending))
        # the volume record goes once its export is gone; replicas on down nodes keep their
        # (deleting) records and are removed when those nodes return
        await self.repo.commit(delete=[v])
        self.synced.pop(v.id, None)
        log.info("volume deleted name=%s volume_id=%s", v.name, v.id)
        if v.source_snapshot_id:
            src = await self.repo.get(Snapshot, v.source_snapshot_id)
            if src is not None and src.name.startswith(INTERNAL_SNAPSHOT_PREFIX) and src.state != SnapshotState.DELETING:
                src.state = SnapshotState.DELETING
                await self.repo.commit(put=[src])

    # --- snapshots -----------------------------------------------------------------------------
    async def reconcile_snapshot(self, s: Snapshot, nodes: dict[str, Node], reps: list[Replica]) -> None:
        if s.state == SnapshotState.CREATING:
            for r in reps:
                if r.state != ReplicaState.ONLINE:
                    continue
                node = nodes[r.node_id]
                if not self._up(node):
                    continue
                await self._stub(node).CreateSnapshot(
                    apb.CreateReplicaSnapshotRequest(replica_id=r.id, snapshot_id=s.id), timeout=self.call_timeout)
                crash_point("snapshot.taken")
                s.parts[node.id] = r.id
            if s.parts:
                s.state = SnapshotState.READY
                await self.repo.commit(put=[s])
                log.info("snapshot ready snapshot_id=%s volume_id=%s", s.id, s.volume_id)
        elif s.state == SnapshotState.DELETING:
            for node_id in list(s.parts):
                node = nodes.get(node_id)
                if node is not None:
                    if not self._up(node):
                        return
                    await self._stub(node).DeleteSnapshot(apb.DeleteReplicaSnapshotRequest(snapshot_id=s.id),
                                                          timeout=self.call_timeout)
                    crash_point("snapshot.deleted")
                s.parts.pop(node_id)
            await self.repo.commit(delete=[s])
            log.info("snapshot deleted snapshot_id=%s", s.id)

    # --- orphans -------------------------------------------------------------------------------
    async def sweep_orphans(self, nodes: dict[str, Node]) -> None:
        """Delete lvols named like meshblock replicas that no record owns, after a grace period."""
        known = {r.id for r in await self.repo.list(Replica)}
        nowm = time.monotonic()
        for node in nodes.values():
            if not self._up(node):
                continue
            try:
                listed = await self._stub(node).ListReplicas(apb.ListReplicasRequest(), timeout=self.call_timeout)
            except grpc.aio.AioRpcError:
                continue
            for rep in listed.replicas:
                key = (node.id, rep.replica_id)
                if rep.replica_id in known:
                    self._orphans.pop(key, None)
                    continue
                first = self._orphans.setdefault(key, nowm)
                if nowm - first >= self.orphan_grace:
                    log.warning("deleting orphan replica %s on node %s", rep.replica_id, node.name)
                    try:
                        await self._stub(node).DeleteReplica(apb.DeleteReplicaRequest(replica_id=rep.replica_id),
                                                             timeout=self.call_timeout)
                        self._orphans.pop(key, None)
                    except grpc.aio.AioRpcError as e:
                        log.warning("orphan %s not deleted: %s", rep.replica_id, e.details())


def head_spec(v: Volume, legs: list, **kw) -> apb.HeadSpec:
    """What a head node is told about a volume: its legs and how (and to whom) it is exported."""
    if v.protocol == "iscsi":
        return apb.HeadSpec(volume_id=v.id, namespace_uuid=v.namespace_uuid, legs=legs, protocol="iscsi",
                            iscsi=apb.IscsiExport(target_iqn=v.target_iqn, initiators=sorted(v.hosts),
                                                  netmasks=v.iscsi_netmasks, chap_user=v.chap_user,
                                                  chap_secret=v.chap_secret), **kw)
    ec = v.erasure
    if ec is not None:
        kw.update(raid_level="raid5f", strip_size_kb=ec.strip_size_kb)
    return apb.HeadSpec(volume_id=v.id, nqn=v.nqn, namespace_uuid=v.namespace_uuid, legs=legs,
                        allowed_host_nqns=sorted(v.hosts), **kw)


def head_members(v: Volume, active: list[Replica]) -> list[Replica]:
    """The replicas a head's raid holds. An erasure-coded volume's replacement shard waits until the
    shard whose position it takes (on a draining node) has left it."""
    if not v.ec_data:
        return active
    held: dict[int, Replica] = {}
    for r in sorted(active, key=lambda r: r.created_at):
        held.setdefault(r.shard, r)
    return [r for r in active if held.get(r.shard) is r]


def raid_slots(v: Volume, active: list[Replica]) -> int:
    """Slots of a volume's raid: an erasure-coded raid has exactly its shards; a raid1 has room to
    spare (see RAID_SLOTS)."""
    return v.replicas if v.ec_data else max(RAID_SLOTS, len(active))


INTERNAL_SNAPSHOT_PREFIX = "clone-source-"
# A raid's slot count is fixed when it is created; empty slots cost nothing, so every raid gets room
# for the most replicas a volume may have plus one, and a replica can always be added (and rebuilt)
# before the one it replaces leaves.
RAID_SLOTS = 6
HEAD_RECHECK = 10.0   # seconds between agent checks of a whole replicated volume


@dataclass
class RebuildProgress:
    """A replica's rebuild as the head reports it, with an ETA from the observed rate."""

    started: float
    first_percent: float
    percent: float = 0.0
    at: float = 0.0

    def update(self, t: float, percent: float) -> None:
        self.percent, self.at = percent, t

    @property
    def eta_seconds(self) -> float | None:
        done = self.percent - self.first_percent
        if done <= 0 or self.at <= self.started:
            return None
        return (100.0 - self.percent) * (self.at - self.started) / done
