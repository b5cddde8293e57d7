"""Replicated volumes through the controller: replica loss, rebuild, head failover and the fence."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import agent_pb2 as apb
from tests.support.cluster import Cluster
from tests.support.initiator import SpdkHost

MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:replicated"


async def wait_for(c: Cluster, name: str, pred, timeout: float = 90) -> pb.Volume:
    deadline = time.monotonic() + timeout
    while True:
        v = await c.volumes.GetVolume(pb.GetVolumeRequest(ref=name))
        if pred(v):
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"volume never reached the expected state: {v}")
        await asyncio.sleep(0.2)


def states(v: pb.Volume) -> dict[str, str]:
    return {r.node_name: r.state for r in v.replica_status}


async def allowlists(c: Cluster, v: pb.Volume) -> dict[str, list[str]]:
    """Host NQNs allowed on each replica's export, read from each node's SPDK."""
    out = {}
    for r in v.replica_status:
        a = c.agent_by_id(r.node_id)
        spdk = a.spdk()
        try:
            sub, = await spdk.nvmf_get_subsystems(f"nqn.2026-11.io.meshblock:replica:{r.replica_id}")
            out[a.name] = sorted(h["nqn"] for h in sub["hosts"])
        except Exception:  # noqa: BLE001 - a node that is down has no export
            out[a.name] = None
        finally:
            await spdk.client.close()
    return out


async def down(c: Cluster, name: str) -> None:
    a = next(x for x in c.agents if x.name == name)
    pids = [a.target_pid()] + ([a.target_pid("spdk-head.pid")] if (a.data_dir / "spdk-head.pid").exists() else [])
    await a.stop(signal.SIGKILL)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def up(c: Cluster, name: str) -> None:
    a = next(x for x in c.agents if x.name == name)
    a.start()
    await a.wait_healthy()


async def node_nqn(c: Cluster, agent) -> str:
    return (await c.nodes.GetNode(pb.GetNodeRequest(ref=agent.name))).host_nqn


async def wait_paths(c: Cluster, name: str, n: int, timeout: float = 60) -> pb.ConnectInfo:
    """Connect info once the volume is exported by ``n`` nodes (head and standbys)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref=name, host_nqn=HOST))
            if len(info.paths) == n:
                return info
        except grpc.aio.AioRpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION):
                raise
        assert time.monotonic() < deadline, f"the volume never had {n} paths"
        await asyncio.sleep(0.2)


async def test_replica_loss_rebuild_and_head_failover(cluster):
    c = cluster
    v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="r3", size_bytes=64 * MiB, replicas=3))
    assert v.state == "available" and sorted(states(v).values()) == ["online"] * 3
    head = c.agent_by_id(v.head_node_id)
    nqns = {a.name: await node_nqn(c, a) for a in c.agents}
    # every replica node exports the volume: the head optimized, the others as ANA-inaccessible standbys
    info = await wait_paths(c, "r3", 3)
    assert [(p.node_id == v.head_node_id, p.ana_state) for p in info.paths] == \
        [(True, "optimized"), (False, "inaccessible"), (False, "inaccessible")]
    assert info.paths[0].traddr == head.address and info.paths[0].trsvcid == "4421"
    assert {p.traddr for p in info.paths} == {a.address for a in c.agents}
    # the fence: the replica exports admit the head and the standbys, nothing else
    lists = await allowlists(c, v)
    assert all(hosts == sorted(nqns.values()) for hosts in lists.values()), lists

    # a replica node dies: degraded; it returns: rebuilt; available
    other = next(a for a in c.agents if a is not head)
    await down(c, other.name)
    v = await wait_for(c, "r3", lambda v: v.state == "degraded" and states(v)[other.name] == "offline")
    await up(c, other.name)
    v = await wait_for(c, "r3", lambda v: v.state == "available")
    assert sorted(states(v).values()) == ["online"] * 3

    # the head node dies: a standby is promoted, and the old head's NQN leaves every replica export
    await down(c, head.name)
    v = await wait_for(c, "r3", lambda v: v.head_node_id != head.data_dir.joinpath("node-id").read_text().strip()
                       and v.state == "degraded")
    new_head = c.agent_by_id(v.head_node_id)
    lists = await allowlists(c, v)
    assert lists[head.name] is None
    survivors = sorted(nqns[a.name] for a in c.agents if a is not head)
    assert all(hosts == survivors for n, hosts in lists.items() if n != head.name), lists
    info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="r3", host_nqn=HOST))
    assert (info.paths[0].traddr, info.paths[0].trsvcid, info.paths[0].ana_state) == \
        (new_head.address, "4421", "optimized")
    # the old head comes back: demoted to a standby first, then let in again
    await up(c, head.name)
    v = await wait_for(c, "r3", lambda v: v.state == "available")
    assert sorted(states(v).values()) == ["online"] * 3
    await wait_paths(c, "r3", 3)
    heads = (await head.stub.ListHeads(apb.ListHeadsRequest())).heads
    assert [(h.volume_id, h.standby, h.ana_state) for h in heads] == [(v.id, True, "inaccessible")]
    assert (await allowlists(c, v))[head.name] == sorted(nqns.values())


