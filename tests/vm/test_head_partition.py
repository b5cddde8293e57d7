"""A network partition of a volume's head node, seen from a real kernel.

Each storage node (agent and both SPDK targets) runs in a network namespace of its own on the test
bed's bridge, so one node can be cut off from everything (controller, other nodes, the guest) by
taking its link down while its processes keep running; registration, heartbeats and the
controller's calls to the agents go over TCP with mutual TLS, as across machines. A guest with
native NVMe multipath writes to a 3-replica volume through the CSI plugin with a verifying writer;
the head node is cut off, a standby is promoted, then the network comes back. The cut is either
whole (the node's link down: hosts lose it too) or partial (the node loses the controller and the
other nodes but still reaches the guest: a write in flight then waits on replicas it cannot reach,
and must not come back acknowledged with the head's own replica alone). The cut-off head must stop
serving by itself (its lease runs out before the controller promotes another node), must be a
standby when it returns, and must never have acknowledged a write another head then lost: every
block holds its last acknowledged write and the writer sees no error.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import agent_pb2 as apb
from tests.control.test_head_lease import ana_state
from tests.support.agents import AgentProc
from tests.support.cluster import Cluster
from tests.support.pki import make_pki
from tests.vm.test_csi_node import (ADMIN_PORT, clean_guest, guest_pythonpath, real_backend_or_skip,
                                    start_plugin)
from tests.vm.test_head_failover import node_id, online, start_writer, stop_writer, volume

pytestmark = [pytest.mark.vm, pytest.mark.spdk]
AGENT_PORT = 7444


@pytest.fixture
async def partitioned(testbed, short_tmp):
    backend = real_backend_or_skip()
    pythonpath = guest_pythonpath()
    addr = testbed.host_address
    peers = []
    g = testbed.guest("a")
    try:
        peers = [testbed.netns.add_peer() for _ in range(3)]
        (short_tmp / "pki").mkdir()
        pki = make_pki(short_tmp / "pki", ips=(addr, *(p.address for p in peers)))
        tls = ("--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"))
        cluster = Cluster(backend, short_tmp / "c", nodes=0, prefix=tuple(testbed.netns_argv()),
                          controller_listen=f"{addr}:{ADMIN_PORT}",
                          controller_args=(*tls, "--tls-client-ca", str(pki / "ca.pem")))
        for i, peer in enumerate(peers, 1):
            a = AgentProc(backend, short_tmp / "c" / f"node-{i}", f"node-{i}", pool_size="2GiB",
                          prefix=tuple(peer.argv()), address=peer.address, controller=f"{addr}:{ADMIN_PORT}",
                          labels={"zone": f"z{i}"})
            a.argv += ["--listen", f"{a.listen},{peer.address}:{AGENT_PORT}",
                       "--advertise", f"{peer.address}:{AGENT_PORT}", *tls, "--tls-ca", str(pki / "ca.pem")]
            cluster.agents.append(a)
        await cluster.start()
        await start_plugin(g, pki, addr, pythonpath)
        yield g, cluster, {a.name: p for a, p in zip(cluster.agents, peers)}
    finally:
        clean_guest(g)
        for p in peers:
            p.heal()
        if "cluster" in locals():
            await cluster.stop()
        for p in peers:
            testbed.netns.remove_peer(p)


async def head_hosts(agent, nqn: str) -> list[str]:
    """The hosts the head's subsystem admits, read over the node's RPC socket (not the network)."""
    spdk = agent.spdk("spdk-head.sock")
    try:
        sub, = await spdk.nvmf_get_subsystems(nqn)
        return [h["nqn"] for h in sub["hosts"]]
    finally:
        await spdk.client.close()


@pytest.mark.parametrize("cut", ["whole", "partial"])
async def test_head_partition_under_a_verifying_writer(partitioned, cut, testbed):
    g, cluster, peers = partitioned
    pythonpath = guest_pythonpath()
    vid = await start_writer(g, pythonpath)
    await asyncio.sleep(3)
    v = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref=vid))
    head = cluster.agent_by_id(v.head_node_id)
    events = []

    # the head node loses the network (or all of it but the guest); its processes go on
    assert await head_hosts(head, v.nqn)
    t0 = time.monotonic()
    others = [testbed.host_address] + [p.address for name, p in peers.items() if name != head.name]
    peers[head.name].cut(None if cut == "whole" else others)
    stopped = None
    while stopped is None and time.monotonic() - t0 < 10:
        if not await head_hosts(head, v.nqn):
            stopped = time.monotonic() - t0
        await asyncio.sleep(0.05)
    assert stopped is not None, "the cut-off head kept serving"
    v = await volume(cluster, vid, lambda v: v.head_node_id not in ("", node_id(head)), "a new head", timeout=60)
    moved = time.monotonic() - t0
    # the cut-off head stopped before any other node was promoted
    assert stopped < moved, (stopped, moved)
    events.append(f"head node cut off ({cut}): it stopped serving after {stopped:.1f} s, head moved after "
                  f"{moved:.1f} s")
    await asyncio.sleep(5)   # the writer goes on through the new head while the old one is still cut off
    deadline = time.monotonic() + 30      # SPDK changes the state once the I/O in flight is done
    while await ana_state(head, v.nqn) != "inaccessible":
        assert time.monotonic() < deadline, "the cut-off head never turned inaccessible"
        await asyncio.sleep(0.2)

    # the link comes back: the old head is a standby, its replica is rebuilt
    t1 = time.monotonic()
    peers[head.name].heal()
    v = await volume(cluster, vid, lambda v: v.state == "available" and online(v) == 3, "three replicas again",
                     timeout=180)
    events.append(f"link back: three in-sync replicas after {time.monotonic() - t1:.1f} s")
    assert v.head_node_id != node_id(head)
    heads = (await head.stub.ListHeads(apb.ListHeadsRequest())).heads
    assert [(h.volume_id, h.standby, h.ana_state) for h in heads] == [(vid, True, "inaccessible")]
    await asyncio.sleep(3)
    await stop_writer(g, cluster, events)
    assert "stopped serving 1 head(s)" in head.log.read_text()
