"""The head lease: a head whose agent cannot reach the controller stops serving (ANA inaccessible)
before the controller could promote another node, and serves again once the controller answers."""

from __future__ import annotations

import asyncio
import signal
import time

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import agent_pb2 as apb
from tests.control.test_replicated import wait_for, wait_paths

MiB = 1 << 20


async def ana_state(agent, nqn: str) -> str:
    """The ANA state of the head's listener, read from the node's SPDK head target."""
    spdk = agent.spdk("spdk-head.sock")
    try:
        listeners = await spdk.client.call("nvmf_subsystem_get_listeners", {"nqn": nqn})
        return listeners[0]["ana_states"][0]["ana_state"]
    finally:
        await spdk.client.close()


async def wait_ana(agent, nqn: str, want: str, timeout: float) -> float:
    t0 = time.monotonic()
    while (state := await ana_state(agent, nqn)) != want:
        assert time.monotonic() - t0 < timeout, f"the head stayed {state} (wanted {want})"
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def test_a_head_without_the_controller_stops_serving_until_it_answers_again(cluster):
    c = cluster
    v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="leased", size_bytes=32 * MiB, replicas=3))
    await wait_paths(c, "leased", 3)
    head = c.agent_by_id(v.head_node_id)
    assert await ana_state(head, v.nqn) == "optimized"

    # the controller goes away: within the lease (2 s, one heartbeat less than the 3 s node
    # timeout) the head stops serving; the standbys stay inaccessible
    await c.controller.stop(signal.SIGKILL)
    stopped_after = await wait_ana(head, v.nqn, "inaccessible", timeout=4.0)
    assert stopped_after < 3.0, stopped_after
    for a in c.agents:
        if a is not head:
            assert await ana_state(a, v.nqn) == "inaccessible", a.name
    assert "stopped serving 1 head(s)" in head.log.read_text()

    # the controller returns: the same node heads the volume again and serves it, nothing rebuilt
    c.controller.start()
    await c.controller.wait_nodes(3)
    await wait_ana(head, v.nqn, "optimized", timeout=30.0)
    v2 = await wait_for(c, "leased", lambda v: v.state == "available")
    assert v2.head_node_id == v.head_node_id
    assert sorted(r.state for r in v2.replica_status) == ["online"] * 3
    heads = (await head.stub.ListHeads(apb.ListHeadsRequest())).heads
    assert [(h.volume_id, h.standby, h.ana_state) for h in heads] == [(v.id, False, "optimized")]
