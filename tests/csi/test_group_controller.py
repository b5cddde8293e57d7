"""The CSI GroupController (volume group snapshots) over the plugin's Unix socket, in front of a
cluster on fake and on real SPDK: success paths and the error codes of the CSI spec."""

from __future__ import annotations

import uuid

from meshblock.proto.csi.v1 import csi_pb2 as csi
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.csi.test_controller import Code, code_of, create_req

MiB = 1 << 20
Rpc = csi.GroupControllerServiceCapability.RPC


def group_req(name: str, *vids: str, **kw) -> csi.CreateVolumeGroupSnapshotRequest:
    return csi.CreateVolumeGroupSnapshotRequest(name=name, source_volume_ids=list(vids), **kw)


async def test_group_snapshot_of_two_volumes(csi_cluster):
    c, p = csi_cluster
    caps = await p.groups.GroupControllerGetCapabilities(csi.GroupControllerGetCapabilitiesRequest())
    assert [x.rpc.type for x in caps.capabilities] == [Rpc.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT]
    a = (await p.controller.CreateVolume(create_req("pvc-a", 16 * MiB, parameters={"replicas": "2"}))).volume
    b = (await p.controller.CreateVolume(create_req("pvc-b", 8 * MiB))).volume
    name = "groupsnapshot-" + str(uuid.uuid4())
    g = (await p.groups.CreateVolumeGroupSnapshot(group_req(name, a.volume_id, b.volume_id))).group_snapshot
    assert g.ready_to_use and g.creation_time.seconds > 0
    assert sorted((s.source_volume_id, s.size_bytes) for s in g.snapshots) == sorted(
        [(a.volume_id, 16 * MiB), (b.volume_id, 8 * MiB)])
    assert all(s.ready_to_use and s.group_snapshot_id == g.group_snapshot_id for s in g.snapshots)
    ids = [s.snapshot_id for s in g.snapshots]
    # idempotent; the volumes may come in another order
    again = (await p.groups.CreateVolumeGroupSnapshot(group_req(name, b.volume_id, a.volume_id))).group_snapshot
    assert again.group_snapshot_id == g.group_snapshot_id
    assert await code_of(p.groups.CreateVolumeGroupSnapshot(group_req(name, a.volume_id))) == Code.ALREADY_EXISTS
    got = (await p.groups.GetVolumeGroupSnapshot(csi.GetVolumeGroupSnapshotRequest(
        group_snapshot_id=g.group_snapshot_id, snapshot_ids=ids))).group_snapshot
    assert got == g
    assert await code_of(p.groups.GetVolumeGroupSnapshot(csi.GetVolumeGroupSnapshotRequest(
        group_snapshot_id=g.group_snapshot_id, snapshot_ids=ids[:1]))) == Code.INVALID_ARGUMENT
    # members are snapshots: listed and got with their group, usable as a volume source, not deletable alone
    listed = (await p.controller.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id=ids[0]))).entries
    assert listed[0].snapshot.group_snapshot_id == g.group_snapshot_id
    one = (await p.controller.GetSnapshot(csi.GetSnapshotRequest(snapshot_id=ids[1]))).snapshot
    assert one.group_snapshot_id == g.group_snapshot_id
    assert await code_of(p.controller.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id=ids[0]))) \
        == Code.INVALID_ARGUMENT
    src = csi.VolumeContentSource(snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=ids[0]))
    size = next(s.size_bytes for s in g.snapshots if s.snapshot_id == ids[0])
    restored = (await p.controller.CreateVolume(create_req("pvc-restored", size, volume_content_source=src))).volume
    assert await code_of(p.groups.DeleteVolumeGroupSnapshot(csi.DeleteVolumeGroupSnapshotRequest(
        group_snapshot_id=g.group_snapshot_id, snapshot_ids=ids))) == Code.FAILED_PRECONDITION   # in use
    await p.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=restored.volume_id))
    assert await code_of(p.groups.DeleteVolumeGroupSnapshot(csi.DeleteVolumeGroupSnapshotRequest(
        group_snapshot_id=g.group_snapshot_id, snapshot_ids=ids[:1]))) == Code.INVALID_ARGUMENT
    await p.groups.DeleteVolumeGroupSnapshot(csi.DeleteVolumeGroupSnapshotRequest(
        group_snapshot_id=g.group_snapshot_id, snapshot_ids=ids))
    # gone, with its members; deleting again is fine
    await p.groups.DeleteVolumeGroupSnapshot(csi.DeleteVolumeGroupSnapshotRequest(
        group_snapshot_id=g.group_snapshot_id))
    assert await code_of(p.groups.GetVolumeGroupSnapshot(csi.GetVolumeGroupSnapshotRequest(
        group_snapshot_id=g.group_snapshot_id))) == Code.NOT_FOUND
    assert not (await p.controller.ListSnapshots(csi.ListSnapshotsRequest())).entries
    assert not (await c.volumes.ListGroupSnapshots(pb.ListGroupSnapshotsRequest())).group_snapshots
    for v in (a, b):
        await p.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=v.volume_id))


async def test_group_snapshot_errors(csi_cluster):
    c, p = csi_cluster
    a = (await p.controller.CreateVolume(create_req("pvc-a"))).volume
    G = p.groups
    assert await code_of(G.CreateVolumeGroupSnapshot(group_req("", a.volume_id))) == Code.INVALID_ARGUMENT
    assert await code_of(G.CreateVolumeGroupSnapshot(group_req("g"))) == Code.INVALID_ARGUMENT
    assert await code_of(G.CreateVolumeGroupSnapshot(group_req("g", a.volume_id, parameters={"x": "y"}))) \
        == Code.INVALID_ARGUMENT
    assert await code_of(G.CreateVolumeGroupSnapshot(group_req("g", a.volume_id, "not-a-volume"))) == Code.NOT_FOUND
    assert await code_of(G.CreateVolumeGroupSnapshot(group_req("g", a.volume_id, str(uuid.uuid4())))) \
        == Code.NOT_FOUND
    # an iSCSI volume's writes cannot be held: the volumes cannot be snapshotted together
    i = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="iscsi-1", size_bytes=8 * MiB, protocol="iscsi"))
    assert await code_of(G.CreateVolumeGroupSnapshot(group_req("g", a.volume_id, i.id))) == Code.FAILED_PRECONDITION
    # names that are not meshblock names (or too long for one) are mapped, stably
    odd = "Group Snapshot: " + "x" * 100
    g1 = (await G.CreateVolumeGroupSnapshot(group_req(odd, a.volume_id))).group_snapshot
    g2 = (await G.CreateVolumeGroupSnapshot(group_req(odd, a.volume_id))).group_snapshot
    assert g1.group_snapshot_id == g2.group_snapshot_id
    for req in (csi.GetVolumeGroupSnapshotRequest(), csi.DeleteVolumeGroupSnapshotRequest()):
        call = G.GetVolumeGroupSnapshot if isinstance(req, csi.GetVolumeGroupSnapshotRequest) \
            else G.DeleteVolumeGroupSnapshot
        assert await code_of(call(req)) == Code.INVALID_ARGUMENT
    assert await code_of(G.GetVolumeGroupSnapshot(csi.GetVolumeGroupSnapshotRequest(
        group_snapshot_id="nope"))) == Code.NOT_FOUND
    await G.DeleteVolumeGroupSnapshot(csi.DeleteVolumeGroupSnapshotRequest(group_snapshot_id="nope"))
    await G.DeleteVolumeGroupSnapshot(csi.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=g1.group_snapshot_id))

