"""EventService: the event log (``events.py``) through the admin API. Callers other than admins see
only the events of their own tenant's volumes."""

from __future__ import annotations

import asyncio
import base64
import logging

from ..errors import InvalidArgument, MeshblockError
from ..grpcutil import rpc_method, status_of
from ..model import Node
from ..model.events import ClusterEvent
from ..proto.meshblock.v1 import admin_pb2 as pb
from ..proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from . import auth
from .audit import time_key
from .events import EventLog, EventRecorder, Match

log = logging.getLogger(__name__)

EVENT_SERVICE = "meshblock.v1.EventService"
DEFAULT_PAGE = 500
MAX_PAGE = 5000
WATCH_POLL = 1.0      # seconds between two reads of the store while following (sooner when events are written)


def event_pb(e: ClusterEvent) -> pb.Event:
    return pb.Event(id=e.id, time=e.time, kind=e.kind, object=e.object, object_id=e.object_id, tenant=e.tenant,
                    message=e.message, fields=e.fields, node_ids=e.node_ids)


def _token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode()


def _after(token: str) -> str:
    try:
        after = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        after = ""
    if not after:
        raise InvalidArgument("page_token", "not a token this server issued")
    return after


class EventServicer(pb_grpc.EventServiceServicer):
    def __init__(self, log_: EventLog, gate, repo, recorder: EventRecorder | None = None):
        self.log = log_
        self.gate = gate
        self.repo = repo
        self.recorder = recorder

    async def _match(self, request: pb.ListEventsRequest) -> Match:
        """The filter of a request, with the caller's tenancy."""
        caller = auth.current()
        tenant = "" if caller.admin else caller.tenant
        volume, kind = request.volume, request.kind
        node_ids: set[str] = set()
        if request.node:
            node_ids = {request.node}
            n = await self.repo.by_name(Node, request.node) or await self.repo.get(Node, request.node)
            if n is not None:
                node_ids.add(n.id)

        def match(e: ClusterEvent) -> bool:
            if tenant and e.tenant != tenant:
                return False      # node events have no tenant: admins only
            if volume and not (e.kind.startswith("volume.") or e.kind.startswith("replica.")):
                return False
            if volume and volume not in (e.object, e.object_id):
                return False
            if kind and e.kind != kind and not e.kind.startswith(kind + "."):
                return False
            if node_ids and not (node_ids & set(e.node_ids) or e.object_id in node_ids or e.object in node_ids):
                return False
            return True
        return match

    @staticmethod
    def _start(request: pb.ListEventsRequest) -> str | None:
        if request.page_token:
            return _after(request.page_token)
        if request.since < 0:
            raise InvalidArgument("since", "a unix time, not negative")
        return time_key(request.since) if request.since else None

    @rpc_method(EVENT_SERVICE)
    async def ListEvents(self, request: pb.ListEventsRequest, context) -> pb.ListEventsReply:
        self.gate.check(settled=False)
        size = request.page_size or DEFAULT_PAGE
        if size > MAX_PAGE:
            raise InvalidArgument("page_size", f"at most {MAX_PAGE}")
        start = self._start(request)
        events, last, more = await self.log.scan(after=start, limit=size, match=await self._match(request))
        return pb.ListEventsReply(events=[event_pb(e) for e in events],
                                  next_page_token=_token(last) if more and last else "")

    async def WatchEvents(self, request: pb.ListEventsRequest, context):
        """The matching events from ``since`` (or after the page token), then each new one as it is
        written, until the caller cancels."""
        try:
            self.gate.check(settled=False)
            match = await self._match(request)
            cursor = self._start(request)
        except MeshblockError as e:
            code, detail = status_of(e)
            await context.abort(code, detail)
            return
        while True:
            try:
                self.gate.check(settled=False)
                events, cursor, more = await self.log.scan(after=cursor, limit=MAX_PAGE, match=match)
            except MeshblockError as e:
                code, detail = status_of(e)
                await context.abort(code, detail)
                return
            for e in events:
                yield event_pb(e)
            if more:
                continue
            if self.recorder is not None:
                await self.recorder.wait_written(WATCH_POLL)
            else:
                await asyncio.sleep(WATCH_POLL)
