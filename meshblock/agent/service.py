"""AgentService: the gRPC face of a NodeAgent (validation and conversion only)."""

from __future__ import annotations

import grpc

from .. import dhchap, tlspsk
from ..dhchap import HostKeys
from ..errors import InvalidArgument
from ..grpcutil import rpc_method
from ..qos import SPDK_NAMES, QosLimits, problems
from ..proto.meshblock.v1 import agent_pb2 as pb
from ..proto.meshblock.v1 import agent_pb2_grpc as pb_grpc
from ..util import check_iqn, check_netmask, check_uuid
from .attachments import AttachState
from .exports import ExportState
from .iostat import VolumeIo
from .iscsi import IscsiTarget
from .model import Head, HeadLeg, HeadView, ReplicaView
from .node import NodeAgent
from .replicas import LvolInfo

SERVICE = "meshblock.v1.AgentService"
MAX_HOLD_MS = 60_000   # hosts must not wait longer than this on a held volume
method = rpc_method(SERVICE)


def export_pb(e: ExportState | None) -> pb.Export | None:
    if e is None:
        return None
    return pb.Export(nqn=e.nqn, transport="tcp", address=e.address, port=e.port,
                     allowed_host_nqns=e.hosts, namespace_uuid=e.namespace_uuid, host_keys=e.host_keys)


def replica_pb(v: ReplicaView) -> pb.Replica:
    lv = v.lvol
    origin = lv.base_snapshot.split("-", 1)[1] if lv.base_snapshot and lv.base_snapshot.startswith("snap-") else ""
    return pb.Replica(replica_id=lv.object_id, size_bytes=lv.size_bytes, allocated_bytes=lv.allocated_bytes,
                      thin=lv.thin, bdev_name=lv.alias, lvol_uuid=lv.uuid, origin_snapshot_id=origin,
                      export=export_pb(v.export))


def snapshot_pb(lv: LvolInfo, replica_id: str = "") -> pb.ReplicaSnapshot:
    return pb.ReplicaSnapshot(snapshot_id=lv.object_id, replica_id=replica_id, size_bytes=lv.size_bytes,
                       lvol_uuid=lv.uuid)


def attachment_pb(a: AttachState) -> pb.Attachment:
    s = a.spec
    return pb.Attachment(attachment_id=s.attachment_id, subsystem_nqn=s.subnqn, address=s.address, port=s.port,
                         bdev_names=a.bdev_names, size_bytes=a.size_bytes, connected=a.connected)


def head_pb(v: HeadView) -> pb.HeadStatus:
    h = v.head
    st = pb.HeadStatus(volume_id=h.volume_id, nqn=h.nqn, address=v.address, port=v.port, size_bytes=v.size_bytes,
                       allowed_host_nqns=sorted(h.hosts), ana_state=h.ana_state, raid_state=v.raid_state,
                       legs=[pb.LegStatus(replica_id=leg.replica_id, state=leg.state,
                                          rebuild_percent=leg.rebuild_percent, rebuild_blocks=leg.rebuild_blocks)
                             for leg in v.legs], protocol=h.protocol, standby=h.standby,
                       qos=rate_limits_pb(v.enforced),
                       host_keys={host: keys.fingerprints for host, keys in h.host_keys}, tls=h.tls,
                       host_psks={host: dhchap.fingerprint(psk) for host, psk in h.host_psks})
    if h.iscsi is not None:
        st.target_iqn = h.iscsi.target_iqn
        st.allowed_initiators.extend(sorted(h.iscsi.initiators))
    return st


def rate_limits_pb(q: QosLimits) -> pb.RateLimits:
    return pb.RateLimits(**q.spdk())


def qos_from_pb(r: pb.RateLimits) -> QosLimits:
    q = QosLimits(r.rw_ios_per_sec, r.rw_mbytes_per_sec, r.r_mbytes_per_sec, r.w_mbytes_per_sec)
    for name, problem in problems(q):
        raise InvalidArgument("qos." + SPDK_NAMES[name], problem)
    return q


def iscsi_from_pb(spec: pb.HeadSpec) -> IscsiTarget | None:
    protocol = spec.protocol or "nvmf"
    if protocol not in ("nvmf", "iscsi"):
        raise InvalidArgument("protocol", f"{spec.protocol!r} is not nvmf or iscsi")
    if protocol == "nvmf":
        return None
    i = spec.iscsi
    if bool(i.chap_user) != bool(i.chap_secret):
        raise InvalidArgument("iscsi.chap_secret", "CHAP needs both a user and a secret")
    return IscsiTarget(target_iqn=check_iqn("iscsi.target_iqn", i.target_iqn),
                       initiators=frozenset(check_iqn("iscsi.initiators", x) for x in i.initiators),
                       netmasks=tuple(dict.fromkeys(check_netmask("iscsi.netmasks", m) for m in i.netmasks))
                       or ("ANY",), chap_user=i.chap_user, chap_secret=i.chap_secret)


