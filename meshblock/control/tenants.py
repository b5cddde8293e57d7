"""Tenants, their quotas and the identities callers authenticate as (TenantService).

Usage per tenant is counted from the controller's view as volumes change (a listener), so a
quota check reads memory. Checks and the commits they admit are serialised per tenant on the
leader (the only controller that serves mutating calls): two creates cannot both pass on the same
remaining quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import AsyncIterator

from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from ..grpcutil import rpc_method
from ..model import Host, Snapshot, Volume
from ..model.records import now
from ..model.tenancy import DEFAULT_TENANT, Identity, Role, Tenant, stored_tenant, tenant_of
from ..proto.meshblock.v1 import admin_pb2 as pb
from ..proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from ..store.base import Conflict, NameTaken
from ..units import format_size
from . import auth, validate
from .repo import Repo

log = logging.getLogger(__name__)

TENANT_SERVICE = "meshblock.v1.TenantService"
ROLES = tuple(r.value for r in Role)


@dataclass
class Usage:
    bytes: int = 0
    volumes: int = 0
    iops: int = 0
    unlimited_iops: int = 0

    def add(self, data: dict, sign: int) -> None:
        self.bytes += sign * int(data.get("size_bytes", 0))
        self.volumes += sign
        iops = int(data.get("max_iops", 0))
        self.iops += sign * iops
        self.unlimited_iops += sign * (iops == 0)


class Quotas:
    """What each tenant uses, and the admission of changes against its quotas."""

    def __init__(self, view, tenancy):
        self.tenancy = tenancy
        self.usage: dict[str, Usage] = defaultdict(Usage)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        view.listeners.append(self._changed)

    def _changed(self, kind: str, id: str, old, new) -> None:
        if kind != Volume.KIND:
            return
        if old is not None:
            self.usage[tenant_of(old.data.get("tenant", ""))].add(old.data, -1)
        if new is not None:
            self.usage[tenant_of(new.data.get("tenant", ""))].add(new.data, +1)

    def owner(self, requested: str = "") -> str:
        """The ``tenant`` field of a volume the caller creates: its own tenant, or for admins the one
        requested (which must exist)."""
        caller = auth.current()
        if not requested or requested == caller.tenant:
            return caller.stored_tenant
        if not caller.admin:
            raise InvalidArgument("tenant", "only admins create volumes in another tenant")
        if requested != DEFAULT_TENANT and self.tenancy.get(Tenant, requested) is None:
            raise NotFound(f"tenant {requested!r} not found")
        return stored_tenant(requested)

    def limits(self, tenant: str) -> Tenant:
        return self.tenancy.get(Tenant, tenant) or Tenant(id=tenant)

    @contextlib.asynccontextmanager
    async def admit(self, new: Volume, old: Volume | None = None) -> AsyncIterator[None]:
        """Hold the tenant's admissions while ``new`` (replacing ``old``, None for a new volume) is
        checked and committed; RESOURCE_EXHAUSTED when it would go over a quota. A tenant without
        quotas admits everything at once: its creates do not wait for each other's commits (a quota
        set meanwhile applies to the admissions after it)."""
        tenant = tenant_of(new.tenant)
        q = self.limits(tenant)
        if not (q.max_volumes or q.max_bytes or q.max_iops):
            yield
            return
        async with self._locks[tenant]:
            self.check(tenant, new, old)
            yield

    def check(self, tenant: str, new: Volume, old: Volume | None) -> None:
        q, use = self.limits(tenant), self.usage[tenant]
        if old is None and q.max_volumes and use.volumes + 1 > q.max_volumes:
            raise ResourceExhausted(f"quota max_volumes of tenant {tenant!r} exceeded: limit {q.max_volumes} "
                                    f"volumes, in use {use.volumes}")
        grow = new.size_bytes - (old.size_bytes if old else 0)
        if q.max_bytes and grow > 0 and use.bytes + grow > q.max_bytes:
            raise ResourceExhausted(f"quota max_bytes of tenant {tenant!r} exceeded: limit {q.max_bytes} bytes "
                                    f"({format_size(q.max_bytes)}), in use {use.bytes} bytes "
                                    f"({format_size(use.bytes)}), this change adds {grow} bytes")
        if q.max_iops and (old is None or new.max_iops != old.max_iops):
            if not new.max_iops:
                raise ResourceExhausted(f"quota max_iops of tenant {tenant!r}: limit {q.max_iops} IOPS, in use "
                                        f"{use.iops}; a volume without an IOPS limit is not admitted under an "
                                        "IOPS quota (give max_iops)")
            more = new.max_iops - (old.max_iops if old else 0)
            if more > 0 and use.iops + more > q.max_iops:
                raise ResourceExhausted(f"quota max_iops of tenant {tenant!r} exceeded: limit {q.max_iops} IOPS, "
                                        f"in use {use.iops}, this change adds {more}")


def tenant_pb(t: Tenant, use: Usage) -> pb.Tenant:
    return pb.Tenant(name=t.name, quota=pb.TenantQuota(max_bytes=t.max_bytes, max_volumes=t.max_volumes,
                                                       max_iops=t.max_iops),
                     usage=pb.TenantUsage(bytes=use.bytes, volumes=use.volumes, iops=use.iops,
                                          unlimited_iops_volumes=use.unlimited_iops),
                     created_at=t.created_at, labels=t.labels)


def identity_pb(i: Identity) -> pb.Identity:
    return pb.Identity(name=i.name, tenant=i.tenant, role=i.role, kind=i.kind, subject=i.subject,
                       created_at=i.created_at, token_prefix=i.token_prefix)


class TenantServicer(pb_grpc.TenantServiceServicer):
    def __init__(self, repo: Repo, tenancy, quotas: Quotas, gate):
        self.repo = repo            # commits wait for ``tenancy`` (the view of tenants and identities)
        self.tenancy = tenancy
        self.quotas = quotas
        self.gate = gate

    def _tenant(self, name: str) -> Tenant:
        t = self.tenancy.get(Tenant, name)
        if t is None and name == DEFAULT_TENANT:
            t = Tenant(id=DEFAULT_TENANT)
        caller = auth.current()
        if t is None or not (caller.admin or caller.tenant == name):
            raise NotFound(f"tenant {name!r} not found")
        return t

    def _pb(self, t: Tenant) -> pb.Tenant:
        return tenant_pb(t, self.quotas.usage.get(t.name, Usage()))

    @rpc_method(TENANT_SERVICE)
    async def CreateTenant(self, request: pb.CreateTenantRequest, context) -> pb.Tenant:
        self.gate.check(settled=False)
        name = validate.name("name", request.name)
        q = request.quota
        t = Tenant(id=name, max_bytes=q.max_bytes, max_volumes=q.max_volumes, max_iops=q.max_iops,
                   labels=validate.labels("labels", dict(request.labels)), created_at=now())
        cur = self.tenancy.get(Tenant, name)
        if cur is not None or name == DEFAULT_TENANT:
            if cur is not None and (cur.max_bytes, cur.max_volumes, cur.max_iops, cur.labels) == (
                    t.max_bytes, t.max_volumes, t.max_iops, t.labels):
                return self._pb(cur)
            raise AlreadyExists(f"tenant {name!r} exists" + (" (the default tenant always does; set its quota "
                                                             "with SetTenantQuota)" if cur is None else
                                                             " with other quotas or labels"))
        try:
            await self.repo.commit(create=[t])
        except Conflict:
            raise AlreadyExists(f"tenant {name!r} was created at the same time; ask again") from None
        log.info("tenant created name=%s quota bytes=%d volumes=%d iops=%d", name, t.max_bytes, t.max_volumes,
                 t.max_iops)
        return self._pb(t)

    @rpc_method(TENANT_SERVICE)
    async def GetTenant(self, request: pb.GetTenantRequest, context) -> pb.Tenant:
        self.gate.check(settled=False)
        return self._pb(self._tenant(request.name or auth.current().tenant))

    @rpc_method(TENANT_SERVICE)
    async def ListTenants(self, request: pb.ListTenantsRequest, context) -> pb.ListTenantsReply:
        self.gate.check(settled=False)
        caller = auth.current()
        tenants = {t.name: t for t in self.tenancy.all(Tenant)}
        tenants.setdefault(DEFAULT_TENANT, Tenant(id=DEFAULT_TENANT))
        return pb.ListTenantsReply(tenants=[self._pb(tenants[n]) for n in sorted(tenants)
                                            if caller.admin or n == caller.tenant])

    @rpc_method(TENANT_SERVICE)
    async def SetTenantQuota(self, request: pb.SetTenantQuotaRequest, context) -> pb.Tenant:
        self.gate.check(settled=False)
        name = validate.name("name", request.name)
        for _ in range(20):
            cur = self._tenant(name)
            given = {f: getattr(request, f) for f in ("max_bytes", "max_volumes", "max_iops") if request.HasField(f)}
            new = replace(cur, **given)
            try:
                if cur.revision:
                    await self.repo.commit(put=[new])
                else:
                    new.created_at = new.created_at or now()
                    await self.repo.commit(create=[new])
            except Conflict:
                continue
            log.info("tenant quota name=%s bytes=%d volumes=%d iops=%d", name, new.max_bytes, new.max_volumes,
                     new.max_iops)
            return self._pb(new)
        raise FailedPrecondition(f"tenant {name!r} kept changing; try again")

    @rpc_method(TENANT_SERVICE)
    async def DeleteTenant(self, request: pb.DeleteTenantRequest, context) -> pb.DeleteTenantReply:
        self.gate.check(settled=False)
        name = validate.name("name", request.name)
        if name == DEFAULT_TENANT:
            raise FailedPrecondition("the default tenant cannot be deleted")
        t = self.tenancy.get(Tenant, name)
        if t is None:
            return pb.DeleteTenantReply(existed=False)
        owned = []
        use = self.quotas.usage.get(name, Usage())
        if use.volumes:
            owned.append(f"{use.volumes} volume(s)")
        snaps = [s for s in await self.repo.list(Snapshot) if s.tenant == name]
        if snaps:
            owned.append(f"{len(snaps)} snapshot(s)")
        hosts = [h for h in await self.repo.list(Host) if h.tenant == name]
        if hosts:
            owned.append(f"{len(hosts)} host registration(s)")
        idents = [i for i in self.tenancy.all(Identity) if i.tenant == name]
        if idents:
            owned.append(f"{len(idents)} identity(ies)")
        if owned:
            raise FailedPrecondition(f"tenant {name!r} still has {', '.join(owned)}; delete them first")
        await self.repo.commit(delete=[t])
        log.info("tenant deleted name=%s", name)
        return pb.DeleteTenantReply(existed=True)

    @rpc_method(TENANT_SERVICE)
    async def CreateIdentity(self, request: pb.CreateIdentityRequest, context) -> pb.CreatedIdentity:
        self.gate.check(settled=False)
        name = validate.name("name", request.name)
        tenant = request.tenant or DEFAULT_TENANT
        if tenant != DEFAULT_TENANT and self.tenancy.get(Tenant, tenant) is None:
            raise NotFound(f"tenant {tenant!r} not found")
        if request.role not in ROLES:
            raise InvalidArgument("role", f"{request.role!r} is not one of {', '.join(ROLES)}")
        if request.role == Role.ADMIN.value and tenant != DEFAULT_TENANT:
            raise InvalidArgument("role", "admins belong to the default tenant (they act on every tenant)")
        if self.tenancy.count(Identity) == 0 and request.role != Role.ADMIN.value:
            raise FailedPrecondition("the first identity must be an admin: once one exists every call must "
                                     "authenticate, and only admins can create identities")
        if await self.repo.by_name(Identity, name) is not None:
            raise AlreadyExists(f"identity {name!r} exists (a token is shown only when it is created; delete "
                                "the identity and create it again for a new one)")
        token = ""
        if request.subject:
            subject = request.subject.strip()
            ident = Identity(id=auth.cert_id(subject), name=name, tenant=tenant, role=request.role,
                             kind="certificate", subject=subject, created_at=now())
        else:
            token = auth.new_token()
            ident = Identity(id=auth.token_id(token), name=name, tenant=tenant, role=request.role, kind="token",
                             token_prefix=token[:len(auth.TOKEN_PREFIX) + 4], created_at=now())
        try:
            await self.repo.commit(create=[ident])
        except NameTaken:
            raise AlreadyExists(f"identity {name!r} exists") from None
        except Conflict:
            raise AlreadyExists(f"the certificate subject {ident.subject!r} has an identity already") from None
        log.info("identity created name=%s tenant=%s role=%s kind=%s", name, tenant, ident.role, ident.kind)
        return pb.CreatedIdentity(identity=identity_pb(ident), token=token)

    @rpc_method(TENANT_SERVICE)
    async def ListIdentities(self, request: pb.ListIdentitiesRequest, context) -> pb.ListIdentitiesReply:
        self.gate.check(settled=False)
        idents = sorted(self.tenancy.all(Identity), key=lambda i: i.name)
        return pb.ListIdentitiesReply(identities=[identity_pb(i) for i in idents
                                                  if not request.tenant or i.tenant == request.tenant])

    @rpc_method(TENANT_SERVICE)
    async def DeleteIdentity(self, request: pb.DeleteIdentityRequest, context) -> pb.DeleteIdentityReply:
        self.gate.check(settled=False)
        ident = await self.repo.by_name(Identity, validate.name("name", request.name))
        if ident is None:
            return pb.DeleteIdentityReply(existed=False)
        others = [i for i in self.tenancy.all(Identity) if i.id != ident.id]
        if ident.role == Role.ADMIN.value and others and not any(i.role == Role.ADMIN.value for i in others):
            raise FailedPrecondition(f"{ident.name!r} is the last admin identity; the others could not manage "
                                     "identities any more. Delete them first, or create another admin")
        await self.repo.commit(delete=[ident])
        log.info("identity deleted name=%s tenant=%s", ident.name, ident.tenant)
        return pb.DeleteIdentityReply(existed=True)
