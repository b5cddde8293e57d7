"""Node agent scenarios over its real gRPC API, against the fake target and against real SPDK."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import grpc
import pytest

from meshblock import nqn
from meshblock.proto.meshblock.v1 import agent_pb2 as pb
from meshblock.spdk import SpdkNotFound
from meshblock.spdk.supervisor import pid_alive
from tests.support.agents import AgentProc

MiB = 1 << 20
HOST_A = "nqn.2026-11.io.meshblock:node:" + "a" * 8
HOST_B = "nqn.2026-11.io.meshblock:node:" + "b" * 8


@pytest.fixture
async def agent(backend, tmp_path):
    a = AgentProc(backend, tmp_path / "node-1", "node-1")
    a.start()
    try:
        await a.wait_healthy()
        yield a
    finally:
        await a.stop()
        a.kill_targets()


def rid() -> str:
    return str(uuid.uuid4())


async def expect_code(code: grpc.StatusCode, coro) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await coro
    assert ei.value.code() == code, ei.value.details()
    return ei.value.details()


async def test_node_info_and_pool(agent):
    info = await agent.stub.GetNodeInfo(pb.GetNodeInfoRequest())
    assert info.name == "node-1" and info.nvmf_address == agent.address and info.nvmf_port == 4420
    assert info.host_nqn == nqn("node", info.node_id)
    assert info.spdk_version
    pool = await agent.stub.GetPool(pb.GetPoolRequest())
    assert pool.name == "meshblock" and pool.cluster_size == 4 * MiB
    # 256 MiB file minus lvstore metadata
    assert 200 * MiB < pool.total_bytes <= 256 * MiB and pool.free_bytes == pool.total_bytes
    assert pool.replica_count == 0


async def test_create_replica_is_idempotent_and_validated(agent):
    r = rid()
    a = await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=64 * MiB))
    b = await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=64 * MiB))
    assert a == b and a.size_bytes == 64 * MiB and a.thin and a.bdev_name == f"meshblock/replica-{r}"
    await expect_code(grpc.StatusCode.ALREADY_EXISTS,
                      agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=128 * MiB)))
    detail = await expect_code(grpc.StatusCode.INVALID_ARGUMENT,
                               agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id="x", size_bytes=MiB)))
    assert "replica_id" in detail
    detail = await expect_code(grpc.StatusCode.INVALID_ARGUMENT,
                               agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=rid(), size_bytes=1000)))
    assert "size_bytes" in detail
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT,
                      agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=rid(), size_bytes=0)))
    # a thick replica larger than the pool does not fit; a thin one may overcommit
    await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, agent.stub.CreateReplica(
        pb.CreateReplicaRequest(replica_id=rid(), size_bytes=1024 * MiB, thick=True)))
    big = await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=rid(), size_bytes=1024 * MiB))
    assert big.thin and big.allocated_bytes == 0
    listed = await agent.stub.ListReplicas(pb.ListReplicasRequest())
    assert sorted(x.replica_id for x in listed.replicas) == sorted([r, big.replica_id])
    # nothing half-made by the refused calls
    pool = await agent.stub.GetPool(pb.GetPoolRequest())
    assert pool.replica_count == 2


async def test_sizes_round_up_to_clusters_and_grow_only(agent):
    r = rid()
    rep = await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=5 * MiB))
    assert rep.size_bytes == 8 * MiB
    rep = await agent.stub.ResizeReplica(pb.ResizeReplicaRequest(replica_id=r, size_bytes=20 * MiB))
    assert rep.size_bytes == 20 * MiB
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION,
                      agent.stub.ResizeReplica(pb.ResizeReplicaRequest(replica_id=r, size_bytes=8 * MiB)))
    await expect_code(grpc.StatusCode.NOT_FOUND,
                      agent.stub.ResizeReplica(pb.ResizeReplicaRequest(replica_id=rid(), size_bytes=8 * MiB)))


async def test_export_allowlist_is_exact(agent):
    r = rid()
    await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=16 * MiB))
    e = await agent.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=r, allowed_host_nqns=[HOST_A]))
    assert e.nqn == nqn("replica", r) and e.address == agent.address and e.port == 4420
    assert list(e.allowed_host_nqns) == [HOST_A] and e.namespace_uuid == r
    spdk = agent.spdk()
    sub, = await spdk.nvmf_get_subsystems(e.nqn)
    assert not sub["allow_any_host"] and [h["nqn"] for h in sub["hosts"]] == [HOST_A]
    rep = await agent.stub.GetReplica(pb.GetReplicaRequest(replica_id=r))
    assert [ns["bdev_name"] for ns in sub["namespaces"]] == [rep.lvol_uuid]
    assert sub["namespaces"][0]["uuid"] == r
    assert [(a["traddr"], a["trsvcid"]) for a in sub["listen_addresses"]] == [(agent.address, "4420")]
    # re-export with another host: the old one is fenced out
    await agent.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=r, allowed_host_nqns=[HOST_B]))
    sub, = await spdk.nvmf_get_subsystems(e.nqn)
    assert [h["nqn"] for h in sub["hosts"]] == [HOST_B]
    got = await agent.stub.GetReplica(pb.GetReplicaRequest(replica_id=r))
    assert got.export.nqn == e.nqn and list(got.export.allowed_host_nqns) == [HOST_B]
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, agent.stub.ExportReplica(
        pb.ExportReplicaRequest(replica_id=r, allowed_host_nqns=["not-an-nqn"])))
    assert (await agent.stub.UnexportReplica(pb.UnexportReplicaRequest(replica_id=r))).existed
    assert not (await agent.stub.UnexportReplica(pb.UnexportReplicaRequest(replica_id=r))).existed
    with pytest.raises(SpdkNotFound):
        await spdk.nvmf_get_subsystems(e.nqn)
    await spdk.client.close()


async def test_snapshot_clone_delete(agent):
    r, s, c = rid(), rid(), rid()
    await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=16 * MiB))
    snap = await agent.stub.CreateSnapshot(pb.CreateReplicaSnapshotRequest(replica_id=r, snapshot_id=s))
    again = await agent.stub.CreateSnapshot(pb.CreateReplicaSnapshotRequest(replica_id=r, snapshot_id=s))
    assert snap.snapshot_id == again.snapshot_id == s and snap.size_bytes == 16 * MiB
    clone = await agent.stub.CloneSnapshot(pb.CloneSnapshotRequest(snapshot_id=s, replica_id=c))
    assert clone.origin_snapshot_id == s and clone.size_bytes == 16 * MiB
    assert (await agent.stub.CloneSnapshot(pb.CloneSnapshotRequest(snapshot_id=s, replica_id=c))) == clone
    await expect_code(grpc.StatusCode.ALREADY_EXISTS,
                      agent.stub.CloneSnapshot(pb.CloneSnapshotRequest(snapshot_id=rid(), replica_id=c)))
    await expect_code(grpc.StatusCode.NOT_FOUND,
                      agent.stub.CreateSnapshot(pb.CreateReplicaSnapshotRequest(replica_id=rid(), snapshot_id=rid())))
    snaps = await agent.stub.ListSnapshots(pb.ListReplicaSnapshotsRequest())
    assert [x.snapshot_id for x in snaps.snapshots] == [s]
    # the snapshot has two clones now (the origin replica and the new one): SPDK refuses to delete it
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION,
                      agent.stub.DeleteSnapshot(pb.DeleteReplicaSnapshotRequest(snapshot_id=s)))
    assert (await agent.stub.DeleteReplica(pb.DeleteReplicaRequest(replica_id=c))).existed
    assert not (await agent.stub.DeleteReplica(pb.DeleteReplicaRequest(replica_id=c))).existed
    assert (await agent.stub.DeleteSnapshot(pb.DeleteReplicaSnapshotRequest(snapshot_id=s))).existed
    left = await agent.stub.ListReplicas(pb.ListReplicasRequest())
    assert [x.replica_id for x in left.replicas] == [r] and left.replicas[0].origin_snapshot_id == ""


async def test_target_crash_is_restarted_and_exports_come_back(agent):
    r = rid()
    await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=16 * MiB))
    e = await agent.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=r, allowed_host_nqns=[HOST_A]))
    old = agent.target_pid()
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        h = await agent.stub.Health(pb.HealthRequest())
        if h.healthy and h.target_pid != old:
            break
        await asyncio.sleep(0.1)
    assert h.healthy and h.target_restarts == 1 and h.target_pid != old and not pid_alive(old)
    got = await agent.stub.GetReplica(pb.GetReplicaRequest(replica_id=r))
    assert got.size_bytes == 16 * MiB and got.export.nqn == e.nqn
    spdk = agent.spdk()
    sub, = await spdk.nvmf_get_subsystems(e.nqn)
    assert [h["nqn"] for h in sub["hosts"]] == [HOST_A]
    assert [a["traddr"] for a in sub["listen_addresses"]] == [agent.address]
    await spdk.client.close()


async def test_agent_restart_adopts_the_running_target(agent):
    r = rid()
    await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=16 * MiB))
    await agent.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=r, allowed_host_nqns=[HOST_A]))
    target = agent.target_pid()
    await agent.stop(signal.SIGKILL)
    # the data path outlives the agent
    assert pid_alive(target)
    spdk = agent.spdk()
    assert await spdk.nvmf_get_subsystems(nqn("replica", r))
    await spdk.client.close()
    agent.start()
    h = await agent.wait_healthy()
    assert h.target_pid == target and h.target_restarts == 0
    listed = await agent.stub.ListReplicas(pb.ListReplicasRequest())
    assert [x.replica_id for x in listed.replicas] == [r]


async def test_graceful_stop_ends_the_target(backend, tmp_path):
    a = AgentProc(backend, tmp_path / "n", "n")
    a.start()
    await a.wait_healthy()
    target = a.target_pid()
    await a.stop()
    assert a.proc.returncode == 0
    deadline = time.monotonic() + 10
    while pid_alive(target) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not pid_alive(target)


async def test_attach_remote_between_nodes_honours_the_allowlist(backend, tmp_path):
    nodes = [AgentProc(backend, tmp_path / f"n{i}", f"n{i}") for i in range(3)]
    for n in nodes:
        n.start()
    try:
        for n in nodes:
            await n.wait_healthy()
        owner, allowed, other = nodes
        host_allowed = (await allowed.stub.GetNodeInfo(pb.GetNodeInfoRequest())).host_nqn
        r = rid()
        await owner.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=32 * MiB))
        e = await owner.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=r, allowed_host_nqns=[host_allowed]))
        req = pb.AttachRemoteRequest(attachment_id="rep-" + r[:8], subsystem_nqn=e.nqn, address=e.address,
                                     port=e.port)
        att = await allowed.stub.AttachRemote(req)
        assert att.size_bytes == 32 * MiB and att.bdev_names == [f"att-rep-{r[:8]}n1"] and att.connected
        assert await allowed.stub.AttachRemote(req) == att
        listed = await allowed.stub.ListAttachments(pb.ListAttachmentsRequest())
        assert [a.attachment_id for a in listed.attachments] == [req.attachment_id]
        # a node whose host NQN is not on the allowlist is refused
        details = await expect_code(grpc.StatusCode.UNAVAILABLE, other.stub.AttachRemote(req))
        assert e.nqn in details
        assert not (await other.stub.ListAttachments(pb.ListAttachmentsRequest())).attachments
        assert (await allowed.stub.DetachRemote(pb.DetachRemoteRequest(attachment_id=req.attachment_id))).existed
        assert not (await allowed.stub.ListAttachments(pb.ListAttachmentsRequest())).attachments
    finally:
        for n in nodes:
            await n.stop()
            n.kill_targets()


async def test_a_taken_head_port_is_named_in_the_error(agent):
    """A replicated head listens on the node's port + 1; when another process holds it the agent says so."""
    import socket

    info = await agent.stub.GetNodeInfo(pb.GetNodeInfoRequest())
    vid, rids = rid(), [rid(), rid()]
    legs = []
    for r in rids:
        await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=16 * MiB))
        e = await agent.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=r, allowed_host_nqns=[info.host_nqn]))
        legs.append(pb.HeadLeg(replica_id=r, node_id=info.node_id, subsystem_nqn=e.nqn, address=e.address,
                               port=e.port))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((agent.address, info.nvmf_port + 1))
        s.listen()
        detail = await expect_code(grpc.StatusCode.FAILED_PRECONDITION, agent.stub.EnsureHead(pb.HeadSpec(
            volume_id=vid, nqn=nqn("volume", vid), namespace_uuid=vid, legs=legs, in_sync_replica_ids=rids,
            replica_count=2)))
    assert f"{agent.address}:{info.nvmf_port + 1}" in detail and "in use" in detail, detail
