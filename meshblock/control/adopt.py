"""What an agent already holds, read in two calls when the controller first sees its instance.

A controller that takes over (or that sees an agent for the first time) remembers nothing it has
applied, so each volume's first visit would repeat every agent call: for a three-replica volume
with standby heads about eleven calls, a million for 100,000 volumes. Instead, when an agent
registers, the controller lists its replicas (with their exports) and its heads once. A volume
whose every replica, export allowlist and head matches what the records ask for is confirmed from
those lists with no call; anything that differs, or that is not settled, takes the usual path.

The lists describe one moment: a head's entry is used only once (the volume's first visit after
the lists were read), a replica's only while the controller has not confirmed it itself, and
nothing after ``max_age`` seconds or once the agent has restarted again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..model import Node, Replica, ReplicaState, Volume, VolumeState
from ..proto.meshblock.v1 import agent_pb2 as apb
from ..qos import QosLimits
from .host_auth import expected, expected_psks

log = logging.getLogger("meshblock.control.reconciler")


@dataclass
class Holdings:
    instance: str
    at: float
    replicas: dict[str, apb.Replica]
    heads: dict[str, apb.HeadStatus]


@dataclass
class Adopted:
    # long enough for a new leader to visit 100,000 volumes; a head that changes after the listing
    # changes its node's digest, and the head sweep looks at it again
    max_age: float = 300.0
    nodes: dict[str, Holdings] = field(default_factory=dict)

    def record(self, node_id: str, instance: str, replicas: apb.ListReplicasReply,
               heads: apb.ListHeadsReply) -> None:
        self.nodes[node_id] = Holdings(instance, time.monotonic(), {r.replica_id: r for r in replicas.replicas},
                                       {h.volume_id: h for h in heads.heads})

    def _of(self, node_id: str, instance: str | None) -> Holdings | None:
        h = self.nodes.get(node_id)
        if h is None:
            return None
        if h.instance != instance or time.monotonic() - h.at > self.max_age:
            del self.nodes[node_id]
            return None
        return h

    def replica(self, node_id: str, instance: str | None, replica_id: str) -> apb.Replica | None:
        """The replica as its agent listed it."""
        h = self._of(node_id, instance)
        return None if h is None else h.replicas.get(replica_id)

    def head(self, node_id: str, instance: str | None, volume_id: str) -> apb.HeadStatus | None:
        h = self._of(node_id, instance)
        return None if h is None else h.heads.pop(volume_id, None)

    def export_hosts(self, node_id: str, instance: str | None, replica_id: str) -> dict[str, str] | None:
        """The hosts a replica's export admits, each with the fingerprint of the secret it must
        prove ("" for none)."""
        h = self._of(node_id, instance)
        r = None if h is None else h.replicas.get(replica_id)
        if r is None or not r.HasField("export"):
            return None
        return {n: r.export.host_keys.get(n, "") for n in r.export.allowed_host_nqns}


def rate_limits(r: apb.RateLimits) -> QosLimits:
    return QosLimits(r.rw_ios_per_sec, r.rw_mbytes_per_sec, r.r_mbytes_per_sec, r.w_mbytes_per_sec)


def qos_matches(v: Volume, st: apb.HeadStatus) -> bool:
    """Whether the head enforces the volume's QoS limits (a standby that reaches no replica yet has
    no bdev to limit: it gets them when its raid is made)."""
    return rate_limits(st.qos) == v.qos or (st.standby and st.raid_state == "missing")


def head_matches(v: Volume, st: apb.HeadStatus | None, legs: set[str], standby: bool) -> bool:
    """An NVMe/TCP head (or standby head) that serves ``v`` as the records ask (its QoS limits too),
    every leg in sync."""
    return (st is not None and st.protocol in ("", "nvmf") and st.nqn == v.nqn and st.standby == standby
            and qos_matches(v, st)
            and st.ana_state == ("inaccessible" if standby else "optimized")
            and sorted(st.allowed_host_nqns) == sorted(v.hosts) and dict(st.host_keys) == expected(v)
            and st.tls == v.tls and dict(st.host_psks) == expected_psks(v)
            and st.size_bytes >= v.size_bytes
            and {leg.replica_id for leg in st.legs} == legs
            and (not st.raid_state or st.raid_state == "online")
            and all(leg.state == "in_sync" for leg in st.legs if st.raid_state))


def settled(v: Volume, active: list[Replica]) -> bool:
    return (v.state == VolumeState.AVAILABLE and len(active) == v.replicas and not v.stage
            and all(r.state == ReplicaState.ONLINE for r in active))


def confirm_replicated(adopted: Adopted, v: Volume, active: list[Replica], head: Node, standbys: list[Node],
                       instance, link_fp=lambda n: "") -> bool:
    """True when the agents' lists show ``v``'s head, standby heads and fenced replica exports exactly
    as its records ask (``instance``: node id -> the agent instance the leader knows; ``link_fp``:
    node -> the fingerprint of the secret the exports must ask of it, "" for none)."""
    why = _differs(adopted, v, active, head, standbys, instance, link_fp)
    if why:
        log.debug("volume %s not confirmed from the lists: %s", v.name, why)
    return not why


def _differs(adopted: Adopted, v: Volume, active: list[Replica], head: Node, standbys: list[Node], instance,
             link_fp) -> str:
    if not settled(v, active) or v.head_node_id != head.id or v.ec_data:
        return "not settled"
    legs = {r.id for r in active}
    st = adopted.head(head.id, instance(head.id), v.id)
    if not head_matches(v, st, legs, standby=False) or (st.address, st.port) != (v.export_address, v.export_port):
        return f"head on {head.name}: {st}".replace("\n", " ")
    for n in standbys:
        sb = adopted.head(n.id, instance(n.id), v.id)
        if not head_matches(v, sb, legs, standby=True) or v.standby_paths.get(n.id) != f"{sb.address}:{sb.port}":
            return f"standby on {n.name}: {sb}".replace("\n", " ")
    if set(v.standby_paths) != {n.id for n in standbys}:
        return "other standbys"
    fence = {n.host_nqn: link_fp(n) for n in (head, *standbys)}
    for r in active:
        got = adopted.export_hosts(r.node_id, instance(r.node_id), r.id)
        if got != fence:
            return f"export of {r.id}: {got}"
    return ""


def confirm_single(adopted: Adopted, v: Volume, r: Replica, node: Node, instance: str | None) -> bool:
    """True when the node's list shows ``v``'s single-replica NVMe/TCP head as its record asks."""
    if v.protocol != "nvmf" or v.head_node_id != node.id or v.state != VolumeState.AVAILABLE or v.stage:
        return False
    st = adopted.head(node.id, instance, v.id)
    ok = head_matches(v, st, {r.id}, standby=False) and (st.address, st.port) == (v.export_address, v.export_port)
    if not ok:
        log.debug("volume %s not confirmed from the list: %s", v.name, str(st).replace("\n", " "))
    return ok
