"""The admin API end to end: controller + agents as processes, fake SPDK and real SPDK."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.support.cluster import Cluster
from tests.support.initiator import SpdkHost

GiB = 1 << 30
MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:api-test"


async def code_of(coro) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await coro
    return ei.value.code(), ei.value.details()


async def wait_state(c: Cluster, name: str, state: str, timeout: float = 30) -> pb.Volume:
    deadline = time.monotonic() + timeout
    while True:
        v = await c.volumes.GetVolume(pb.GetVolumeRequest(ref=name))
        if v.state == state or time.monotonic() > deadline:
            assert v.state == state, v
            return v
        await asyncio.sleep(0.1)


async def test_create_get_list_connect(cluster):
    v = await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=GiB, replicas=1,
                                                                  labels={"app": "db"}))
    assert v.state == "available" and v.size_bytes == GiB and v.nqn.endswith(v.id)
    assert len(v.replica_status) == 1 and v.replica_status[0].state == "online"
    again = await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=GiB, replicas=1,
                                                                      labels={"app": "db"}))
    assert again.id == v.id
    code, details = await code_of(cluster.volumes.CreateVolume(
        pb.CreateVolumeRequest(name="v1", size_bytes=2 * GiB, replicas=1)))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "different parameters" in details
    by_id = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref=v.id))
    assert by_id.name == "v1"
    # sizes round up to whole pool clusters
    odd = await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v2", size_bytes=5 * MiB))
    assert odd.size_bytes == 8 * MiB
    listed = await cluster.volumes.ListVolumes(pb.ListVolumesRequest(label_selector={"app": "db"}))
    assert [x.name for x in listed.volumes] == ["v1"]
    await cluster.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST))
    info = await cluster.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
    head = cluster.agent_by_id(v.replica_status[0].node_id)
    assert info.subnqn == v.nqn and info.host_nqn == HOST
    assert [(p.transport, p.traddr, p.trsvcid, p.ana_state) for p in info.paths] == [
        ("tcp", head.address, "4420", "optimized")]
    st = await cluster.cluster.GetClusterStatus(pb.GetClusterStatusRequest())
    assert st.nodes_up == 3 and st.volumes_by_state["available"] == 2 and st.provisioned_bytes == GiB + 8 * MiB


BAD_CREATES = [
    (pb.CreateVolumeRequest(name="", size_bytes=GiB), "name", grpc.StatusCode.INVALID_ARGUMENT),
    (pb.CreateVolumeRequest(name="bad name!", size_bytes=GiB), "name", grpc.StatusCode.INVALID_ARGUMENT),
    (pb.CreateVolumeRequest(name="x" * 200, size_bytes=GiB), "name", grpc.StatusCode.INVALID_ARGUMENT),
    (pb.CreateVolumeRequest(name="v", size_bytes=0), "size_bytes", grpc.StatusCode.INVALID_ARGUMENT),
    (pb.CreateVolumeRequest(name="v", size_bytes=(1 << 64) - 1), "size_bytes", grpc.StatusCode.INVALID_ARGUMENT),
    (pb.CreateVolumeRequest(name="v", size_bytes=GiB, replicas=9), "replicas", grpc.StatusCode.INVALID_ARGUMENT),
    (pb.CreateVolumeRequest(name="v", size_bytes=GiB, labels={"bad key!": "x"}), "labels",
     grpc.StatusCode.INVALID_ARGUMENT),
    # thin provisioning stops at the overcommit limit (4 x a 1 GiB pool per node)
    (pb.CreateVolumeRequest(name="v", size_bytes=100 * GiB), "", grpc.StatusCode.RESOURCE_EXHAUSTED),
]


async def test_bad_create_changes_nothing(cluster):
    for request_, field, code in BAD_CREATES:   # one cluster for all: each is refused before anything is made
        got, details = await code_of(cluster.volumes.CreateVolume(request_))
        assert (got, field in details) == (code, True), (request_, got, details)
        assert not (await cluster.volumes.ListVolumes(pb.ListVolumesRequest())).volumes, request_


async def test_bad_refs_and_nqns(cluster):
    await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB))
    for call in (cluster.volumes.GetVolume(pb.GetVolumeRequest(ref="nope")),
                 cluster.volumes.ResizeVolume(pb.ResizeVolumeRequest(ref="nope", size_bytes=GiB)),
                 cluster.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="nope", name="s")),
                 cluster.nodes.GetNode(pb.GetNodeRequest(ref="nope"))):
        assert (await code_of(call))[0] == grpc.StatusCode.NOT_FOUND
    code, details = await code_of(cluster.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn="host1")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "host_nqn" in details
    code, details = await code_of(cluster.volumes.ResizeVolume(pb.ResizeVolumeRequest(ref="v1", size_bytes=4 * MiB)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "only grow" in details
    code, details = await code_of(cluster.volumes.ListVolumes(pb.ListVolumesRequest(page_token="%%%")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in details
    v = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))
    assert v.size_bytes == 64 * MiB and not v.hosts
    assert (await cluster.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="nope"))).existed is False


async def test_publish_sets_the_export_allowlist(cluster):
    v = await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB))
    head = cluster.agent_by_id(v.replica_status[0].node_id)
    spdk = head.spdk()
    try:
        await cluster.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST))
        sub, = await spdk.nvmf_get_subsystems(v.nqn)
        assert [h["nqn"] for h in sub["hosts"]] == [HOST] and not sub["allow_any_host"]
        assert sub["namespaces"][0]["uuid"] == v.namespace_uuid
        await cluster.volumes.UnpublishVolume(pb.UnpublishVolumeRequest(ref="v1", host_nqn=HOST))
        sub, = await spdk.nvmf_get_subsystems(v.nqn)
        assert sub["hosts"] == []
    finally:
        await spdk.client.close()


async def test_snapshot_clone_resize_delete(cluster):
    await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB))
    s = await cluster.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="v1", name="s1"))
    assert s.state == "ready" and s.size_bytes == 64 * MiB
    assert (await cluster.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="v1", name="s1"))).id == s.id
    c = await cluster.volumes.CloneVolume(pb.CloneVolumeRequest(name="c1", source_snapshot_ref="s1",
                                                                size_bytes=128 * MiB))
    assert c.state == "available" and c.size_bytes == 128 * MiB and c.source_snapshot_id == s.id
    src = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))
    assert c.replica_status[0].node_id == src.replica_status[0].node_id  # clones share the snapshot's node
    c2 = await cluster.volumes.CloneVolume(pb.CloneVolumeRequest(name="c2", source_volume_ref="v1"))
    assert c2.state == "available" and c2.size_bytes == 64 * MiB
    listed = await cluster.volumes.ListSnapshots(pb.ListSnapshotsRequest(volume_ref="v1"))
    assert [x.name for x in listed.snapshots] == ["s1"]   # the clone's internal source snapshot is not listed
    code, details = await code_of(cluster.volumes.DeleteSnapshot(pb.DeleteSnapshotRequest(ref="s1")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "c1" in details
    code, _ = await code_of(cluster.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="v1")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    r = await cluster.volumes.ResizeVolume(pb.ResizeVolumeRequest(ref="c1", size_bytes=256 * MiB))
    assert r.size_bytes == 256 * MiB and r.state == "available"
    for name in ("c1", "c2"):
        assert (await cluster.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref=name))).existed
    assert (await cluster.volumes.DeleteSnapshot(pb.DeleteSnapshotRequest(ref="s1"))).existed
    assert (await cluster.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="v1"))).existed
    assert not (await cluster.volumes.ListVolumes(pb.ListVolumesRequest())).volumes
    # nothing left behind on any node
    for a in cluster.agents:
        spdk = a.spdk()
        try:
            names = [lv["name"] for lv in await spdk.bdev_lvol_get_lvols()]
            assert names == [], (a.name, names)
        finally:
            await spdk.client.close()


async def test_pagination_and_cordon(cluster):
    nodes = (await cluster.nodes.ListNodes(pb.ListNodesRequest())).nodes
    assert [n.name for n in nodes] == ["node-1", "node-2", "node-3"] and all(n.state == "up" for n in nodes)
    await cluster.nodes.CordonNode(pb.CordonNodeRequest(ref="node-1"))
    await cluster.nodes.CordonNode(pb.CordonNodeRequest(ref="node-2"))
    for i in range(12):
        v = await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name=f"vol-{i:02d}", size_bytes=8 * MiB))
        assert v.replica_status[0].node_name == "node-3"
    await cluster.nodes.CordonNode(pb.CordonNodeRequest(ref="node-3"))
    code, details = await code_of(cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="x", size_bytes=MiB)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "node-1: cordoned" in details
    await cluster.nodes.UncordonNode(pb.UncordonNodeRequest(ref="node-1"))
    names, token = [], ""
    while True:
        page = await cluster.volumes.ListVolumes(pb.ListVolumesRequest(page_size=5, page_token=token))
        assert len(page.volumes) <= 5
        names += [v.name for v in page.volumes]
        token = page.next_page_token
        if not token:
            break
    assert names == [f"vol-{i:02d}" for i in range(12)]
    n3 = await cluster.nodes.GetNode(pb.GetNodeRequest(ref="node-3"))
    assert n3.cordoned and n3.replica_count == 12 and n3.provisioned_bytes == 12 * 8 * MiB


async def test_node_loss_and_return(cluster):
    v = await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB))
    await cluster.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST))
    agent = cluster.agent_by_id(v.replica_status[0].node_id)
    target = agent.target_pid()
    await agent.stop(signal.SIGKILL)
    os.kill(target, signal.SIGKILL)
    gone = await wait_state(cluster, "v1", "faulted")
    assert gone.replica_status[0].state == "offline"
    node = await cluster.nodes.GetNode(pb.GetNodeRequest(ref=agent.name))
    assert node.state == "down"
    agent.start()
    await agent.wait_healthy()
    back = await wait_state(cluster, "v1", "available")
    assert back.replica_status[0].state == "online"
    # the new target got the export back, with the allowlist, from the controller
    spdk = agent.spdk()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                sub, = await spdk.nvmf_get_subsystems(v.nqn)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert [h["nqn"] for h in sub["hosts"]] == [HOST]
    finally:
        await spdk.client.close()


async def test_controller_restart_keeps_state(cluster):
    await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB))
    await cluster.controller.stop(signal.SIGKILL)
    cluster.controller.start()
    await cluster.controller.wait_nodes(3)
    v = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))
    assert v.state == "available"
    v2 = await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v2", size_bytes=64 * MiB))
    assert v2.state == "available"


@pytest.mark.spdk
async def test_a_host_writes_and_reads_a_volume(real_only, tmp_path):
    if not real_only.install.has("spdk_dd"):
        pytest.skip("spdk_dd is not in this SPDK build")
    c = Cluster(real_only, tmp_path / "c", nodes=2)
    try:
        await c.start()
        await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=GiB, replicas=1))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST))
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
        p = info.paths[0]
        host = SpdkHost(real_only.install, tmp_path / "host", HOST)
        data = os.urandom(8 * MiB)
        (tmp_path / "in.bin").write_bytes(data)
        w = await host.write(tmp_path / "in.bin", info.subnqn, p.traddr, int(p.trsvcid))
        assert w.returncode == 0, w.output
        r = await host.read(tmp_path / "out.bin", 8 * MiB, info.subnqn, p.traddr, int(p.trsvcid))
        assert r.returncode == 0, r.output
        assert (tmp_path / "out.bin").read_bytes() == data
        stranger = SpdkHost(real_only.install, tmp_path / "stranger", "nqn.2026-11.io.meshblock:host:other")
        assert (await stranger.read(tmp_path / "x.bin", MiB, info.subnqn, p.traddr, int(p.trsvcid))).returncode != 0
    finally:
        await c.stop()


async def test_concurrent_creates_all_become_available(cluster):
    """Creates racing a reconcile pass: none may be taken for a deleted volume's leftovers."""
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> pb.Volume:
        async with sem:
            return await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name=f"c{i:03d}", size_bytes=8 * MiB))

    made = await asyncio.gather(*(one(i) for i in range(120)))
    assert [v.state for v in made] == ["available"] * 120
    await asyncio.sleep(3)   # a few more passes
    vols = (await cluster.volumes.ListVolumes(pb.ListVolumesRequest(page_size=1000))).volumes
    assert len(vols) == 120 and all(v.state == "available" and len(v.replica_status) == 1 for v in vols)
