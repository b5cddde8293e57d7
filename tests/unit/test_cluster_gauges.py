"""The leader's gauges of nodes, pools and rebuilds: what a dashboard and the alerts read."""

from __future__ import annotations

from prometheus_client import REGISTRY

from meshblock.control.gauges import ClusterGauges, rebuilds
from meshblock.model import Node, NodeState, Replica, ReplicaState, Volume
from meshblock.replication.layout import RebuildProgress

GiB = 1 << 30


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def node(name: str, state: NodeState = NodeState.UP) -> Node:
    return Node(id=f"id-{name}", name=name, state=state, total_bytes=10 * GiB, free_bytes=10 * GiB)


def test_nodes_up_down_and_their_pools():
    g = ClusterGauges()
    pools = {"gauge-a": (100 * GiB, 40 * GiB), "gauge-b": (50 * GiB, 5 * GiB)}
    g.update([node("gauge-a"), node("gauge-b", NodeState.DOWN)], lambda n: pools[n.name], [])
    assert value("meshblock_node_up", node="gauge-a") == 1
    assert value("meshblock_node_up", node="gauge-b") == 0
    assert value("meshblock_node_pool_total_bytes", node="gauge-a") == 100 * GiB
    assert value("meshblock_node_pool_free_bytes", node="gauge-b") == 5 * GiB

    # a node removed from the cluster leaves no series behind
    g.update([node("gauge-a")], lambda n: pools[n.name], [])
    for name in ("meshblock_node_up", "meshblock_node_pool_total_bytes", "meshblock_node_pool_free_bytes"):
        assert value(name, node="gauge-b") is None
        assert value(name, node="gauge-a") is not None

    g.clear()
    assert value("meshblock_node_up", node="gauge-a") is None


def test_rebuild_progress_only_while_the_replica_rebuilds():
    class View:
        def __init__(self, records):
            self.records = {r.id: r for r in records}

        def get(self, cls, id):
            r = self.records.get(id)
            return r if isinstance(r, cls) else None

    vol = Volume(id="v1", name="gauge-vol")
    view = View([vol, Replica(id="r1", volume_id="v1", node_id="id-gauge-c", state=ReplicaState.REBUILDING),
                 Replica(id="r2", volume_id="v1", node_id="id-gauge-c", state=ReplicaState.ONLINE)])
    progress = {"r1": RebuildProgress(0.0, 10.0, 42.5), "r2": RebuildProgress(0.0, 0.0, 99.0),
                "gone": RebuildProgress(0.0, 0.0, 1.0)}
    nodes = {"id-gauge-c": node("gauge-c")}
    found = rebuilds(view, progress, nodes)
    assert found == [("gauge-vol", "r1", "gauge-c", 42.5)]

    g = ClusterGauges()
    g.update(nodes.values(), lambda n: (0, 0), found)
    assert value("meshblock_replica_rebuild_percent", volume="gauge-vol", replica="r1", node="gauge-c") == 42.5
    g.update(nodes.values(), lambda n: (0, 0), [])    # the rebuild finished
    assert value("meshblock_replica_rebuild_percent", volume="gauge-vol", replica="r1", node="gauge-c") is None
    g.clear()
