"""Erasure-coded volumes through the controller: layout, shard loss, replacement and rebuild."""

from __future__ import annotations

import os

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.control.test_replicated import down, states, up, wait_for
from tests.support.backends import fake_backend
from tests.support.cluster import Cluster
from tests.support.initiator import SpdkHost

MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:erasure"


def ec(k: int, m: int) -> pb.ErasureCoding:
    return pb.ErasureCoding(data=k, parity=m)


def shards(v: pb.Volume) -> dict[int, tuple[str, str]]:
    """Position → (node, state) of the shards that are not on their way out."""
    return {r.shard: (r.node_name, r.state) for r in v.replica_status if r.state != "deleting"}


async def head_raid(c: Cluster, v: pb.Volume) -> dict:
    head = c.agent_by_id(v.head_node_id)
    spdk = head.spdk("spdk-head.sock")
    try:
        (raid,) = [r for r in await spdk.bdev_raid_get_bdevs("all") if r["name"] == "vol-" + v.id]
        return raid
    finally:
        await spdk.client.close()


async def head_subsystem(c: Cluster, v: pb.Volume) -> dict:
    spdk = c.agent_by_id(v.head_node_id).spdk("spdk-head.sock")
    try:
        (sub,) = await spdk.nvmf_get_subsystems(v.nqn)
        return sub
    finally:
        await spdk.client.close()


async def code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    return ei.value.code(), ei.value.details()


def cluster4(backend, root) -> Cluster:
    return Cluster(backend, root, nodes=4, controller_args=("--replace-after", "2", "--no-standby-heads"))


@pytest.fixture
async def fake4(tmp_path_factory, short_tmp):
    """Scenarios whose real-SPDK run is part of test_data_survives_shard_loss_and_rebuild (or that only
    exercise the API) run on the fake alone, to keep the suite short."""
    c = cluster4(fake_backend(tmp_path_factory.mktemp("fakespdk-registry")), short_tmp)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


@pytest.fixture
async def any4(backend, short_tmp):
    c = cluster4(backend, short_tmp)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


async def test_shard_loss_is_served_degraded_then_replaced_and_rebuilt(fake4):
    await shard_loss_scenario(fake4)


async def check_layout(c: Cluster, v: pb.Volume) -> None:
    """Three shards on three nodes, one per position, under a raid5f of 2 KiB strips on the head."""
    assert sorted(shards(v)) == [0, 1, 2] and len({n for n, _ in shards(v).values()}) == 3
    raid = await head_raid(c, v)
    assert (raid["raid_level"], raid["strip_size_kb"], raid["state"]) == ("raid5f", 2, "online")
    # the raid's members are the shards in position order
    by_shard = {r.shard: r.replica_id for r in v.replica_status}
    assert [b["name"] for b in raid["base_bdevs_list"]] == [f"att-leg-{by_shard[i]}n1" for i in range(3)]
    # nodes report their pools' block size (shards need 512-byte blocks; raids one size for all members)
    nodes = (await c.nodes.ListNodes(pb.ListNodesRequest())).nodes
    assert [n.pool_block_size for n in nodes] == [512] * len(nodes)
    # no deallocate range limit: Linux would take it for discard support, which a raid5f lacks
    assert (await head_subsystem(c, v))["dmrsl"] == 0


async def shard_loss_scenario(c: Cluster) -> None:
    v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="e21", size_bytes=60 * MiB, erasure=ec(2, 1)))
    # rounded up to whole 4 MiB clusters on each data shard; three shards on three nodes, one per position
    assert (v.state, v.size_bytes, v.replicas, v.erasure.data, v.erasure.parity) == ("available", 64 * MiB, 3, 2, 1)
    await check_layout(c, v)

    # a shard's node dies: the volume serves degraded; after --replace-after a new shard takes the same
    # position on the spare node, is rebuilt, and the volume is whole again
    head = c.agent_by_id(v.head_node_id)
    spare = next(a.name for a in c.agents if a.name not in states(v))
    victim_shard, (victim, _) = next((s, x) for s, x in shards(v).items() if x[0] != head.name)
    await down(c, victim)
    v = await wait_for(c, "e21", lambda v: v.state == "degraded" and shards(v)[victim_shard] == (victim, "offline"))
    v = await wait_for(c, "e21", lambda v: v.state == "available" and shards(v)[victim_shard][0] == spare)
    assert shards(v)[victim_shard] == (spare, "online")
    assert states(v)[victim] == "deleting"     # removed from its node once the node is back
    assert sorted(shards(v)) == [0, 1, 2] and sorted(s for _, s in shards(v).values()) == ["online"] * 3
    raid = await head_raid(c, v)
    by_shard = {r.shard: r.replica_id for r in v.replica_status if r.state != "deleting"}
    assert [b["name"] for b in raid["base_bdevs_list"]] == [f"att-leg-{by_shard[i]}n1" for i in range(3)]
    assert raid["state"] == "online" and all(b["is_configured"] for b in raid["base_bdevs_list"])
    await up(c, victim)
    v = await wait_for(c, "e21", lambda v: len(v.replica_status) == 3 and v.state == "available")
    assert victim not in states(v)