def iostat_pb(v: VolumeIo) -> pb.VolumeIostat:
    return pb.VolumeIostat(volume_id=v.volume_id, volume_name=v.volume_name, read_ops=v.read_ops,
                           write_ops=v.write_ops, read_bytes=v.read_bytes, write_bytes=v.write_bytes,
                           read_latency_seconds=v.read_latency_s, write_latency_seconds=v.write_latency_s,
                           sampled_at=v.sampled_at, target=v.target)


def head_from_pb(spec: pb.HeadSpec) -> Head:
    vid = check_uuid("volume_id", spec.volume_id)
    if not spec.legs:
        raise InvalidArgument("legs", "a head needs at least one replica")
    legs = tuple(HeadLeg(replica_id=check_uuid("legs.replica_id", leg.replica_id), node_id=leg.node_id,
                         subsystem_nqn=leg.subsystem_nqn, address=leg.address, port=leg.port, slot=leg.slot)
                 for leg in spec.legs)
    level = spec.raid_level or "raid1"
    if level not in ("raid1", "raid5f"):
        raise InvalidArgument("raid_level", f"{level!r} is not raid1 or raid5f")
    if level == "raid5f":
        if spec.strip_size_kb not in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
            raise InvalidArgument("strip_size_kb", "a raid5f strip is a power of two KiB")
        if spec.replica_count < 3 or any(leg.slot >= spec.replica_count for leg in legs) or \
                len({leg.slot for leg in legs}) != len(legs):
            raise InvalidArgument("legs", "the shards of a raid5f head have distinct slots below replica_count "
                                          "(at least 3)")
    ana = spec.ana_state or ("inaccessible" if spec.standby else "optimized")
    if ana not in ("optimized", "non_optimized", "inaccessible"):
        raise InvalidArgument("ana_state", f"{ana!r} is not optimized, non_optimized or inaccessible")
    if spec.standby and ana != "inaccessible":
        raise InvalidArgument("ana_state", "a standby head is inaccessible until it is promoted")
    cntlids = None
    if spec.cntlid_min or spec.cntlid_max:
        if not 1 <= spec.cntlid_min <= spec.cntlid_max <= 0xFFEF:
            raise InvalidArgument("cntlid_min", "controller ids are a range within 1-65519")
        cntlids = (spec.cntlid_min, spec.cntlid_max)
    iscsi = iscsi_from_pb(spec)
    if spec.standby and (iscsi is not None or len(legs) < 2 and spec.replica_count < 2):
        raise InvalidArgument("standby", "standby heads are for replicated NVMe/TCP volumes")
    if spec.tls and iscsi is not None:
        raise InvalidArgument("tls", "TLS is for NVMe/TCP heads")
    if (len(legs) > 1 or iscsi is not None or spec.tls) and any(not leg.subsystem_nqn or not leg.address or not leg.port
                                                    for leg in legs):
        raise InvalidArgument("legs", "every replica of a replicated or iSCSI head needs its export "
                                      "(nqn, address, port)")
    return Head(volume_id=vid, nqn=spec.nqn, namespace_uuid=check_uuid("namespace_uuid", spec.namespace_uuid),
                legs=legs, hosts=frozenset(spec.allowed_host_nqns), ana_state=ana,
                in_sync=frozenset(spec.in_sync_replica_ids), replica_count=spec.replica_count,
                protocol="iscsi" if iscsi is not None else "nvmf", iscsi=iscsi, standby=spec.standby,
                cntlid_range=cntlids, raid_level=level, strip_size_kb=spec.strip_size_kb, qos=qos_from_pb(spec.qos),
                host_keys=host_keys_from_pb(spec.host_keys, spec.allowed_host_nqns, iscsi is not None),
                link_key=_secret("link_dhchap_key", spec.link_dhchap_key) if spec.link_dhchap_key else "",
                tls=spec.tls, host_psks=host_psks_from_pb(spec), volume_name=spec.volume_name)


