"""State store on etcd v3 (for highly available controllers), through the asyncio client ``aetcd``.

Layout under the URL's prefix (default ``/meshblock``)::

    <prefix>/objects/<kind>/<id>   -> JSON {"name": ..., "data": ...}; revision = its mod_revision
    <prefix>/names/<kind>/<name>   -> <id>   (name index, maintained by the same transactions)
    <prefix>/leader                -> candidate id, attached to the leader's lease

:meth:`EtcdStore.commit` reads the items it touches (one linearizable read transaction),
checks every expectation, then writes everything in ONE etcd transaction whose compares pin
the ``mod_revision`` of every touched object key and of every claimed name key (0 = absent).
If another client changed any of them in between, the transaction fails without writing; the
store reads again and either reports the failed expectation (:class:`Conflict`,
:class:`NameTaken`) or, when the expectations still hold, retries.

etcd limits one transaction to ``--max-txn-ops`` operations (128 by default): a commit writes
one key per item plus one per name added or removed.

:meth:`EtcdStore.snapshot` ranges the requested kinds at one pinned revision;
:meth:`EtcdStore.changes` is an etcd watch on the objects prefix from the next revision, each
watch response one batch. etcd keeps the history back to its last compaction: a watch from
before it raises :class:`HistoryLost`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions
import aetcd.utils
import grpc
from aetcd import rpc

from meshblock.store.base import (
    Change,
    Check,
    Current,
    Delete,
    HistoryLost,
    Item,
    Leadership,
    Put,
    StateStore,
    StoreError,
    StoreUnavailable,
    check_after,
    check_key,
    check_kind,
    check_kinds,
    check_list_args,
    encode_data,
    plan_commit,
    validate_ops,
    wait_until,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 2379
DEFAULT_PREFIX = "/meshblock"
PAGE = 500              # keys per range request when listing everything
NAME_PAGE = 100         # names per step when listing by name (one read transaction each)
MAX_COMMIT_ATTEMPTS = 64

_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,        # etcd allows pings every 5 s (--grpc-keepalive-min-time)
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2_000,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.lb_policy_name": "pick_first",
}


@dataclass(frozen=True)
class EtcdConfig:
    endpoints: tuple[tuple[str, int], ...]
    prefix: str = DEFAULT_PREFIX
    timeout: float = 5.0                # per request


def parse_etcd_url(url: str) -> EtcdConfig:
    """``etcd://host:port[,host:port...]?prefix=/meshblock&timeout=5``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "etcd":
        raise ValueError(f"not an etcd URL: {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(f"etcd URL {url!r}: put the key prefix in ?prefix=, not in the path")
    endpoints = []
    for ep in parts.netloc.split(","):
        ep = ep.strip()
        if not ep:
            continue
        if ep.startswith("["):                      # [::1]:2379
            host, _, rest = ep[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = ep.partition(":")
        try:
            endpoints.append((host, int(port) if port else DEFAULT_PORT))
        except ValueError:
            raise ValueError(f"etcd URL {url!r}: bad endpoint {ep!r}") from None
    if not endpoints:
        raise ValueError(f"etcd URL {url!r} names no endpoint")
    query = urllib.parse.parse_qs(parts.query)
    prefix = query.get("prefix", [DEFAULT_PREFIX])[-1].rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    timeout = float(query.get("timeout", ["5"])[-1])
    return EtcdConfig(endpoints=tuple(endpoints), prefix=prefix, timeout=timeout)


def _prefix_end(prefix: bytes) -> bytes:
    return aetcd.utils.prefix_range_end(prefix)


def _map_error(e: BaseException) -> StoreError:
    if isinstance(e, StoreError):
        return e
    if isinstance(e, grpc.aio.AioRpcError):
        code, details = e.code(), e.details() or str(e.code())
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED):
            return StoreUnavailable(f"etcd: {details}")
        if "too many operations in txn request" in details:
            return StoreError(f"etcd: {details} (the commit is larger than etcd's --max-txn-ops)")
        return StoreError(f"etcd: {details}")
    if isinstance(e, (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError)):
        return StoreUnavailable(f"etcd: {e}")
    if isinstance(e, asyncio.TimeoutError):
        return StoreUnavailable("etcd: request timed out")
    return StoreError(f"etcd: {e}")


class _Client(aetcd.Client):
    """An aetcd client on a gRPC target of our choosing (several endpoints fail over in order)."""

    def __init__(self, target: str, timeout: float):
        host, _, port = target.rpartition(":")
        super().__init__(host=host, port=port, timeout=timeout, options=dict(_GRPC_OPTIONS))


def _ip_literal(host: str) -> ipaddress._BaseAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _grpc_target(endpoints: tuple[tuple[str, int], ...]) -> str:
    if len(endpoints) == 1:
        host, port = endpoints[0]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    addrs: list[tuple[int, str, int]] = []
    loop = asyncio.get_running_loop()
    for host, port in endpoints:
        ip = _ip_literal(host)
        if ip is not None:
            addrs.append((ip.version, str(ip), port))
            continue
        for family, _, _, _, sockaddr in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            addrs.append((6 if family == socket.AF_INET6 else 4, sockaddr[0], port))
    if all(v == 4 for v, _, _ in addrs):
        return "ipv4:" + ",".join(f"{a}:{p}" for _, a, p in addrs)
    if all(v == 6 for v, _, _ in addrs):
        return "ipv6:" + ",".join(f"[{a}]:{p}" for _, a, p in addrs)
    raise ValueError("etcd endpoints mix IPv4 and IPv6 addresses; list one family")


class _Connection:
    """The lazily opened aetcd client shared by one store or one leadership."""

    def __init__(self, cfg: EtcdConfig):
        self.cfg = cfg
        self._client: _Client | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def client(self) -> _Client:
        if self._closed:
            raise StoreError("the etcd connection is closed")
        if self._client is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    client = _Client(await _grpc_target(self.cfg.endpoints), self.cfg.timeout)
                    await client.connect()
                    self._client = client
        return self._client

    async def kv(self, method: str, request: Any) -> Any:
        client = await self.client()
        try:
            return await getattr(client.kvstub, method)(request, timeout=self.cfg.timeout,
                                                         metadata=client.metadata)
        except (grpc.aio.AioRpcError, aetcd.exceptions.ClientError) as e:
            raise _map_error(e) from e

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _range_op(key: bytes, revision: int = 0) -> rpc.RequestOp:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key, revision=revision))


