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

Most commits need no read first: when every operation pins a revision (``expect``) and the
store knows each item's name at that revision (it remembers the names of the revisions it
wrote or saw in its change feed; a Put that keeps its name proves it by a compare on the name
key's value), the compares alone say whether the expectations hold, and the commit is one
transaction. Only when that transaction fails does the commit read and plan as above.

etcd limits one transaction to ``--max-txn-ops`` operations (128 by default): a commit writes
one key per item plus one per name added or removed.

:meth:`EtcdStore.snapshot` ranges the requested kinds at one pinned revision;
:meth:`EtcdStore.changes` is an etcd watch on the objects prefix from the next revision, each
watch response one batch. etcd keeps the history back to its last compaction: a watch from
before it raises :class:`HistoryLost`.

The connection and request builders are in :mod:`.etcd_client`, the leader election in
:mod:`.etcd_leadership`; this module re-exports :class:`EtcdLeadership`, :class:`EtcdConfig`
and :func:`parse_etcd_url`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from aetcd import rpc

from meshblock.store.base import (
    Change,
    Check,
    Current,
    Delete,
    HistoryLost,
    Item,
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
from meshblock.store.etcd_client import (
    DEFAULT_PORT,
    DEFAULT_PREFIX,
    Connection,
    EtcdConfig,
    delete_op,
    mod_equals,
    parse_etcd_url,
    prefix_end,
    put_op,
    range_op,
)
from meshblock.store.etcd_leadership import EtcdLeadership

__all__ = ["DEFAULT_PORT", "DEFAULT_PREFIX", "EtcdConfig", "EtcdLeadership", "EtcdStore", "parse_etcd_url"]

log = logging.getLogger(__name__)

PAGE = 500              # keys per range request when listing everything
NAME_PAGE = 100         # names per step when listing by name (one read transaction each)
MAX_COMMIT_ATTEMPTS = 64
KNOWN_NAMES = 100_000   # items whose name at their latest revision this store remembers


class EtcdStore(StateStore):
    """The etcd engine (see the module docstring)."""

    def __init__(self, cfg: EtcdConfig):
        self.cfg = cfg
        self._conn = Connection(cfg)
        p = cfg.prefix
        self._objects = f"{p}/objects/".encode()
        self._names = f"{p}/names/".encode()
        self._closed = asyncio.Event()
        # (kind, id) -> (revision, name) of revisions this store wrote or saw, newest last
        self._known: dict[tuple[str, str], tuple[int, str | None]] = {}

    def _remember(self, kind: str, id: str, revision: int, name: str | None) -> None:
        known = self._known
        known.pop((kind, id), None)
        if revision:
            known[(kind, id)] = (revision, name)
            if len(known) > KNOWN_NAMES:
                del known[next(iter(known))]

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
        await self._conn.kv("Range", rpc.RangeRequest(key=self._objects, range_end=prefix_end(self._objects),
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
            start, end = base, prefix_end(base)
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
        end = prefix_end(base)
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
        end = prefix_end(base)
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
                success=[range_op(self._obj_key(kind, id), revision) for id in ids]))
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
        resp = await self._conn.kv("Range", rpc.RangeRequest(key=base, range_end=prefix_end(base),
                                                             count_only=True))
        return resp.count

    # -- commit ----------------------------------------------------------------------------

    async def _read_for_commit(self, ops: Sequence[Put | Delete | Check]):
        """One consistent read of every touched object and every claimed name, and its revision."""
        keys = [self._obj_key(op.kind, op.id) for op in ops]
        claims = [(op.kind, op.name) for op in ops if isinstance(op, Put) and op.name is not None]
        resp = await self._conn.kv("Txn", rpc.TxnRequest(
            success=[range_op(k) for k in keys] + [range_op(self._name_key(*c)) for c in claims]))
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
        resp = await self._conn.kv("Range", rpc.RangeRequest(key=self._objects, range_end=prefix_end(self._objects),
                                                             count_only=True))
        return resp.header.revision

    def _blind_txn(self, ops: Sequence[Put | Delete | Check]) -> rpc.TxnRequest | None:
        """The commit as one transaction without a read first, when every op pins a revision whose
        name is known (see the module docstring); None when the commit must read."""
        compares, success = [], []
        freed: set[tuple[str, str]] = set()
        claimed: dict[tuple[str, str], str] = {}
        for op in ops:
            if op.expect is None:
                return None
            key = self._obj_key(op.kind, op.id)
            compares.append(mod_equals(key, op.expect))
            if isinstance(op, Check) or (isinstance(op, Delete) and op.expect == 0):
                continue
            old: str | None = None
            if op.expect:
                known = self._known.get((op.kind, op.id))
                if known is not None and known[0] == op.expect:
                    old = known[1]
                elif isinstance(op, Put) and op.name is not None:
                    # the name index maps op.name to this item only while the item has that name
                    compares.append(rpc.Compare(key=self._name_key(op.kind, op.name), target=rpc.Compare.VALUE,
                                                result=rpc.Compare.EQUAL, value=op.id.encode()))
                    old = op.name
                else:
                    return None
            if isinstance(op, Delete):
                success.append(delete_op(key))
                if old is not None:
                    freed.add((op.kind, old))
                continue
            success.append(put_op(key, self._value(op)))
            if old != op.name:
                if old is not None:
                    freed.add((op.kind, old))
                if op.name is not None:
                    claimed[(op.kind, op.name)] = op.id
        if freed & claimed.keys():
            return None          # a name handed from one item to another: the careful path
        for kind, name in sorted(claimed):
            compares.append(mod_equals(self._name_key(kind, name), 0))
        for kind, name in sorted(freed):
            success.append(delete_op(self._name_key(kind, name)))
        for (kind, name), id in sorted(claimed.items()):
            success.append(put_op(self._name_key(kind, name), id.encode()))
        return rpc.TxnRequest(compare=compares, success=success)

    @staticmethod
    def _value(op: Put) -> bytes:
        return f'{{"name":{json.dumps(op.name, ensure_ascii=False)},"data":{encode_data(op.data)}}}'.encode()

    def _committed(self, ops: Sequence[Put | Delete | Check], revision: int) -> dict[tuple[str, str], int]:
        result: dict[tuple[str, str], int] = {}
        for op in ops:
            if isinstance(op, Put):
                result[(op.kind, op.id)] = revision
                self._remember(op.kind, op.id, revision, op.name)
            elif isinstance(op, Delete):
                result[(op.kind, op.id)] = 0
                self._remember(op.kind, op.id, 0, None)
        return result

    async def commit_revision(self, ops: Sequence[Put | Delete | Check]) -> tuple[int, dict[tuple[str, str], int]]:
        ops = validate_ops(ops)
        if not ops:
            return await self._current_revision(), {}
        blind = self._blind_txn(ops)
        if blind is not None:
            resp = await self._conn.kv("Txn", blind)
            if resp.succeeded:
                return resp.header.revision, self._committed(ops, resp.header.revision)
            for op in ops:         # something differs from what was remembered: read it
                self._remember(op.kind, op.id, 0, None)
        for _ in range(MAX_COMMIT_ATTEMPTS):
            current, owners, name_revs, read_revision = await self._read_for_commit(ops)
            plan = plan_commit(ops, current, owners)          # raises Conflict / NameTaken
            result: dict[tuple[str, str], int] = {(op.kind, op.id): 0 for op in ops if isinstance(op, Delete)}
            if not plan.writes:
                return read_revision, result
            compares = [mod_equals(self._obj_key(op.kind, op.id), current[(op.kind, op.id)].revision)
                        for op in ops]
            compares += [mod_equals(self._name_key(*claim), rev) for claim, rev in name_revs.items()]
            success = []
            for op in plan.deletes:
                success.append(delete_op(self._obj_key(op.kind, op.id)))
            for op in plan.puts:
                success.append(put_op(self._obj_key(op.kind, op.id), self._value(op)))
            for kind, name in sorted(plan.names_freed):
                success.append(delete_op(self._name_key(kind, name)))
            for (kind, name), id in sorted(plan.names_claimed.items()):
                if owners.get((kind, name)) != id:
                    success.append(put_op(self._name_key(kind, name), id.encode()))
            resp = await self._conn.kv("Txn", rpc.TxnRequest(compare=compares, success=success))
            if resp.succeeded:
                for op in plan.puts:
                    result[(op.kind, op.id)] = resp.header.revision
                    self._remember(op.kind, op.id, resp.header.revision, op.name)
                for op in plan.deletes:
                    self._remember(op.kind, op.id, 0, None)
                return resp.header.revision, result
            # something we read changed meanwhile: read again; the plan says whether an
            # expectation now fails (Conflict) or the commit can simply be retried
        raise StoreUnavailable(f"etcd: commit kept racing with other writers ({MAX_COMMIT_ATTEMPTS} attempts)")

    # -- change feed -----------------------------------------------------------------------

    async def changes(self, kinds: Sequence[str], after: int) -> AsyncIterator[list[Change]]:
        # One watch stream per iterator, straight on etcd's Watch RPC: aetcd's watcher hands out
        # events one at a time, and a batch here is one watch response (whole revisions, as
        # fragmenting is off). A broken stream is watched again from the last revision seen.
        wanted = frozenset(check_kinds(kinds))
        check_after(after)
        while not self._closed.is_set():
            closed = asyncio.ensure_future(self._closed.wait())
            call = None
            try:
                client = await self._conn.client()
                call = rpc.WatchStub(client.channel).Watch(metadata=client.metadata)
                await call.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                    key=self._objects, range_end=prefix_end(self._objects), start_revision=after + 1,
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
                        self._remember(key[0], key[1], item.revision if item else 0, item.name if item else None)
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
            except Exception as e:   # etcd unreachable, the client closing, or the stream broke
                if self._closed.is_set():
                    return
                log.warning("watch on %s from revision %d ended: %r; watching again",
                            self._objects.decode(), after + 1, e)
            finally:
                closed.cancel()
                if call is not None:
                    call.cancel()
            await self._sleep_unless_closed(0.5)

    async def _sleep_unless_closed(self, seconds: float) -> None:
        await wait_until(self._closed.wait(), seconds)

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        await asyncio.sleep(0)   # let watchers see it
        await self._conn.close()

