"""Decisions about a replicated or erasure-coded volume's members, as plain functions over records.

The reconciler (meshblock/control) applies these decisions with agent calls and store commits;
nothing here calls an agent or writes a record, so each rule can be read, and tested, on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Replica, ReplicaState, Volume

# A raid's slot count is fixed when it is created; empty slots cost nothing, so every raid gets room
# for the most replicas a volume may have plus one, and a replica can always be added (and rebuilt)
# before the one it replaces leaves.
RAID_SLOTS = 6


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


def leaving_shard(v: Volume, active: list[Replica], leaving: list[Replica]) -> list[Replica]:
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


def recorded_in_sync(v: Volume, active: list[Replica]) -> set[str]:
    """The replicas the records say hold every write the volume acknowledged: what the head last
    reported (``v.in_sync``), or, in a record written before that was kept, the ONLINE ones."""
    kept = set(v.in_sync) & {r.id for r in active}
    return kept or {r.id for r in active if r.state == ReplicaState.ONLINE}


def in_sync_after(v: Volume, active: list[Replica], up_nodes: set[str]) -> set[str]:
    """The in-sync set once the nodes that are down now are taken into account.

    A member whose node is down leaves the set while another member's node is up: a head may write
    without it from then on. When every member's node is down, the set stays as it was: nothing can
    be written without all of them any more, and the records cannot tell which of them went last,
    so the first of them to come back seeds a new head and the others are rebuilt from it. (A
    member that went down while the head still wrote is only known to be behind once the
    controller has seen its node down; see docs/operations.md, "A whole volume goes down".)
    """
    s = recorded_in_sync(v, active)
    live = {r.id for r in active if r.node_id in up_nodes}
    return s & live or s


@dataclass
class Membership:
    """What to change in a volume's replica set now."""

    lost: list[Replica]        # out longer than the replacement delay: their data is gone
    keepers: list[Replica]     # the replicas that stay
    missing: int               # new replicas to place
    leaving: list[Replica]     # to remove now (what stays is in sync without them)


def plan_membership(v: Volume, active: list[Replica], draining: set[str], head_node_id: str,
                    now: float, replace_after: float) -> Membership:
    """Keep ``v.replicas`` replicas on schedulable nodes.

    A replica out longer than ``replace_after`` is replaced at once (its data is gone). A replica
    on a draining node, or one more than the volume asks for, is removed only once enough others
    are in sync, so redundancy never drops below what it was. The raid has spare slots, so a new
    replica is added and rebuilt before the one it replaces leaves.
    """
    lost = [r for r in active if r.state == ReplicaState.OFFLINE and r.offline_since
            and now - r.offline_since > replace_after]
    keepers = [r for r in active if r not in lost and r.node_id not in draining]
    in_sync_keepers = [r for r in keepers if r.state == ReplicaState.ONLINE]
    extra = [r for r in active if r not in lost and r not in keepers]          # on draining nodes
    surplus = len(keepers) - v.replicas
    if surplus > 0:   # fewer replicas asked for: drop the least useful ones, never the head's
        order = sorted(keepers, key=lambda r: (r.state == ReplicaState.ONLINE, r.node_id == head_node_id))
        extra += order[:surplus]
    if v.ec_data:
        extra = leaving_shard(v, active, extra)
    elif not len([r for r in in_sync_keepers if r not in extra]) >= v.replicas:
        extra = []
    return Membership(lost=lost, keepers=keepers, missing=v.replicas - len(keepers), leaving=extra)


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