def _put_op(key: bytes, value: bytes, lease: int = 0) -> rpc.RequestOp:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def _delete_op(key: bytes) -> rpc.RequestOp:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def _mod_equals(key: bytes, revision: int) -> rpc.Compare:
    return rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision)


class EtcdStore(StateStore):
    """The etcd engine (see the module docstring)."""

    def __init__(self, cfg: EtcdConfig):
        self.cfg = cfg
        self._conn = _Connection(cfg)
        p = cfg.prefix
        self._objects = f"{p}/objects/".encode()
        self._names = f"{p}/names/".encode()
        self._closed = asyncio.Event()
        self._wakers: set[asyncio.Event] = set()

    # -- keys and values -------------------------------------------------------------------

    def _obj_key(self, kind: str, id: str) -> bytes:
        return self._objects + f"{kind}/{id}".encode()

    def _name_key(self, kind: str, name: str) -> bytes:
        return self._names + f"{kind}/{name}".encode()

    def _split_key(self, key: bytes) -> tuple[str, str] | None:
        """``<prefix>/objects/<kind>/<id>`` -> (kind, id); None for anything else."""
        if not key.startswith(self._objects):
            return None
        kind, sep, id = key[len(self._objects):].decode().partition("/")
        return (kind, id) if sep and kind and id else None

    def _item(self, kind: str, kv: Any) -> Item:
        value = json.loads(kv.value)
        id = kv.key[len(self._objects) + len(kind.encode()) + 1:].decode()
        return Item(kind=kind, id=id, name=value.get("name"), data=value["data"], revision=kv.mod_revision)

    # -- reads -----------------------------------------------------------------------------

    async def open(self) -> None:
        await self._conn.kv("Range", rpc.RangeRequest(key=self._objects, range_end=_prefix_end(self._objects),
                                                      count_only=True))

    async def get(self, kind: str, id: str) -> Item | None:
        check_key(kind, id)
        resp = await self._conn.kv("Range", rpc.RangeRequest(key=self._obj_key(kind, id)))
        return self._item(kind, resp.kvs[0]) if resp.kvs else None

    async def get_by_name(self, kind: str, name: str) -> Item | None:
        check_kind(kind)
        resp = await self._conn.kv("Range", rpc.RangeRequest(key=self._name_key(kind, name)))
        if not resp.kvs:
            return None
        id = resp.kvs[0].value.decode()
        obj = await self._conn.kv("Range", rpc.RangeRequest(key=self._obj_key(kind, id),
                                                            revision=resp.header.revision))
        if not obj.kvs:
            return None
        item = self._item(kind, obj.kvs[0])
        return item if item.name == name else None

    async def list(self, kind: str, *, start_after: str | None = None, limit: int | None = None,
                   index: str = "id") -> list[Item]:
        check_list_args(kind, limit, index)
        for attempt in range(3):
            try:
                if index == "id":
                    return await self._list_by_id(kind, start_after, limit)
                return await self._list_by_name(kind, start_after, limit)
            except StoreError as e:
                # a long listing pinned to a revision that was compacted meanwhile: start over
                if "compacted" not in str(e) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def snapshot(self, kinds: Sequence[str]) -> tuple[int, dict[str, list[Item]]]:
        kinds = check_kinds(kinds)
        for attempt in range(3):
            try:
                return await self._snapshot(kinds)
            except StoreError as e:
                # the pinned revision was compacted while paging: start over
                if "compacted" not in str(e) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _snapshot(self, kinds: Sequence[str]) -> tuple[int, dict[str, list[Item]]]:
        revision = 0          # the first range reads the current revision; the rest are pinned to it
        out: dict[str, list[Item]] = {}
        for kind in kinds:
            base = self._objects + f"{kind}/".encode()
            start, end = base, _prefix_end(base)
            items: list[Item] = []
            while True:
                resp = await self._conn.kv("Range", rpc.RangeRequest(key=start, range_end=end, limit=PAGE,
                                                                     revision=revision))
                if revision == 0:
                    revision = resp.header.revision
                items.extend(self._item(kind, kv) for kv in resp.kvs)
                if not resp.more or not resp.kvs:
                    break
                start = resp.kvs[-1].key + b"\0"
            out[kind] = items
        return revision, out

    async def _list_by_id(self, kind: str, start_after: str | None, limit: int | None) -> list[Item]:
        base = self._objects + f"{kind}/".encode()
        start = base + start_after.encode() + b"\0" if start_after is not None else base
        end = _prefix_end(base)
        items: list[Item] = []
        revision = 0
        while limit is None or len(items) < limit:
            page = PAGE if limit is None else min(PAGE, limit - len(items))
            resp = await self._conn.kv("Range", rpc.RangeRequest(key=start, range_end=end, limit=page,
                                                                 revision=revision))
            items.extend(self._item(kind, kv) for kv in resp.kvs)
            if not resp.more or not resp.kvs:
                break
            revision = resp.header.revision      # later pages read the same snapshot
            start = resp.kvs[-1].key + b"\0"
        return items

    async def _list_by_name(self, kind: str, start_after: str | None, limit: int | None) -> list[Item]:
        base = self._names + f"{kind}/".encode()
        start = base + start_after.encode() + b"\0" if start_after is not None else base
        end = _prefix_end(base)
        items: list[Item] = []
        revision = 0
        while limit is None or len(items) < limit:
            page = NAME_PAGE if limit is None else min(NAME_PAGE, limit - len(items))
            names = await self._conn.kv("Range", rpc.RangeRequest(key=start, range_end=end, limit=page,
                                                                  revision=revision))
            if not names.kvs:
                break
            revision = names.header.revision
            ids = [kv.value.decode() for kv in names.kvs]
            objs = await self._conn.kv("Txn", rpc.TxnRequest(
                success=[_range_op(self._obj_key(kind, id), revision) for id in ids]))
            for r in objs.responses:
                kvs = r.response_range.kvs
                if kvs:
                    items.append(self._item(kind, kvs[0]))
            if not names.more:
                break
            start = names.kvs[-1].key + b"\0"
        return items

    async def count(self, kind: str) -> int:
        check_kind(kind)
        base = self._objects + f"{kind}/".encode()
        resp = await self._conn.kv("Range", rpc.RangeRequest(key=base, range_end=_prefix_end(base),
                                                             count_only=True))
        return resp.count

    # -- commit ----------------------------------------------------------------------------

    async def _read_for_commit(self, ops: Sequence[Put | Delete | Check]):
        """One consistent read of every touched object and every claimed name, and its revision."""
        keys = [self._obj_key(op.kind, op.id) for op in ops]
        claims = [(op.kind, op.name) for op in ops if isinstance(op, Put) and op.name is not None]
        resp = await self._conn.kv("Txn", rpc.TxnRequest(
            success=[_range_op(k) for k in keys] + [_range_op(self._name_key(*c)) for c in claims]))
        current: dict[tuple[str, str], Current] = {}
        for op, r in zip(ops, resp.responses[:len(ops)]):
            kvs = r.response_range.kvs
            if kvs:
                current[(op.kind, op.id)] = Current(kvs[0].mod_revision, json.loads(kvs[0].value).get("name"))
            else:
                current[(op.kind, op.id)] = Current(0, None)
        owners: dict[tuple[str, str], str | None] = {}
        name_revs: dict[tuple[str, str], int] = {}
        for claim, r in zip(claims, resp.responses[len(ops):]):
            kvs = r.response_range.kvs
            owners[claim] = kvs[0].value.decode() if kvs else None
            name_revs[claim] = kvs[0].mod_revision if kvs else 0
        return current, owners, name_revs, resp.header.revision

    async def _current_revision(self) -> int:
        resp = await self._conn.kv("Range", rpc.RangeRequest(key=self._objects, range_end=_prefix_end(self._objects),
                                                             count_only=True))
        return resp.header.revision

    async def commit_revision(self, ops: Sequence[Put | Delete | Check]) -> tuple[int, dict[tuple[str, str], int]]:
        ops = validate_ops(ops)
        if not ops:
            return await self._current_revision(), {}
        for _ in range(MAX_COMMIT_ATTEMPTS):
            current, owners, name_revs, read_revision = await self._read_for_commit(ops)
            plan = plan_commit(ops, current, owners)          # raises Conflict / NameTaken
            result: dict[tuple[str, str], int] = {(op.kind, op.id): 0 for op in ops if isinstance(op, Delete)}
            if not plan.writes:
                return read_revision, result
            compares = [_mod_equals(self._obj_key(op.kind, op.id), current[(op.kind, op.id)].revision)
                        for op in ops]
            compares += [_mod_equals(self._name_key(*claim), rev) for claim, rev in name_revs.items()]
            success = []
            for op in plan.deletes:
                success.append(_delete_op(self._obj_key(op.kind, op.id)))
            for op in plan.puts:
                value = f'{{"name":{json.dumps(op.name, ensure_ascii=False)},"data":{encode_data(op.data)}}}'
                success.append(_put_op(self._obj_key(op.kind, op.id), value.encode()))
            for kind, name in sorted(plan.names_freed):
                success.append(_delete_op(self._name_key(kind, name)))
            for (kind, name), id in sorted(plan.names_claimed.items()):
                if owners.get((kind, name)) != id:
                    success.append(_put_op(self._name_key(kind, name), id.encode()))
            resp = await self._conn.kv("Txn", rpc.TxnRequest(compare=compares, success=success))
            if resp.succeeded:
                for op in plan.puts:
                    result[(op.kind, op.id)] = resp.header.revision
                return resp.header.revision, result
            # something we read changed meanwhile: read again; the plan says whether an
            # expectation now fails (Conflict) or the commit can simply be retried
        raise StoreUnavailable(f"etcd: commit kept racing with other writers ({MAX_COMMIT_ATTEMPTS} attempts)")

    # -- watch -----------------------------------------------------------------------------

    async def watch_changes(self) -> AsyncIterator[None]:
        while not self._closed.is_set():
            changed = asyncio.Event()      # set on events, on the stream's end, and by close()
            ended = asyncio.Event()        # the stream ended
            try:
                head = await self._conn.kv("Range", rpc.RangeRequest(
                    key=self._objects, range_end=_prefix_end(self._objects), count_only=True))
                client = await self._conn.client()
                watch = await client.watch(self._objects, range_end=_prefix_end(self._objects),
                                           start_revision=head.header.revision + 1)
            except Exception as e:           # etcd unreachable, or the client closing under us
                if self._closed.is_set():
                    return
                log.warning("watch on %s failed: %r; retrying", self._objects.decode(), e)
                await self._sleep_unless_closed(0.5)
                continue

            async def consume(watch: aetcd.Watch, changed: asyncio.Event, ended: asyncio.Event) -> None:
                try:
                    async for _ in watch:
                        changed.set()
                except Exception as e:   # the stream broke; watch_changes watches again
                    log.debug("watch on %s ended: %r", self._objects.decode(), e)
                finally:
                    ended.set()
                    changed.set()

            consumer = asyncio.create_task(consume(watch, changed, ended), name="etcd store watch")
            self._wakers.add(changed)
            try:
                yield           # watching from here on: the consumer's first pass
                while True:
                    await changed.wait()
                    changed.clear()
                    if self._closed.is_set():
                        return
                    if ended.is_set():
                        break   # the watch stream broke: watch again (and wake once more)
                    yield
            finally:
                self._wakers.discard(changed)
                consumer.cancel()
                try:
                    await watch.cancel()
                except Exception as e:   # the client may be closing under us
                    log.debug("cancelling the watch on %s: %r", self._objects.decode(), e)
            await self._sleep_unless_closed(0.5)

    async def changes(self, kinds: Sequence[str], after: int) -> AsyncIterator[list[Change]]:
        # One watch stream per iterator, straight on etcd's Watch RPC: aetcd's watcher hands out
        # events one at a time, and a batch here is one watch response (whole revisions, as
        # fragmenting is off). A broken stream is watched again from the last revision seen.
        wanted = frozenset(check_kinds(kinds))
        check_after(after)
        while not self._closed.is_set():
            try:
                client = await self._conn.client()
                call = rpc.WatchStub(client.channel).Watch(metadata=client.metadata)
            except Exception as e:           # etcd unreachable, or the client closing under us
                if self._closed.is_set():
                    return
                log.warning("watch on %s failed: %r; retrying", self._objects.decode(), e)
                await self._sleep_unless_closed(0.5)
                continue
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                await call.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                    key=self._objects, range_end=_prefix_end(self._objects), start_revision=after + 1,
                    progress_notify=True)))
                while True:
                    read = asyncio.ensure_future(call.read())
                    try:
                        await asyncio.wait({read, closed}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        if not read.done():
                            read.cancel()
                    if self._closed.is_set():
                        return
                    resp = read.result()
                    if resp is grpc.aio.EOF:
                        raise StoreUnavailable("etcd ended the watch stream")
                    if resp.compact_revision:
                        raise HistoryLost(after, resp.compact_revision - 1)
                    if resp.canceled:
                        raise StoreUnavailable(f"etcd cancelled the watch: {resp.cancel_reason or 'no reason'}")
                    batch: list[Change] = []
                    for event in resp.events:      # a delete's kv: the key and its deletion revision
                        key = self._split_key(event.kv.key)
                        if key is None or key[0] not in wanted:
                            continue
                        item = self._item(key[0], event.kv) if event.type == rpc.Event.PUT else None
                        batch.append(Change(key[0], key[1], item, event.kv.mod_revision))
                    if resp.events:
                        after = max(after, resp.events[-1].kv.mod_revision)
                    elif not resp.created:
                        # a progress notification (to a watcher that has caught up): nothing
                        # up to its revision is left to come, so a new watch may start after it
                        after = max(after, resp.header.revision)
                    if batch:
                        yield batch
            except HistoryLost:
                raise
            except Exception as e:           # the stream broke: watch again from `after`
                if self._closed.is_set():
                    return
                log.warning("watch on %s from revision %d ended: %r; watching again",
                            self._objects.decode(), after + 1, e)
            finally:
                closed.cancel()
                call.cancel()
            await self._sleep_unless_closed(0.5)

    async def _sleep_unless_closed(self, seconds: float) -> None:
        await wait_until(self._closed.wait(), seconds)

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for waker in list(self._wakers):
            waker.set()
        await asyncio.sleep(0)   # let watchers see it
        await self._conn.close()


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
        self._conn = _Connection(cfg)
        self._lease_id: int | None = None
        self._deadline = 0.0                 # monotonic time until which the lease surely lives
        self._keepalive_task: asyncio.Task | None = None
        self._guard_task: asyncio.Task | None = None
        self._background: set[asyncio.Future] = set()

    # -- lease -----------------------------------------------------------------------------

    async def _grant(self) -> int:
        client = await self._conn.client()
        sent = time.monotonic()
        lease = await client.lease(self.ttl)
        self._lease_id = lease.id
        self._deadline = sent + lease.ttl
        self._keepalive_task = asyncio.create_task(self._keepalive(lease.id), name="etcd lease keep-alive")
        return lease.id

    async def _keepalive(self, lease_id: int) -> None:
        interval = self.ttl / 3
        next_refresh = time.monotonic() + interval
        client = await self._conn.client()
        while self._lease_id == lease_id:
            now = time.monotonic()
            if now >= self._deadline:
                self._lease_gone(lease_id)
                return
            if now < next_refresh:
                await asyncio.sleep(min(next_refresh, self._deadline) - now)
                continue
            sent = time.monotonic()
            try:
                reply = await wait_until(client.refresh_lease(lease_id), max(0.05, self._deadline - sent))
            except Exception:
                reply = None
            if reply is None:        # failed or timed out: try again soon (the deadline still holds)
                next_refresh = time.monotonic() + min(0.5, interval)
                continue
            if reply.TTL <= 0:
                self._lease_gone(lease_id)       # expired or revoked
                return
            self._deadline = sent + reply.TTL
            next_refresh = sent + interval

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
        task, self._keepalive_task = self._keepalive_task, None
        if task is not None:
            task.cancel()
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
                    success=[_put_op(self.key, self.candidate_id.encode(), lease_id)],
                    failure=[_range_op(self.key)]))
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
        tasks = [t for t in (self._guard_task, self._keepalive_task)
                 if t is not None and t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: on Python 3.11 a cancellation racing with a completing asyncio.wait_for
            # inside the client can be lost; such a task ends by itself (it checks the lease id).
            await asyncio.wait(tasks, timeout=0.5)
        self._guard_task = self._keepalive_task = None
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
