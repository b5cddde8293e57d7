"""Gauges of the cluster as the leader sees it: which nodes are up, their pools' capacity, the
rebuilds under way, and whether this controller leads. Dashboards and alerts read these
(charts/meshblock/dashboards, docs/operations.md "Dashboard and alerts").

Only the leader sets the per-node and per-rebuild series; a standby exports none of them, so a
query summing over controllers counts each node once. Series of nodes and rebuilds that are gone
are removed, not left at their last value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from ..model import Node, NodeState, Replica, ReplicaState, Volume
from ..replication.layout import RebuildProgress

if TYPE_CHECKING:
    from .view import ClusterView

LEADER = Gauge("meshblock_controller_leader", "1 while this controller is the leader, 0 while it is a standby")
NODE_UP = Gauge("meshblock_node_up", "1 while the node is up, 0 while the controller holds it down", ["node"])
POOL_TOTAL = Gauge("meshblock_node_pool_total_bytes", "Size of the node's pool as its agent last reported it",
                   ["node"])
POOL_FREE = Gauge("meshblock_node_pool_free_bytes", "Free bytes in the node's pool as its agent last reported it",
                  ["node"])
REBUILD = Gauge("meshblock_replica_rebuild_percent",
                "Progress of a replica's rebuild as its volume's head reports it (0-100), while it rebuilds",
                ["volume", "replica", "node"])


@dataclass
class ClusterGauges:
    """Sets the per-node and per-rebuild gauges from one look at the cluster, removing the series
    of what is no longer there."""

    _nodes: set[str] = field(default_factory=set)
    _rebuilds: set[tuple[str, str, str]] = field(default_factory=set)

    def update(self, nodes: Iterable[Node], capacity: Callable[[Node], tuple[int, int]],
               rebuilds: Iterable[tuple[str, str, str, float]]) -> None:
        """``capacity``: a node's (total, free) pool bytes; ``rebuilds``: (volume name, replica id,
        node name, percent) of each replica rebuilding."""
        names = set()
        for n in nodes:
            names.add(n.name)
            total, free = capacity(n)
            NODE_UP.labels(n.name).set(1 if n.state == NodeState.UP else 0)
            POOL_TOTAL.labels(n.name).set(total)
            POOL_FREE.labels(n.name).set(free)
        for gone in self._nodes - names:
            for g in (NODE_UP, POOL_TOTAL, POOL_FREE):
                _remove(g, gone)
        self._nodes = names
        keys = set()
        for volume, replica, node, percent in rebuilds:
            keys.add((volume, replica, node))
            REBUILD.labels(volume, replica, node).set(percent)
        for gone in self._rebuilds - keys:
            _remove(REBUILD, *gone)
        self._rebuilds = keys

    def clear(self) -> None:
        """Remove every series this object set (the controller stops leading)."""
        self.update([], lambda n: (0, 0), [])


def rebuilds(view: ClusterView, progress: Mapping[str, RebuildProgress],
             nodes: Mapping[str, Node]) -> list[tuple[str, str, str, float]]:
    """(volume name, replica id, node name, percent) of the replicas rebuilding now, from the
    progress the reconciler keeps (replica id -> progress)."""
    out = []
    for rid, prog in list(progress.items()):
        r = view.get(Replica, rid)
        if r is None or r.state != ReplicaState.REBUILDING:
            continue
        v = view.get(Volume, r.volume_id)
        n = nodes.get(r.node_id)
        out.append((v.name if v else r.volume_id, rid, n.name if n else r.node_id, prog.percent))
    return out


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass
