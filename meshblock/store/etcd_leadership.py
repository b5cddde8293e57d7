"""Leader election on etcd: a lease-bound ``<prefix>/leader`` key (see :class:`EtcdLeadership`)."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time

import aetcd
import aetcd.exceptions
import grpc
from aetcd import rpc

from meshblock.store.base import Leadership, StoreError, wait_until
from meshblock.store.etcd_client import _GRPC_OPTIONS, Connection, EtcdConfig, _grpc_target, put_op, range_op

log = logging.getLogger("meshblock.store.etcd")      # one logger name for the whole etcd engine


class EtcdLeadership(Leadership):
    """Leader = the candidate whose lease holds ``<prefix>/leader``.

    A candidate grants a lease of ``ttl`` seconds (whole seconds, etcd's unit), refreshes it every
    ``ttl/3`` and creates the leader key with it in a transaction that succeeds only if the key is
    absent. Standbys watch the key and try again as soon as it is deleted (the leader resigned,
    or its lease expired because it died). The leader counts its lease as alive only until
    ``ttl`` after the last refresh it *sent* that succeeded; past that, or if its key is deleted
    or taken over, it sets ``lost``.
    """

    def __init__(self, cfg: EtcdConfig, candidate_id: str, ttl: float = 3.0):
        super().__init__(candidate_id)
        self.cfg = cfg
        self.key = f"{cfg.prefix}/leader".encode()
        self.ttl = max(1, math.ceil(ttl))
        self._conn = Connection(cfg)
        self._lease_id: int | None = None
        self._refresher: _Refresher | None = None
        self._guard_task: asyncio.Task | None = None
        self._background: set[asyncio.Future] = set()

    # -- lease -----------------------------------------------------------------------------

    async def _grant(self) -> int:
        client = await self._conn.client()
        sent = time.monotonic()
        lease = await client.lease(self.ttl)
        self._lease_id = lease.id
        self._refresher = _Refresher(await _grpc_target(self.cfg.endpoints), lease.id, self.ttl / 3,
                                     sent + lease.ttl, asyncio.get_running_loop(), self._lease_gone)
        self._refresher.start()
        return lease.id

    def _lease_gone(self, lease_id: int) -> None:
        if self._lease_id != lease_id:
            return
        self._lease_id = None
        self._mark_lost(f"reason=lease-expired lease={lease_id:x}")

    # -- campaign --------------------------------------------------------------------------

    async def campaign(self) -> None:
        if self._is_leader:
            return
        try:
            await self._campaign()
        except BaseException:
            if not self._is_leader:
                self._drop_lease()   # a lease kept alive without a campaign could hold the key
            raise

    def _drop_lease(self) -> None:
        lease_id, self._lease_id = self._lease_id, None
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.stop()
        if lease_id is not None and not self._conn.closed:
            revoke = asyncio.ensure_future(self._revoke(lease_id))
            self._background.add(revoke)
            revoke.add_done_callback(self._background.discard)

    async def _revoke(self, lease_id: int) -> None:
        try:
            client = await self._conn.client()
            await wait_until(client.revoke_lease(lease_id), self.cfg.timeout)   # deletes its keys
        except Exception as e:   # unreachable: the lease expires by itself within its TTL
            log.debug("revoking lease %x: %r", lease_id, e)

    async def _campaign(self) -> None:
        while True:
            self._check_open()
            try:
                lease_id = self._lease_id if self._lease_id is not None else await self._grant()
                resp = await self._conn.kv("Txn", rpc.TxnRequest(
                    compare=[rpc.Compare(key=self.key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL,
                                         create_revision=0)],
                    success=[put_op(self.key, self.candidate_id.encode(), lease_id)],
                    failure=[range_op(self.key)]))
                holder = None
                if not resp.succeeded:
                    kvs = resp.responses[0].response_range.kvs
                    holder = kvs[0] if kvs else None
                if resp.succeeded or (holder is not None and holder.lease == lease_id):
                    if self._lease_id != lease_id:
                        continue                 # the lease expired meanwhile
                    self.lost.clear()
                    self._is_leader = True
                    self._guard_task = asyncio.create_task(
                        self._guard(lease_id, resp.header.revision + 1), name="etcd leader guard")
                    return
                await self._wait_for_vacancy(resp.header.revision + 1)
            except Exception as e:           # etcd unreachable, or the client closing under us
                self._check_open()
                log.warning("leader campaign candidate=%s error=%r; retrying", self.candidate_id, e)
                await asyncio.sleep(0.5)

    async def _wait_for_vacancy(self, from_revision: int) -> None:
        client = await self._conn.client()
        try:
            event = await client.watch_once(self.key, timeout=1.0, start_revision=from_revision)
        except aetcd.exceptions.WatchTimeoutError:
            return
        if event is None or isinstance(event, Exception):
            await asyncio.sleep(0.5)   # the watch stream broke

    async def _guard(self, lease_id: int, from_revision: int) -> None:
        """While leading: lost as soon as the leader key is deleted or no longer ours."""
        client = await self._conn.client()
        revision = from_revision
        while self._is_leader and self._lease_id == lease_id:
            try:
                event = await client.watch_once(self.key, timeout=self.ttl, start_revision=revision)
            except aetcd.exceptions.WatchTimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except aetcd.exceptions.RevisionCompactedError:
                try:
                    resp = await self._conn.kv("Range", rpc.RangeRequest(key=self.key))
                except StoreError:
                    await asyncio.sleep(0.5)
                    continue
                if self._lease_id != lease_id:
                    return
                if not resp.kvs or resp.kvs[0].lease != lease_id:
                    self._mark_lost("reason=leader-key-gone")
                    return
                revision = resp.header.revision + 1
                continue
            except Exception:
                await asyncio.sleep(0.5)
                continue
            if event is None or isinstance(event, Exception):
                await asyncio.sleep(0.5)   # the watch stream broke: watch again
                continue
            if not self._is_leader or self._lease_id != lease_id:
                return                     # resigned meanwhile: this guard is stale
            if event.kind != aetcd.EventKind.PUT or event.kv.lease != lease_id:
                self._mark_lost(f"reason=leader-key-{'deleted' if event.kind != aetcd.EventKind.PUT else 'taken'}")
                return
            revision = event.kv.mod_revision + 1

    # -- the rest --------------------------------------------------------------------------

    async def resign(self) -> None:
        self._is_leader = False
        lease_id, self._lease_id = self._lease_id, None
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.stop()
        tasks = [t for t in (self._guard_task,) if t is not None and t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: on Python 3.11 a cancellation racing with a completing asyncio.wait_for
            # inside the client can be lost; such a task ends by itself (it checks the lease id).
            await asyncio.wait(tasks, timeout=0.5)
        self._guard_task = None
        if lease_id is not None:
            await self._revoke(lease_id)

    async def current_leader(self) -> str | None:
        resp = await self._conn.kv("Range", rpc.RangeRequest(key=self.key))
        return resp.kvs[0].value.decode() if resp.kvs else None

    async def close(self) -> None:
        self._closed = True
        await self.resign()
        if self._background:
            await asyncio.wait(self._background, timeout=self.cfg.timeout)
        await self._conn.close()


class _Refresher:
    """Keeps one lease alive from a thread of its own, with a blocking gRPC channel of its own: a
    leader whose event loop is busy (indexing a large cluster as it takes over) keeps its lease, as
    long as the process runs and etcd answers. It refreshes every ``interval`` seconds, and again
    soon after a failure; past ``deadline`` (``ttl`` after the last refresh it *sent* that
    succeeded) or when etcd says the lease is gone, it calls ``on_gone(lease_id)`` on the loop."""

    def __init__(self, target: str, lease_id: int, interval: float, deadline: float,
                 loop: asyncio.AbstractEventLoop, on_gone):
        self.target = target
        self.lease_id = lease_id
        self.interval = interval
        self.deadline = deadline        # monotonic time until which the lease surely lives
        self.loop = loop
        self.on_gone = on_gone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"etcd lease {lease_id:x}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _refresh(self, stub, timeout: float):
        replies = stub.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=self.lease_id)]), timeout=timeout)
        try:
            return next(replies, None)
        finally:
            replies.cancel()

    def _run(self) -> None:
        channel = grpc.insecure_channel(self.target, options=list(_GRPC_OPTIONS.items()))
        stub = rpc.LeaseStub(channel)
        next_refresh = time.monotonic() + self.interval
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= self.deadline:
                    self._gone()
                    return
                if now < next_refresh:
                    self._stop.wait(min(next_refresh, self.deadline) - now)
                    continue
                sent = time.monotonic()
                try:
                    reply = self._refresh(stub, max(0.05, self.deadline - sent))
                except grpc.RpcError:
                    reply = None
                if reply is None:      # failed or timed out: try again soon (the deadline still holds)
                    next_refresh = time.monotonic() + min(0.5, self.interval)
                    continue
                if reply.TTL <= 0:     # expired or revoked
                    self._gone()
                    return
                self.deadline = sent + reply.TTL
                next_refresh = sent + self.interval
        finally:
            channel.close()

    def _gone(self) -> None:
        if self._stop.is_set():
            return
        try:
            self.loop.call_soon_threadsafe(self.on_gone, self.lease_id)
        except RuntimeError:           # the loop has closed: nobody is left to tell
            pass
