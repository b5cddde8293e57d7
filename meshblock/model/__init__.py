"""Typed records of the cluster state and their state machines."""

from .records import (GroupSnapshot, GroupSnapshotState, Host, InvalidTransition, Node, NodeState, Record, Replica,
                      ReplicaState, Snapshot, SnapshotState, Volume, VolumeState)

__all__ = ["GroupSnapshot", "GroupSnapshotState", "Host", "InvalidTransition", "Node", "NodeState", "Record",
           "Replica", "ReplicaState", "Snapshot", "SnapshotState", "Volume", "VolumeState"]
