"""The events the reconciler records where a transition happens (``events.py`` keeps them): a volume's
state, its head moving, a replica's rebuild or resync starting and ending, a node going down or
coming back, a drain starting, stopping and finishing. Each is recorded after the commit that makes
the transition, so a pass whose commit fails records nothing and the next pass records it once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import Node, Replica, ReplicaState, Volume, VolumeState
from ..model.events import NODE_DRAIN, NODE_STATE, REPLICA_REBUILD, VOLUME_HEAD, VOLUME_STATE
from ..model.tenancy import tenant_of
from ..store.base import Item

if TYPE_CHECKING:
    from .events import EventRecorder
    from .view import ClusterView


def _name(nodes: dict[str, Node], node_id: str) -> str:
    n = nodes.get(node_id)
    return n.name if n is not None else (node_id or "-")


class Transitions:
    """Mixed into the Reconciler, which sets ``events`` (None: nothing is recorded)."""

    events: EventRecorder | None
    view: ClusterView | None

    def _volume_event(self, v: Volume, kind: str, message: str, fields: dict, node_ids=(), topic: str = "") -> None:
        if self.events is not None:
            self.events.record(kind, object=v.name, object_id=v.id, tenant=tenant_of(v.tenant), message=message,
                               fields=fields, node_ids=node_ids, topic=topic)

    def _volume_state_changed(self, v: Volume, old: VolumeState, new: VolumeState, reason: str) -> None:
        fields = {"from": old.value, "to": new.value}
        if reason:
            fields["reason"] = reason
        self._volume_event(v, VOLUME_STATE, f"volume {v.name}: {old.value} -> {new.value}"
                           + (f" ({reason})" if reason else ""), fields, (v.head_node_id,))

    def _head_moved(self, v: Volume, old_id: str, new: Node, nodes: dict[str, Node], up) -> None:
        """``v``'s head was placed on ``new`` (it was on ``old_id``, "" for none); ``up`` tells
        whether a node is up (why it moved: the old head's node failed, is draining, or there was
        none)."""
        if old_id == new.id:
            return
        old = nodes.get(old_id) if old_id else None
        if not old_id:
            reason = "placement"
        elif old is not None and old.draining and up(old):
            reason = "drain"
        else:
            reason = "failover"
        fields = {"from": _name(nodes, old_id) if old_id else "", "to": new.name, "from_id": old_id,
                  "to_id": new.id, "reason": reason}
        what = f"head on {new.name}" if not old_id else f"head moved from {_name(nodes, old_id)} to {new.name}"
        self._volume_event(v, VOLUME_HEAD, f"volume {v.name}: {what} ({reason})", fields, (old_id, new.id))

    def _rebuild(self, v: Volume, r: Replica, phase: str, nodes: dict[str, Node], reason: str = "") -> None:
        """A replica's rebuild (or resync) ``phase``: started | finished | stopped."""
        node = _name(nodes, r.node_id)
        fields = {"phase": phase, "replica_id": r.id, "node": node, "node_id": r.node_id}
        if reason:
            fields["reason"] = reason
        self._volume_event(v, REPLICA_REBUILD, f"volume {v.name}: rebuild of replica {r.id[:8]} on {node} {phase}"
                           + (f" ({reason})" if reason else ""), fields, (r.node_id,), topic=f"rebuild:{r.id}")

    def _replica_states_changed(self, v: Volume, before: dict[str, ReplicaState], after: list[Replica],
                                nodes: dict[str, Node]) -> None:
        """Rebuilds that started, finished or stopped between ``before`` (replica id -> state) and
        ``after`` (as committed)."""
        for r in after:
            old = before.get(r.id)
            if old is None or old == r.state:
                continue
            if r.state == ReplicaState.REBUILDING:
                self._rebuild(v, r, "started", nodes, "returned" if old == ReplicaState.OFFLINE else "")
            elif old == ReplicaState.REBUILDING and r.state == ReplicaState.ONLINE:
                self._rebuild(v, r, "finished", nodes)
            elif old == ReplicaState.REBUILDING:
                self._rebuild(v, r, "stopped", nodes, r.state.value)

    def _node_changed(self, id: str, old: Item | None, new: Item | None) -> None:
        """A node record changed (the view's listener): up / down, and drains started or stopped."""
        if self.events is None or new is None:
            return
        a, b = (old.data if old is not None else {}), new.data
        name = b.get("name", id)
        if old is None or a.get("state") != b.get("state"):
            to = b.get("state", "")
            fields = {"from": a.get("state", ""), "to": to}
            message = f"node {name} registered" if old is None else f"node {name} is {to}"
            self.events.record(NODE_STATE, object=name, object_id=id, message=message, fields=fields, node_ids=(id,))
        if bool(a.get("draining")) != bool(b.get("draining")):
            phase = "started" if b.get("draining") else "stopped"
            fields = {"phase": phase}
            if phase == "started":
                fields["replicas"] = str(b.get("drain_total", 0))
            self.events.record(NODE_DRAIN, object=name, object_id=id, message=f"node {name}: drain {phase}",
                               fields=fields, node_ids=(id,), topic=NODE_DRAIN)

    def _maybe_drained(self, node: Node | None) -> None:
        """After a replica left ``node``: its drain finished when it holds none any more."""
        if self.events is None or node is None or not node.draining or self.view is None:
            return
        if self.view.replicas_by_node.get(node.id):
            return
        self.events.record(NODE_DRAIN, object=node.name, object_id=node.id, message=f"node {node.name}: drain finished",
                           fields={"phase": "finished"}, node_ids=(node.id,), topic=NODE_DRAIN)
