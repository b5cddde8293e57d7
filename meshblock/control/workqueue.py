"""A de-duplicating, rate-limited work queue of object keys (the controller pattern).

Changes put keys on the queue; workers take them one at a time and reconcile that one object.
A key is queued at most once however often it is added; a key added while a worker holds it is
queued again when that worker is done, so no change is lost and no key is ever processed by two
workers at once. A key whose reconciliation failed comes back after a per-key exponential backoff
(``retry``), and ``forget`` resets that backoff after a success. ``add_after`` schedules a key for
later (re-checks, time-based decisions); an earlier or immediate add wins over a later one.
Keys added as urgent (volumes whose head has to move) are taken before all others, in the order
they were added: in a mass event, what hosts wait for is not queued behind routine visits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Hashable


class ShutDown(Exception):
    """The queue was shut down; workers stop."""


class WorkQueue:
    def __init__(self, base_delay: float = 0.05, max_delay: float = 5.0):
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[Hashable] = deque()
        self._urgent: deque[Hashable] = deque()    # taken before _queue
        self._queued: set[Hashable] = set()        # waiting (in _urgent or _queue; a key taken from one
                                                   # lane may still sit in the other: skipped there)
        self._urgent_keys: set[Hashable] = set()   # in _urgent
        self._active: set[Hashable] = set()        # held by a worker
        self._dirty: set[Hashable] = set()         # added while held: queued again on done()
        self._dirty_urgent: set[Hashable] = set()  # ... as urgent
        self._failures: dict[Hashable, int] = {}
        self._later: list[tuple[float, int, Hashable]] = []   # (due, seq, key) heap
        self._due: dict[Hashable, float] = {}      # earliest due time of each delayed key
        self._seq = itertools.count()
        self._waiters: deque[asyncio.Future] = deque()
        self._shut = False
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def delayed(self) -> int:
        return len(self._due)

    @property
    def active(self) -> int:
        return len(self._active)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    # --- adding ------------------------------------------------------------------------------
    def add(self, key: Hashable, urgent: bool = False) -> None:
        if self._shut:
            return
        self._due.pop(key, None)     # an immediate add supersedes a scheduled one
        if key in self._active:
            self._dirty.add(key)
            if urgent:
                self._dirty_urgent.add(key)
            return
        if key in self._queued:
            if urgent and key not in self._urgent_keys:   # waiting as routine: taken sooner now
                self._urgent_keys.add(key)
                self._urgent.append(key)
            return
        self._queued.add(key)
        if urgent:
            self._urgent_keys.add(key)
            self._urgent.append(key)
        else:
            self._queue.append(key)
        self._notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        if self._shut or key in self._queued or key in self._dirty:
            return
        due = asyncio.get_running_loop().time() + delay
        cur = self._due.get(key)
        if cur is not None and cur <= due:
            return
        self._due[key] = due
        heapq.heappush(self._later, (due, next(self._seq), key))
        self._arm()

    def retry(self, key: Hashable) -> float:
        """Schedule a failed key again after its backoff; returns the delay."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = min(self.max_delay, self.base_delay * (2 ** n))
        self._due.pop(key, None)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    # --- taking ------------------------------------------------------------------------------
    async def get(self) -> Hashable:
        while True:
            while not self._queued:
                if self._shut:
                    raise ShutDown()
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():
                        self._notify()     # woken, then cancelled: pass the wake-up on
                    raise
            if self._urgent:
                key = self._urgent.popleft()
                self._urgent_keys.discard(key)
            else:
                key = self._queue.popleft()
            if key in self._queued:        # else taken already through the other lane
                self._queued.discard(key)
                self._active.add(key)
                return key

    def done(self, key: Hashable) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            urgent = key in self._dirty_urgent
            self._dirty_urgent.discard(key)
            self.add(key, urgent)

    def shut_down(self) -> None:
        self._shut = True
        if self._timer is not None:
            self._timer.cancel()
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)

    # --- internals ---------------------------------------------------------------------------
    def _notify(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def _arm(self) -> None:
        if not self._later:
            return
        due = self._later[0][0]
        if self._timer is not None:
            if self._timer.when() <= due:
                return
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(due, self._release)

    def _release(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self._later and self._later[0][0] <= now:
            due, _, key = heapq.heappop(self._later)
            if self._due.get(key) == due:
                del self._due[key]
                self.add(key)
        self._arm()
