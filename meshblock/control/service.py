"""The admin API servicers: validate input, call the managers, convert records to messages."""

from __future__ import annotations

import base64
import dataclasses
from typing import Callable


from ..errors import FailedPrecondition, InvalidArgument, MeshblockError, NotFound, Unavailable
from ..grpcutil import rpc_method, status_of
from ..model import GroupSnapshot, Node, NodeState, Replica, Snapshot, Volume, VolumeState
from ..proto.meshblock.v1 import admin_pb2 as pb
from ..proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from ..qos import QosLimits, problems
from ..replication import erasure
from ..model.tenancy import tenant_of
from . import auth, host_auth, validate
from .liveness import Liveness
from .readiness import Readiness
from .reconciler import INTERNAL_SNAPSHOT_PREFIX
from .volume_stats import volume_stats
from .volumes import CLUSTER_GRANULARITY, VolumeManager, VolumeSpec

VOLUME_SERVICE = "meshblock.v1.VolumeService"
NODE_SERVICE = "meshblock.v1.NodeService"
CLUSTER_SERVICE = "meshblock.v1.ClusterService"
REGISTRY_SERVICE = "meshblock.v1.NodeRegistry"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_GROUP_VOLUMES = 64
MAX_GROUP_NAME = 120
QOS_FIELDS = tuple(f.name for f in dataclasses.fields(QosLimits))


def _token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode() if value else ""


def _untoken(token: str) -> str | None:
    if not token:
        return None
    try:
        value = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        value = ""
    if not value:
        raise InvalidArgument("page_token", "not a token this server issued")
    return value


def volume_pb(v: Volume, reps: list[Replica], nodes: dict[str, Node], rebuild: dict | None = None) -> pb.Volume:
    rebuild = rebuild or {}

    def status(r: Replica) -> pb.ReplicaStatus:
        st = pb.ReplicaStatus(replica_id=r.id, node_id=r.node_id,
                              node_name=nodes[r.node_id].name if r.node_id in nodes else "", state=r.state.value,
                              shard=r.shard if r.shard >= 0 else None)
        prog = rebuild.get(r.id)
        if prog is not None and r.state.value == "rebuilding":
            st.rebuild_progress = prog.percent / 100.0
            if prog.eta_seconds is not None:
                st.rebuild_eta_seconds = int(prog.eta_seconds)
        return st

    return pb.Volume(
        id=v.id, name=v.name, size_bytes=v.size_bytes, replicas=v.replicas, spread=v.spread, labels=v.labels,
        state=v.state.value, stage=v.stage, nqn=v.nqn, namespace_uuid=v.namespace_uuid, head_node_id=v.head_node_id,
        hosts=v.hosts, read_only_hosts=v.read_only_hosts, source_snapshot_id=v.source_snapshot_id, source_volume_id=v.source_volume_id,
        created_at=v.created_at, message=v.message, replica_status=[status(r) for r in reps],
        protocol=v.protocol, target_iqn=v.target_iqn, iscsi_netmasks=v.iscsi_netmasks, chap_user=v.chap_user,
        erasure=pb.ErasureCoding(data=v.ec_data, parity=v.ec_parity) if v.ec_data else None,
        qos=pb.QosLimits(**dataclasses.asdict(v.qos)), tenant=tenant_of(v.tenant), host_auth=host_auth.modes(v),
        tls=v.tls)


def _page_by_name(items: list, page_size: int, page_token: str) -> tuple[list, str]:
    """One page of records listed by name, and the token of the next page ("" on the last)."""
    size = page_size or DEFAULT_PAGE
    if size > MAX_PAGE:
        raise InvalidArgument("page_size", f"at most {MAX_PAGE}")
    after = _untoken(page_token)
    if after:
        items = [x for x in items if x.name > after]
    page = items[:size]
    return page, _token(page[-1].name) if len(items) > size else ""


def snapshot_pb(s: Snapshot) -> pb.Snapshot:
    return pb.Snapshot(id=s.id, name=s.name, volume_id=s.volume_id, size_bytes=s.size_bytes, state=s.state.value,
                       created_at=s.created_at, group_snapshot_id=s.group_id, tenant=tenant_of(s.tenant))


