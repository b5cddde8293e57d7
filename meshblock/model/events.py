"""Records of what happened to the cluster: volume state changes, head moves, rebuilds, nodes going
up and down, drains (docs/operations.md, "Events")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .records import Record

# the kinds of events the controller records
VOLUME_STATE = "volume.state"        # a volume's state changed (fields: from, to, reason)
VOLUME_HEAD = "volume.head"          # a volume's head moved (fields: from, to, reason: failover | drain | placement)
REPLICA_REBUILD = "replica.rebuild"  # a replica's rebuild or resync started or ended (fields: phase, replica_id, node)
NODE_STATE = "node.state"            # a node went down or came back, or registered (fields: from, to)
NODE_DRAIN = "node.drain"            # a node's drain started, was stopped, or finished (fields: phase)
KINDS = (VOLUME_STATE, VOLUME_HEAD, REPLICA_REBUILD, NODE_STATE, NODE_DRAIN)


@dataclass
class ClusterEvent(Record):
    """One thing that happened. Ids start with the time in microseconds, so they sort in the order
    the events were recorded."""
    KIND: ClassVar[str] = "event"
    time: float = 0.0
    kind: str = ""
    object: str = ""                 # the volume's or the node's name
    object_id: str = ""              # its id
    tenant: str = ""                 # the volume's tenant; "" for node events
    message: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    node_ids: list[str] = field(default_factory=list)   # the nodes the event concerns
