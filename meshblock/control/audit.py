"""The audit log: one event per mutating admin call (who, tenant, what, target, result, time, peer),
kept in the state store so that it outlives a controller failover, with bounded retention that the
leader enforces.

Events are items of kind ``audit`` whose ids start with the time in microseconds, so the store's
id order is the order they were recorded in. They are not in the controller's view (nothing
reconciles them); they are read from the store page by page.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..errors import InvalidArgument
from ..grpcutil import rpc_method
from ..model.tenancy import AuditEvent
from ..proto.meshblock.v1 import admin_pb2 as pb
from ..proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from ..store.base import Delete, Put, StateStore
from . import auth

log = logging.getLogger(__name__)

AUDIT_SERVICE = "meshblock.v1.AuditService"
DEFAULT_PAGE = 500
MAX_PAGE = 5000
DELETE_BATCH = 100           # etcd caps a transaction at 128 operations by default


@dataclass
class Retention:
    max_age: float = 90 * 86400.0    # seconds (0: no limit by age)
    max_events: int = 100_000        # (0: no limit by count)
    prune_every: float = 60.0


def event_id(at: float) -> str:
    return f"{int(at * 1_000_000):017d}-{secrets.token_hex(4)}"


def time_key(at: float) -> str:
    """The start of the ids of the events recorded at ``at`` (a cursor that sorts before them)."""
    return f"{int(at * 1_000_000):017d}"


async def prune_kind(store: StateStore, kind: str, r: Retention, now: float | None = None) -> int:
    """Delete the items of ``kind`` (ids that start with their time, as :func:`event_id` makes them)
    older than the retention's age, and the oldest beyond its count."""
    removed = 0

    async def delete(ids: list[str]) -> int:
        await store.commit([Delete(kind, i) for i in ids])
        return len(ids)

    if r.max_age:
        cutoff = time_key((now or time.time()) - r.max_age)
        while True:
            old = [i.id for i in await store.list(kind, limit=DELETE_BATCH) if i.id < cutoff]
            if not old:
                break
            removed += await delete(old)
            if len(old) < DELETE_BATCH:
                break
    if r.max_events:
        excess = await store.count(kind) - r.max_events
        while excess > 0:
            batch = [i.id for i in await store.list(kind, limit=min(excess, DELETE_BATCH))]
            if not batch:
                break
            excess -= await delete(batch)
            removed += len(batch)
    return removed


async def prune_every(prune: Callable[[], Awaitable[int]], every: float, what: str) -> None:
    """Run ``prune`` every ``every`` seconds (the leader does), logging what it removed; a failure is
    logged and the next turn tries again."""
    while True:
        try:
            removed = await prune()
            if removed:
                log.info("%s pruned: %d events removed", what, removed)
        except Exception:  # noqa: BLE001 - retried at the next turn
            log.exception("pruning the %s failed", what)
        await asyncio.sleep(every)


class AuditLog:
    def __init__(self, store: StateStore, retention: Retention | None = None):
        self.store = store
        self.retention = retention or Retention()

    async def record(self, *, caller: auth.Caller, method: str, target: str, code: str, message: str,
                     at: float) -> AuditEvent:
        e = AuditEvent(id=event_id(at), time=at, identity=caller.identity, role=caller.role, tenant=caller.tenant,
                       method=method, target=target, code=code, peer=caller.peer, message=message[:500])
        await self.store.commit([Put(AuditEvent.KIND, e.id, e.to_data(), expect=0)])
        log.info("audit method=%s identity=%s tenant=%s target=%s code=%s peer=%s", method, e.identity, e.tenant,
                 target, code, e.peer)
        return e

    async def list(self, *, since: float = 0.0, after: str = "", limit: int = DEFAULT_PAGE,
                   tenant: str = "") -> tuple[list[AuditEvent], str]:
        """Events in the order recorded, from ``since`` (or after the id ``after``), of one tenant or
        all; and the id to continue after ("" when there are no more)."""
        cursor = after or (time_key(since) if since else None)
        out: list[AuditEvent] = []
        batch = max(limit, 200)
        while True:
            items = await self.store.list(AuditEvent.KIND, start_after=cursor, limit=batch)
            for item in items:
                cursor = item.id
                e = AuditEvent.from_data(item.id, item.data, item.revision)
                if tenant and e.tenant != tenant:
                    continue
                out.append(e)
                if len(out) == limit:
                    break
            if len(out) == limit:
                break
            if len(items) < batch:
                return out, ""
        more = await self.store.list(AuditEvent.KIND, start_after=cursor, limit=1)
        return out, cursor if more else ""

    async def prune(self, now: float | None = None) -> int:
        """Delete the events older than the retention's age and the oldest beyond its count."""
        return await prune_kind(self.store, AuditEvent.KIND, self.retention, now)

    async def run_pruner(self) -> None:
        await prune_every(self.prune, self.retention.prune_every, "audit log")


def event_pb(e: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(id=e.id, time=e.time, identity=e.identity, role=e.role, tenant=e.tenant, method=e.method,
                         target=e.target, code=e.code, peer=e.peer, message=e.message)


class AuditServicer(pb_grpc.AuditServiceServicer):
    def __init__(self, log_: AuditLog, gate):
        self.log = log_
        self.gate = gate

    @rpc_method(AUDIT_SERVICE)
    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context) -> pb.ListAuditEventsReply:
        self.gate.check(settled=False)
        size = request.page_size or DEFAULT_PAGE
        if size > MAX_PAGE:
            raise InvalidArgument("page_size", f"at most {MAX_PAGE}")
        after = ""
        if request.page_token:
            try:
                after = base64.urlsafe_b64decode(request.page_token.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                after = ""
            if not after:
                raise InvalidArgument("page_token", "not a token this server issued")
        caller = auth.current()
        tenant = request.tenant
        if not caller.admin:
            if tenant and tenant != caller.tenant:
                return pb.ListAuditEventsReply()
            tenant = caller.tenant
        events, next_after = await self.log.list(since=request.since, after=after, limit=size, tenant=tenant)
        return pb.ListAuditEventsReply(events=[event_pb(e) for e in events],
                                       next_page_token=base64.urlsafe_b64encode(next_after.encode()).decode()
                                       if next_after else "")