class Gate:
    """Refuses API calls while this controller is not the leader."""

    def __init__(self) -> None:
        self.active = False
        self.settled = False     # known nodes have called in since this controller took over
        self.leader_hint = ""

    def check(self, settled: bool = True) -> None:
        if not self.active:
            raise Unavailable("this controller is a standby" + (f"; the leader is {self.leader_hint}"
                                                                 if self.leader_hint else ""))
        if settled and not self.settled:
            raise Unavailable("this controller has just taken over and waits for the nodes to call in; "
                              "retry in a moment")


class VolumeServicer(pb_grpc.VolumeServiceServicer):
    def __init__(self, mgr: VolumeManager, gate: Gate):
        self.mgr = mgr
        self.gate = gate

    async def _pb(self, v: Volume) -> pb.Volume:
        nodes = await self.mgr.nodes()
        return volume_pb(v, await self.mgr.replicas_of(v.id), nodes, self.mgr.reconciler.rebuild)

    def _spec(self, name: str, size: int, replicas: int, spread: str, labels) -> VolumeSpec:
        return VolumeSpec(name=validate.name("name", name), size_bytes=validate.size("size_bytes", size,
                                                                                       CLUSTER_GRANULARITY),
                          replicas=validate.replicas("replicas", replicas), spread=spread,
                          labels=validate.labels("labels", dict(labels)))

    @staticmethod
    def _protocol(spec: VolumeSpec, request) -> VolumeSpec:
        """The export protocol and, for iSCSI, its settings (CreateVolume and CloneVolume)."""
        spec.protocol = validate.protocol("protocol", request.protocol)
        i = request.iscsi
        if spec.protocol != "iscsi":
            if request.HasField("iscsi") and (i.netmasks or i.chap_user or i.chap_secret):
                raise InvalidArgument("iscsi", "iSCSI settings need protocol iscsi")
            return spec
        spec.iscsi_netmasks = validate.netmasks("iscsi.netmasks", list(i.netmasks))
        spec.chap_user, spec.chap_secret = validate.chap(i.chap_user, i.chap_secret)
        return spec

    async def _host(self, v: Volume, host_nqn: str, initiator_iqn: str) -> str:
        """The host a publish, unpublish or connect call names: an NQN, or for iSCSI an IQN."""
        if v.protocol == "iscsi":
            if not initiator_iqn and not host_nqn:
                raise InvalidArgument("initiator_iqn", f"required: volume {v.name!r} is exported over iSCSI")
            got = validate.iqn("initiator_iqn" if initiator_iqn else "host_nqn", initiator_iqn or host_nqn)
            if initiator_iqn and host_nqn and validate.iqn("host_nqn", host_nqn) != got:
                raise InvalidArgument("host_nqn", "names another initiator than initiator_iqn; give one")
            return got
        if initiator_iqn:
            raise InvalidArgument("initiator_iqn", f"volume {v.name!r} is exported over NVMe/TCP; give host_nqn")
        return validate.host_nqn("host_nqn", host_nqn)

    @rpc_method(VOLUME_SERVICE)
    async def CreateVolume(self, request: pb.CreateVolumeRequest, context) -> pb.Volume:
        self.gate.check()
        spec = self._spec(request.name, request.size_bytes, request.replicas, request.spread, request.labels)
        spec = self._protocol(spec, request)
        spec.qos = self._qos(request)
        spec.tenant = self.mgr.quotas.owner(request.tenant) if self.mgr.quotas is not None else ""
        if request.HasField("erasure"):
            spec = self._erasure(spec, request)
        if request.tls:
            if spec.protocol != "nvmf":
                raise InvalidArgument("tls", "TLS is for NVMe/TCP volumes; iSCSI volumes use CHAP")
            if self.mgr.secrets is None:
                raise FailedPrecondition(f"volume {spec.name!r}: {host_auth.NO_KEY_TLS}")
            spec.tls = True
        return await self._pb(await self.mgr.wait_ready(await self.mgr.create(spec)))

    @staticmethod
    def _qos(request) -> QosLimits:
        """The QoS limits of a CreateVolume or CloneVolume request (none when not given)."""
        q = request.qos
        return validate.qos("qos", QosLimits(q.max_iops, q.max_mbps, q.max_read_mbps, q.max_write_mbps))

    @staticmethod
    def _erasure(spec: VolumeSpec, request: pb.CreateVolumeRequest) -> VolumeSpec:
        ec = erasure.check(request.erasure.data, request.erasure.parity)
        if request.replicas:
            raise InvalidArgument("replicas", f"an erasure-coded volume has its {ec.shards} shards instead of "
                                              "replicas; leave replicas unset")
        if spec.protocol != "nvmf":
            raise InvalidArgument("protocol", "erasure-coded volumes are exported over NVMe/TCP only")
        spec.erasure, spec.replicas = ec, ec.shards
        spec.size_bytes = ec.volume_bytes(spec.size_bytes)
        return spec

    @rpc_method(VOLUME_SERVICE)
    async def GetVolume(self, request: pb.GetVolumeRequest, context) -> pb.Volume:
        self.gate.check()
        return await self._pb(await self.mgr.require(validate.ref("ref", request.ref)))

    @rpc_method(VOLUME_SERVICE)
    async def ListVolumes(self, request: pb.ListVolumesRequest, context) -> pb.ListVolumesReply:
        self.gate.check()
        size = request.page_size or DEFAULT_PAGE
        if size > MAX_PAGE:
            raise InvalidArgument("page_size", f"at most {MAX_PAGE}")
        if request.state and request.state not in {s.value for s in VolumeState}:
            raise InvalidArgument("state", f"{request.state!r} is not a volume state")
        cursor = _untoken(request.page_token)
        caller = auth.current()
        nodes = await self.mgr.nodes()
        out: list[pb.Volume] = []
        batch_size = max(size, 200)
        while len(out) < size:
            batch = await self.mgr.volumes_after(cursor, batch_size)
            for v in batch:
                cursor = v.name
                if not caller.sees(v.tenant):
                    continue
                if request.state and v.state.value != request.state:
                    continue
                if any(v.labels.get(k) != val for k, val in request.label_selector.items()):
                    continue
                reps = await self.mgr.replicas_of(v.id)
                if request.node_id and not any(r.node_id == request.node_id for r in reps):
                    continue
                out.append(volume_pb(v, reps, nodes, self.mgr.reconciler.rebuild))
                if len(out) == size:
                    break
            if len(batch) < batch_size:
                break
        more = len(out) == size and bool(await self.mgr.volumes_after(out[-1].name, 1))
        return pb.ListVolumesReply(volumes=out, next_page_token=_token(out[-1].name) if more else "")

    @rpc_method(VOLUME_SERVICE)
    async def DeleteVolume(self, request: pb.DeleteVolumeRequest, context) -> pb.DeleteVolumeReply:
        self.gate.check()
        return pb.DeleteVolumeReply(existed=await self.mgr.delete(validate.ref("ref", request.ref)))

    @rpc_method(VOLUME_SERVICE)
    async def ResizeVolume(self, request: pb.ResizeVolumeRequest, context) -> pb.Volume:
        self.gate.check()
        size = validate.size("size_bytes", request.size_bytes, CLUSTER_GRANULARITY)
        return await self._pb(await self.mgr.resize(validate.ref("ref", request.ref), size))

    @rpc_method(VOLUME_SERVICE)
    async def PublishVolume(self, request: pb.PublishVolumeRequest, context) -> pb.Volume:
        self.gate.check()
        v = await self.mgr.require(validate.ref("ref", request.ref))
        host = await self._host(v, request.host_nqn, request.initiator_iqn)
        return await self._pb(await self.mgr.publish(v.id, host, request.read_only, dhchap=request.dhchap,
                                                     dhchap_bidirectional=request.dhchap_bidirectional,
                                                     rotate_dhchap=request.rotate_dhchap))

    @rpc_method(VOLUME_SERVICE)
    async def UnpublishVolume(self, request: pb.UnpublishVolumeRequest, context) -> pb.Volume:
        self.gate.check()
        v = await self.mgr.require(validate.ref("ref", request.ref))
        host = await self._host(v, request.host_nqn, request.initiator_iqn)
        return await self._pb(await self.mgr.unpublish(v.id, host))

    @rpc_method(VOLUME_SERVICE)
    async def GetConnectInfo(self, request: pb.GetConnectInfoRequest, context) -> pb.ConnectInfo:
        self.gate.check()
        v = await self.mgr.require(validate.ref("ref", request.ref))
        host = await self._host(v, request.host_nqn, request.initiator_iqn)
        if not v.head_node_id or v.state not in (VolumeState.AVAILABLE, VolumeState.DEGRADED):
            raise FailedPrecondition(f"volume {v.name!r} is {v.state.value} and not exported yet")
        node = await self.mgr.repo.get(Node, v.head_node_id)
        if node is None:
            raise Unavailable(f"the head node of volume {v.name!r} is unknown")
        if v.protocol == "iscsi":
            if not v.export_address:
                raise FailedPrecondition(f"volume {v.name!r} has no iSCSI portal yet")
            info = pb.ConnectInfo(protocol="iscsi", target_iqn=v.target_iqn, initiator_iqn=host,
                                  chap_user=v.chap_user, namespace_uuid=v.namespace_uuid, size_bytes=v.size_bytes,
                                  paths=[pb.Path(transport="iscsi", traddr=v.export_address,
                                                 trsvcid=str(v.export_port), ana_state="optimized",
                                                 node_id=node.id)])
        else:
            if not v.export_address:
                raise Unavailable(f"the head of volume {v.name!r} is moving; try again shortly")
            paths = [pb.Path(transport="tcp", traddr=v.export_address, trsvcid=str(v.export_port),
                             ana_state="optimized", node_id=node.id)]
            for node_id, where in sorted(v.standby_paths.items()):
                addr, _, port = where.rpartition(":")
                paths.append(pb.Path(transport="tcp", traddr=addr, trsvcid=port, ana_state="inaccessible",
                                     node_id=node_id))
            info = pb.ConnectInfo(protocol="nvmf", subnqn=v.nqn, host_nqn=host, namespace_uuid=v.namespace_uuid,
                                  size_bytes=v.size_bytes, paths=paths)
            keys = host_auth.secrets_of(v, host, self.mgr.secrets) if host in v.hosts else None
            if keys is not None:    # given to the caller that asks for this host's connection only
                info.dhchap_secret, info.dhchap_ctrl_secret = keys.key, keys.ctrl_key
            if host in v.hosts:
                info.tls_psk = host_auth.psk_of(v, host, self.mgr.secrets)
        if host not in v.hosts:
            await context.send_initial_metadata((("meshblock-warning", "host is not published"),))
        return info

    @rpc_method(VOLUME_SERVICE)
    async def CreateSnapshot(self, request: pb.CreateSnapshotRequest, context) -> pb.Snapshot:
        self.gate.check()
        name = validate.name("name", request.name)
        return snapshot_pb(await self.mgr.create_snapshot(validate.ref("volume_ref", request.volume_ref), name))

    @rpc_method(VOLUME_SERVICE)
    async def GetSnapshot(self, request: pb.GetSnapshotRequest, context) -> pb.Snapshot:
        self.gate.check()
        s = await self.mgr.find_snapshot(validate.ref("ref", request.ref))
        if s is None:
            raise NotFound(f"snapshot {request.ref!r} not found")
        return snapshot_pb(s)

    @rpc_method(VOLUME_SERVICE)
    async def ListSnapshots(self, request: pb.ListSnapshotsRequest, context) -> pb.ListSnapshotsReply:
        self.gate.check()
        vid = (await self.mgr.require(request.volume_ref)).id if request.volume_ref else None
        snaps = [s for s in await self.mgr.repo.list(Snapshot, index="name")
                 if (vid is None or s.volume_id == vid) and not s.name.startswith(INTERNAL_SNAPSHOT_PREFIX)
                 and auth.current().sees(s.tenant)]
        page, token = _page_by_name(snaps, request.page_size, request.page_token)
        return pb.ListSnapshotsReply(snapshots=[snapshot_pb(s) for s in page], next_page_token=token)

    @rpc_method(VOLUME_SERVICE)
    async def DeleteSnapshot(self, request: pb.DeleteSnapshotRequest, context) -> pb.DeleteSnapshotReply:
        self.gate.check()
        return pb.DeleteSnapshotReply(existed=await self.mgr.delete_snapshot(validate.ref("ref", request.ref)))

    @rpc_method(VOLUME_SERVICE)
    async def CreateGroupSnapshot(self, request: pb.CreateGroupSnapshotRequest, context) -> pb.GroupSnapshot:
        self.gate.check()
        name = validate.name("name", request.name)
        if len(name) > MAX_GROUP_NAME:
            raise InvalidArgument("name", f"group snapshot names are at most {MAX_GROUP_NAME} characters "
                                          "(member snapshots are named after them)")
        if not 1 <= len(request.volume_refs) <= MAX_GROUP_VOLUMES:
            raise InvalidArgument("volume_refs", f"give 1 to {MAX_GROUP_VOLUMES} volumes")
        refs = [validate.ref("volume_refs", r) for r in request.volume_refs]
        return await self._group_pb(await self.mgr.create_group_snapshot(name, refs))

    @rpc_method(VOLUME_SERVICE)
    async def GetGroupSnapshot(self, request: pb.GetGroupSnapshotRequest, context) -> pb.GroupSnapshot:
        self.gate.check()
        g = await self.mgr.find_group_snapshot(validate.ref("ref", request.ref))
        if g is None:
            raise NotFound(f"group snapshot {request.ref!r} not found")
        return await self._group_pb(g)

    @rpc_method(VOLUME_SERVICE)
    async def ListGroupSnapshots(self, request: pb.ListGroupSnapshotsRequest, context) -> pb.ListGroupSnapshotsReply:
        self.gate.check()
        page, token = _page_by_name([g for g in await self.mgr.repo.list(GroupSnapshot, index="name")
                                     if auth.current().sees(g.tenant)], request.page_size, request.page_token)
        return pb.ListGroupSnapshotsReply(group_snapshots=[await self._group_pb(g) for g in page],
                                          next_page_token=token)

    @rpc_method(VOLUME_SERVICE)
    async def DeleteGroupSnapshot(self, request: pb.DeleteGroupSnapshotRequest,
                                  context) -> pb.DeleteGroupSnapshotReply:
        self.gate.check()
        return pb.DeleteGroupSnapshotReply(
            existed=await self.mgr.delete_group_snapshot(validate.ref("ref", request.ref)))

    async def _group_pb(self, g: GroupSnapshot) -> pb.GroupSnapshot:
        return pb.GroupSnapshot(id=g.id, name=g.name, volume_ids=g.volume_ids, state=g.state.value,
                                created_at=g.created_at, hold_ms=g.hold_ms, message=g.message, tenant=tenant_of(g.tenant),
                                snapshots=[snapshot_pb(s) for s in await self.mgr.group_members(g)])

    @rpc_method(VOLUME_SERVICE)
    async def SetReplicas(self, request: pb.SetReplicasRequest, context) -> pb.Volume:
        self.gate.check()
        n = validate.replicas("replicas", request.replicas)
        if n < 2:
            raise InvalidArgument("replicas", "a replicated volume keeps 2 to 5 replicas")
        return await self._pb(await self.mgr.set_replicas(validate.ref("ref", request.ref), n))

    @rpc_method(VOLUME_SERVICE)
    async def SetVolumeQos(self, request: pb.SetVolumeQosRequest, context) -> pb.Volume:
        self.gate.check()
        ref = validate.ref("ref", request.ref)
        given = {f: getattr(request, f) for f in QOS_FIELDS if request.HasField(f)}
        if not given:
            raise InvalidArgument("max_iops", "give at least one limit to change (0 lifts a limit)")
        for name, problem in problems(QosLimits(**given)):
            raise InvalidArgument(name, problem)
        return await self._pb(await self.mgr.set_qos(ref, given))

    @rpc_method(VOLUME_SERVICE)
    async def GetVolumeStats(self, request: pb.GetVolumeStatsRequest, context) -> pb.GetVolumeStatsReply:
        self.gate.check()
        return await volume_stats(self.mgr, [validate.ref("refs", r) for r in request.refs])

    @rpc_method(VOLUME_SERVICE)
    async def CloneVolume(self, request: pb.CloneVolumeRequest, context) -> pb.Volume:
        self.gate.check()
        if bool(request.source_snapshot_ref) == bool(request.source_volume_ref):
            raise InvalidArgument("source_snapshot_ref", "give exactly one of source_snapshot_ref and "
                                                         "source_volume_ref")
        spec = VolumeSpec(name=validate.name("name", request.name),
                          size_bytes=validate.size("size_bytes", request.size_bytes, CLUSTER_GRANULARITY)
                          if request.size_bytes else 0, replicas=validate.replicas("replicas", request.replicas),
                          spread=request.spread,
                          labels=validate.labels("labels", dict(request.labels)))
        spec = self._protocol(spec, request)
        spec.qos = self._qos(request)
        v = await self.mgr.clone(spec, snapshot_ref=request.source_snapshot_ref, volume_ref=request.source_volume_ref)
        return await self._pb(v)


