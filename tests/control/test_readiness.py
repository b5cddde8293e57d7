"""Node readiness as the controller reports it (NodeService, and the agents' /readyz through their
heartbeats): a node is ready when it could go down now without a volume losing its data path."""

from __future__ import annotations

import asyncio
import time

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.control.test_replicated import down, up, wait_for
from tests.support.cluster import Cluster

MiB = 1 << 20


async def readiness(c: Cluster) -> dict[str, tuple[bool, str]]:
    return {n.name: (n.readiness.ready, n.readiness.reason)
            for n in (await c.nodes.ListNodes(pb.ListNodesRequest())).nodes}


async def until(c: Cluster, pred, what: str, timeout: float = 90) -> dict[str, tuple[bool, str]]:
    deadline = time.monotonic() + timeout
    while True:
        got = await readiness(c)
        if pred(got):
            return got
        assert time.monotonic() < deadline, f"never {what}: {got}"
        await asyncio.sleep(0.2)


async def test_readiness_follows_the_volumes_in_sync_replicas_and_heads(cluster):
    c = cluster
    await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v", size_bytes=32 * MiB, replicas=3))
    v = await wait_for(c, "v", lambda v: v.state == "available")
    names = {r.node_id: r.node_name for r in v.replica_status}
    head = names[v.head_node_id]
    a, b = sorted(n for n in names.values() if n != head)
    # whole, with standby heads on both other nodes: any one node could go
    await until(c, lambda r: all(ok for ok, _ in r.values()), "every node ready")
    # one replica node down: the others still could go one at a time (each keeps the other in sync)
    await down(c, a)
    got = await until(c, lambda r: not r[a][0], f"{a} not ready")
    assert got[a] == (False, "the controller holds the node down (no heartbeat within the node timeout)")
    await wait_for(c, "v", lambda v: v.state == "degraded")
    got = await until(c, lambda r: r[head][0] and r[b][0], "the other two ready")
    # a second one down: the head holds the last in-sync replica and has no standby left
    await down(c, b)
    await wait_for(c, "v", lambda v: sum(r.state == "online" for r in v.replica_status) == 1)
    got = await until(c, lambda r: not r[head][0], f"{head} not ready")
    assert got[head] == (False, "volume v would lose its last in-sync replica; "
                                "the node heads volume v and no standby head could take over")
    # both back: ready again once their replicas are rebuilt
    await up(c, a)
    await up(c, b)
    await wait_for(c, "v", lambda v: v.state == "available")
    await until(c, lambda r: all(ok for ok, _ in r.values()), "every node ready again")
    # GetNode answers the same
    n = await c.nodes.GetNode(pb.GetNodeRequest(ref=head))
    assert n.readiness.ready and n.readiness.reason == ""
