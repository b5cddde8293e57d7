"""Group snapshots: snapshots of several volumes that agree on one instant.

Replicas are snapshotted by their nodes one after the other, so a snapshot of one volume
taken while a host writes to several volumes can hold a write whose predecessor on another
volume is missing from that volume's snapshot (a database's log and data on two volumes).
A group snapshot first holds the writes of every volume in the group: each head's
subsystem turns ANA inaccessible, which SPDK does only after the I/O in flight has
completed. From the moment the last hold is in place until the first release, no write
completes on any volume of the group, so snapshots taken in between show every volume as
it was at that moment (crash consistency). Hosts with native NVMe multipath queue their
I/O meanwhile and resume when the state turns optimized again; they see a pause, no error.

A hold ends by itself on the agent after ``hold_limit`` if the controller dies before
releasing it, and a try that takes longer than that fails (its snapshots could disagree)
and is cleaned up. A try the controller did not finish is cleaned up and taken again by
the next leader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import grpc

from ..faults import crash_point
from ..model import GroupSnapshot, GroupSnapshotState, Node, Replica, ReplicaState, Snapshot, SnapshotState, Volume
from ..model import VolumeState
from ..proto.meshblock.v1 import agent_pb2 as apb

if TYPE_CHECKING:
    from .reconciler import Reconciler

log = logging.getLogger(__name__)

SERVING = (VolumeState.AVAILABLE, VolumeState.DEGRADED)


class GroupFailed(Exception):
    """A try of a group snapshot cannot succeed as things are; the message says why."""


def members_of(g: GroupSnapshot, snaps: list[Snapshot]) -> list[Snapshot]:
    by_id = {s.id: s for s in snaps}
    return [by_id[sid] for sid in g.snapshot_ids if sid in by_id]


class GroupSnapshotter:
    def __init__(self, rec: "Reconciler", hold_limit: float = 10.0):
        self.rec = rec
        self.hold_limit = hold_limit

    async def reconcile(self, g: GroupSnapshot, nodes: dict[str, Node], snaps: list[Snapshot],
                        reps: dict[str, list[Replica]]) -> None:
        repo = self.rec.repo
        members = members_of(g, snaps)
        if g.state == GroupSnapshotState.CREATING:
            try:
                await self._take(g, members, nodes, reps)
            except GroupFailed as e:
                await self._clean(members, nodes, reps)
                g.state, g.message = GroupSnapshotState.FAILED, str(e)
                await repo.commit(put=[g])
                log.warning("group snapshot %s failed: %s", g.name, e)
        elif g.state == GroupSnapshotState.DELETING:
            pending = [s for s in members if s.state != SnapshotState.DELETING]
            for s in pending:
                s.state = SnapshotState.DELETING
            if pending:
                await repo.commit(put=pending)   # the members' parts go with the snapshots' own pass
            if not members:
                await repo.commit(delete=[g])
                log.info("group snapshot deleted name=%s", g.name)

    async def _take(self, g: GroupSnapshot, members: list[Snapshot], nodes: dict[str, Node],
                    reps: dict[str, list[Replica]]) -> None:
        rec, repo = self.rec, self.rec.repo
        volumes = []
        for vid in g.volume_ids:
            v = await repo.get(Volume, vid)
            if v is None:
                raise GroupFailed(f"volume {vid} no longer exists")
            if v.state not in SERVING:
                raise GroupFailed(f"volume {v.name!r} is {v.state.value}")
            if v.protocol != "nvmf":
                raise GroupFailed(f"volume {v.name!r} is exported over {v.protocol}, whose writes cannot be held")
            if not rec._up(nodes.get(v.head_node_id)):
                raise GroupFailed(f"the head node of volume {v.name!r} is not up")
            volumes.append(v)
        if len(members) != len(volumes):
            raise GroupFailed("member snapshots are missing")
        g.attempts += 1
        await repo.commit(put=[g])
        if g.attempts > 1:
            # an earlier try stopped half-way: what it took may be from another instant
            await self._clean(members, nodes, reps)
        held: list[Volume] = []
        t0 = time.monotonic()
        try:
            # holds in parallel: the instant is when the last one is in place
            await asyncio.gather(*(self._hold(v, nodes, held) for v in volumes))
            crash_point("group.held")
            parts = await asyncio.gather(*(self._snap(v, s, nodes, reps) for v, s in zip(volumes, members)))
            crash_point("group.taken")
        except grpc.aio.AioRpcError as e:
            raise GroupFailed(f"{e.code().name}: {e.details()}") from e
        finally:
            await self._release(held, nodes)
        elapsed = time.monotonic() - t0
        if elapsed >= self.hold_limit:
            raise GroupFailed(f"holding the writes took {elapsed:.1f} s, longer than the {self.hold_limit:.0f} s "
                              "a hold may last: the snapshots might not agree")
        for s, p in zip(members, parts):
            s.parts, s.state = p, SnapshotState.READY
        g.state, g.hold_ms, g.message = GroupSnapshotState.READY, int(elapsed * 1000), ""
        await repo.commit(put=[*members, g])
        log.info("group snapshot ready name=%s volumes=%d writes held for %d ms", g.name, len(volumes), g.hold_ms)

    async def _hold(self, v: Volume, nodes: dict[str, Node], held: list[Volume]) -> None:
        held.append(v)   # released in any case: the call may have held it before failing
        await self.rec._stub(nodes[v.head_node_id]).SetHeadAccess(
            apb.SetHeadAccessRequest(volume_id=v.id, ana_state="inaccessible",
                                     hold_ms=int(self.hold_limit * 1000)), timeout=self.hold_limit)

    async def _release(self, held: list[Volume], nodes: dict[str, Node]) -> None:
        async def one(v: Volume) -> None:
            try:
                await self.rec._stub(nodes[v.head_node_id]).SetHeadAccess(
                    apb.SetHeadAccessRequest(volume_id=v.id, ana_state="optimized"), timeout=self.rec.call_timeout)
            except grpc.aio.AioRpcError as e:   # the hold ends by itself on the agent
                log.warning("writes of volume %s not released (%s): they will be when the hold ends",
                            v.name, e.details())

        await asyncio.gather(*(one(v) for v in held))

    async def _snap(self, v: Volume, s: Snapshot, nodes: dict[str, Node],
                    reps: dict[str, list[Replica]]) -> dict[str, str]:
        online = [r for r in reps.get(v.id, []) if r.state == ReplicaState.ONLINE and self.rec._up(nodes.get(r.node_id))]
        if not online:
            raise GroupFailed(f"volume {v.name!r} has no replica online")

        async def one(r: Replica) -> tuple[str, str]:
            await self.rec._stub(nodes[r.node_id]).CreateSnapshot(
                apb.CreateReplicaSnapshotRequest(replica_id=r.id, snapshot_id=s.id), timeout=self.hold_limit)
            return r.node_id, r.id

        return dict(await asyncio.gather(*(one(r) for r in online)))

    async def _clean(self, members: list[Snapshot], nodes: dict[str, Node], reps: dict[str, list[Replica]]) -> None:
        """Delete what a failed try may have taken on the members' replica nodes."""
        for s in members:
            for r in reps.get(s.volume_id, []):
                node = nodes.get(r.node_id)
                if self.rec._up(node):
                    try:
                        await self.rec._stub(node).DeleteSnapshot(apb.DeleteReplicaSnapshotRequest(snapshot_id=s.id),
                                                                  timeout=self.rec.call_timeout)
                    except grpc.aio.AioRpcError as e:
                        log.warning("snapshot %s on node %s not cleaned: %s", s.id, node.name, e.details())
