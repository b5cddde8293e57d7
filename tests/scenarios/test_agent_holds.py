"""Holding a volume's writes (SetHeadAccess): the head's listeners turn ANA inaccessible and back,
a hold ends by itself, and an agent that restarts does not leave one behind. Fake and real SPDK."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import grpc
from meshblock import nqn
from meshblock.proto.meshblock.v1 import agent_pb2 as pb
from tests.scenarios.test_agent import agent, expect_code  # noqa: F401 - the agent fixture

MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:hold-test"


async def direct_head(agent) -> pb.HeadSpec:  # noqa: F811
    vid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    info = await agent.stub.GetNodeInfo(pb.GetNodeInfoRequest())
    await agent.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=rid, size_bytes=16 * MiB))
    spec = pb.HeadSpec(volume_id=vid, nqn=nqn("volume", vid), namespace_uuid=vid,
                       legs=[pb.HeadLeg(replica_id=rid, node_id=info.node_id)], allowed_host_nqns=[HOST])
    st = await agent.stub.EnsureHead(spec)
    assert st.ana_state == "optimized"
    return spec


async def listener_states(agent, subnqn: str) -> set[str]:  # noqa: F811
    spdk = agent.spdk()
    try:
        (lst,) = await spdk.nvmf_subsystem_get_listeners(subnqn)
        return {a["ana_state"] for a in lst["ana_states"]}
    finally:
        await spdk.client.close()


def hold(spec: pb.HeadSpec, ms: int = 30_000) -> pb.SetHeadAccessRequest:
    return pb.SetHeadAccessRequest(volume_id=spec.volume_id, ana_state="inaccessible", hold_ms=ms)


def release(spec: pb.HeadSpec) -> pb.SetHeadAccessRequest:
    return pb.SetHeadAccessRequest(volume_id=spec.volume_id, ana_state="optimized")


async def test_hold_and_release_a_head(agent):  # noqa: F811
    spec = await direct_head(agent)
    st = await agent.stub.SetHeadAccess(hold(spec))
    assert st.ana_state == "inaccessible"
    assert await listener_states(agent, spec.nqn) == {"inaccessible"}
    # the controller's periodic EnsureHead does not end a hold
    assert (await agent.stub.EnsureHead(spec)).ana_state == "inaccessible"
    assert await listener_states(agent, spec.nqn) == {"inaccessible"}
    # holding twice is fine
    assert (await agent.stub.SetHeadAccess(hold(spec))).ana_state == "inaccessible"
    st = await agent.stub.SetHeadAccess(release(spec))
    assert st.ana_state == "optimized"
    assert await listener_states(agent, spec.nqn) == {"optimized"}
    heads = (await agent.stub.ListHeads(pb.ListHeadsRequest())).heads
    assert [(h.volume_id, h.ana_state) for h in heads] == [(spec.volume_id, "optimized")]


async def test_a_hold_nobody_releases_ends_by_itself(agent):  # noqa: F811
    spec = await direct_head(agent)
    t0 = time.monotonic()
    await agent.stub.SetHeadAccess(hold(spec, ms=1500))
    while await listener_states(agent, spec.nqn) != {"optimized"}:
        assert time.monotonic() - t0 < 15, "the hold did not end by itself"
        await asyncio.sleep(0.2)
    assert time.monotonic() - t0 >= 1.4
    heads = (await agent.stub.ListHeads(pb.ListHeadsRequest())).heads
    assert heads[0].ana_state == "optimized"


async def test_a_restarted_agent_releases_a_hold_it_forgot(agent):  # noqa: F811
    spec = await direct_head(agent)
    await agent.stub.SetHeadAccess(hold(spec))
    await agent.stop(signal.SIGKILL)
    assert await listener_states(agent, spec.nqn) == {"inaccessible"}   # the target outlives the agent
    agent.start()
    await agent.wait_healthy()
    assert (await agent.stub.EnsureHead(spec)).ana_state == "optimized"
    assert await listener_states(agent, spec.nqn) == {"optimized"}


async def test_hold_requests_are_checked(agent):  # noqa: F811
    spec = await direct_head(agent)
    detail = await expect_code(grpc.StatusCode.INVALID_ARGUMENT, agent.stub.SetHeadAccess(hold(spec, ms=0)))
    assert "hold_ms" in detail
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, agent.stub.SetHeadAccess(hold(spec, ms=3_600_000)))
    detail = await expect_code(grpc.StatusCode.INVALID_ARGUMENT, agent.stub.SetHeadAccess(
        pb.SetHeadAccessRequest(volume_id=spec.volume_id, ana_state="non_optimized")))
    assert "ana_state" in detail
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, agent.stub.SetHeadAccess(
        pb.SetHeadAccessRequest(volume_id="nope", ana_state="optimized")))
    await expect_code(grpc.StatusCode.NOT_FOUND, agent.stub.SetHeadAccess(
        pb.SetHeadAccessRequest(volume_id=str(uuid.uuid4()), ana_state="optimized")))
    # deleting a held head is allowed and ends the hold
    await agent.stub.SetHeadAccess(hold(spec))
    assert (await agent.stub.DeleteHead(pb.DeleteHeadRequest(volume_id=spec.volume_id))).existed
    await expect_code(grpc.StatusCode.NOT_FOUND, agent.stub.SetHeadAccess(release(spec)))


async def test_a_head_exported_without_ana_reporting_cannot_be_held(agent):  # noqa: F811
    """Subsystems made before volume exports reported ANA states: a clear refusal, the head keeps serving."""
    spec = await direct_head(agent)
    await agent.stop(signal.SIGKILL)
    spdk = agent.spdk()
    try:
        # what an older agent left: the same export without ANA reporting
        sub = (await spdk.nvmf_get_subsystems(spec.nqn))[0]
        await spdk.nvmf_delete_subsystem(spec.nqn)
        await spdk.nvmf_create_subsystem(spec.nqn, serial_number=sub["serial_number"], model_number="meshblock")
        await spdk.nvmf_subsystem_add_ns(spec.nqn, sub["namespaces"][0]["bdev_name"], nsid=1,
                                         uuid=spec.namespace_uuid)
        await spdk.nvmf_subsystem_add_host(spec.nqn, HOST)
        la = sub["listen_addresses"][0]
        await spdk.nvmf_subsystem_add_listener(spec.nqn, la["traddr"], la["trsvcid"])
    finally:
        await spdk.client.close()
    agent.start()
    await agent.wait_healthy()
    assert (await agent.stub.EnsureHead(spec)).ana_state == "optimized"
    detail = await expect_code(grpc.StatusCode.FAILED_PRECONDITION, agent.stub.SetHeadAccess(hold(spec)))
    assert "without ANA reporting" in detail
