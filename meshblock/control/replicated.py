"""Replicated and erasure-coded volumes: the head's raid over its replicas, the fence, standby heads,
failover and the replica set (the part of the reconciler that applies meshblock/replication/layout.py).

The replica exports admit only the head and the standby heads (the fence); a head on a node that is
down moves to a standby that already exports the volume, or to another in-sync replica's node.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

import grpc

from .. import nqn
from ..faults import crash_point
from ..model import Node, Replica, ReplicaState, Volume, VolumeState
from ..proto.meshblock.v1 import agent_pb2 as apb
from ..replication.erasure import SHARD_BLOCK_BYTES
from ..replication.layout import (RebuildProgress, head_members, in_sync_after, plan_membership, raid_slots,
                                  recorded_in_sync)
from ..util import all_of
from ..secretbox import SecretBox
from .adopt import Adopted, confirm_replicated, qos_matches
from .host_auth import applied_key, head_keys, link_fingerprint, link_keys, link_secret
from .transitions import Transitions

if TYPE_CHECKING:
    from .agents import AgentClients
    from .liveness import Liveness
    from .repo import Repo
    from .view import ClusterView
    from .workqueue import WorkQueue

log = logging.getLogger("meshblock.control.reconciler")

HEAD_RECHECK = 10.0   # seconds between the head sweeps (one ListHeads per node)
RESYNC = 1800.0       # seconds after which a settled volume's head is applied again on its next visit
# where a replicated head's key (_converge_replicated) holds its members' (replica id, agent
# instance, draining)
_MEMBERS = 8


def head_spec(v: Volume, legs: list, secrets: SecretBox | None = None, **kw) -> apb.HeadSpec:
    """What a head node is told about a volume: its legs, how (and to whom) it is exported (with the
    secrets of hosts that authenticate) and the QoS limits it enforces."""
    kw["qos"] = apb.RateLimits(**v.qos.spdk())
    kw["volume_name"] = v.name          # the agent's metrics label volumes by name
    if v.protocol == "iscsi":
        return apb.HeadSpec(volume_id=v.id, namespace_uuid=v.namespace_uuid, legs=legs, protocol="iscsi",
                            iscsi=apb.IscsiExport(target_iqn=v.target_iqn, initiators=sorted(v.hosts),
                                                  netmasks=v.iscsi_netmasks, chap_user=v.chap_user,
                                                  chap_secret=v.chap_secret), **kw)
    ec = v.erasure
    if ec is not None:
        kw.update(raid_level="raid5f", strip_size_kb=ec.strip_size_kb)
    return apb.HeadSpec(volume_id=v.id, nqn=v.nqn, namespace_uuid=v.namespace_uuid, legs=legs,
                        allowed_host_nqns=sorted(v.hosts), host_keys=head_keys(v, secrets), tls=v.tls, **kw)



class ReplicatedVolumes(Transitions):
    """Mixed into the Reconciler (which holds the state these methods use)."""

    repo: Repo
    agents: AgentClients
    liveness: Liveness
    view: ClusterView | None
    queue: WorkQueue
    adopted: Adopted
    call_timeout: float
    replace_after: float
    standby_heads: bool
    synced: dict
    rebuild: dict
    _replica_ok: dict
    _head_ok: dict
    _standby_ok: dict


    async def _note_nodes_down(self, v: Volume, active: list[Replica], nodes: dict[str, Node]) -> None:
        """Take members on nodes that are down out of the volume's in-sync set (while another member
        is up: see in_sync_after), before anything else changes, so a crash right after keeps it."""
        up = {r.node_id for r in active if self._up(nodes.get(r.node_id))}   # the volume's nodes only
        if all(r.node_id in up for r in active):
            return
        after = in_sync_after(v, active, up)
        if sorted(after) == sorted(v.in_sync):
            return
        log.info("volume %s: in sync now %s (was %s)", v.name, sorted(after), sorted(recorded_in_sync(v, active)))
        v.in_sync = sorted(after)
        gone = [r for r in active if r.node_id not in up and r.state not in (ReplicaState.OFFLINE, ReplicaState.CREATING)]
        before = {r.id: r.state for r in gone}
        for r in gone:   # as _converge_replica would mark them, in the same commit
            r.went_offline()
        await self.repo.commit(put=[v, *gone])
        self._replica_states_changed(v, before, gone, nodes)

    async def _converge_replicated(self, v: Volume, active: list[Replica], nodes: dict[str, Node]) -> None:
        """raid1 head over all replicas; the replica exports admit only the head (the fence)."""
        up = [r for r in active if self._up(nodes.get(r.node_id))
              and self._replica_ok.get(r.id, ("", 0))[0] == self.liveness.instance(r.node_id)]
        fresh = v.state == VolumeState.CREATING
        in_sync = recorded_in_sync(v, active) | {r.id for r in active if fresh and r.state == ReplicaState.CREATING}
        head_node = nodes.get(v.head_node_id) if v.head_node_id else None
        # no node has ever been told it heads this volume: a head is told only after the record names
        # it, and a name is cleared only when the volume is deleted
        first_head = not v.head_node_id
        failover = False
        resync: list[Replica] = []
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
                        resync.append(r)
                in_sync = {seed}
                v.in_sync = [seed]
            old_head = v.head_node_id
            v.head_node_id = head_node.id
            # where hosts find it until the new head reports: its standby export, if it had one
            addr, _, port = v.standby_paths.pop(head_node.id, "").rpartition(":")
            v.export_address, v.export_port = addr, int(port or 0)
            v.stage = "moving-head" if failover else "exporting"
            await self.repo.commit(put=[*resync, v])    # the replicas to resync and the move, at once
            self._head_ok.pop(v.id, None)
            self._head_moved(v, old_head, head_node, nodes, self._up)
            for r in resync:
                self._rebuild(v, r, "started", nodes, "resync after failover")
        assert head_node is not None
        # a whole, settled volume whose nodes have not restarted needs no agent calls on a visit; the
        # head sweep (Reconciler.sweep_heads) forgets it when a head reports a leg out of sync, and it
        # is applied again at least every RESYNC seconds
        standbys = self._standby_nodes(v, active, nodes, head_node.id)
        self._standby_ok.pop((v.id, head_node.id), None)
        confirmed = [n for n in standbys if self._standby_ok.get((v.id, n.id)) == self.liveness.instance(n.id)]
        # (its members' agent instances at _MEMBERS: applied_since_restart reads them)
        key = (self.liveness.instance(head_node.id), v.nqn, v.target_iqn, tuple(sorted(v.hosts)),
               applied_key(v), v.replicas,
               v.size_bytes, v.qos, tuple(sorted((r.id, self.liveness.instance(r.node_id),
                                                  r.node_id in nodes and nodes[r.node_id].draining)
                                                 for r in active)),
               tuple(n.id for n in standbys), tuple(n.id for n in confirmed))
        whole = (v.state == VolumeState.AVAILABLE and len(active) == v.replicas
                 and all(r.state == ReplicaState.ONLINE for r in active))
        cached = self._head_ok.get(v.id)
        if whole and cached is not None and cached[0] == key and time.monotonic() - cached[1] < RESYNC:
            self.synced[v.id] = v.generation
            return
        if cached is None and confirm_replicated(self.adopted, v, active, head_node, standbys, self.liveness.instance,
                                                 lambda n: link_fingerprint(self.secrets, n)):
            # as the agents listed it when they registered: nothing to apply
            for n in standbys:
                self._standby_ok[(v.id, n.id)] = self.liveness.instance(n.id) or ""
            self._head_ok[v.id] = (key[:-1] + (tuple(n.id for n in standbys),), time.monotonic())
            self.synced[v.id] = v.generation
            return
        # the replica exports admit the head and the standbys that have been told they are standbys
        # (a node that headed the volume before is demoted before its NQN is let in again)
        newcomers = [n for n in standbys if n not in confirmed]
        unannounced: list[Node] = []
        if newcomers and first_head:
            # nothing to demote: the standbys are told once, below, when the exports admit them
            unannounced = newcomers
            confirmed += newcomers
        elif newcomers:
            # told before any export changes (where the replica exports are follows from the records)
            known = [apb.HeadLeg(replica_id=r.id, node_id=r.node_id, subsystem_nqn=nqn("replica", r.id),
                                 address=nodes[r.node_id].nvmf_address, port=nodes[r.node_id].nvmf_port,
                                 slot=max(r.shard, 0))
                     for r in head_members(v, active) if r.node_id in nodes]
            demote = head_spec(v, known, self.secrets, in_sync_replica_ids=sorted(in_sync), replica_count=raid_slots(v, active))
            told = await self._ensure_heads(v, [(n, self._with_cntlids(demote, n, standby=True)) for n in newcomers])
            for n, st in zip(newcomers, told):
                if st is not None:
                    self._standby_ok[(v.id, n.id)] = self.liveness.instance(n.id) or ""
                    confirmed.append(n)
        legs = await self._export_replicas(v, active, nodes, [head_node, *confirmed])
        crash_point("replicated.fenced")
        spec = head_spec(v, legs, self.secrets, in_sync_replica_ids=sorted(in_sync),
                         replica_count=raid_slots(v, active))
        # the head and the standbys (only those the replicas admit) are independent: all at once
        ready = [n for n in standbys if n in confirmed]
        st, *standby_states = await self._ensure_heads(
            v, [(head_node, self._with_cntlids(spec, head_node))]
            + [(n, self._with_cntlids(spec, n, standby=True)) for n in ready])
        for n, told in zip(ready, standby_states):
            if n in unannounced and told is not None:
                self._standby_ok[(v.id, n.id)] = self.liveness.instance(n.id) or ""
        if st is None:
            await self._settle(v, False, 0, active)
            return
        # where hosts find the head and its standbys: written with the replicas' states below (one
        # commit; a crash before it leaves the record as it was, and the next visit applies it again)
        moved = (v.head_node_id, v.export_address, v.export_port) != (head_node.id, st.address, st.port)
        v.head_node_id, v.export_address, v.export_port = head_node.id, st.address, st.port
        moved |= await self._converge_standbys(v, standbys, dict(zip((n.id for n in ready), standby_states)), nodes)
        by_id = {r.id: r for r in active}
        before = {r.id: r.state for r in active}
        now_t = time.monotonic()
        changed: dict[str, Replica] = {}     # written together, in one commit
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
                changed[r.id] = r
        members = {r.id for r in head_members(v, active)}
        for r in active:   # replicas whose node is down never reached the head (waiting shards stay as they are)
            if r.id in members and r.id not in {leg.replica_id for leg in st.legs} and \
                    r.state != ReplicaState.OFFLINE:
                r.went_offline()
                changed[r.id] = r
        # what the head reports in sync is the volume's in-sync set from now on (with the leg states)
        reported = sorted(leg.replica_id for leg in st.legs if leg.state == "in_sync" and leg.replica_id in by_id)
        new_set = bool(reported) and reported != sorted(v.in_sync)
        if new_set:
            v.in_sync = reported
        if changed or new_set or moved:
            await self.repo.commit(put=[*changed.values(), *([v] if new_set or moved else [])])
            self._replica_states_changed(v, before, list(changed.values()), nodes)
        await self._rebalance(v, active, nodes, head_node.id)
        online = sum(1 for r in active if r.state == ReplicaState.ONLINE)
        await self._settle(v, st.raid_state == "online", online, active)
        if not all(qos_matches(v, s) for s in (st, *standby_states) if s is not None):
            # SPDK kept other limits (see agent/heads.py set_rate_limits): not settled, visited again
            log.info("volume %s: a head does not enforce its QoS limits yet", v.name)
            return
        # keyed as the next visit will see it: with the standbys this visit has confirmed
        done = tuple(n.id for n in standbys if self._standby_ok.get((v.id, n.id)) == self.liveness.instance(n.id))
        self._head_ok[v.id] = (key[:-1] + (done,), time.monotonic())

    async def _export_replicas(self, v: Volume, active: list[Replica], nodes: dict[str, Node],
                               allowed: list[Node]) -> list[apb.HeadLeg]:
        """The fence: each replica's export admits ``allowed`` (the head and the standby heads) and,
        with a secrets key, only when each proves its link secret."""
        request = dict(allowed_host_nqns=[n.host_nqn for n in allowed], host_keys=link_keys(self.secrets, allowed))

        async def export(r: Replica, node: Node) -> apb.HeadLeg:
            e = await self._stub(node).ExportReplica(apb.ExportReplicaRequest(replica_id=r.id, **request),
                                                     timeout=self.call_timeout)
            return apb.HeadLeg(replica_id=r.id, node_id=node.id, subsystem_nqn=e.nqn, address=e.address,
                               port=e.port, slot=max(r.shard, 0))

        return await all_of(*(export(r, nodes[r.node_id]) for r in head_members(v, active)
                              if self._up(nodes.get(r.node_id))
                              and self._replica_ok.get(r.id, ("", 0))[0] == self.liveness.instance(r.node_id)))

    def applied_since_restart(self, v: Volume, r: Replica, replicated: bool) -> bool:
        """Whether this controller has applied (or confirmed) ``v``'s head with ``r``'s node's agent
        as it runs now: after that agent restarted, not before the volume's next visit got to its end
        (its replicas' states are then what the head reports, not what they were before)."""
        inst = self.liveness.instance(r.node_id)
        cached = self._head_ok.get(v.id)
        if inst is None or cached is None:
            return False
        if replicated:
            return any(rid == r.id and i == inst for rid, i, _ in cached[0][_MEMBERS])
        # a single replica's head key (Reconciler._converge_head) starts with its node's instance
        return self._replica_ok.get(r.id, ("", 0))[0] == inst and cached[0] == inst

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

    def _with_cntlids(self, spec: apb.HeadSpec, node: Node, standby: bool = False) -> apb.HeadSpec:
        """``spec`` as ``node`` is told it: its controller ids, its role and the secret it proves to
        the replicas' exports."""
        out = apb.HeadSpec()
        out.CopyFrom(spec)
        out.standby = standby
        out.link_dhchap_key = link_secret(self.secrets, node.id)
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
                                 nodes: dict[str, Node]) -> bool:
        """Set the standby heads' paths in ``v`` (``states``: what each admitted standby's EnsureHead
        answered); heads on nodes that are no longer standbys go. Whether the paths changed (the
        caller writes them)."""
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
        if paths == v.standby_paths:
            return False
        v.standby_paths = paths
        return True

    async def _rebalance(self, v: Volume, active: list[Replica], nodes: dict[str, Node], head_id: str) -> None:
        """Apply ``plan_membership`` (meshblock/replication/layout.py): replace lost replicas, place
        missing ones, remove those that may leave."""
        from .placement import Candidate, PlacementError, domain, place

        draining = {r.node_id for r in active if r.node_id in nodes and nodes[r.node_id].draining}
        plan = plan_membership(v, active, draining, head_id, time.time(), self.replace_after)
        changed = False
        for r in plan.lost:
            r.state = ReplicaState.DELETING
            await self.repo.commit(put=[r])
            log.warning("volume %s: replica %s on node %s was out for over %.0f s; replacing it", v.name, r.id,
                        nodes[r.node_id].name if r.node_id in nodes else r.node_id, self.replace_after)
            changed = True
        keepers, missing = plan.keepers, plan.missing
        if missing > 0:
            assert self.view is not None
            provisioned = self.view.provisioned
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
                self._rebuild(v, new, "started", nodes, "replaces a lost replica" if plan.lost else
                              "drain" if draining & {r.node_id for r in active} else "new replica")
                changed = True
        # removals wait until the replicas that stay are in sync
        for r in plan.leaving:
            r.state = ReplicaState.DELETING
            await self.repo.commit(put=[r])
            crash_point("rebalance.removing")
            log.info("volume %s: replica %s on node %s removed", v.name, r.id,
                     nodes[r.node_id].name if r.node_id in nodes else r.node_id)
            changed = True
        if changed:
            self.queue.add(("volume", v.id))
