"""Simulated storage nodes for control-plane tests and benchmarks (see README.md)."""

from .agent import SimAgent
from .cluster import SimCluster
from .fabric import Fabric, SimDisk, SimTarget
from .node import CallStats, SimNode

__all__ = ["CallStats", "Fabric", "SimAgent", "SimCluster", "SimDisk", "SimNode", "SimTarget"]
