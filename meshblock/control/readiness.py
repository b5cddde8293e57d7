"""Whether a node could go down now (a restart, an upgrade) without a volume losing its data path.

A node is ready when every replica on it is in sync (and the controller has seen so since its
agent last started), and when, were it to go down, every volume with a replica or its head there
would still have an in-sync replica (k in-sync shards of an erasure-coded volume) on another node
that is up, and a standby head there to take the head over. Single-replica volumes do not count
against the second part: they have no other copy, so no amount of waiting makes a restart of
their node pass unnoticed.

The leader works it out when asked (an agent's /readyz, `meshblock node get`), from its view of
the records and what its reconciler last applied, not on every heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from ..model import Replica, ReplicaState, Volume, VolumeState
from ..replication.layout import recorded_in_sync

MAX_REASONS = 3     # reasons named in full; the rest are counted


class Applied(Protocol):
    def applied_since_restart(self, v: Volume, r: Replica, replicated: bool) -> bool: ...


@dataclass
class Readiness:
    ready: bool
    reason: str = ""


def short(id: str) -> str:
    return id[:8]


def volume_reasons(node_id: str, v: Volume, active: list[Replica], *, is_up: Callable[[str], bool],
                   applied: Callable[[Volume, Replica, bool], bool],
                   rebuild_percent: Callable[[str], float | None] = lambda rid: None,
                   standby_heads: bool = True) -> list[str]:
    """Why ``v`` keeps node ``node_id`` from being ready (none: it does not). ``active``: the
    volume's replicas that are not being deleted."""
    replicated = v.replicas > 1 or len(active) > 1
    in_sync = recorded_in_sync(v, active) if replicated else {r.id for r in active}
    mine = [r for r in active if r.node_id == node_id]
    out = []
    for r in mine:
        what = f"replica {short(r.id)} of volume {v.name}"
        if r.state == ReplicaState.REBUILDING:
            pct = rebuild_percent(r.id)
            out.append(f"{what} is rebuilding" + (f" ({pct:.0f}%)" if pct is not None else ""))
        elif r.state != ReplicaState.ONLINE:
            out.append(f"{what} is {r.state.value}")
        elif r.id not in in_sync:
            out.append(f"{what} is not in sync")
        elif not applied(v, r, replicated):
            out.append(f"volume {v.name} has not been checked since the node's agent started")
    if not replicated:
        return out
    need = v.ec_data or 1
    others = [r for r in active if r.node_id != node_id and r.id in in_sync
              and r.state == ReplicaState.ONLINE and is_up(r.node_id)]
    if mine and len(others) < need:
        out.append(f"volume {v.name} would lose its last in-sync replica" if not v.ec_data else
                   f"volume {v.name} would keep fewer than {need} shards in sync")
    if v.head_node_id == node_id:
        takers = {r.node_id for r in others}
        if not any(n in takers for n in v.standby_paths if n != node_id):
            why = (" (iSCSI volumes have none)" if v.protocol == "iscsi" else
                   "" if standby_heads else " (the controller runs with --no-standby-heads)")
            out.append(f"the node heads volume {v.name} and no standby head could take over{why}")
    return out


def summary(reasons: list[str]) -> str:
    text = "; ".join(reasons[:MAX_REASONS])
    return text + (f"; and {len(reasons) - MAX_REASONS} more" if len(reasons) > MAX_REASONS else "")


@dataclass
class ReadinessCheck:
    """The leader's answer for one node, from its view (``view``: a ClusterView), its liveness
    and its reconciler (what it last applied, rebuild progress)."""
    view: object
    liveness: object
    reconciler: Applied

    def __call__(self, node_id: str) -> Readiness:
        view = self.view
        if not view.ready.is_set():     # type: ignore[attr-defined]
            return Readiness(False, "the controller is still reading the cluster's state")
        seen = self.liveness.seen.get(node_id)       # type: ignore[attr-defined]
        if seen is not None and not seen.healthy:
            return Readiness(False, "the node's agent reports it unhealthy (its SPDK target is not serving)")
        if not self.liveness.is_up(node_id):         # type: ignore[attr-defined]
            return Readiness(False, "the controller holds the node down (no heartbeat within the node timeout)")
        reasons = self.reasons(node_id, view.volumes_on(node_id))    # type: ignore[attr-defined]
        return Readiness(not reasons, summary(reasons))

    def reasons(self, node_id: str, volume_ids: Iterable[str]) -> list[str]:
        view = self.view
        rebuild = getattr(self.reconciler, "rebuild", {})
        out: list[str] = []
        for vid in sorted(volume_ids):
            v = view.get(Volume, vid)                # type: ignore[attr-defined]
            if v is None or v.state == VolumeState.DELETING:
                continue
            active = [r for r in view.replicas_of(vid) if r.state != ReplicaState.DELETING]   # type: ignore[attr-defined]
            out += volume_reasons(node_id, v, active, is_up=self.liveness.is_up,   # type: ignore[attr-defined]
                                  applied=self.reconciler.applied_since_restart,
                                  rebuild_percent=lambda rid: rebuild[rid].percent if rid in rebuild else None,
                                  standby_heads=getattr(self.reconciler, "standby_heads", True))
        return out