def host_psks_from_pb(spec: pb.HeadSpec) -> tuple[tuple[str, str], ...]:
    """The TLS heads' hosts and their PSKs, checked (never echoed back in errors): every host of a TLS
    head has one, and only TLS heads take them."""
    out: dict[str, str] = {}
    for i, k in enumerate(spec.host_keys):
        if not k.tls_psk:
            continue
        where = f"host_keys[{i}].tls_psk"
        if not spec.tls:
            raise InvalidArgument(where, "TLS PSKs are for TLS heads (tls)")
        try:
            tlspsk.decode(k.tls_psk)
        except tlspsk.InvalidKey as e:
            raise InvalidArgument(where, str(e)) from None
        out[k.host_nqn] = k.tls_psk
    missing = sorted(set(spec.allowed_host_nqns) - set(out)) if spec.tls else []
    if missing:
        raise InvalidArgument("host_keys", f"every host of a TLS head needs its PSK; {missing[0]} has none")
    return tuple(sorted(out.items()))


def _secret(field: str, text: str) -> str:
    try:
        dhchap.decode(text)
    except dhchap.InvalidSecret as e:
        raise InvalidArgument(field, str(e)) from None
    return text


def host_keys_from_pb(keys, allowed, iscsi: bool = False) -> tuple[tuple[str, HostKeys], ...]:
    """Hosts' DH-HMAC-CHAP secrets, checked (never echoed back in errors)."""
    out: dict[str, HostKeys] = {}
    for i, k in enumerate(keys):
        where = f"host_keys[{i}]"
        if not k.dhchap_key and not k.dhchap_ctrl_key:
            continue    # a TLS PSK alone (host_psks_from_pb)
        if iscsi:
            raise InvalidArgument(where, "DH-HMAC-CHAP is for NVMe/TCP heads (iSCSI has CHAP)")
        if k.host_nqn not in allowed:
            raise InvalidArgument(where + ".host_nqn", f"{k.host_nqn!r} is not one of allowed_host_nqns")
        if k.host_nqn in out:
            raise InvalidArgument(where + ".host_nqn", f"{k.host_nqn!r} has keys twice")
        for name, text in (("dhchap_key", k.dhchap_key), ("dhchap_ctrl_key", k.dhchap_ctrl_key)):
            if text or name == "dhchap_key":
                _secret(f"{where}.{name}", text)
        if k.dhchap_ctrl_key == k.dhchap_key:
            raise InvalidArgument(where + ".dhchap_ctrl_key", "must differ from the host's key")
        out[k.host_nqn] = HostKeys(k.dhchap_key, k.dhchap_ctrl_key)
    return tuple(sorted(out.items()))


