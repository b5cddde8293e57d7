"""CSI Controller service: volumes, publishing, capacity and expansion, over the admin API.

CSI volume ids are meshblock volume ids (UUIDs); CSI node ids are host ids registered by the node
plugins (see meshblock.control.hosts), each bound to the host NQN an NVMe/TCP volume's export must
admit and, optionally, the initiator IQN an iSCSI volume's export must admit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid

import grpc
from google.protobuf.wrappers_pb2 import Int64Value

from ..errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from ..proto.csi.v1 import csi_pb2 as csi
from ..proto.csi.v1 import csi_pb2_grpc as csi_grpc
from ..proto.meshblock.v1 import admin_pb2 as admin
from . import TOPOLOGY_NODE_KEY, caps
from .admin import AdminClient, csi_method, is_code
from .snapshots import SnapshotOps

log = logging.getLogger(__name__)
SERVICE = "csi.v1.Controller"
RPC = csi.ControllerServiceCapability.RPC
CAPABILITIES = (RPC.CREATE_DELETE_VOLUME, RPC.PUBLISH_UNPUBLISH_VOLUME, RPC.LIST_VOLUMES, RPC.GET_CAPACITY,
                RPC.CREATE_DELETE_SNAPSHOT, RPC.LIST_SNAPSHOTS, RPC.CLONE_VOLUME, RPC.PUBLISH_READONLY,
                RPC.EXPAND_VOLUME, RPC.LIST_VOLUMES_PUBLISHED_NODES, RPC.VOLUME_CONDITION, RPC.GET_VOLUME,
                RPC.SINGLE_NODE_MULTI_WRITER, RPC.MODIFY_VOLUME, RPC.GET_SNAPSHOT)
READY_TIMEOUT = 120.0
SERVING = ("available", "degraded")


def qos_pb(params: caps.VolumeParams) -> admin.QosLimits:
    return admin.QosLimits(**dataclasses.asdict(params.qos))


def volume_uuid(field: str, value: str) -> str | None:
    """The volume id if it can name a meshblock volume at all (None: it cannot exist)."""
    if not value:
        raise InvalidArgument(field, "required")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def condition(v: admin.Volume) -> csi.VolumeCondition:
    if v.state == "available":
        return csi.VolumeCondition(abnormal=False, message="healthy")
    if v.state == "degraded":
        down = [r.node_name or r.node_id for r in v.replica_status if r.state != "online"]
        return csi.VolumeCondition(abnormal=True, message=f"degraded: replicas not in sync on {', '.join(down)}; "
                                                          "the volume serves and is being repaired")
    return csi.VolumeCondition(abnormal=True, message=f"{v.state}: {v.message}".rstrip(": "))


def host_name(v: admin.Volume, host: admin.Host) -> str:
    """The name volume ``v``'s export admits ``host`` by: its initiator IQN for iSCSI, else its host NQN."""
    if v.protocol != "iscsi":
        return host.host_nqn
    if not host.initiator_iqn:
        raise FailedPrecondition(f"volume {v.id} is exported over iSCSI and node {host.id} registered no initiator "
                                 "IQN (its node plugin reads /etc/iscsi/initiatorname.iscsi or --initiator-iqn)")
    return host.initiator_iqn


def host_field(v: admin.Volume, name: str) -> dict[str, str]:
    """The admin API's field for a host name of volume ``v``: ``initiator_iqn`` or ``host_nqn``."""
    return {"initiator_iqn": name} if v.protocol == "iscsi" else {"host_nqn": name}


DHCHAP_CONTEXT = "dhchap"    # volume context: the StorageClass's dhchap parameter, as the admin API names it


def volume_context(v: admin.Volume) -> dict[str, str]:
    ctx = {"protocol": "iscsi", "targetIQN": v.target_iqn} if v.protocol == "iscsi" else {"nqn": v.nqn}
    ctx = {**ctx, "namespaceUUID": v.namespace_uuid, "replicas": str(v.replicas)}
    if v.HasField("erasure"):
        ctx["erasure"] = f"{v.erasure.data}+{v.erasure.parity}"
    return ctx


