"""Group snapshots through the admin API: controller and agents as processes, fake and real SPDK.

What a host sees during the hold (a pause, no error) and that the snapshots agree on one
instant is checked with a real kernel in tests/vm/test_csi_group_snapshots.py.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import agent_pb2 as apb
from tests.control.test_api import code_of
from tests.control.test_crash import assert_converged, cluster_for, crash_then_restart, retry  # noqa: F401
from tests.support.cluster import Cluster

MiB = 1 << 20


def group(name: str, *refs: str) -> pb.CreateGroupSnapshotRequest:
    return pb.CreateGroupSnapshotRequest(name=name, volume_refs=list(refs))


async def ana_log(c: Cluster, nqn: str) -> list[str]:
    """The ANA states the agents set on ``nqn``, in order (from their logs)."""
    out = []
    for a in c.agents:
        for line in a.log.read_text().splitlines():
            if f"ANA state set nqn={nqn} " in line:
                out.append(line.split("state=")[-1].split()[0])
    return out


async def test_group_snapshot_life(cluster):
    v1 = await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB))
    v2 = await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v2", size_bytes=32 * MiB, replicas=2))
    g = await cluster.volumes.CreateGroupSnapshot(group("g1", "v1", v2.id))
    assert g.state == "ready" and g.name == "g1" and list(g.volume_ids) == [v1.id, v2.id]
    assert g.hold_ms > 0 and not g.message
    assert [(s.volume_id, s.size_bytes, s.state, s.group_snapshot_id) for s in g.snapshots] == [
        (v1.id, 64 * MiB, "ready", g.id), (v2.id, 32 * MiB, "ready", g.id)]
    # every head held its writes once and released them
    for v in (v1, v2):
        assert await ana_log(cluster, v.nqn) == ["inaccessible", "optimized"], v.name
    # idempotent by name; found by name and id; listed
    assert (await cluster.volumes.CreateGroupSnapshot(group("g1", v2.id, "v1"))).id == g.id
    assert (await cluster.volumes.GetGroupSnapshot(pb.GetGroupSnapshotRequest(ref=g.id))) == g
    assert (await cluster.volumes.GetGroupSnapshot(pb.GetGroupSnapshotRequest(ref="g1"))).id == g.id
    listed = await cluster.volumes.ListGroupSnapshots(pb.ListGroupSnapshotsRequest())
    assert [x.id for x in listed.group_snapshots] == [g.id]
    snaps = (await cluster.volumes.ListSnapshots(pb.ListSnapshotsRequest())).snapshots
    assert {(s.name, s.group_snapshot_id) for s in snaps} == {("g1.001", g.id), ("g1.002", g.id)}
    # the 2-replica volume's snapshot is on both its replicas' nodes
    held = {}
    for a in cluster.agents:
        for s in (await a.stub.ListSnapshots(apb.ListReplicaSnapshotsRequest())).snapshots:
            held[s.snapshot_id] = held.get(s.snapshot_id, 0) + 1
    assert held == {g.snapshots[0].id: 1, g.snapshots[1].id: 2}

    # members go with their group only
    code, details = await code_of(cluster.volumes.DeleteSnapshot(pb.DeleteSnapshotRequest(ref="g1.001")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "g1" in details
    # a member is a snapshot like any other: it can be cloned, and then the group stays
    c = await cluster.volumes.CloneVolume(pb.CloneVolumeRequest(name="c1", source_snapshot_ref=g.snapshots[1].id))
    assert c.state == "available" and c.size_bytes == 32 * MiB
    code, details = await code_of(cluster.volumes.DeleteGroupSnapshot(pb.DeleteGroupSnapshotRequest(ref="g1")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "c1" in details
    code, _ = await code_of(cluster.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="v1")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION   # it has a snapshot
    assert (await cluster.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="c1"))).existed
    assert (await cluster.volumes.DeleteGroupSnapshot(pb.DeleteGroupSnapshotRequest(ref="g1"))).existed
    assert not (await cluster.volumes.DeleteGroupSnapshot(pb.DeleteGroupSnapshotRequest(ref="g1"))).existed
    assert not (await cluster.volumes.ListSnapshots(pb.ListSnapshotsRequest())).snapshots
    assert not (await cluster.volumes.ListGroupSnapshots(pb.ListGroupSnapshotsRequest())).group_snapshots
    await assert_converged(cluster, {"v1", "v2"})


async def test_group_snapshot_requests_are_checked(cluster):
    await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=32 * MiB))
    await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v2", size_bytes=32 * MiB))
    await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="i1", size_bytes=32 * MiB, protocol="iscsi"))
    for req, code, word in [
        (group("", "v1"), grpc.StatusCode.INVALID_ARGUMENT, "name"),
        (group("x" * 121, "v1"), grpc.StatusCode.INVALID_ARGUMENT, "120"),
        (group("g"), grpc.StatusCode.INVALID_ARGUMENT, "volume_refs"),
        (group("g", *[f"v{i}" for i in range(65)]), grpc.StatusCode.INVALID_ARGUMENT, "64"),
        (group("g", "v1", "v1"), grpc.StatusCode.INVALID_ARGUMENT, "twice"),
        (group("g", "v1", "nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (group("g", "v1", "i1"), grpc.StatusCode.FAILED_PRECONDITION, "iscsi"),
    ]:
        got, details = await code_of(cluster.volumes.CreateGroupSnapshot(req))
        assert (got, word in details) == (code, True), (req.name, details)
    await cluster.volumes.CreateGroupSnapshot(group("g", "v1"))
    got, _ = await code_of(cluster.volumes.CreateGroupSnapshot(group("g", "v1", "v2")))
    assert got == grpc.StatusCode.ALREADY_EXISTS
    # a member's name is taken by a snapshot of its own
    await cluster.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="v2", name="h.001"))
    got, details = await code_of(cluster.volumes.CreateGroupSnapshot(group("h", "v2")))
    assert got == grpc.StatusCode.ALREADY_EXISTS and "h.001" in details
    got, _ = await code_of(cluster.volumes.GetGroupSnapshot(pb.GetGroupSnapshotRequest(ref="nope")))
    assert got == grpc.StatusCode.NOT_FOUND
    got, _ = await code_of(cluster.volumes.GetGroupSnapshot(pb.GetGroupSnapshotRequest()))
    assert got == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_group_snapshot_with_a_head_down_fails_then_succeeds_when_asked_again(backend, short_tmp):
    c = Cluster(backend, short_tmp, nodes=2, controller_args=("--node-timeout", "3"))
    try:
        await c.start()
        v1 = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=32 * MiB))
        await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v2", size_bytes=32 * MiB))
        head = c.agent_by_id(v1.head_node_id)
        await head.stop()
        deadline = time.monotonic() + 60
        while (await c.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))).state == "available":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        got, details = await code_of(c.volumes.CreateGroupSnapshot(group("g", "v1", "v2")))
        assert got == grpc.StatusCode.FAILED_PRECONDITION and "v1" in details, details
        head.start()
        await head.wait_healthy()
        # the agent answering is not yet the volume serving: the controller has to admit the node
        # again and bring v1's head back first; until then the refusal above still holds
        deadline = time.monotonic() + 60
        while (await c.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))).state != "available":
            assert time.monotonic() < deadline, "v1 did not serve again after its node came back"
            await asyncio.sleep(0.2)
        g = await retry(lambda: c.volumes.CreateGroupSnapshot(group("g", "v1", "v2")), attempts=300)
        assert g.state == "ready", g
    finally:
        await c.stop()


@pytest.mark.parametrize("point", ["group.held", "group.taken"])
async def test_crash_inside_a_group_snapshot(cluster_for, point):  # noqa: F811 - the fixture
    """The controller dies holding the writes: the agents release them by themselves, and the next
    controller throws away what the unfinished try took and takes the group again."""
    c = await cluster_for(point)
    v1 = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=32 * MiB))
    await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v2", size_bytes=32 * MiB, replicas=2))
    t0 = time.monotonic()
    await crash_then_restart(c, lambda: c.volumes.CreateGroupSnapshot(group("g", "v1", "v2")))
    g = await retry(lambda: c.volumes.CreateGroupSnapshot(group("g", "v1", "v2")), attempts=300)
    assert g.state == "ready" and len(g.snapshots) == 2
    # the held head was released (by the agent's timer or the new controller's try)
    states = await ana_log(c, v1.nqn)
    assert states[-1] == "optimized" and states.count("inaccessible") >= 1, states
    assert time.monotonic() - t0 < 120
    await assert_converged(c, {"v1", "v2"}, {"g.001", "g.002"})



async def test_group_snapshot_commands(cluster):
    """`meshblock volume snapshot group ...` against the controller."""
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "meshblock", "volume", "snapshot", "group", *args,
                               "--endpoint", cluster.controller.listen], capture_output=True, text=True, timeout=120)

    await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="db-log", size_bytes=16 * MiB))
    await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="db-data", size_bytes=16 * MiB))
    r = await asyncio.to_thread(cli, "create", "nightly", "db-log", "db-data")
    assert r.returncode == 0, r.stderr
    assert "nightly" in r.stdout and "ready" in r.stdout and "nightly.002" in r.stdout and "db-data" in r.stdout
    r = await asyncio.to_thread(cli, "get", "nightly", "-o", "json")
    got = json.loads(r.stdout)
    assert got["name"] == "nightly" and [s["name"] for s in got["snapshots"]] == ["nightly.001", "nightly.002"]
    r = await asyncio.to_thread(cli, "list")
    assert "nightly" in r.stdout and "ms" in r.stdout
    r = await asyncio.to_thread(cli, "create", "other", "db-log", "missing")
    assert r.returncode != 0 and "missing" in r.stderr
    r = await asyncio.to_thread(cli, "delete", "nightly")
    assert r.returncode == 0 and "deleted" in r.stdout
    r = await asyncio.to_thread(cli, "delete", "nightly")
    assert r.returncode == 0 and "did not exist" in r.stdout
    assert "No group snapshots." in (await asyncio.to_thread(cli, "list")).stdout
