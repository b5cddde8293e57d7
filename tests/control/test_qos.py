"""Per-volume QoS through the controller: the limits SPDK enforces on each head's bdev, at creation,
after an online change, and after the head fails over to a standby."""

from __future__ import annotations

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import agent_pb2 as apb
from tests.control.test_replicated import down, wait_for, wait_paths

MiB = 1 << 20


def spdk_limits(q: pb.QosLimits) -> dict[str, int]:
    return {"rw_ios_per_sec": q.max_iops, "rw_mbytes_per_sec": q.max_mbps, "r_mbytes_per_sec": q.max_read_mbps,
            "w_mbytes_per_sec": q.max_write_mbps}


async def enforced(agent, bdev: str, sock: str = "spdk-head.sock") -> dict[str, int]:
    """The rate limits the node's SPDK reports on ``bdev`` (bdev_get_bdevs assigned_rate_limits)."""
    spdk = agent.spdk(sock)
    try:
        (b,) = await spdk.bdev_get_bdevs(bdev)
        return b["assigned_rate_limits"]
    finally:
        await spdk.client.close()


async def raid_limits(c, v: pb.Volume) -> dict[str, dict[str, int]]:
    """Per replica node (head and standbys), the limits on the volume's raid."""
    return {r.node_name: await enforced(c.agent_by_id(r.node_id), "vol-" + v.id) for r in v.replica_status
            if r.state != "offline"}


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return e.value.code(), e.value.details()


async def test_limits_on_head_and_standbys_change_online_and_survive_failover(cluster):
    c = cluster
    limits = pb.QosLimits(max_iops=5000, max_mbps=100)
    v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="q3", size_bytes=32 * MiB, replicas=3, qos=limits))
    assert v.state == "available" and v.qos == limits
    await wait_paths(c, "q3", 3)
    # the head and both standbys enforce them, so a promoted standby does from its first I/O
    assert set(map(str, (await raid_limits(c, v)).values())) == {str(spdk_limits(limits))}

    # online: the limits given change, the others stay; the call returns once every head has them
    v = await c.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref="q3", max_iops=2000, max_write_mbps=50))
    want = pb.QosLimits(max_iops=2000, max_mbps=100, max_write_mbps=50)
    assert v.qos == want and (await c.volumes.GetVolume(pb.GetVolumeRequest(ref="q3"))).qos == want
    got = await raid_limits(c, v)
    assert len(got) == 3 and all(x == spdk_limits(want) for x in got.values()), got
    heads = (await c.agent_by_id(v.head_node_id).stub.ListHeads(apb.ListHeadsRequest())).heads
    assert [(h.qos.rw_ios_per_sec, h.qos.w_mbytes_per_sec) for h in heads] == [(2000, 50)]

    # the head node dies: the promoted standby already enforces them
    old = v.head_node_id
    await down(c, c.agent_by_id(old).name)
    v = await wait_for(c, "q3", lambda x: x.head_node_id != old and x.state == "degraded")
    assert await enforced(c.agent_by_id(v.head_node_id), "vol-" + v.id) == spdk_limits(want)

    # 0 lifts a limit
    v = await c.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref="q3", max_iops=0, max_mbps=0, max_write_mbps=0))
    assert v.qos == pb.QosLimits()
    assert await enforced(c.agent_by_id(v.head_node_id), "vol-" + v.id) == spdk_limits(pb.QosLimits())


async def test_single_replica_limits_are_on_its_lvol_and_bad_limits_are_refused(cluster):
    c = cluster
    v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="q1", size_bytes=16 * MiB,
                                                            qos=pb.QosLimits(max_read_mbps=20)))
    node = c.agent_by_id(v.head_node_id)
    lvol = f"{(await node.stub.GetPool(apb.GetPoolRequest())).name}/replica-{v.replica_status[0].replica_id}"
    assert await enforced(node, lvol, "spdk.sock") == spdk_limits(pb.QosLimits(max_read_mbps=20))
    v = await c.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref="q1", max_iops=3000))
    assert await enforced(node, lvol, "spdk.sock") == spdk_limits(pb.QosLimits(max_iops=3000, max_read_mbps=20))

    # refused with the rule before anything reaches SPDK
    code, details = await code_of(c.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref="q1", max_iops=1500)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("max_iops: 1500 is not a multiple of 1000")
    code, details = await code_of(c.volumes.CreateVolume(pb.CreateVolumeRequest(
        name="q2", size_bytes=16 * MiB, qos=pb.QosLimits(max_mbps=5_000_000))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("qos.max_mbps: 5000000 MiB/s is more")
    code, _ = await code_of(c.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref="q1")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await code_of(c.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref="nope", max_iops=1000)))
    assert code == grpc.StatusCode.NOT_FOUND
    # the same name with other limits is another volume
    code, _ = await code_of(c.volumes.CreateVolume(pb.CreateVolumeRequest(name="q1", size_bytes=16 * MiB)))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert (await c.volumes.GetVolume(pb.GetVolumeRequest(ref="q1"))).qos == \
        pb.QosLimits(max_iops=3000, max_read_mbps=20)