async def test_four_plus_one_takes_five_nodes(backend, short_tmp):
    c = Cluster(backend, short_tmp, nodes=5, controller_args=("--no-standby-heads",))
    try:
        await c.start()
        await c.nodes.CordonNode(pb.CordonNodeRequest(ref=c.agents[4].name))
        got, details = await code(c.volumes.CreateVolume(pb.CreateVolumeRequest(name="e41", size_bytes=16 * MiB,
                                                                                 erasure=ec(4, 1))))
        assert got == grpc.StatusCode.RESOURCE_EXHAUSTED and "cordoned" in details, details
        await c.nodes.UncordonNode(pb.UncordonNodeRequest(ref=c.agents[4].name))
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="e41", size_bytes=10 * MiB, erasure=ec(4, 1)))
        assert (v.state, v.size_bytes, v.replicas) == ("available", 16 * MiB, 5)
        assert sorted(shards(v)) == [0, 1, 2, 3, 4] and len(states(v)) == 5
        raid = await head_raid(c, v)
        assert (raid["raid_level"], raid["strip_size_kb"], raid["num_base_bdevs"]) == ("raid5f", 1, 5)
    finally:
        await c.stop()


async def test_erasure_validation(fake4):
    c = fake4
    cases = [
        (pb.CreateVolumeRequest(name="x", size_bytes=16 * MiB, erasure=ec(4, 2)), "one"),
        (pb.CreateVolumeRequest(name="x", size_bytes=16 * MiB, erasure=ec(3, 1)), "not a supported layout"),
        (pb.CreateVolumeRequest(name="x", size_bytes=16 * MiB, erasure=ec(2, 1), replicas=3), "replicas"),
        (pb.CreateVolumeRequest(name="x", size_bytes=16 * MiB, erasure=ec(2, 1), protocol="iscsi"), "NVMe/TCP"),
    ]
    for req, words in cases:
        got, details = await code(c.volumes.CreateVolume(req))
        assert got == grpc.StatusCode.INVALID_ARGUMENT and words in details, (req, details)
    await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="e", size_bytes=16 * MiB, erasure=ec(2, 1)))
    for call in (c.volumes.ResizeVolume(pb.ResizeVolumeRequest(ref="e", size_bytes=32 * MiB)),
                 c.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="e", name="s")),
                 c.volumes.SetReplicas(pb.SetReplicasRequest(ref="e", replicas=4))):
        got, details = await code(call)
        assert got == grpc.StatusCode.FAILED_PRECONDITION and "erasure-coded (2+1)" in details, details
    # the same request again is the same volume; another layout under the name is refused
    again = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="e", size_bytes=16 * MiB, erasure=ec(2, 1)))
    assert again.erasure.data == 2
    got, details = await code(c.volumes.CreateVolume(pb.CreateVolumeRequest(name="e", size_bytes=16 * MiB,
                                                                             erasure=ec(4, 1))))
    assert got == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.spdk