def _port(field: str, value: int) -> int:
    if not 0 < value < 65536:
        raise InvalidArgument(field, f"{value} is not a TCP port")
    return value


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, agent: NodeAgent):
        self.agent = agent

    @method
    async def GetNodeInfo(self, request: pb.GetNodeInfoRequest, context: grpc.aio.ServicerContext) -> pb.NodeInfo:
        return pb.NodeInfo(**self.agent.info())

    @method
    async def Health(self, request: pb.HealthRequest, context: grpc.aio.ServicerContext) -> pb.HealthReply:
        return pb.HealthReply(**await self.agent.health())

    @method
    async def GetPool(self, request: pb.GetPoolRequest, context: grpc.aio.ServicerContext) -> pb.Pool:
        return pb.Pool(**await self.agent.pool_status())

    @method
    async def CreateReplica(self, request: pb.CreateReplicaRequest, context: grpc.aio.ServicerContext) -> pb.Replica:
        rid = check_uuid("replica_id", request.replica_id)
        return replica_pb(await self.agent.create_replica(rid, request.size_bytes, thin=not request.thick))

    @method
    async def DeleteReplica(self, request: pb.DeleteReplicaRequest,
                            context: grpc.aio.ServicerContext) -> pb.DeleteReplicaReply:
        rid = check_uuid("replica_id", request.replica_id)
        return pb.DeleteReplicaReply(existed=await self.agent.delete_replica(rid))

    @method
    async def ResizeReplica(self, request: pb.ResizeReplicaRequest, context: grpc.aio.ServicerContext) -> pb.Replica:
        rid = check_uuid("replica_id", request.replica_id)
        return replica_pb(await self.agent.resize_replica(rid, request.size_bytes))

    @method
    async def GetReplica(self, request: pb.GetReplicaRequest, context: grpc.aio.ServicerContext) -> pb.Replica:
        return replica_pb(await self.agent.get_replica(check_uuid("replica_id", request.replica_id)))

    @method
    async def ListReplicas(self, request: pb.ListReplicasRequest,
                           context: grpc.aio.ServicerContext) -> pb.ListReplicasReply:
        return pb.ListReplicasReply(replicas=[replica_pb(v) for v in await self.agent.list_replicas()])

    @method
    async def ExportReplica(self, request: pb.ExportReplicaRequest, context: grpc.aio.ServicerContext) -> pb.Export:
        rid = check_uuid("replica_id", request.replica_id)
        return export_pb(await self.agent.export_replica(
            rid, list(request.allowed_host_nqns), host_keys_from_pb(request.host_keys, request.allowed_host_nqns)))

    @method
    async def UnexportReplica(self, request: pb.UnexportReplicaRequest,
                              context: grpc.aio.ServicerContext) -> pb.UnexportReplicaReply:
        rid = check_uuid("replica_id", request.replica_id)
        return pb.UnexportReplicaReply(existed=await self.agent.unexport_replica(rid))

    @method
    async def CreateSnapshot(self, request: pb.CreateReplicaSnapshotRequest, context: grpc.aio.ServicerContext) -> pb.ReplicaSnapshot:
        rid = check_uuid("replica_id", request.replica_id)
        sid = check_uuid("snapshot_id", request.snapshot_id)
        return snapshot_pb(await self.agent.create_snapshot(rid, sid), rid)

    @method
    async def DeleteSnapshot(self, request: pb.DeleteReplicaSnapshotRequest,
                             context: grpc.aio.ServicerContext) -> pb.DeleteReplicaSnapshotReply:
        sid = check_uuid("snapshot_id", request.snapshot_id)
        return pb.DeleteReplicaSnapshotReply(existed=await self.agent.delete_snapshot(sid))

    @method
    async def ListSnapshots(self, request: pb.ListReplicaSnapshotsRequest,
                            context: grpc.aio.ServicerContext) -> pb.ListReplicaSnapshotsReply:
        return pb.ListReplicaSnapshotsReply(snapshots=[snapshot_pb(lv) for lv in await self.agent.list_snapshots()])

    @method
    async def CloneSnapshot(self, request: pb.CloneSnapshotRequest, context: grpc.aio.ServicerContext) -> pb.Replica:
        sid = check_uuid("snapshot_id", request.snapshot_id)
        rid = check_uuid("replica_id", request.replica_id)
        return replica_pb(await self.agent.clone_snapshot(sid, rid))

    @method
    async def AttachRemote(self, request: pb.AttachRemoteRequest, context: grpc.aio.ServicerContext) -> pb.Attachment:
        if not request.address:
            raise InvalidArgument("address", "required")
        port = _port("port", request.port)
        return attachment_pb(await self.agent.attach(request.attachment_id, request.subsystem_nqn,
                                                     request.address, port, request.transport))

    @method
    async def DetachRemote(self, request: pb.DetachRemoteRequest,
                           context: grpc.aio.ServicerContext) -> pb.DetachRemoteReply:
        return pb.DetachRemoteReply(existed=await self.agent.detach(request.attachment_id))

    @method
    async def ListAttachments(self, request: pb.ListAttachmentsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ListAttachmentsReply:
        return pb.ListAttachmentsReply(attachments=[attachment_pb(a) for a in await self.agent.list_attachments()])

    @method
    async def EnsureHead(self, request: pb.HeadSpec, context: grpc.aio.ServicerContext) -> pb.HeadStatus:
        return head_pb(await self.agent.ensure_head(head_from_pb(request)))

    @method
    async def DeleteHead(self, request: pb.DeleteHeadRequest, context: grpc.aio.ServicerContext) -> pb.DeleteHeadReply:
        return pb.DeleteHeadReply(existed=await self.agent.delete_head(check_uuid("volume_id", request.volume_id)))

    @method
    async def SetHeadAccess(self, request: pb.SetHeadAccessRequest,
                            context: grpc.aio.ServicerContext) -> pb.HeadStatus:
        vid = check_uuid("volume_id", request.volume_id)
        if request.ana_state not in ("inaccessible", "optimized"):
            raise InvalidArgument("ana_state", f"{request.ana_state!r} is not inaccessible or optimized")
        if request.ana_state == "inaccessible" and not 0 < request.hold_ms <= MAX_HOLD_MS:
            raise InvalidArgument("hold_ms", f"a hold needs a limit between 1 and {MAX_HOLD_MS} ms")
        return head_pb(await self.agent.set_head_access(vid, request.ana_state, request.hold_ms / 1000))

    @method
    async def GetVolumeIostat(self, request: pb.GetVolumeIostatRequest,
                              context: grpc.aio.ServicerContext) -> pb.GetVolumeIostatReply:
        return pb.GetVolumeIostatReply(volumes=[iostat_pb(v) for v in await self.agent.iostat.sample()])

    @method
    async def ListHeads(self, request: pb.ListHeadsRequest, context: grpc.aio.ServicerContext) -> pb.ListHeadsReply:
        return pb.ListHeadsReply(heads=[head_pb(v) for v in await self.agent.list_heads()])
