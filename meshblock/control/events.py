"""The event log: what happened to the cluster (volume states, head moves, rebuilds and resyncs,
nodes going down and coming back, drains), kept in the state store so that it outlives a controller
failover, with bounded retention that the leader enforces (as the audit log's, ``audit.py``).

The reconciler records an event where a transition happens, through :class:`EventRecorder`: a
bounded in-memory queue that a background task writes to the store in batches. Recording never
waits and never fails: when the store cannot take the events they wait in the queue, and when the
queue is full the oldest are dropped and counted. A transition recorded for an object is not
recorded again until another one of the same topic was (a reconcile pass that repeats finds the
same transition again when its commit failed).

Events are items of kind ``event`` whose ids start with the time in microseconds (strictly rising
within one controller), so the store's id order is the order they were recorded in. They are not
in the controller's view; they are read from the store page by page.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from typing import Callable, Iterable

from prometheus_client import Counter, Gauge

from ..model.events import ClusterEvent
from ..store.base import Put, StateStore
from .audit import DELETE_BATCH, Retention, prune_every, prune_kind, time_key

log = logging.getLogger(__name__)

RECORDED = Counter("meshblock_events_recorded_total", "Cluster events recorded (queued for the store)", ["kind"])
WRITTEN = Counter("meshblock_events_written_total", "Cluster events written to the store")
DROPPED = Counter("meshblock_events_dropped_total",
                  "Cluster events dropped because the queue was full while the store did not take them")
REPEATS = Counter("meshblock_events_repeated_total", "Transitions not recorded again (the same as the last one)")
QUEUED = Gauge("meshblock_events_queued", "Cluster events waiting to be written to the store")

WRITE_BATCH = DELETE_BATCH   # events per store transaction (etcd caps one at 128 operations)


def default_retention() -> Retention:
    return Retention(max_age=30 * 86400.0, max_events=100_000)


Match = Callable[[ClusterEvent], bool]


class EventLog:
    """The events in the store: written in batches, read in pages, pruned."""

    def __init__(self, store: StateStore, retention: Retention | None = None):
        self.store = store
        self.retention = retention or default_retention()

    async def write(self, events: list[ClusterEvent]) -> None:
        """Write ``events`` in one transaction (a retry after an unknown outcome writes the same again)."""
        await self.store.commit([Put(ClusterEvent.KIND, e.id, e.to_data()) for e in events])

    async def scan(self, *, after: str | None, limit: int, match: Match = lambda e: True,
                   budget: int = 50_000) -> tuple[list[ClusterEvent], str | None, bool]:
        """Up to ``limit`` events after the id ``after`` (None: from the oldest) that ``match``,
        reading at most ``budget`` events; the events, the last id read (or ``after``), and whether
        more may follow."""
        cursor = after
        out: list[ClusterEvent] = []
        read = 0
        page = min(max(limit, 200), 1000)
        while True:
            items = await self.store.list(ClusterEvent.KIND, start_after=cursor, limit=page)
            for item in items:
                cursor = item.id
                read += 1
                e = ClusterEvent.from_data(item.id, item.data, item.revision)
                if match(e):
                    out.append(e)
                if len(out) >= limit or read >= budget:
                    more = bool(await self.store.list(ClusterEvent.KIND, start_after=cursor, limit=1))
                    return out, cursor, more
            if len(items) < page:
                return out, cursor, False

    async def prune(self, now: float | None = None) -> int:
        return await prune_kind(self.store, ClusterEvent.KIND, self.retention, now)

    async def run_pruner(self) -> None:
        await prune_every(self.prune, self.retention.prune_every, "event log")


class EventRecorder:
    """Records events without ever waiting for the store (see the module's docstring).

    ``capacity`` events wait at most (the oldest are dropped beyond); they are written ``batch`` at
    a time, ``flush_after`` seconds after the first of them was recorded (so that a burst, such as
    the volumes of a node that failed, goes in a few transactions); a failed write is retried after
    ``retry_after`` seconds, doubling up to ``retry_max``. ``remember`` objects' last transitions
    are kept for the de-duplication.
    """

    def __init__(self, log_: EventLog, *, capacity: int = 10_000, batch: int = WRITE_BATCH,
                 flush_after: float = 0.1, retry_after: float = 0.5, retry_max: float = 5.0,
                 remember: int = 100_000, clock: Callable[[], float] = time.time):
        self.log = log_
        self.capacity = capacity
        self.batch = max(1, min(batch, WRITE_BATCH))
        self.flush_after = flush_after
        self.retry_after = retry_after
        self.retry_max = retry_max
        self.remember = remember
        self.clock = clock
        self.dropped = 0          # events lost because the queue was full
        self.repeats = 0          # transitions not recorded again
        self.written = 0
        self.failures = 0         # writes the store refused
        self._queue: collections.deque[ClusterEvent] = collections.deque()
        self._inflight: list[ClusterEvent] = []
        self._last: collections.OrderedDict[tuple[str, str], tuple] = collections.OrderedDict()
        self._last_us = 0
        self._pending = asyncio.Event()
        self._flushed = asyncio.Event()

    # --- recording (called from the reconciler: never waits, never raises) ------------------------
    def record(self, kind: str, *, object: str, object_id: str = "", message: str, tenant: str = "",
               fields: dict[str, str] | None = None, node_ids: Iterable[str] = (), topic: str = "") -> bool:
        """Queue one event; False when it repeats the last transition of its object and topic (the
        ``kind`` unless given), which is then not recorded again."""
        try:
            fields = {k: str(v) for k, v in (fields or {}).items()}
            key = (object_id or object, topic or kind)
            signature = (kind, tuple(sorted(fields.items())))
            if self._last.get(key) == signature:
                self._last.move_to_end(key)
                self.repeats += 1
                REPEATS.inc()
                return False
            self._last[key] = signature
            self._last.move_to_end(key)
            while len(self._last) > self.remember:
                self._last.popitem(last=False)
            at = self.clock()
            us = max(int(at * 1_000_000), self._last_us + 1)   # ids rise strictly: the store's order is ours
            self._last_us = us
            e = ClusterEvent(id=f"{us:017d}-{secrets.token_hex(4)}", time=at, kind=kind, object=object,
                             object_id=object_id, tenant=tenant, message=message[:500], fields=fields,
                             node_ids=sorted({n for n in node_ids if n}))
            self._queue.append(e)
            self._trim()
            RECORDED.labels(kind).inc()
            QUEUED.set(len(self._queue) + len(self._inflight))
            self._pending.set()
            log.info("event %s %s: %s", kind, object, e.message)
            return True
        except Exception:  # noqa: BLE001 - an event must never break the pass that records it
            log.exception("event %s of %s not recorded", kind, object)
            return False

    def forget(self, object_id: str) -> None:
        """Forget an object's last transitions (it was deleted: a new one of that name starts afresh)."""
        for key in [k for k in self._last if k[0] == object_id]:
            del self._last[key]

    def _trim(self) -> None:
        # the newest ``capacity`` events not written yet are kept: a batch being written is older
        # than everything queued, so while it is in flight the queue alone is bounded (memory:
        # capacity plus a batch), and if its write fails it goes back in front and is trimmed first
        while len(self._queue) > self.capacity:
            lost = self._queue.popleft()
            self.dropped += 1
            DROPPED.inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("event queue full (%d): %d event(s) dropped so far, the latest %s %s", self.capacity,
                            self.dropped, lost.kind, lost.object)

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._inflight)

    # --- writing --------------------------------------------------------------------------------
    async def flush(self) -> bool:
        """Write every queued event now; False when the store refused a batch (they stay queued)."""
        while self._queue:
            self._inflight = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            try:
                await self.log.write(self._inflight)
            except Exception as e:  # noqa: BLE001 - the store is unavailable: keep them and retry
                self.failures += 1
                self._queue.extendleft(reversed(self._inflight))
                self._inflight = []
                self._trim()
                QUEUED.set(self.queued)
                log.warning("%d event(s) not written yet (%s: %s); retrying", len(self._queue), type(e).__name__, e)
                return False
            self.written += len(self._inflight)
            WRITTEN.inc(len(self._inflight))
            self._inflight = []
            QUEUED.set(self.queued)
            woken, self._flushed = self._flushed, asyncio.Event()
            woken.set()
        return True

    async def run(self) -> None:
        """Write what is recorded, in batches, until cancelled (run by the leader)."""
        delay = self.retry_after
        while True:
            await self._pending.wait()
            self._pending.clear()
            if self.flush_after:
                await asyncio.sleep(self.flush_after)   # let a burst gather
            if await self.flush():
                delay = self.retry_after
                continue
            self._pending.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    async def wait_written(self, timeout: float) -> None:
        """Return when events were written next, or after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._flushed.wait(), timeout)
        except asyncio.TimeoutError:
            pass


__all__ = ["ClusterEvent", "EventLog", "EventRecorder", "default_retention", "time_key"]