async def test_data_survives_shard_loss_and_rebuild(real_only, short_tmp):
    """Bytes written through the head read back degraded (reconstructed from parity), and again after
    the lost shard was rebuilt elsewhere and another original shard is lost."""
    if not real_only.install.has("spdk_dd"):
        pytest.skip("spdk_dd is not in this SPDK build")
    c = Cluster(real_only, short_tmp / "c", nodes=4, controller_args=("--replace-after", "2",
                                                                      "--no-standby-heads"))
    try:
        await c.start()
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="e", size_bytes=32 * MiB, erasure=ec(2, 1)))
        await check_layout(c, v)
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="e", host_nqn=HOST))
        host = SpdkHost(real_only.install, short_tmp / "host", HOST)
        data = os.urandom(32 * MiB)
        (short_tmp / "in.bin").write_bytes(data)

        async def read_back(name: str) -> None:
            info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="e", host_nqn=HOST))
            p = info.paths[0]
            out = short_tmp / name
            r = await host.read(out, len(data), info.subnqn, p.traddr, int(p.trsvcid))
            assert r.returncode == 0, r.output
            assert out.read_bytes() == data

        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="e", host_nqn=HOST))
        p = info.paths[0]
        w = await host.write(short_tmp / "in.bin", info.subnqn, p.traddr, int(p.trsvcid))
        assert w.returncode == 0, w.output
        head = c.agent_by_id(v.head_node_id).name
        first = next(n for n, _ in shards(v).values() if n != head)
        await down(c, first)
        await wait_for(c, "e", lambda v: v.state == "degraded")
        await read_back("degraded.bin")
        v = await wait_for(c, "e", lambda v: v.state == "available" and first not in
                           {n for n, _ in shards(v).values()}, timeout=120)
        # the replacement holds the lost shard's position on the spare node, rebuilt into the raid
        raid = await head_raid(c, v)
        by_shard = {r.shard: r.replica_id for r in v.replica_status if r.state != "deleting"}
        assert [b["name"] for b in raid["base_bdevs_list"]] == [f"att-leg-{by_shard[i]}n1" for i in range(3)]
        assert all(b["is_configured"] for b in raid["base_bdevs_list"])
        # the rebuilt shard now carries its part: lose another original data-holding node and read again
        second = next(n for n, _ in shards(v).values() if n not in (head, first) and
                      n in {a.name for a in c.agents[:3]})
        await down(c, second)
        await wait_for(c, "e", lambda v: v.state == "degraded")
        await read_back("rebuilt.bin")
    finally:
        await c.stop()


async def test_head_failover_moves_the_raid5f_to_a_standby(backend, short_tmp):
    """With standby heads (the controller's default) every shard node exports the volume; when the
    head's node dies a standby takes over with the surviving shards and the lost one is replaced."""
    c = Cluster(backend, short_tmp, nodes=4, controller_args=("--replace-after", "2"))
    try:
        await c.start()
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="e", size_bytes=16 * MiB, erasure=ec(2, 1)))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="e", host_nqn=HOST))
        old = c.agent_by_id(v.head_node_id)
        spare = next(a.name for a in c.agents if a.name not in states(v))
        await down(c, old.name)
        v = await wait_for(c, "e", lambda v: v.head_node_id and c.agent_by_id(v.head_node_id) is not old
                           and v.state == "degraded")
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="e", host_nqn=HOST))
        assert info.paths[0].ana_state == "optimized" and info.paths[0].traddr == c.agent_by_id(v.head_node_id).address
        v = await wait_for(c, "e", lambda v: v.state == "available" and spare in {n for n, _ in shards(v).values()})
        raid = await head_raid(c, v)
        assert raid["raid_level"] == "raid5f" and all(b["is_configured"] for b in raid["base_bdevs_list"])
    finally:
        await c.stop()


async def test_drain_moves_a_shard_into_its_position(any4):
    """A raid5f has no spare position: the draining node's shard leaves once its replacement is placed
    and the others are in sync, and the replacement is rebuilt into the same position."""
    c = any4
    v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="e", size_bytes=16 * MiB, erasure=ec(2, 1)))
    head = c.agent_by_id(v.head_node_id).name
    pos, (victim, _) = next((s, x) for s, x in shards(v).items() if x[0] != head)
    spare = next(a.name for a in c.agents if a.name not in states(v))
    await c.nodes.DrainNode(pb.DrainNodeRequest(ref=victim))
    v = await wait_for(c, "e", lambda v: v.state == "available" and victim not in states(v))
    assert shards(v)[pos] == (spare, "online") and len(v.replica_status) == 3
    raid = await head_raid(c, v)
    assert raid["state"] == "online" and all(b["is_configured"] for b in raid["base_bdevs_list"])
