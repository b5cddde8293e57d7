"""Typed records of the cluster state and their state machines."""

from .records import (InvalidTransition, Node, NodeState, Record, Replica, ReplicaState, Snapshot, SnapshotState,
                      Volume, VolumeState)

__all__ = ["InvalidTransition", "Node", "NodeState", "Record", "Replica", "ReplicaState", "Snapshot",
           "SnapshotState", "Volume", "VolumeState"]