def node_pb(n: Node, mine: list[Replica], up: bool, volume_of: Callable[[str], Volume | None] | None = None,
            capacity: tuple[int, int] | None = None, readiness: Readiness | None = None) -> pb.Node:
    """``mine``: the replicas on the node; ``volume_of`` looks their volumes up (for a drain's progress);
    ``capacity``: the pool's (total, free) bytes as last reported (default: the record's); ``readiness``:
    whether it could go down now (None: not known here)."""
    total, free = capacity or (n.total_bytes, n.free_bytes)
    drain = pb.DrainProgress()
    if n.draining:
        vols = [volume_of(r.volume_id) for r in mine] if volume_of else []
        stuck = sorted(v.name for v in vols if v is not None and v.replicas == 1)
        drain = pb.DrainProgress(replicas_total=max(n.drain_total, len(mine)),
                                 replicas_moved=max(n.drain_total - len(mine), 0), done=not mine,
                                 message=(f"single-replica volumes cannot move: {', '.join(stuck)}" if stuck else ""))
    return pb.Node(id=n.id, name=n.name, state=NodeState.UP.value if up else NodeState.DOWN.value,
                   cordoned=n.cordoned, draining=n.draining, labels=n.labels, host_nqn=n.host_nqn,
                   nvmf_address=n.nvmf_address, nvmf_port=n.nvmf_port, endpoint=n.endpoint,
                   total_bytes=total, free_bytes=free, pool_block_size=n.pool_block_size,
                   provisioned_bytes=sum(r.size_bytes for r in mine), replica_count=len(mine), last_seen=n.last_seen,
                   drain=drain, readiness=readiness_pb(readiness) if readiness is not None else None)


