"""CSI snapshot calls (Controller service) over the admin API's snapshots."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ..errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from ..proto.csi.v1 import csi_pb2 as csi
from ..proto.meshblock.v1 import admin_pb2 as admin
from . import caps
from .admin import AdminClient, is_code

NOT_FOUND = grpc.StatusCode.NOT_FOUND


def _uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def timestamp(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


def to_csi_snapshot(s: admin.Snapshot) -> csi.Snapshot:
    return csi.Snapshot(snapshot_id=s.id, source_volume_id=s.volume_id, size_bytes=s.size_bytes,
                        creation_time=timestamp(s.created_at), ready_to_use=s.state == "ready",
                        group_snapshot_id=s.group_snapshot_id)


class SnapshotOps:
    def __init__(self, admin_client: AdminClient):
        self.admin = admin_client

    async def find(self, snapshot_id: str) -> admin.Snapshot | None:
        sid = _uuid(snapshot_id)
        if sid is None:
            return None
        try:
            return await self.admin.volumes.GetSnapshot(admin.GetSnapshotRequest(ref=sid))
        except grpc.aio.AioRpcError as e:
            if is_code(e, NOT_FOUND):
                return None
            raise

    async def take(self, name: str, volume_id: str) -> admin.Snapshot:
        """Create (or find again) the snapshot ``name`` of ``volume_id``."""
        obj = caps.object_name(name)
        try:
            s = await self.admin.volumes.GetSnapshot(admin.GetSnapshotRequest(ref=obj))
        except grpc.aio.AioRpcError as e:
            if not is_code(e, NOT_FOUND):
                raise
            s = None
        if s is not None and s.name == obj:
            if s.volume_id != volume_id:
                raise AlreadyExists(f"snapshot {name!r} exists for another volume")
            return s
        vid = _uuid(volume_id)
        if vid is None:
            raise NotFound(f"volume {volume_id!r} does not exist")
        try:
            return await self.admin.volumes.CreateSnapshot(admin.CreateSnapshotRequest(volume_ref=vid, name=obj))
        except grpc.aio.AioRpcError as e:
            if is_code(e, NOT_FOUND):
                raise NotFound(f"volume {volume_id!r} does not exist") from None
            raise

    async def create(self, request: csi.CreateSnapshotRequest) -> csi.CreateSnapshotResponse:
        if not request.name:
            raise InvalidArgument("name", "required")
        if not request.source_volume_id:
            raise InvalidArgument("source_volume_id", "required")
        if request.parameters:
            raise InvalidArgument("parameters", f"snapshots take no parameters (got {', '.join(request.parameters)})")
        return csi.CreateSnapshotResponse(snapshot=to_csi_snapshot(await self.take(request.name,
                                                                                   request.source_volume_id)))

    async def delete(self, request: csi.DeleteSnapshotRequest) -> csi.DeleteSnapshotResponse:
        if not request.snapshot_id:
            raise InvalidArgument("snapshot_id", "required")
        sid = _uuid(request.snapshot_id)
        if sid is not None:
            s = await self.find(sid)
            if s is not None and s.group_snapshot_id:
                raise InvalidArgument("snapshot_id", f"snapshot {sid} is part of group snapshot "
                                                     f"{s.group_snapshot_id}: delete the group snapshot")
            try:
                await self.admin.volumes.DeleteSnapshot(admin.DeleteSnapshotRequest(ref=sid))
            except grpc.aio.AioRpcError as e:
                if not is_code(e, NOT_FOUND):
                    raise
        return csi.DeleteSnapshotResponse()

    async def get(self, request: csi.GetSnapshotRequest) -> csi.GetSnapshotResponse:
        if not request.snapshot_id:
            raise InvalidArgument("snapshot_id", "required")
        s = await self.find(request.snapshot_id)
        if s is None:
            raise NotFound(f"snapshot {request.snapshot_id!r} does not exist")
        return csi.GetSnapshotResponse(snapshot=to_csi_snapshot(s))

    async def list(self, request: csi.ListSnapshotsRequest) -> csi.ListSnapshotsResponse:
        if request.max_entries < 0:
            raise InvalidArgument("max_entries", "cannot be negative")
        Entry = csi.ListSnapshotsResponse.Entry
        if request.snapshot_id:
            s = await self.find(request.snapshot_id)
            if s is None or (request.source_volume_id and s.volume_id != request.source_volume_id):
                return csi.ListSnapshotsResponse()
            return csi.ListSnapshotsResponse(entries=[Entry(snapshot=to_csi_snapshot(s))])
        volume_ref = ""
        if request.source_volume_id:
            volume_ref = _uuid(request.source_volume_id) or ""
            if not volume_ref:
                return csi.ListSnapshotsResponse()
        page = min(request.max_entries or 1000, 1000)
        token = request.starting_token
        out: list[admin.Snapshot] = []
        while True:
            try:
                reply = await self.admin.volumes.ListSnapshots(admin.ListSnapshotsRequest(
                    volume_ref=volume_ref, page_size=page, page_token=token))
            except grpc.aio.AioRpcError as e:
                if is_code(e, NOT_FOUND) and volume_ref:
                    return csi.ListSnapshotsResponse()
                if is_code(e, grpc.StatusCode.INVALID_ARGUMENT) and token:
                    raise Aborted(f"starting_token {token!r} is not valid") from None
                raise
            out += reply.snapshots
            token = reply.next_page_token
            if request.max_entries or not token:
                break
        return csi.ListSnapshotsResponse(entries=[Entry(snapshot=to_csi_snapshot(s)) for s in out],
                                         next_token=token)
