"""The reconciler's sweeps over nodes: one ListHeads (heads and standby heads out of sync) or
ListReplicas (orphaned replicas) per node whose heartbeats say its holdings changed since the last
listing, or when that listing is older than the resync interval."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import grpc

from ..model import Node, Replica, Volume
from ..proto.meshblock.v1 import agent_pb2 as apb
from .adopt import qos_matches, rate_limits

if TYPE_CHECKING:
    from .liveness import Liveness
    from .view import ClusterView
    from .workqueue import WorkQueue

log = logging.getLogger("meshblock.control.reconciler")


def volume_key(volume_id: str) -> tuple[str, str]:
    return ("volume", volume_id)


class Sweeps:
    """Mixed into the Reconciler (which holds the state these methods use)."""

    liveness: Liveness
    view: ClusterView | None
    queue: WorkQueue
    call_timeout: float
    resync_interval: float
    rebuild: dict
    orphan_grace: float
    _head_ok: dict
    _standby_ok: dict
    _replica_ok: dict
    _orphans: dict
    _listed: dict

    def _listing(self, kind: str, node_id: str) -> tuple[str, str, float] | None:
        """What a listing of a node's heads or replicas started now is of: the agent instance and the
        digest its last heartbeat carried (None: no digest, the listing proves nothing later)."""
        s = self.liveness.seen.get(node_id)
        digest = getattr(s, kind + "_digest", "") if s is not None else ""
        return (s.instance_id, digest, time.monotonic()) if digest else None

    def _unchanged(self, kind: str, node_id: str) -> bool:
        """Whether the node's heads (or replicas) are as the last listing found them, by the digest
        its heartbeats carry. A listing older than the resync interval does not count (a safety net)."""
        now_l, last = self._listing(kind, node_id), self._listed.get((kind, node_id))
        return now_l is not None and last is not None and now_l[:2] == last[:2] \
            and now_l[2] - last[2] < self.resync_interval

    async def sweep_heads(self) -> None:
        """One ListHeads per up node whose heads changed since the last one (its heartbeats' digest
        says): a volume whose head or standby head there is missing, or reports its raid or a leg out
        of sync, loses what the controller remembers applying and is visited."""
        assert self.view is not None
        view = self.view

        async def one(node: Node) -> None:
            if not self._up(node) or self._unchanged("heads", node.id):
                return
            listing = self._listing("heads", node.id)
            try:
                got = await self._stub(node).ListHeads(apb.ListHeadsRequest(), timeout=self.call_timeout)
            except grpc.aio.AioRpcError:
                return
            reported = {h.volume_id: h for h in got.heads}
            for vid in list(view.volumes_by_node.get(node.id, ())):
                h = reported.get(vid)
                if h is not None and not h.standby and h.legs and all(leg.state == "in_sync" for leg in h.legs) \
                        and any(rid in self.rebuild for rid in view.replicas_by_volume.get(vid, ())):
                    # a rebuild finished: visited now (while many rebuild, their visits are spaced out)
                    self.queue.add(volume_key(vid))
                    continue
                if vid not in self._head_ok:
                    continue     # not settled: visited anyway
                v = view.get(Volume, vid)
                if h is None or (h.raid_state and h.raid_state != "online") or \
                        any(leg.state != "in_sync" for leg in h.legs) or \
                        (v is not None and not qos_matches(v, h)):
                    log.info("volume %s: its %s on node %s reports %s; visiting it", vid,
                             "head" if h is None or not h.standby else "standby head", node.name,
                             "nothing" if h is None else f"raid {h.raid_state or '-'}, legs "
                             + ",".join(leg.state for leg in h.legs) + f", qos {rate_limits(h.qos).describe()}")
                    self._head_ok.pop(vid, None)
                    self._standby_ok.pop((vid, node.id), None)
                    for rid in view.replicas_by_volume.get(vid, ()):
                        self._replica_ok.pop(rid, None)
                    self.queue.add(volume_key(vid))
            if listing is not None:
                self._listed[("heads", node.id)] = listing

        await asyncio.gather(*(one(n) for n in list(view.nodes().values())))

    async def sweep_orphans(self, nodes: dict[str, Node]) -> None:
        """Delete lvols named like meshblock replicas that no record owns, after a grace period."""
        assert self.view is not None
        known = set(self.view.ids(Replica))
        nowm = time.monotonic()
        suspects = {node_id for node_id, _ in self._orphans}
        for node in list(nodes.values()):   # the view may change while this awaits
            if not self._up(node) or (node.id not in suspects and self._unchanged("replicas", node.id)):
                continue
            listing = self._listing("replicas", node.id)
            try:
                listed = await self._stub(node).ListReplicas(apb.ListReplicasRequest(), timeout=self.call_timeout)
            except grpc.aio.AioRpcError:
                continue
            if listing is not None:
                self._listed[("replicas", node.id)] = listing
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
