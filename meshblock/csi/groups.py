"""CSI GroupController: volume group snapshots over the admin API's group snapshots.

The controller holds the writes of every volume in the group while their replicas are
snapshotted (see meshblock/control/groups.py), so the snapshots are write-order consistent
with one another, as the CSI spec requires of a group snapshot.
"""

from __future__ import annotations

import grpc

from ..errors import AlreadyExists, InvalidArgument, NotFound
from ..proto.csi.v1 import csi_pb2 as csi
from ..proto.csi.v1 import csi_pb2_grpc as csi_grpc
from ..proto.meshblock.v1 import admin_pb2 as admin
from . import caps
from .admin import AdminClient, csi_method, is_code
from .snapshots import _uuid, timestamp, to_csi_snapshot

SERVICE = "csi.v1.GroupController"
MAX_GROUP_NAME = 120      # the admin API's limit (member snapshots are named after the group)
Rpc = csi.GroupControllerServiceCapability.RPC


def to_csi_group(g: admin.GroupSnapshot) -> csi.VolumeGroupSnapshot:
    snaps = [to_csi_snapshot(s) for s in g.snapshots]
    return csi.VolumeGroupSnapshot(group_snapshot_id=g.id, snapshots=snaps, creation_time=timestamp(g.created_at),
                                   ready_to_use=g.state == "ready" and all(s.ready_to_use for s in snaps))


def check_members(g: admin.GroupSnapshot, snapshot_ids: list[str]) -> None:
    """The CO's list of the group's snapshots, when it gives one, must be the group's."""
    if snapshot_ids and sorted(snapshot_ids) != sorted(s.id for s in g.snapshots):
        raise InvalidArgument("snapshot_ids", f"group snapshot {g.id} holds snapshots "
                                              f"{', '.join(sorted(s.id for s in g.snapshots))}")


class GroupControllerServicer(csi_grpc.GroupControllerServicer):
    def __init__(self, admin_client: AdminClient):
        self.admin = admin_client

    async def _find(self, group_snapshot_id: str) -> admin.GroupSnapshot | None:
        gid = _uuid(group_snapshot_id)
        if gid is None:
            return None
        try:
            return await self.admin.volumes.GetGroupSnapshot(admin.GetGroupSnapshotRequest(ref=gid))
        except grpc.aio.AioRpcError as e:
            if is_code(e, grpc.StatusCode.NOT_FOUND):
                return None
            raise

    @csi_method(SERVICE)
    async def GroupControllerGetCapabilities(self, request, context) -> csi.GroupControllerGetCapabilitiesResponse:
        return csi.GroupControllerGetCapabilitiesResponse(capabilities=[csi.GroupControllerServiceCapability(
            rpc=Rpc(type=Rpc.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT))])

    @csi_method(SERVICE)
    async def CreateVolumeGroupSnapshot(self, request, context) -> csi.CreateVolumeGroupSnapshotResponse:
        if not request.name:
            raise InvalidArgument("name", "required")
        if not request.source_volume_ids:
            raise InvalidArgument("source_volume_ids", "required")
        if request.parameters:
            raise InvalidArgument("parameters", "group snapshots take no parameters "
                                                f"(got {', '.join(sorted(request.parameters))})")
        vids = []
        for v in request.source_volume_ids:
            vid = _uuid(v)
            if vid is None:
                raise NotFound(f"volume {v!r} does not exist")
            vids.append(vid)
        name = caps.object_name(request.name, MAX_GROUP_NAME)
        try:
            g = await self.admin.volumes.CreateGroupSnapshot(admin.CreateGroupSnapshotRequest(name=name,
                                                                                              volume_refs=vids))
        except grpc.aio.AioRpcError as e:
            if is_code(e, grpc.StatusCode.NOT_FOUND):
                raise NotFound(f"source volume: {e.details()}") from None
            if is_code(e, grpc.StatusCode.ALREADY_EXISTS):
                raise AlreadyExists(f"group snapshot {request.name!r}: {e.details()}") from None
            raise
        return csi.CreateVolumeGroupSnapshotResponse(group_snapshot=to_csi_group(g))

    @csi_method(SERVICE)
    async def GetVolumeGroupSnapshot(self, request, context) -> csi.GetVolumeGroupSnapshotResponse:
        if not request.group_snapshot_id:
            raise InvalidArgument("group_snapshot_id", "required")
        g = await self._find(request.group_snapshot_id)
        if g is None:
            raise NotFound(f"group snapshot {request.group_snapshot_id!r} does not exist")
        check_members(g, list(request.snapshot_ids))
        return csi.GetVolumeGroupSnapshotResponse(group_snapshot=to_csi_group(g))

    @csi_method(SERVICE)
    async def DeleteVolumeGroupSnapshot(self, request, context) -> csi.DeleteVolumeGroupSnapshotResponse:
        if not request.group_snapshot_id:
            raise InvalidArgument("group_snapshot_id", "required")
        g = await self._find(request.group_snapshot_id)
        if g is not None:
            check_members(g, list(request.snapshot_ids))
            try:
                await self.admin.volumes.DeleteGroupSnapshot(admin.DeleteGroupSnapshotRequest(ref=g.id))
            except grpc.aio.AioRpcError as e:
                if not is_code(e, grpc.StatusCode.NOT_FOUND):
                    raise
        return csi.DeleteVolumeGroupSnapshotResponse()
