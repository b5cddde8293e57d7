"""The reconciler: drives agents toward the desired state in the store, one object at a time.

Changes become keys on a work queue (``workqueue.py``): a volume's key when its record or one of
its replicas changes (the store's change feed, through ``ClusterView``), the keys of every volume
on a node when the node goes down, comes back or its agent restarts, and one ``CLUSTER`` key for
snapshots, group snapshots and the orphan sweep. Workers take keys (``workers`` at once, each
key by one worker at a time) and converge that object with idempotent agent calls, reading the
records from the view. A key that failed comes back after a growing backoff; a volume that is not
settled yet comes back after ``interval`` (``rebuild_interval`` while a rebuild runs); a settled
head's legs are checked every ``HEAD_RECHECK`` seconds by one ListHeads call per node (a leg can
drop without any event the controller sees), and a volume whose head or standby head reports a
leg out of sync is visited; and every volume is visited again every ``resync_interval`` as a
safety net. The cost of a change therefore follows the objects it touches, not the cluster's size.

It is still level-triggered: each visit compares a volume's desired records with what the leader
knows of the nodes, whatever the key's reason. What has been applied is remembered per agent
instance, so an agent restart (a new instance) makes the next visit re-apply everything that
agent holds; a controller failover starts with an empty memory and so re-applies everything once.
Long operations persist their stage in the volume record before each step, so a crash resumes at
that step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Hashable

import grpc
from prometheus_client import Counter, Gauge

from ..faults import crash_point
from ..model import GroupSnapshot, Node, Replica, ReplicaState, Snapshot, SnapshotState, Volume, VolumeState
from ..proto.meshblock.v1 import agent_pb2 as apb
from ..replication.layout import RebuildProgress
from ..store.base import Conflict, Item
from ..secretbox import SecretBox
from ..util import all_of
from .adopt import Adopted, confirm_single, qos_matches
from .agents import AgentClients
from .events import EventRecorder
from .gauges import ClusterGauges, rebuilds
from .groups import GroupSnapshotter
from .host_auth import applied_key, check_opens, link_keys, link_secret
from .liveness import Liveness
from .replicated import HEAD_RECHECK, ReplicatedVolumes, head_spec
from .sweeps import Sweeps, volume_key
from .repo import Repo
from .view import ClusterView
from .workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)

PASSES = Counter("meshblock_reconcile_passes_total", "Objects reconciled (one per work-queue key taken)")
ERRORS = Counter("meshblock_reconcile_errors_total", "Objects whose reconciliation failed", ["kind"])
VOLUMES = Gauge("meshblock_volumes", "Volumes by state", ["state"])
QUEUE = Gauge("meshblock_reconcile_queue", "Keys waiting on the reconciler's work queue", ["when"])

CLUSTER: tuple[str, str] = ("cluster", "")     # snapshots, group snapshots, orphans
# node fields whose change does not concern the node's volumes
_NODE_NOISE = frozenset({"free_bytes", "total_bytes", "last_seen"})


ADOPTING_AT_ONCE = 16   # agents whose holdings are listed at once (see Reconciler._adopt)


@dataclass
class Reconciler(ReplicatedVolumes, Sweeps):
    repo: Repo
    agents: AgentClients
    liveness: Liveness
    view: ClusterView | None = None
    interval: float = 2.0
    rebuild_interval: float = 0.5     # a volume whose replica rebuilds is visited this often ...
    rebuild_visits: float = 20.0      # ... while all rebuilding volumes together take at most this many
                                      # visits a second (a mass resync does not crowd out other work;
                                      # the head sweep notices a finished rebuild between visits)
    orphan_grace: float = 60.0
    call_timeout: float = 30.0
    workers: int = 32                 # volumes reconciled at once
    resync_interval: float = 300.0    # every volume is visited at least this often
    synced: dict[str, int] = field(default_factory=dict)          # volume id -> generation applied
    _replica_ok: dict[str, tuple[str, int]] = field(default_factory=dict)  # replica -> (instance, size)
    _head_ok: dict[str, tuple] = field(default_factory=dict)      # volume -> what its head was given (and when)
    _orphans: dict[tuple[str, str], float] = field(default_factory=dict)
    replace_after: float = 600.0      # seconds a replica may stay out before a new one is placed
    rebuild: dict[str, RebuildProgress] = field(default_factory=dict)    # replica id -> progress
    group_hold_limit: float = 10.0    # seconds a group snapshot may hold its volumes' writes
    standby_heads: bool = True        # replicated NVMe/TCP volumes are exported by every replica node
    secrets: SecretBox | None = None  # opens the DH-HMAC-CHAP secrets of volumes' hosts
    head_recheck: float = HEAD_RECHECK   # seconds between two head sweeps
    events: EventRecorder | None = None  # records transitions (volume states, head moves, rebuilds, nodes)
    _standby_ok: dict[tuple[str, str], str] = field(default_factory=dict)  # (volume, node) -> agent instance
    queue: WorkQueue = field(default_factory=WorkQueue)
    adopted: Adopted = field(default_factory=Adopted)   # what agents listed when they registered
    _adopting: dict[str, asyncio.Task] = field(default_factory=dict)
    _waiters: dict[Hashable, list[asyncio.Future]] = field(default_factory=dict)
    _sweep_due: bool = False
    _adopt_slots: asyncio.Semaphore | None = None
    # ("heads" | "replicas", node id) -> (agent instance, digest, monotonic time) of the last listing
    _listed: dict[tuple[str, str], tuple[str, str, float]] = field(default_factory=dict)
    groups: GroupSnapshotter = field(init=False)
    gauges: ClusterGauges = field(default_factory=ClusterGauges)   # nodes, pools, rebuilds

    def __post_init__(self) -> None:
        self.groups = GroupSnapshotter(self, self.group_hold_limit)
        if self.view is None:
            self.view = ClusterView(self.repo.store)

    # --- what puts keys on the queue -----------------------------------------------------------
    def kick(self, key: Hashable = CLUSTER) -> None:
        self.queue.add(key)

    def node_changed(self, node_id: str) -> None:
        """A node went down or came back, or its agent restarted: visit everything it holds, first
        the volumes whose head it is while it is down (their heads move)."""
        assert self.view is not None
        headed = self.view.headed_by(node_id) if not self._up(self.view.nodes().get(node_id)) else set()
        for vid in headed:
            self.queue.add(volume_key(vid), urgent=True)
        for vid in self.view.volumes_on(node_id) - headed:
            self.queue.add(volume_key(vid))
        self.queue.add(CLUSTER)

    def agent_started(self, node: Node) -> None:
        """A node's agent registered as a new instance: read what it holds (two calls), then visit
        its volumes, which can then be confirmed from those lists instead of one call at a time."""
        old = self._adopting.get(node.id)
        if old is not None:
            old.cancel()
        self._adopting[node.id] = asyncio.create_task(self._adopt(node))

    async def _adopt(self, node: Node) -> None:
        if self._adopt_slots is None:
            self._adopt_slots = asyncio.Semaphore(ADOPTING_AT_ONCE)
        try:
            # a new leader hears from every agent within a heartbeat: a few listings at a time leave
            # the loop free to answer the others' registrations before their head leases run out
            async with self._adopt_slots:
                inst = self.liveness.instance(node.id) or ""
                stub = self._stub(node)
                replicas, heads = await asyncio.gather(
                    stub.ListReplicas(apb.ListReplicasRequest(), timeout=self.call_timeout),
                    stub.ListHeads(apb.ListHeadsRequest(), timeout=self.call_timeout))
            self.adopted.record(node.id, inst, replicas, heads)
            log.info("node %s holds %d replica(s) and %d head(s)", node.name, len(replicas.replicas),
                     len(heads.heads))
        except grpc.aio.AioRpcError as e:
            log.info("node %s: its holdings not listed (%s); its volumes are re-applied call by call", node.name,
                     e.details())
        finally:
            if self.view is not None and self.view.ready.is_set():
                self.node_changed(node.id)

    def _on_change(self, kind: str, id: str, old: Item | None, new: Item | None) -> None:
        if kind == Volume.KIND:
            self.queue.add(volume_key(id))
        elif kind == Replica.KIND:
            for item in (old, new):
                if item is not None:
                    self.queue.add(volume_key(item.data.get("volume_id", "")))
            if new is None and old is not None:   # a record gone: its node's replicas are looked at again
                self._listed.pop(("replicas", old.data.get("node_id", "")), None)
        elif kind in (Snapshot.KIND, GroupSnapshot.KIND):
            self.queue.add(CLUSTER)
        elif kind == Node.KIND:
            self._node_changed(id, old, new)
            a = {k: v for k, v in (old.data if old else {}).items() if k not in _NODE_NOISE}
            b = {k: v for k, v in (new.data if new else {}).items() if k not in _NODE_NOISE}
            if a != b:
                self.node_changed(id)

    def _enqueue_all(self) -> None:
        assert self.view is not None
        for vid in self.view.ids(Volume):
            self.queue.add(volume_key(vid))
        for vid in list(self.view.replicas_by_volume):   # replicas whose volume is gone
            self.queue.add(volume_key(vid))
        self.queue.add(CLUSTER)

    # --- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        view = self.view
        assert view is not None
        view.start()
        await view.ready.wait()
        await self.liveness.settle()
        view.listeners.append(self._on_change)
        pending = [t for t in self._adopting.values() if not t.done()]
        if pending:   # the agents that called in while settling are being listed: wait (bounded)
            await asyncio.wait(pending, timeout=self.call_timeout)
        self._enqueue_all()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        sweep_every = min(30.0, max(1.0, self.orphan_grace / 2))
        last_sweep = last_resync = last_heads = time.monotonic()
        heads: asyncio.Task | None = None
        try:
            while True:
                await asyncio.sleep(self.interval)
                now_m = time.monotonic()
                if now_m - last_sweep >= sweep_every:
                    last_sweep, self._sweep_due = now_m, True
                if now_m - last_heads >= self.head_recheck and (heads is None or heads.done()):
                    last_heads = now_m
                    heads = asyncio.create_task(self.sweep_heads())
                if now_m - last_resync >= self.resync_interval:
                    last_resync = now_m
                    self._enqueue_all()
                # the backlog, measured before the periodic cluster key joins it
                QUEUE.labels("now").set(len(self.queue))
                QUEUE.labels("later").set(self.queue.delayed)
                self.queue.add(CLUSTER)
        finally:
            if self._on_change in view.listeners:
                view.listeners.remove(self._on_change)
            self.gauges.clear()
            self.queue.shut_down()
            for w in workers + ([heads] if heads is not None else []):
                w.cancel()
            await asyncio.gather(*workers, *([heads] if heads is not None else []), return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                PASSES.inc()
                again = await self._process(key)
            except Conflict:
                self.queue.retry(key)      # changed under us: the view catches up, then look again
            except Exception as e:  # noqa: BLE001 - one object failing must not stop the others
                delay = self.queue.retry(key)
                ERRORS.labels(key[0]).inc()
                log.warning("%s %s not reconciled (again in %.2f s): %s", key[0], key[1], delay, e)
            else:
                self.queue.forget(key)
                if again is not None:
                    self.queue.add_after(key, again)
            finally:
                self.queue.done(key)
                for fut in self._waiters.pop(key, []):
                    if not fut.done():
                        fut.set_result(None)

    async def _process(self, key: Hashable) -> float | None:
        """Reconcile one key; the delay after which it should be visited again (None: only on change)."""
        assert self.view is not None
        kind, id = key  # type: ignore[misc]
        nodes = self.view.nodes()
        if kind == "volume":
            v = self.view.get(Volume, id)
            reps = self.view.replicas_of(id)
            if v is None:   # replicas whose volume record is gone (deleted volumes)
                await all_of(*(self._delete_replica(r, nodes) for r in reps))
                self.synced.pop(id, None)
                return self.interval if self.view.replicas_by_volume.get(id) else None
            await self.reconcile_volume(v, reps, nodes)
            return self._revisit(id)
        await self._reconcile_cluster(nodes)
        return None

    def _revisit(self, vid: str) -> float | None:
        assert self.view is not None
        v = self.view.get(Volume, vid)
        if v is None:
            return self.interval if self.view.replicas_by_volume.get(vid) else None
        reps = self.view.replicas_of(vid)
        if any(r.id in self.rebuild for r in reps):
            return max(self.rebuild_interval, len(self.rebuild) / self.rebuild_visits)
        whole = (v.state == VolumeState.AVAILABLE and len(reps) == v.replicas
                 and all(r.state == ReplicaState.ONLINE for r in reps))
        if not whole or vid not in self._head_ok:   # (a head that does not enforce its QoS limits yet)
            return self.interval
        return None    # settled: visited again on a change, or when the head sweep finds a leg out of sync

    async def _reconcile_cluster(self, nodes: dict[str, Node]) -> None:
        assert self.view is not None
        view = self.view
        groups = view.unsettled_of(GroupSnapshot)
        snaps = view.unsettled_of(Snapshot)
        seen = {x.id for x in snaps}
        for g in groups:     # a group needs all its members, settled or not
            snaps += [m for m in (view.get(Snapshot, sid) for sid in g.snapshot_ids if sid not in seen) if m]
        reps = _ReplicasByVolume(view)
        for g in groups:
            try:
                await self.groups.reconcile(g, nodes, snaps, reps)  # type: ignore[arg-type]
            except Conflict:
                self.queue.add(CLUSTER)
            except Exception as e:  # noqa: BLE001
                ERRORS.labels("group_snapshot").inc()
                log.warning("group snapshot %s not reconciled: %s", g.name, e)
        for s in snaps:
            if s.group_id and s.state == SnapshotState.CREATING:
                continue   # its group takes it
            if s.state not in (SnapshotState.CREATING, SnapshotState.DELETING):
                continue
            try:
                await self.reconcile_snapshot(s, nodes, view.replicas_of(s.volume_id))
            except Conflict:
                self.queue.add(CLUSTER)
            except Exception as e:  # noqa: BLE001
                ERRORS.labels("snapshot").inc()
                log.warning("snapshot %s not reconciled: %s", s.id, e)
        if self._sweep_due:
            self._sweep_due = False
            await self.sweep_orphans(nodes)
        for rid in list(self.rebuild):   # progress of replicas no longer rebuilding (deleted, node down)
            r = view.get(Replica, rid)
            if r is None or r.state != ReplicaState.REBUILDING:
                del self.rebuild[rid]
        for st in VolumeState:
            VOLUMES.labels(st.value).set(view.volume_states.get(st.value, 0))
        self.gauges.update(nodes.values(), self.liveness.capacity, rebuilds(view, self.rebuild, nodes))

    async def wait_for(self, pred, timeout: float, key: Hashable = CLUSTER) -> bool:
        """Wait until ``pred()`` is true after some visit of ``key`` (or ``timeout``). The key is
        visited at once unless it is failing (then its backoff paces the visits)."""
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while not await pred():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            fut = loop.create_future()
            self._waiters.setdefault(key, []).append(fut)
            if not self.queue.failures(key):
                self.queue.add(key)
            try:
                await asyncio.wait_for(fut, left)
            except asyncio.TimeoutError:
                return await pred()
        return True

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
        self._maybe_drained(node)
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
            check_opens(v, self.secrets)
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
        if replicated:
            await self._note_nodes_down(v, active, nodes)   # before their replicas are marked offline
        await all_of(*(self._converge_replica(v, r, nodes, replicated) for r in active))   # each on its node
        if replicated:
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
            old = v.state
            if new != old:
                log.info("volume %s volume_id=%s %s -> %s", v.name, v.id, old.value, new.value)
            v.move_to(new)
            v.stage = "" if new != VolumeState.CREATING else v.stage
            v.message = msg
            await self.repo.commit(put=[v])
            if new != old:
                self._volume_state_changed(v, old, new, msg)
        if head_ok:
            self.synced[v.id] = v.generation

    async def _converge_replica(self, v: Volume, r: Replica, nodes: dict[str, Node], replicated: bool) -> None:
        """Make sure the replica's lvol exists at the volume's size. For a replicated volume the head
        decides whether it is in sync; a single replica is online once its lvol is there."""
        node = nodes.get(r.node_id)
        if not self._up(node):
            if r.state not in (ReplicaState.OFFLINE, ReplicaState.CREATING):
                r.went_offline()
                await self.repo.commit(put=[r])
            return
        assert node is not None
        inst = self.liveness.instance(node.id) or ""
        listed = None
        if self._replica_ok.get(r.id) != (inst, v.size_bytes) and r.state != ReplicaState.CREATING \
                and not r.source_snapshot_replica:
            listed = self.adopted.replica(node.id, inst, r.id)   # what the agent listed when it registered
            if listed is not None and listed.size_bytes < v.replica_bytes:
                listed = None
        if self._replica_ok.get(r.id) != (inst, v.size_bytes):
            stub = self._stub(node)
            if listed is not None:
                got = listed
            elif r.state == ReplicaState.CREATING and not r.source_snapshot_replica:
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

    async def _converge_head(self, v: Volume, r: Replica, node: Node) -> bool:
        inst = self.liveness.instance(node.id) or ""
        key = (inst, v.nqn, v.target_iqn, v.namespace_uuid, tuple(sorted(v.hosts)), applied_key(v), r.id, v.qos)
        if self._head_ok.get(v.id) == key and v.head_node_id == node.id:
            return True
        if confirm_single(self.adopted, v, r, node, inst):
            self._head_ok[v.id] = key
            return True
        if v.protocol == "iscsi" or v.tls:
            # iSCSI and TLS are served by the node's polling head target, which reaches the replica in
            # the (sleeping) data target over NVMe/TCP on the node's own address
            e = await self._stub(node).ExportReplica(apb.ExportReplicaRequest(
                replica_id=r.id, allowed_host_nqns=[node.host_nqn], host_keys=link_keys(self.secrets, [node])),
                timeout=self.call_timeout)
            leg = apb.HeadLeg(replica_id=r.id, node_id=node.id, subsystem_nqn=e.nqn, address=e.address, port=e.port)
            spec = head_spec(v, [leg], self.secrets, in_sync_replica_ids=[r.id], replica_count=1,
                             link_dhchap_key=link_secret(self.secrets, node.id))
        else:
            spec = head_spec(v, [apb.HeadLeg(replica_id=r.id, node_id=node.id)], self.secrets)
        st = await self._stub(node).EnsureHead(spec, timeout=self.call_timeout)
        crash_point("create.exported")
        if qos_matches(v, st):    # else SPDK kept other limits: visited again (see _revisit)
            self._head_ok[v.id] = key
        if (v.head_node_id, v.export_address, v.export_port) != (node.id, st.address, st.port):
            old_head = v.head_node_id
            v.head_node_id, v.export_address, v.export_port = node.id, st.address, st.port
            await self.repo.commit(put=[v])
            self._head_moved(v, old_head, node, self.view.nodes() if self.view else {node.id: node}, self._up)
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
        if self.events is not None:
            self.events.forget(v.id)
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

INTERNAL_SNAPSHOT_PREFIX = "clone-source-"
__all__ = ["CLUSTER", "HEAD_RECHECK", "INTERNAL_SNAPSHOT_PREFIX", "Reconciler", "head_spec", "volume_key"]
class _ReplicasByVolume:
    """``reps.get(volume_id, [])`` over the view, for code written against a dict of lists."""

    def __init__(self, view: ClusterView):
        self.view = view

    def get(self, volume_id: str, default=None) -> list[Replica]:
        return self.view.replicas_of(volume_id) or (default if default is not None else [])
