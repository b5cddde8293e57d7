"""Which node and drain events the reconciler records from the changes of node records it sees."""

from __future__ import annotations

from collections import defaultdict

from meshblock.control.events import EventLog, EventRecorder
from meshblock.control.transitions import Transitions
from meshblock.model import Node
from meshblock.store.base import Item


class _View:
    def __init__(self):
        self.replicas_by_node: dict[str, set[str]] = defaultdict(set)


class _Rec(Transitions):
    def __init__(self):
        self.events = EventRecorder(EventLog(store=None))  # type: ignore[arg-type]
        self.view = _View()


def item(rev: int, **data) -> Item:
    return Item(kind="node", id="n1", name="node-1", data={"name": "node-1", **data}, revision=rev)


def recorded(rec: _Rec) -> list[tuple[str, dict]]:
    return [(e.kind, e.fields) for e in rec.events._queue]


def test_node_up_down_and_drains():
    rec = _Rec()
    steps = [item(1, state="up"), item(2, state="up", free_bytes=5), item(3, state="down"),
             item(4, state="down"), item(5, state="up"), item(6, state="up", draining=True, drain_total=2),
             item(7, state="up", draining=False), item(8, state="up", draining=True, drain_total=1)]
    old = None
    for new in steps:
        rec._node_changed("n1", old, new)
        old = new
    rec.view.replicas_by_node["n1"].add("r1")
    node = Node(id="n1", name="node-1", draining=True)
    rec._maybe_drained(node)                 # a replica is still there
    rec.view.replicas_by_node["n1"].clear()
    rec._maybe_drained(node)
    rec._maybe_drained(node)                 # the next replica deletion finds it drained again: once
    assert recorded(rec) == [
        ("node.state", {"from": "", "to": "up"}),
        ("node.state", {"from": "up", "to": "down"}),
        ("node.state", {"from": "down", "to": "up"}),
        ("node.drain", {"phase": "started", "replicas": "2"}),
        ("node.drain", {"phase": "stopped"}),
        ("node.drain", {"phase": "started", "replicas": "1"}),
        ("node.drain", {"phase": "finished"})]
    assert [e.message for e in rec.events._queue][:2] == ["node node-1 registered", "node node-1 is down"]
    assert all(e.object == "node-1" and e.object_id == "n1" and e.node_ids == ["n1"] and not e.tenant
               for e in rec.events._queue)