async def test_without_standby_heads_the_fence_admits_only_the_head(backend, short_tmp):
    c = Cluster(backend, short_tmp, nodes=3, controller_args=("--no-standby-heads",))
    try:
        await c.start()
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="r2", size_bytes=32 * MiB, replicas=2))
        head = c.agent_by_id(v.head_node_id)
        assert set(map(tuple, (await allowlists(c, v)).values())) == {(await node_nqn(c, head),)}
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="r2", host_nqn=HOST))
        assert [(p.traddr, p.ana_state) for p in info.paths] == [(head.address, "optimized")]
    finally:
        await c.stop()


@pytest.mark.spdk
async def test_data_survives_head_failover(real_only, short_tmp):
    if not real_only.install.has("spdk_dd"):
        pytest.skip("spdk_dd is not in this SPDK build")
    c = Cluster(real_only, short_tmp / "c", nodes=3)
    try:
        await c.start()
        await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="r3", size_bytes=64 * MiB, replicas=3))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="r3", host_nqn=HOST))
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="r3", host_nqn=HOST))
        host = SpdkHost(real_only.install, short_tmp / "host", HOST)
        data = os.urandom(16 * MiB)
        (short_tmp / "in.bin").write_bytes(data)
        p = info.paths[0]
        w = await host.write(short_tmp / "in.bin", info.subnqn, p.traddr, int(p.trsvcid))
        assert w.returncode == 0, w.output
        v = await c.volumes.GetVolume(pb.GetVolumeRequest(ref="r3"))
        await down(c, c.agent_by_id(v.head_node_id).name)
        v = await wait_for(c, "r3", lambda x: x.head_node_id != v.head_node_id and x.state == "degraded")
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="r3", host_nqn=HOST))
        p = info.paths[0]
        r = await host.read(short_tmp / "out.bin", 16 * MiB, info.subnqn, p.traddr, int(p.trsvcid))
        assert r.returncode == 0, r.output
        assert (short_tmp / "out.bin").read_bytes() == data
    finally:
        await c.stop()


async def test_drain_and_replica_count_changes(backend, short_tmp):
    c = Cluster(backend, short_tmp, nodes=4)
    try:
        await c.start()
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="r2", size_bytes=32 * MiB, replicas=2))
        single = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="one", size_bytes=16 * MiB))
        # raise to three, online: the new replica is rebuilt, then the volume is whole again
        await c.volumes.SetReplicas(pb.SetReplicasRequest(ref="r2", replicas=3))
        v = await wait_for(c, "r2", lambda v: v.state == "available" and len(v.replica_status) == 3)
        assert sorted(states(v).values()) == ["online"] * 3
        with pytest.raises(Exception) as ei:
            await c.volumes.SetReplicas(pb.SetReplicasRequest(ref="one", replicas=3))
        assert "single-replica" in str(ei.value)
        # drain a node that holds a replica of r2 but not its head
        head = v.head_node_id
        victim = next(r.node_name for r in v.replica_status if r.node_id != head)
        n = await c.nodes.DrainNode(pb.DrainNodeRequest(ref=victim))
        assert n.cordoned and n.draining and n.drain.replicas_total >= 1
        v = await wait_for(c, "r2", lambda v: v.state == "available" and victim not in states(v)
                           and len(v.replica_status) == 3)
        assert sorted(states(v).values()) == ["online"] * 3
        deadline = time.monotonic() + 30
        while True:
            n = await c.nodes.GetNode(pb.GetNodeRequest(ref=victim))
            if n.drain.done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        one = await c.volumes.GetVolume(pb.GetVolumeRequest(ref="one"))
        if one.replica_status[0].node_name == victim:   # a single-replica volume cannot move: it is named
            assert not n.drain.done and "one" in n.drain.message
        else:
            assert n.drain.done and n.drain.replicas_moved == n.drain.replicas_total
        # lower to two: one replica goes, the volume stays whole
        await c.volumes.SetReplicas(pb.SetReplicasRequest(ref="r2", replicas=2))
        v = await wait_for(c, "r2", lambda v: len(v.replica_status) == 2 and v.state == "available")
        assert single.state == "available"
    finally:
        await c.stop()