def to_csi_volume(v: admin.Volume) -> csi.Volume:
    src = None
    if v.source_snapshot_id and not v.source_volume_id:
        src = csi.VolumeContentSource(snapshot=csi.VolumeContentSource.SnapshotSource(
            snapshot_id=v.source_snapshot_id))
    elif v.source_volume_id:
        src = csi.VolumeContentSource(volume=csi.VolumeContentSource.VolumeSource(volume_id=v.source_volume_id))
    return csi.Volume(volume_id=v.id, capacity_bytes=v.size_bytes, content_source=src,
                      volume_context=volume_context(v))


class ControllerServicer(csi_grpc.ControllerServicer):
    def __init__(self, admin_client: AdminClient):
        self.admin = admin_client
        self.snapshots = SnapshotOps(admin_client)
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def _get(self, volume_id: str, field: str = "volume_id") -> admin.Volume:
        vid = volume_uuid(field, volume_id)
        if vid is None:
            raise NotFound(f"volume {volume_id!r} does not exist")
        try:
            return await self.admin.volumes.GetVolume(admin.GetVolumeRequest(ref=vid))
        except grpc.aio.AioRpcError as e:
            if is_code(e, grpc.StatusCode.NOT_FOUND):
                raise NotFound(f"volume {volume_id!r} does not exist") from None
            raise

    async def _wait_serving(self, v: admin.Volume) -> admin.Volume:
        deadline = time.monotonic() + READY_TIMEOUT
        while v.state not in SERVING:
            if v.state == "faulted":
                raise Unavailable(f"volume {v.name} faulted while it was created: {v.message}")
            if time.monotonic() > deadline:
                raise Unavailable(f"volume {v.name} is still {v.state} ({v.stage}); retry")
            await asyncio.sleep(0.2)
            v = await self.admin.volumes.GetVolume(admin.GetVolumeRequest(ref=v.id))
        return v

    async def _host_nqns(self) -> dict[str, str]:
        """Host id by every name a volume's ``hosts`` may list it by (host NQN, initiator IQN)."""
        reply = await self.admin.hosts.ListHosts(admin.ListHostsRequest())
        by_name = {h.host_nqn: h.id for h in reply.hosts}
        by_name.update({h.initiator_iqn: h.id for h in reply.hosts if h.initiator_iqn})
        return by_name

    # --- volumes -------------------------------------------------------------------------------
    @csi_method(SERVICE)
    async def CreateVolume(self, request: csi.CreateVolumeRequest, context) -> csi.CreateVolumeResponse:
        if not request.name:
            raise InvalidArgument("name", "required")
        caps.require_capabilities(request.volume_capabilities)
        params = caps.parse_parameters(dict(request.parameters), dict(request.mutable_parameters))
        iscsi = self._iscsi_options(params, dict(request.secrets))
        cr = request.capacity_range if request.HasField("capacity_range") else None
        size = caps.size_for(cr)
        name = caps.object_name(request.name)
        src = request.volume_content_source if request.HasField("volume_content_source") else None
        kind = src.WhichOneof("type") if src is not None else None
        async with self._lock("volume:" + name):
            try:
                existing = await self.admin.volumes.GetVolume(admin.GetVolumeRequest(ref=name))
            except grpc.aio.AioRpcError as e:
                if not is_code(e, grpc.StatusCode.NOT_FOUND):
                    raise
                existing = None
            if existing is not None and existing.name == name:
                self._check_same(existing, request.name, cr, params, src, kind)
                v = await self._wait_serving(existing)
            elif kind is None:
                ec = params.erasure
                v = await self.admin.volumes.CreateVolume(admin.CreateVolumeRequest(
                    name=name, size_bytes=size, replicas=0 if ec else params.replicas, spread=params.spread,
                    protocol=params.protocol, iscsi=iscsi, qos=qos_pb(params),
                    erasure=admin.ErasureCoding(data=ec.data, parity=ec.parity) if ec else None))
                v = await self._wait_serving(v)
            elif params.erasure is not None:
                raise InvalidArgument("parameters", "erasure-coded volumes cannot be made from a snapshot or "
                                                    "another volume")
            else:
                v = await self._clone(name, size, params, iscsi, src, kind)
        if not caps.fits(v.size_bytes, cr):
            raise AlreadyExists(f"volume {request.name!r} exists with {v.size_bytes} bytes, outside the range asked")
        out = to_csi_volume(v)
        if params.dhchap:    # ControllerPublishVolume publishes with it (the context comes back there)
            out.volume_context[DHCHAP_CONTEXT] = params.dhchap
        if src is not None:
            out.content_source.CopyFrom(src)
        log.info("csi create volume name=%s volume_id=%s size=%d replicas=%d", request.name, v.id, v.size_bytes,
                 v.replicas)
        return csi.CreateVolumeResponse(volume=out)

    @staticmethod
    def _iscsi_options(params: caps.VolumeParams, secrets: dict[str, str]) -> admin.IscsiOptions | None:
        user, secret = caps.chap_from_secrets(secrets)
        if params.protocol != "iscsi":
            if user:
                raise InvalidArgument("secrets", "CHAP credentials are for volumes with protocol iscsi")
            return None
        return admin.IscsiOptions(netmasks=list(params.iscsi_networks), chap_user=user, chap_secret=secret)

    def _check_same(self, v: admin.Volume, csi_name: str, cr, params: caps.VolumeParams, src, kind) -> None:
        problems = []
        if not caps.fits(v.size_bytes, cr):
            problems.append(f"its size is {v.size_bytes} bytes")
        ec = (v.erasure.data, v.erasure.parity) if v.HasField("erasure") else None
        if ec != ((params.erasure.data, params.erasure.parity) if params.erasure else None):
            problems.append(f"it is erasure-coded {ec[0]}+{ec[1]}" if ec else "it is replicated")
        elif v.replicas != params.replicas:
            problems.append(f"it has {v.replicas} replica(s)")
        if v.spread != params.spread:
            problems.append(f"it spreads over {v.spread or 'nodes'!r}")
        if (v.protocol or "nvmf") != params.protocol:
            problems.append(f"it is exported over {v.protocol or 'nvmf'}")
        if kind == "snapshot" and v.source_snapshot_id != src.snapshot.snapshot_id:
            problems.append("it was not made from that snapshot")
        if kind == "volume" and v.source_volume_id != src.volume.volume_id:
            problems.append("it was not cloned from that volume")
        if kind is None and (v.source_snapshot_id or v.source_volume_id):
            problems.append("it was made from a content source")
        if problems:
            raise AlreadyExists(f"volume {csi_name!r} exists with other parameters: {'; '.join(problems)}")

    async def _clone(self, name: str, size: int, params: caps.VolumeParams, iscsi: admin.IscsiOptions | None, src,
                     kind) -> admin.Volume:
        if kind == "snapshot":
            sid = src.snapshot.snapshot_id
            snap = await self.snapshots.find(sid)
            if snap is None:
                raise NotFound(f"snapshot {sid!r} does not exist")
            if snap.size_bytes > size:
                raise InvalidArgument("capacity_range", f"the snapshot holds {snap.size_bytes} bytes, more than "
                                                        f"the {size} asked for")
            req = admin.CloneVolumeRequest(name=name, source_snapshot_ref=snap.id, size_bytes=size,
                                            replicas=params.replicas, spread=params.spread,
                                            protocol=params.protocol, iscsi=iscsi, qos=qos_pb(params))
        else:
            source = await self._get(src.volume.volume_id, "volume_content_source")
            if source.size_bytes > size:
                raise InvalidArgument("capacity_range", f"the source volume holds {source.size_bytes} bytes, "
                                                        f"more than the {size} asked for")
            req = admin.CloneVolumeRequest(name=name, source_volume_ref=source.id, size_bytes=size,
                                            replicas=params.replicas, spread=params.spread,
                                            protocol=params.protocol, iscsi=iscsi, qos=qos_pb(params))
        return await self._wait_serving(await self.admin.volumes.CloneVolume(req))

    @csi_method(SERVICE)
    async def DeleteVolume(self, request: csi.DeleteVolumeRequest, context) -> csi.DeleteVolumeResponse:
        vid = volume_uuid("volume_id", request.volume_id)
        if vid is None:
            return csi.DeleteVolumeResponse()
        async with self._lock("id:" + vid):
            try:
                await self.admin.volumes.DeleteVolume(admin.DeleteVolumeRequest(ref=vid))
            except grpc.aio.AioRpcError as e:
                if not is_code(e, grpc.StatusCode.NOT_FOUND):
                    raise
        return csi.DeleteVolumeResponse()

    @csi_method(SERVICE)
    async def ControllerPublishVolume(self, request: csi.ControllerPublishVolumeRequest,
                                      context) -> csi.ControllerPublishVolumeResponse:
        if not request.node_id:
            raise InvalidArgument("node_id", "required")
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability", "required")
        caps.require_capabilities([request.volume_capability], "volume_capability")
        v = await self._get(request.volume_id)
        try:
            host = await self.admin.hosts.GetHost(admin.GetHostRequest(id=request.node_id))
        except grpc.aio.AioRpcError as e:
            if is_code(e, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise NotFound(f"node {request.node_id!r} is not known (its node plugin registers it)") from None
            raise
        name = host_name(v, host)
        iscsi = v.protocol == "iscsi"
        auth = request.volume_context.get(DHCHAP_CONTEXT, "")
        async with self._lock("id:" + v.id):
            if name not in v.hosts or (name in v.read_only_hosts) != request.readonly or \
                    (auth and v.host_auth.get(name) != auth):
                if name not in v.hosts and host.max_volumes:
                    await self._check_limit(host)
                if name not in v.hosts and caps.single_node([request.volume_capability]):
                    others = await self._published_nodes(v)
                    if others:
                        raise FailedPrecondition(f"volume {v.id} is published to node(s) {', '.join(others)} and "
                                                 f"its access mode allows one node")
                v = await self.admin.volumes.PublishVolume(admin.PublishVolumeRequest(
                    ref=v.id, read_only=request.readonly, dhchap=bool(auth),
                    dhchap_bidirectional=auth == "dhchap-bidirectional", **host_field(v, name)))
            info = await self.admin.volumes.GetConnectInfo(admin.GetConnectInfoRequest(ref=v.id,
                                                                                      **host_field(v, name)))
        readonly = "true" if request.readonly else "false"
        if iscsi:
            return csi.ControllerPublishVolumeResponse(publish_context={
                "protocol": "iscsi", "targetIQN": info.target_iqn, "lun": "0", "chapUser": info.chap_user,
                "portals": ",".join(f"{p.traddr}:{p.trsvcid}" for p in info.paths), "readonly": readonly})
        paths = ",".join(f"{p.transport}:{p.traddr}:{p.trsvcid}" for p in info.paths)
        return csi.ControllerPublishVolumeResponse(publish_context={
            "nqn": info.subnqn, "namespaceUUID": info.namespace_uuid, "paths": paths, "readonly": readonly})

    async def _check_limit(self, host: admin.Host) -> None:
        count, token = 0, ""
        while True:
            page = await self.admin.volumes.ListVolumes(admin.ListVolumesRequest(page_size=1000, page_token=token))
            count += sum(1 for v in page.volumes
                         if host.host_nqn in v.hosts or (host.initiator_iqn and host.initiator_iqn in v.hosts))
            token = page.next_page_token
            if not token:
                break
        if count >= host.max_volumes:
            raise ResourceExhausted(f"node {host.id} has {count} volumes published, its limit")

    async def _published_nodes(self, v: admin.Volume) -> list[str]:
        by_nqn = await self._host_nqns()
        return [by_nqn.get(n, n) for n in v.hosts]

    @csi_method(SERVICE)
    async def ControllerUnpublishVolume(self, request: csi.ControllerUnpublishVolumeRequest,
                                        context) -> csi.ControllerUnpublishVolumeResponse:
        try:
            v = await self._get(request.volume_id)
        except NotFound:
            return csi.ControllerUnpublishVolumeResponse()   # a deleted volume is published nowhere
        async with self._lock("id:" + v.id):
            if request.node_id:
                try:
                    host = await self.admin.hosts.GetHost(admin.GetHostRequest(id=request.node_id))
                except grpc.aio.AioRpcError as e:
                    if is_code(e, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                        return csi.ControllerUnpublishVolumeResponse()   # never published there
                    raise
                nqns = [host.initiator_iqn if v.protocol == "iscsi" else host.host_nqn]
            else:
                by_nqn = await self._host_nqns()
                nqns = [n for n in v.hosts if n in by_nqn]
            for nqn in nqns:
                if nqn and nqn in v.hosts:
                    v = await self.admin.volumes.UnpublishVolume(admin.UnpublishVolumeRequest(
                        ref=v.id, **host_field(v, nqn)))
        return csi.ControllerUnpublishVolumeResponse()

    @csi_method(SERVICE)
    async def ValidateVolumeCapabilities(self, request: csi.ValidateVolumeCapabilitiesRequest,
                                         context) -> csi.ValidateVolumeCapabilitiesResponse:
        volume_uuid("volume_id", request.volume_id)
        if not request.volume_capabilities:
            raise InvalidArgument("volume_capabilities", "at least one volume capability is required")
        for cap in request.volume_capabilities:
            caps.check_capability(cap)
        v = await self._get(request.volume_id)
        for cap in request.volume_capabilities:
            problem = caps.check_capability(cap)
            if problem:
                return csi.ValidateVolumeCapabilitiesResponse(message=problem)
        try:
            params = caps.parse_parameters(dict(request.parameters), dict(request.mutable_parameters))
        except InvalidArgument as e:
            return csi.ValidateVolumeCapabilitiesResponse(message=str(e))
        if request.parameters and (params.replicas != v.replicas or params.spread != v.spread
                                   or params.protocol != (v.protocol or "nvmf")):
            return csi.ValidateVolumeCapabilitiesResponse(message="the parameters differ from the volume's")
        return csi.ValidateVolumeCapabilitiesResponse(confirmed=csi.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=request.volume_context, volume_capabilities=request.volume_capabilities,
            parameters=request.parameters, mutable_parameters=request.mutable_parameters))

    @csi_method(SERVICE)
    async def ListVolumes(self, request: csi.ListVolumesRequest, context) -> csi.ListVolumesResponse:
        if request.max_entries < 0:
            raise InvalidArgument("max_entries", "cannot be negative")
        by_nqn = await self._host_nqns()
        page = min(request.max_entries or 1000, 1000)
        try:
            reply = await self.admin.volumes.ListVolumes(admin.ListVolumesRequest(
                page_size=page, page_token=request.starting_token))
        except grpc.aio.AioRpcError as e:
            if is_code(e, grpc.StatusCode.INVALID_ARGUMENT) and request.starting_token:
                raise Aborted(f"starting_token {request.starting_token!r} is not valid") from None
            raise
        vols = list(reply.volumes)
        token = reply.next_page_token
        while not request.max_entries and token:
            reply = await self.admin.volumes.ListVolumes(admin.ListVolumesRequest(page_size=page, page_token=token))
            vols += reply.volumes
            token = reply.next_page_token
        Status = csi.ListVolumesResponse.VolumeStatus
        entries = [csi.ListVolumesResponse.Entry(
            volume=to_csi_volume(v),
            status=Status(published_node_ids=[by_nqn[n] for n in v.hosts if n in by_nqn],
                          volume_condition=condition(v))) for v in vols if v.state != "deleting"]
        return csi.ListVolumesResponse(entries=entries, next_token=token)

    @csi_method(SERVICE)
    async def ControllerGetVolume(self, request: csi.ControllerGetVolumeRequest,
                                  context) -> csi.ControllerGetVolumeResponse:
        v = await self._get(request.volume_id)
        by_nqn = await self._host_nqns()
        Status = csi.ControllerGetVolumeResponse.VolumeStatus
        return csi.ControllerGetVolumeResponse(volume=to_csi_volume(v), status=Status(
            published_node_ids=[by_nqn[n] for n in v.hosts if n in by_nqn], volume_condition=condition(v)))

    @csi_method(SERVICE)
    async def GetCapacity(self, request: csi.GetCapacityRequest, context) -> csi.GetCapacityResponse:
        for cap in request.volume_capabilities:
            if caps.check_capability(cap, "volume_capabilities"):
                return csi.GetCapacityResponse(available_capacity=0)
        params = caps.parse_parameters(dict(request.parameters))
        nodes = (await self.admin.nodes.ListNodes(admin.ListNodesRequest())).nodes
        usable = [n for n in nodes if n.state == "up" and not n.cordoned]
        wanted = request.accessible_topology.segments.get(TOPOLOGY_NODE_KEY) \
            if request.HasField("accessible_topology") else None
        free = sorted((n.free_bytes for n in usable), reverse=True)
        if len(free) < params.replicas:
            return csi.GetCapacityResponse(available_capacity=0, maximum_volume_size=Int64Value(value=0))
        # every replica holds the whole volume; every shard of an erasure-coded one 1/k of it
        k = params.data_shards
        largest = free[params.replicas - 1] * k
        if wanted:
            # a volume whose head is on that node: its replica (or shard) there bounds the size
            here = [n.free_bytes * k for n in usable if n.name == wanted or n.id == wanted]
            largest = min([largest] + here) if here else 0
        available = sum(free) * k // params.replicas if not wanted else largest
        return csi.GetCapacityResponse(available_capacity=available, maximum_volume_size=Int64Value(value=largest),
                                       minimum_volume_size=Int64Value(value=caps.GRANULARITY))

    @csi_method(SERVICE)
    async def ControllerGetCapabilities(self, request, context) -> csi.ControllerGetCapabilitiesResponse:
        return csi.ControllerGetCapabilitiesResponse(capabilities=[
            csi.ControllerServiceCapability(rpc=RPC(type=t)) for t in CAPABILITIES])

    @csi_method(SERVICE)
    async def ControllerExpandVolume(self, request: csi.ControllerExpandVolumeRequest,
                                     context) -> csi.ControllerExpandVolumeResponse:
        volume_uuid("volume_id", request.volume_id)
        if not request.HasField("capacity_range"):
            raise InvalidArgument("capacity_range", "required")
        size = caps.size_for(request.capacity_range)
        v = await self._get(request.volume_id)
        block = request.HasField("volume_capability") and caps.is_block([request.volume_capability])
        if v.size_bytes < size:
            async with self._lock("id:" + v.id):
                v = await self.admin.volumes.ResizeVolume(admin.ResizeVolumeRequest(ref=v.id, size_bytes=size))
        return csi.ControllerExpandVolumeResponse(capacity_bytes=v.size_bytes, node_expansion_required=not block)

    @csi_method(SERVICE)
    async def ControllerModifyVolume(self, request: csi.ControllerModifyVolumeRequest,
                                     context) -> csi.ControllerModifyVolumeResponse:
        volume_uuid("volume_id", request.volume_id)
        for key in request.mutable_parameters:
            if key not in caps.MUTABLE_PARAMETERS:
                raise InvalidArgument("mutable_parameters", f"{key!r} cannot be changed (mutable: "
                                                            f"{', '.join(sorted(caps.MUTABLE_PARAMETERS))})")
        limits = caps.parse_qos(dict(request.mutable_parameters), "mutable_parameters")
        v = await self._get(request.volume_id)
        if limits:
            async with self._lock("id:" + v.id):
                await self.admin.volumes.SetVolumeQos(admin.SetVolumeQosRequest(ref=v.id, **limits))
        if "replicas" in request.mutable_parameters:
            n = caps.parse_replicas(request.mutable_parameters["replicas"], "mutable_parameters")
            if n != v.replicas:
                if v.replicas == 1 or n == 1:
                    raise InvalidArgument("mutable_parameters", "replicas: a volume created with one replica "
                                                                "keeps one; replicated volumes keep 2 to 5")
                async with self._lock("id:" + v.id):
                    await self.admin.volumes.SetReplicas(admin.SetReplicasRequest(ref=v.id, replicas=n))
        return csi.ControllerModifyVolumeResponse()

    # --- snapshots -------------------------------------------------------------------------------
    @csi_method(SERVICE)
    async def CreateSnapshot(self, request, context) -> csi.CreateSnapshotResponse:
        return await self.snapshots.create(request)

    @csi_method(SERVICE)
    async def DeleteSnapshot(self, request, context) -> csi.DeleteSnapshotResponse:
        return await self.snapshots.delete(request)

    @csi_method(SERVICE)
    async def ListSnapshots(self, request, context) -> csi.ListSnapshotsResponse:
        return await self.snapshots.list(request)

    @csi_method(SERVICE)
    async def GetSnapshot(self, request, context) -> csi.GetSnapshotResponse:
        return await self.snapshots.get(request)