def readiness_pb(r: Readiness) -> pb.NodeReadiness:
    return pb.NodeReadiness(ready=r.ready, reason=r.reason)


class NodeServicer(pb_grpc.NodeServiceServicer):
    def __init__(self, mgr: VolumeManager, liveness: Liveness, gate: Gate,
                 readiness: Callable[[str], Readiness] | None = None):
        self.mgr = mgr
        self.liveness = liveness
        self.gate = gate
        self.readiness = readiness

    async def _find(self, ref: str) -> Node:
        validate.ref("ref", ref)
        n = await self.mgr.repo.by_name(Node, ref) or await self.mgr.repo.get(Node, ref)
        if n is None:
            raise NotFound(f"node {ref!r} not found")
        return n

    async def _pb(self, n: Node) -> pb.Node:
        return node_pb(n, await self.mgr.replicas_on(n.id), self.liveness.is_up(n.id), self.mgr.volume_of,
                       self.liveness.capacity(n), self.readiness(n.id) if self.readiness else None)

    @rpc_method(NODE_SERVICE)
    async def ListNodes(self, request, context) -> pb.ListNodesReply:
        self.gate.check()
        nodes = sorted((await self.mgr.nodes()).values(), key=lambda n: n.name)
        return pb.ListNodesReply(nodes=[await self._pb(n) for n in nodes])

    @rpc_method(NODE_SERVICE)
    async def GetNode(self, request, context) -> pb.Node:
        self.gate.check()
        return await self._pb(await self._find(request.ref))

    async def _set(self, ref: str, change: Callable[[Node], None]) -> pb.Node:
        from ..store.base import Conflict
        for _ in range(20):
            n = await self._find(ref)
            change(n)
            try:
                await self.mgr.repo.commit(put=[n])
            except Conflict:
                continue
            self.mgr.reconciler.kick()
            return await self._pb(n)
        raise FailedPrecondition(f"node {ref!r} kept changing; try again")

    @rpc_method(NODE_SERVICE)
    async def CordonNode(self, request, context) -> pb.Node:
        self.gate.check()
        return await self._set(request.ref, lambda n: setattr(n, "cordoned", True))

    @rpc_method(NODE_SERVICE)
    async def UncordonNode(self, request, context) -> pb.Node:
        self.gate.check()

        def uncordon(n: Node) -> None:
            n.cordoned = False
            n.draining = False
        return await self._set(request.ref, uncordon)

    @rpc_method(NODE_SERVICE)
    async def DrainNode(self, request, context) -> pb.Node:
        self.gate.check()
        n0 = await self._find(request.ref)
        count = len(await self.mgr.replicas_on(n0.id))

        def drain(n: Node) -> None:
            if not n.draining:
                n.drain_total = count
            n.cordoned = n.draining = True
        return await self._set(request.ref, drain)


