"""The host registry: ids of hosts that attach volumes, each bound to one host NQN and, for
iSCSI volumes, one initiator IQN.

A CSI node plugin registers its node id, host NQN and initiator IQN when it starts, so that
"publish volume V to node X" can be checked (an unknown node is NOT_FOUND) and turned into the
host name the volume's export must admit.
"""

from __future__ import annotations

from ..errors import AlreadyExists, FailedPrecondition, NotFound
from ..grpcutil import rpc_method
from ..model import Host
from ..model.records import now
from ..proto.meshblock.v1 import admin_pb2 as pb
from ..proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from ..store.base import Conflict, NameTaken
from ..model.tenancy import tenant_of
from . import auth, validate
from .repo import Repo
from .service import Gate

HOST_SERVICE = "meshblock.v1.HostService"
host_id = validate.host_id


def host_pb(h: Host) -> pb.Host:
    return pb.Host(id=h.id, host_nqn=h.host_nqn, labels=h.labels, registered_at=h.registered_at,
                   max_volumes=h.max_volumes, initiator_iqn=h.initiator_iqn, tenant=tenant_of(h.tenant))


def readable(h: Host | None) -> bool:
    """Hosts of the default tenant (registered by admins, such as Kubernetes nodes the CSI node plugin
    registers) are seen by every tenant; a tenant's own hosts by that tenant."""
    return h is not None and (not h.tenant or auth.current().sees(h.tenant))


class HostServicer(pb_grpc.HostServiceServicer):
    def __init__(self, repo: Repo, gate: Gate):
        self.repo = repo
        self.gate = gate

    @rpc_method(HOST_SERVICE)
    async def RegisterHost(self, request: pb.RegisterHostRequest, context) -> pb.Host:
        self.gate.check(settled=False)
        hid = host_id("id", request.id)
        nqn = validate.host_nqn("host_nqn", request.host_nqn)
        labels = validate.labels("labels", dict(request.labels))
        iqn = validate.iqn("initiator_iqn", request.initiator_iqn) if request.initiator_iqn else ""
        caller = auth.current()
        for _ in range(20):
            cur = await self.repo.get(Host, hid)
            if cur is not None and not caller.sees(cur.tenant):
                raise AlreadyExists(f"host id {hid!r} is registered by another tenant")
            if cur is not None and (cur.host_nqn, cur.labels, cur.max_volumes, cur.initiator_iqn) == (
                    nqn, labels, request.max_volumes, iqn):
                return host_pb(cur)
            h = Host(id=hid, host_nqn=nqn, labels=labels, registered_at=now(), max_volumes=request.max_volumes,
                     initiator_iqn=iqn, tenant=cur.tenant if cur is not None else caller.stored_tenant)
            try:
                if cur is None:
                    await self.repo.commit(create=[h])
                else:
                    h.revision = cur.revision
                    await self.repo.commit(put=[h])
            except (Conflict, NameTaken):
                continue
            return host_pb(h)
        raise FailedPrecondition(f"host {hid!r} kept changing; try again")

    @rpc_method(HOST_SERVICE)
    async def GetHost(self, request: pb.GetHostRequest, context) -> pb.Host:
        self.gate.check(settled=False)
        h = await self.repo.get(Host, host_id("id", request.id))
        if not readable(h):
            raise NotFound(f"host {request.id!r} is not registered")
        return host_pb(h)

    @rpc_method(HOST_SERVICE)
    async def ListHosts(self, request: pb.ListHostsRequest, context) -> pb.ListHostsReply:
        self.gate.check(settled=False)
        return pb.ListHostsReply(hosts=[host_pb(h) for h in await self.repo.list(Host) if readable(h)])

    @rpc_method(HOST_SERVICE)
    async def DeleteHost(self, request: pb.DeleteHostRequest, context) -> pb.DeleteHostReply:
        self.gate.check(settled=False)
        h = await self.repo.get(Host, host_id("id", request.id))
        if h is None or not auth.current().sees(h.tenant):
            return pb.DeleteHostReply(existed=False)
        await self.repo.commit(delete=[h])
        return pb.DeleteHostReply(existed=True)
