"""kill -9 of the controller at injected points inside create, delete and snapshot.

After each crash the controller is restarted (without the fault) and the client
retries as a client would; the cluster must converge: one volume per name, no
orphaned lvols, nothing shown available that is not exported.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import agent_pb2 as apb
from tests.support.cluster import Cluster

MiB = 1 << 20


async def retry(call, attempts: int = 100):
    """Call until the controller answers (it may be down or restarting)."""
    last = None
    for _ in range(attempts):
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise
            last = e
            await asyncio.sleep(0.2)
    raise AssertionError(f"controller never answered: {last}")


async def crash_then_restart(c: Cluster, call) -> None:
    """Run ``call`` against a controller armed to crash; restart it unarmed."""
    try:
        await call()
    except grpc.aio.AioRpcError as e:
        assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN), e
    deadline = time.monotonic() + 30
    while c.controller.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert c.controller.proc.returncode == -9, "the crash point was not reached"
    await c.controller.stop()
    c.controller.start()
    await c.controller.wait_nodes(len(c.agents))


async def assert_converged(c: Cluster, expect_volumes: set[str], expect_snapshots: set[str] = frozenset()) -> None:
    deadline = time.monotonic() + 30
    while True:
        vols = (await c.volumes.ListVolumes(pb.ListVolumesRequest())).volumes
        settled = all(v.state == "available" for v in vols) and {v.name for v in vols} == expect_volumes
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert sorted(v.name for v in vols) == sorted(expect_volumes)
    assert all(v.state == "available" for v in vols), vols
    snaps = (await c.volumes.ListSnapshots(pb.ListSnapshotsRequest())).snapshots
    assert {s.name for s in snaps} == set(expect_snapshots) and all(s.state == "ready" for s in snaps)
    want_replicas = {r.replica_id for v in vols for r in v.replica_status}
    have_replicas, have_snaps = set(), set()
    for a in c.agents:
        have_replicas |= {r.replica_id for r in (await a.stub.ListReplicas(apb.ListReplicasRequest())).replicas}
        have_snaps |= {s.snapshot_id for s in (await a.stub.ListSnapshots(apb.ListReplicaSnapshotsRequest())).snapshots}
        heads = {h.nqn for h in (await a.stub.ListHeads(apb.ListHeadsRequest())).heads}
        for v in vols:  # an available volume is exported where it says
            if v.head_node_id == (a.data_dir / "node-id").read_text().strip():
                assert v.nqn in heads
    assert have_replicas == want_replicas, "orphaned or missing replicas"
    assert have_snaps == {s.id for s in snaps}, "orphaned or missing snapshots"


@pytest.fixture
async def cluster_for(backend, short_tmp):
    made: list[Cluster] = []

    async def make(point: str) -> Cluster:
        c = Cluster(backend, short_tmp / point.replace(".", "-"), nodes=2,
                    controller_env={"MESHBLOCK_CRASH_AT": point})
        made.append(c)
        await c.start()
        c.controller.env.pop("MESHBLOCK_CRASH_AT")
        return c

    yield make
    for c in made:
        await c.stop()


@pytest.mark.parametrize("point", ["create.placed", "create.recorded", "create.replica-made", "create.exported"])
async def test_crash_inside_create(cluster_for, point):
    c = await cluster_for(point)
    req = pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB)
    await crash_then_restart(c, lambda: c.volumes.CreateVolume(req))
    v = await retry(lambda: c.volumes.CreateVolume(req))
    assert v.name == "v1"
    await assert_converged(c, {"v1"})


@pytest.mark.parametrize("point", ["delete.recorded", "delete.unexported", "delete.replica-deleted"])
async def test_crash_inside_delete(cluster_for, point):
    c = await cluster_for(point)
    # the fault is armed for the whole life of the first controller: create first, then delete
    await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="keep", size_bytes=32 * MiB))
    await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB))
    await crash_then_restart(c, lambda: c.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="v1")))
    await retry(lambda: c.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="v1")))
    await assert_converged(c, {"keep"})


@pytest.mark.parametrize("point", ["snapshot.taken", "snapshot.deleted"])
async def test_crash_inside_snapshot(cluster_for, point):
    c = await cluster_for(point)
    await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB))
    if point == "snapshot.taken":
        await crash_then_restart(c, lambda: c.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="v1",
                                                                                              name="s1")))
        s = await retry(lambda: c.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="v1", name="s1")))
        assert s.state == "ready"
        await assert_converged(c, {"v1"}, {"s1"})
    else:
        await c.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="v1", name="s1"))
        await crash_then_restart(c, lambda: c.volumes.DeleteSnapshot(pb.DeleteSnapshotRequest(ref="s1")))
        await retry(lambda: c.volumes.DeleteSnapshot(pb.DeleteSnapshotRequest(ref="s1")))
        await assert_converged(c, {"v1"})


@pytest.mark.parametrize("point", ["rebalance.placed", "rebalance.removing"])
async def test_crash_inside_drain(backend, short_tmp, point):
    c = Cluster(backend, short_tmp / point.replace(".", "-"), nodes=3,
                controller_env={"MESHBLOCK_CRASH_AT": point})
    try:
        await c.start()
        c.controller.env.pop("MESHBLOCK_CRASH_AT")
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=32 * MiB, replicas=2))
        victim = next(r.node_name for r in v.replica_status if r.node_id != v.head_node_id)
        await crash_then_restart(c, lambda: drain_and_wait(c, victim))
        deadline = time.monotonic() + 60
        while True:
            v = await c.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))
            names = {r.node_name for r in v.replica_status}
            if (v.state == "available" and victim not in names and len(names) == 2) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert v.state == "available" and victim not in names and len(names) == 2, v
        n = await c.nodes.GetNode(pb.GetNodeRequest(ref=victim))
        assert n.drain.done and n.replica_count == 0
        await assert_converged(c, {"v1"})
    finally:
        await c.stop()


async def drain_and_wait(c: Cluster, node: str) -> None:
    await c.nodes.DrainNode(pb.DrainNodeRequest(ref=node))
    for _ in range(300):   # the controller crashes while moving the replica
        await c.nodes.GetNode(pb.GetNodeRequest(ref=node))
        await asyncio.sleep(0.1)


async def test_orphaned_lvols_are_removed_after_the_grace_period(backend, short_tmp):
    c = Cluster(backend, short_tmp, nodes=1, controller_args=("--orphan-grace", "2"))
    try:
        await c.start()
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=16 * MiB))
        agent = c.agents[0]
        orphan = "0d5c1a3e-9a3f-4a0b-8f8e-6f3d2b1c0a99"
        await agent.stub.CreateReplica(apb.CreateReplicaRequest(replica_id=orphan, size_bytes=8 * MiB))
        deadline = time.monotonic() + 30
        while True:
            ids = {r.replica_id for r in (await agent.stub.ListReplicas(apb.ListReplicasRequest())).replicas}
            if orphan not in ids or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert orphan not in ids
        assert ids == {v.replica_status[0].replica_id}   # what a record owns stays
    finally:
        await c.stop()
