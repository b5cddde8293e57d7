"""iSCSI heads of a node agent over its gRPC API, against the fake target and real SPDK.

What is checked is what SPDK ends up holding (read from the head target's own socket): the
target node, its LUN, its initiator list and CHAP settings, after repeats, agent restarts and
head-target crashes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import grpc
import pytest

from meshblock.proto.meshblock.v1 import agent_pb2 as pb
from tests.support.agents import AgentProc

from .test_agent import expect_code

MiB = 1 << 20
INIT_A = "iqn.1993-08.org.debian:01:aaaa"
INIT_B = "iqn.1993-08.org.debian:01:bbbb"

pytestmark = pytest.mark.timeout(180)


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


async def iscsi_state(a: AgentProc) -> tuple[list[dict], dict[int, dict], dict[int, dict]]:
    spdk = a.spdk("spdk-head.sock")
    try:
        nodes = await spdk.iscsi_get_target_nodes()
        groups = {g["tag"]: g for g in await spdk.iscsi_get_initiator_groups()}
        auth = {g["tag"]: g for g in await spdk.iscsi_get_auth_groups()}
    finally:
        await spdk.client.close()
    return nodes, groups, auth


async def head_spec(a: AgentProc, vid: str, replica: str, initiators: list[str], chap: tuple[str, str] = ("", ""),
                    netmasks: list[str] | None = None) -> pb.HeadSpec:
    info = await a.stub.GetNodeInfo(pb.GetNodeInfoRequest())
    e = await a.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=replica, allowed_host_nqns=[info.host_nqn]))
    return pb.HeadSpec(volume_id=vid, namespace_uuid=vid, protocol="iscsi", replica_count=1,
                       in_sync_replica_ids=[replica],
                       legs=[pb.HeadLeg(replica_id=replica, node_id=info.node_id, subsystem_nqn=e.nqn,
                                        address=e.address, port=e.port)],
                       iscsi=pb.IscsiExport(target_iqn=f"iqn.2026-11.io.meshblock:volume:{vid}", initiators=initiators,
                                            netmasks=netmasks or [], chap_user=chap[0], chap_secret=chap[1]))


async def eventually(pred, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.2)


async def test_iscsi_head_lifecycle(agent):
    a = agent
    vid, replica = str(uuid.uuid4()), str(uuid.uuid4())
    target = f"iqn.2026-11.io.meshblock:volume:{vid}"
    await a.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=replica, size_bytes=64 * MiB))
    spec = await head_spec(a, vid, replica, [INIT_A])
    st = await a.stub.EnsureHead(spec)
    assert (st.protocol, st.target_iqn, st.address, st.port) == ("iscsi", target, a.address, 3260)
    assert list(st.allowed_initiators) == [INIT_A] and st.size_bytes == 64 * MiB
    assert [(leg.replica_id, leg.state) for leg in st.legs] == [(replica, "in_sync")]
    nodes, groups, auth = await iscsi_state(a)
    (node,) = nodes
    tag = node["pg_ig_maps"][0]["ig_tag"]
    assert node["name"] == target and node["luns"] == [{"bdev_name": f"vol-{vid}", "lun_id": 0}]
    assert node["disable_chap"] and not node["require_chap"] and auth == {}
    assert groups == {tag: {"tag": tag, "initiators": [INIT_A], "netmasks": ["ANY"]}}
    assert await a.stub.EnsureHead(spec) == st    # a repeat changes nothing
    assert await iscsi_state(a) == (nodes, groups, auth)

    # more initiators, a network, CHAP
    spec = await head_spec(a, vid, replica, [INIT_B, INIT_A], chap=("alice", "0123456789abcdef"),
                           netmasks=["127.0.0.0/8"])
    await a.stub.EnsureHead(spec)
    (node,), groups, auth = await iscsi_state(a)
    assert groups[tag] == {"tag": tag, "initiators": [INIT_A, INIT_B], "netmasks": ["127.0.0.0/8"]}
    assert (node["require_chap"], node["disable_chap"], node["chap_group"]) == (True, False, tag)
    assert auth == {tag: {"tag": tag, "secrets": [{"user": "alice", "secret": "0123456789abcdef"}]}}

    # nobody allowed: no target node and no groups; allowed again: back
    await a.stub.EnsureHead(await head_spec(a, vid, replica, []))
    assert await iscsi_state(a) == ([], {}, {})
    await a.stub.EnsureHead(await head_spec(a, vid, replica, [INIT_B]))
    (node,), groups, _ = await iscsi_state(a)
    assert [g["initiators"] for g in groups.values()] == [[INIT_B]]

    assert (await a.stub.DeleteHead(pb.DeleteHeadRequest(volume_id=vid))).existed
    assert await iscsi_state(a) == ([], {}, {})
    assert not (await a.stub.DeleteHead(pb.DeleteHeadRequest(volume_id=vid))).existed
    spdk = a.spdk("spdk-head.sock")
    try:
        assert not [r for r in await spdk.bdev_raid_get_bdevs("all") if r["name"] == f"vol-{vid}"]
    finally:
        await spdk.client.close()


async def test_iscsi_head_survives_restarts(agent):
    a = agent
    vid, replica = str(uuid.uuid4()), str(uuid.uuid4())
    await a.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=replica, size_bytes=64 * MiB))
    spec = await head_spec(a, vid, replica, [INIT_A], chap=("bob", "fedcba9876543210"))
    await a.stub.EnsureHead(spec)
    before = await iscsi_state(a)

    # the agent restarts (its targets keep running): told again, it adopts what SPDK holds
    await a.stop(signal.SIGKILL)
    a.start()
    await a.wait_healthy()
    assert list((await a.stub.ListHeads(pb.ListHeadsRequest())).heads) == []
    await a.stub.EnsureHead(await head_spec(a, vid, replica, [INIT_A], chap=("bob", "fedcba9876543210")))
    assert await iscsi_state(a) == before

    # the head target dies: it is started again and the agent puts the export back
    os.kill(a.target_pid("spdk-head.pid"), signal.SIGKILL)

    async def back():
        try:
            return await iscsi_state(a) == before
        except Exception:  # noqa: BLE001 - the target is still coming back
            return False
    await eventually(back)

    # the agent restarts again and is told to delete the head before anything else: what SPDK
    # holds of it (target node, groups, raid, the attached replica) goes all the same
    await a.stop(signal.SIGKILL)
    a.start()
    await a.wait_healthy()
    assert (await a.stub.DeleteHead(pb.DeleteHeadRequest(volume_id=vid))).existed
    assert await iscsi_state(a) == ([], {}, {})
    spdk = a.spdk("spdk-head.sock")
    try:
        assert await spdk.bdev_raid_get_bdevs("all") == []
        assert await spdk.bdev_nvme_get_controllers() == []
    finally:
        await spdk.client.close()


async def test_iscsi_head_input_is_checked(agent):
    a = agent
    vid, replica = str(uuid.uuid4()), str(uuid.uuid4())
    await a.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=replica, size_bytes=64 * MiB))
    spec = await head_spec(a, vid, replica, ["nqn.2026-11.io.meshblock:host:x"])
    assert "iscsi.initiators" in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, a.stub.EnsureHead(spec))
    spec = await head_spec(a, vid, replica, [INIT_A], netmasks=["10.0.0.0/33"])
    assert "iscsi.netmasks" in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, a.stub.EnsureHead(spec))
    spec = await head_spec(a, vid, replica, [INIT_A], chap=("alice", ""))
    assert "chap" in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, a.stub.EnsureHead(spec))
    spec.iscsi.chap_secret, spec.protocol = "0123456789abcdef", "fc"
    assert "protocol" in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, a.stub.EnsureHead(spec))


async def test_head_without_iscsi_target_refuses(backend, tmp_path):
    a = AgentProc(backend, tmp_path / "node-1", "node-1")
    a.argv += ["--head-app", "nvmf_tgt"]
    a.start()
    try:
        await a.wait_healthy()
        vid, replica = str(uuid.uuid4()), str(uuid.uuid4())
        await a.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=replica, size_bytes=64 * MiB))
        detail = await expect_code(grpc.StatusCode.FAILED_PRECONDITION,
                                   a.stub.EnsureHead(await head_spec(a, vid, replica, [INIT_A])))
        assert "spdk_tgt" in detail
    finally:
        await a.stop()
        a.kill_targets()