class ClusterServicer(pb_grpc.ClusterServiceServicer):
    def __init__(self, mgr: VolumeManager, liveness: Liveness, gate: Gate, overcommit: float, identity: str,
                 metrics_url: str = ""):
        self.mgr = mgr
        self.liveness = liveness
        self.gate = gate
        self.overcommit = overcommit
        self.identity = identity
        self.metrics_url = metrics_url     # this controller's own ("": it serves no metrics)

    @rpc_method(CLUSTER_SERVICE)
    async def GetClusterStatus(self, request, context) -> pb.ClusterStatus:
        self.gate.check()
        nodes = list((await self.mgr.nodes()).values())
        up = [n for n in nodes if self.liveness.is_up(n.id)]
        by_state, provisioned = await self.mgr.totals()
        return pb.ClusterStatus(nodes_up=len(up), nodes_down=len(nodes) - len(up),
                                total_bytes=sum(self.liveness.capacity(n)[0] for n in up),
                                free_bytes=sum(self.liveness.capacity(n)[1] for n in up),
                                provisioned_bytes=provisioned,
                                overcommit_ratio=self.overcommit, volumes_by_state=by_state, leader=self.identity,
                                metrics_endpoints=self._metrics_endpoints(nodes))

    def _metrics_endpoints(self, nodes: list[Node]) -> list[pb.MetricsEndpoint]:
        """This controller's metrics and every node's that reported where it serves them (nodes that
        are down too: a scrape that fails is how Prometheus shows them)."""
        out = [pb.MetricsEndpoint(component="controller", url=self.metrics_url)] if self.metrics_url else []
        out += [pb.MetricsEndpoint(component="agent", node=n.name, url=n.metrics_url)
                for n in sorted(nodes, key=lambda n: n.name) if n.metrics_url]
        return out


