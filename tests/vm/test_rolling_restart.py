"""A rolling restart seen from a real kernel: a guest with native NVMe multipath writes to a
3-replica volume through the CSI plugin (connected to the head and to both standby heads) with a
verifying writer while every storage node is restarted in turn, as a DaemonSet rolls: its agent is
stopped (SIGTERM: it stops its SPDK targets), started again, and the next node goes only once the
controller says every node is ready again. The writer must see no error, every block must hold its
last acknowledged write, and the longest write is reported."""

from __future__ import annotations

import asyncio
import time

import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.vm.test_csi_node import csi_guest  # noqa: F401 - the fixture
from tests.vm.test_head_failover import node_id, start_writer, stop_writer

pytestmark = [pytest.mark.vm, pytest.mark.spdk]


async def nodes(cluster) -> dict[str, pb.Node]:
    return {n.name: n for n in (await cluster.nodes.ListNodes(pb.ListNodesRequest())).nodes}


async def until(cluster, pred, what: str, timeout: float = 180) -> dict[str, pb.Node]:
    deadline = time.monotonic() + timeout
    while True:
        got = await nodes(cluster)
        if pred(got):
            return got
        assert time.monotonic() < deadline, f"never {what}: " + "; ".join(
            f"{n.name} {n.state} {n.readiness.reason or 'ready'}" for n in got.values())
        await asyncio.sleep(0.3)


async def test_rolling_restart_under_a_verifying_writer(csi_guest):  # noqa: F811
    g, cluster, pythonpath = csi_guest
    vid = await start_writer(g, pythonpath)
    events = []
    all_ready = lambda ns: len(ns) == 3 and all(n.state == "up" and n.readiness.ready for n in ns.values())  # noqa: E731
    for agent in cluster.agents:
        t0 = time.monotonic()
        await until(cluster, all_ready, "every node ready")
        waited = time.monotonic() - t0
        v = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref=vid))
        role = "head" if v.head_node_id == node_id(agent) else "replica"
        t0 = time.monotonic()
        await agent.stop()          # SIGTERM: the agent stops its SPDK targets too
        agent.kill_targets()
        # the controller notices (as it would a pod's restart that takes longer than the node timeout)
        await until(cluster, lambda ns: ns[agent.name].state == "down", f"{agent.name} down", timeout=30)
        agent.start()
        await agent.wait_healthy()
        ns = await until(cluster, lambda ns: ns[agent.name].state == "up" and ns[agent.name].readiness.ready,
                         f"{agent.name} ready again")
        events.append(f"{agent.name} ({role}) restarted, ready again after {time.monotonic() - t0:.1f} s "
                      f"(waited {waited:.1f} s for every node to be ready first)")
        assert ns[agent.name].readiness.reason == ""
    await until(cluster, all_ready, "every node ready at the end")
    await asyncio.sleep(2)
    out = await stop_writer(g, cluster, events)
    longest = next(line for line in out.splitlines() if line.startswith("LONGEST_WRITE_MS"))
    print(f"longest write across the rolling restart: {longest.split()[1]} ms")