class RegistryServicer(pb_grpc.NodeRegistryServicer):
    def __init__(self, liveness: Liveness, gate: Gate, heartbeat_ms: int, head_lease_ms: int = 0,
                 readiness: Callable[[str], Readiness] | None = None):
        self.liveness = liveness
        self.gate = gate
        self.heartbeat_ms = heartbeat_ms
        self.head_lease_ms = head_lease_ms
        self.readiness = readiness

    @rpc_method(REGISTRY_SERVICE)
    async def Register(self, request: pb.RegisterRequest, context) -> pb.RegisterReply:
        self.gate.check(settled=False)
        from ..util import check_uuid
        node = Node(id=check_uuid("node_id", request.node_id), name=validate.name("name", request.name),
                    endpoint=validate.ref("endpoint", request.endpoint),
                    host_nqn=validate.host_nqn("host_nqn", request.host_nqn), nvmf_address=request.nvmf_address,
                    nvmf_port=request.nvmf_port, labels=dict(request.labels), total_bytes=request.total_bytes,
                    free_bytes=request.free_bytes, pool_block_size=request.pool_block_size,
                    metrics_url=validate.metrics_url("metrics_url", request.metrics_url))
        await self.liveness.register(node, request.instance_id, (request.heads_digest, request.replicas_digest))
        return pb.RegisterReply(heartbeat_interval_ms=self.heartbeat_ms, head_lease_ms=self.head_lease_ms)

    @rpc_method(REGISTRY_SERVICE)
    async def Heartbeat(self, request: pb.HeartbeatRequest, context) -> pb.HeartbeatReply:
        self.gate.check(settled=False)
        return self._beat(request)

    async def Heartbeats(self, requests, context):
        """Heartbeat on one stream per agent. A controller that stops leading ends the stream with
        UNAVAILABLE at the next heartbeat, as Heartbeat answers it."""
        try:
            async for request in requests:
                self.gate.check(settled=False)
                yield self._beat(request)
        except MeshblockError as e:
            code, detail = status_of(e)
            await context.abort(code, detail)

    def _beat(self, request: pb.HeartbeatRequest) -> pb.HeartbeatReply:
        known = self.liveness.heartbeat(request.node_id, request.instance_id, request.total_bytes,
                                        request.free_bytes, request.healthy, request.heads_digest,
                                        request.replicas_digest)
        if not (known and request.want_readiness and self.readiness is not None):
            return pb.HeartbeatReply(known=known)
        return pb.HeartbeatReply(known=True, readiness=readiness_pb(self.readiness(request.node_id)))
