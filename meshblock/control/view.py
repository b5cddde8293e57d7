"""The controller's view of the desired state: a store snapshot kept current by the store's change
feed, with the indexes reconciling and the API need (the informer of the controller pattern).

The view reads the store once (one revision), then applies every change after it in revision
order, so it is always the store as of some revision (``revision``). It never writes. Records it
hands out are fresh copies (callers may change them and commit them); node records are shared and
must be treated as read-only. Listeners hear of each change as ``(kind, id, old, new)`` with the
stored items (None: absent), which is how changes become keys on the work queue. When the store
no longer has the history the view needs (etcd compaction, a long outage), it reads everything
again and tells the listeners what differs.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..model import GroupSnapshot, Node, Record, Replica, Snapshot, Volume
from ..store.base import Change, HistoryLost, Item, StateStore, StoreError

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)
LOAD_SLICE = 2000     # records indexed between two turns of the event loop while loading
KINDS: tuple[type[Record], ...] = (Node, Volume, Replica, Snapshot, GroupSnapshot)
Listener = Callable[[str, str, Item | None, Item | None], None]


class ClusterView:
    def __init__(self, store: StateStore, kinds: Sequence[type[Record]] = KINDS):
        self.store = store
        self.kinds = {k.KIND: k for k in kinds}
        self.revision = 0
        self.ready = asyncio.Event()
        self.listeners: list[Listener] = []
        self._items: dict[str, dict[str, Item]] = {k: {} for k in self.kinds}
        self._nodes: dict[str, Node] = {}
        self.replicas_by_volume: dict[str, set[str]] = defaultdict(set)
        self.replicas_by_node: dict[str, set[str]] = defaultdict(set)
        self.volumes_by_node: dict[str, set[str]] = defaultdict(set)      # head and standby heads
        self.snapshots_by_volume: dict[str, set[str]] = defaultdict(set)
        self.provisioned: Counter[str] = Counter()                         # node id -> replica bytes
        self.volume_states: Counter[str] = Counter()
        # (name, id) of every volume in name order, for listing pages (None: sorted again when needed)
        self._names: list[tuple[str, str]] | None = []
        # snapshots and group snapshots being taken or deleted (the others need no visit)
        self.unsettled: dict[str, set[str]] = {Snapshot.KIND: set(), GroupSnapshot.KIND: set()}
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task | None = None

    # --- running -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None

    async def _run(self) -> None:
        fresh = True
        while True:
            try:
                if fresh:
                    rev, items = await self.store.snapshot(list(self.kinds))
                    await self._load(rev, items)
                    fresh = False
                async for batch in self.store.changes(list(self.kinds), self.revision):
                    for c in batch:
                        self._apply(c)
                    if batch:
                        await self._advance(batch[-1].revision)
                return   # the store was closed
            except HistoryLost:
                log.warning("the store no longer has the changes after revision %d; reading everything again",
                            self.revision)
                fresh = True
            except StoreError as e:
                log.warning("change feed interrupted (%s); resuming", e)
                await asyncio.sleep(0.5)

    async def _advance(self, revision: int) -> None:
        if revision > self.revision:
            self.revision = revision
        async with self._advanced:
            self._advanced.notify_all()

    async def caught_up(self, revision: int, timeout: float = 10.0) -> bool:
        """Wait until the view holds every change up to ``revision`` (a commit's)."""
        if self.revision >= revision:
            return True
        try:
            async with self._advanced:
                await asyncio.wait_for(self._advanced.wait_for(lambda: self.revision >= revision), timeout)
            return True
        except asyncio.TimeoutError:
            log.warning("the view is still at revision %d, %.0f s after a commit at %d", self.revision, timeout,
                        revision)
            return False

    async def _load(self, revision: int, items: dict[str, list[Item]]) -> None:
        new = {k: {i.id: i for i in items.get(k, [])} for k in self.kinds}
        self._names = None   # one sort after loading, not one insertion per volume
        done = 0
        for kind in self.kinds:
            old = self._items[kind]
            for id in set(old) | set(new[kind]):
                a, b = old.get(id), new[kind].get(id)
                if a is None or b is None or a.revision != b.revision:
                    self._set(kind, id, b)
                done += 1
                if done % LOAD_SLICE == 0:
                    # hundreds of thousands of records: let the loop run between slices (the leader
                    # lease's keep-alive runs there; it lapsed while 400,000 records were indexed)
                    await asyncio.sleep(0)
        self.revision = max(self.revision, revision)
        self.ready.set()
        log.info("cluster view loaded at revision %d: %s", revision,
                 ", ".join(f"{len(v)} {k}" for k, v in self._items.items()))
        asyncio.ensure_future(self._advance(revision))

    def _apply(self, c: Change) -> None:
        if c.kind not in self.kinds:
            return
        cur = self._items[c.kind].get(c.id)
        if cur is not None and c.item is not None and cur.revision >= c.item.revision:
            return   # already seen (a re-read after a gap)
        self._set(c.kind, c.id, c.item)

    # --- indexes -------------------------------------------------------------------------------
    def _set(self, kind: str, id: str, item: Item | None) -> None:
        items = self._items[kind]
        old = items.get(id)
        if item is None:
            items.pop(id, None)
        else:
            items[id] = item
        self._unindex(kind, id, old)
        self._index(kind, id, item)
        if kind == Volume.KIND and self._names is not None:
            before, after = (x.data.get("name", "") if x is not None else None for x in (old, item))
            if before != after:
                if before is not None:
                    i = bisect.bisect_left(self._names, (before, id))
                    if i < len(self._names) and self._names[i] == (before, id):
                        del self._names[i]
                if after is not None:
                    bisect.insort(self._names, (after, id))
        for fn in self.listeners:
            try:
                fn(kind, id, old, item)
            except Exception:  # noqa: BLE001 - a listener must not stop the feed
                log.exception("view listener failed")

    def _index(self, kind: str, id: str, item: Item | None) -> None:
        if item is None:
            if kind == Node.KIND:
                self._nodes.pop(id, None)
            return
        d = item.data
        if kind == Replica.KIND:
            self.replicas_by_volume[d.get("volume_id", "")].add(id)
            self.replicas_by_node[d.get("node_id", "")].add(id)
            self.provisioned[d.get("node_id", "")] += int(d.get("size_bytes", 0))
        elif kind == Volume.KIND:
            for n in _volume_nodes(d):
                self.volumes_by_node[n].add(id)
            self.volume_states[d.get("state", "")] += 1
        elif kind == Snapshot.KIND:
            self.snapshots_by_volume[d.get("volume_id", "")].add(id)
        if kind in self.unsettled and d.get("state") in ("creating", "deleting"):
            self.unsettled[kind].add(id)
        if kind == Node.KIND:
            self._nodes[id] = Node.from_data(id, _own(d), item.revision)

    def _unindex(self, kind: str, id: str, item: Item | None) -> None:
        if item is None:
            return
        d = item.data
        if kind == Replica.KIND:
            _discard(self.replicas_by_volume, d.get("volume_id", ""), id)
            _discard(self.replicas_by_node, d.get("node_id", ""), id)
            node = d.get("node_id", "")
            self.provisioned[node] -= int(d.get("size_bytes", 0))
            if self.provisioned[node] <= 0:
                del self.provisioned[node]
        elif kind == Volume.KIND:
            for n in _volume_nodes(d):
                _discard(self.volumes_by_node, n, id)
            st = d.get("state", "")
            self.volume_states[st] -= 1
            if self.volume_states[st] <= 0:
                del self.volume_states[st]
        elif kind == Snapshot.KIND:
            _discard(self.snapshots_by_volume, d.get("volume_id", ""), id)
        if kind in self.unsettled:
            self.unsettled[kind].discard(id)

    # --- reads ---------------------------------------------------------------------------------
    def get(self, cls: type[R], id: str) -> R | None:
        item = self._items[cls.KIND].get(id)
        return None if item is None else cls.from_data(item.id, _own(item.data), item.revision)

    def ids(self, cls: type[Record]) -> list[str]:
        return list(self._items[cls.KIND])

    def count(self, cls: type[Record]) -> int:
        return len(self._items[cls.KIND])

    def all(self, cls: type[R]) -> list[R]:
        return [cls.from_data(i.id, _own(i.data), i.revision) for i in self._items[cls.KIND].values()]

    def volumes_after(self, name: str | None, limit: int) -> list[Volume]:
        """Up to ``limit`` volumes whose names follow ``name`` (None: from the first), in name order."""
        name = name or ""
        if self._names is None:
            self._names = sorted((i.data.get("name", ""), i.id) for i in self._items[Volume.KIND].values())
        start = bisect.bisect_right(self._names, (name, "\U0010ffff"))
        return [v for _, id in self._names[start:start + limit] if (v := self.get(Volume, id)) is not None]

    def unsettled_of(self, cls: type[R]) -> list[R]:
        """Snapshots or group snapshots being taken or deleted."""
        items = self._items[cls.KIND]
        return [cls.from_data(i, _own(items[i].data), items[i].revision)
                for i in sorted(self.unsettled[cls.KIND]) if i in items]

    def nodes(self) -> dict[str, Node]:
        """Every node record by id (shared: read-only)."""
        return self._nodes

    def replicas_of(self, volume_id: str) -> list[Replica]:
        items = self._items[Replica.KIND]
        return sorted((Replica.from_data(i, _own(items[i].data), items[i].revision)
                       for i in self.replicas_by_volume.get(volume_id, ()) if i in items),
                      key=lambda r: r.id)   # the store's order

    def replicas_on(self, node_id: str) -> list[Replica]:
        items = self._items[Replica.KIND]
        return sorted((Replica.from_data(i, _own(items[i].data), items[i].revision)
                       for i in self.replicas_by_node.get(node_id, ()) if i in items), key=lambda r: r.id)

    def snapshots_of(self, volume_id: str) -> list[Snapshot]:
        items = self._items[Snapshot.KIND]
        return [Snapshot.from_data(i, _own(items[i].data), items[i].revision)
                for i in self.snapshots_by_volume.get(volume_id, ()) if i in items]

    def headed_by(self, node_id: str) -> set[str]:
        """Volumes whose head is on ``node_id``."""
        items = self._items[Volume.KIND]
        return {vid for vid in self.volumes_by_node.get(node_id, ())
                if vid in items and items[vid].data.get("head_node_id") == node_id}

    def volumes_on(self, node_id: str) -> set[str]:
        """Volumes with a replica, the head or a standby head on ``node_id``."""
        items = self._items[Replica.KIND]
        out = set(self.volumes_by_node.get(node_id, ()))
        for rid in self.replicas_by_node.get(node_id, ()):
            item = items.get(rid)
            if item is not None:
                out.add(item.data.get("volume_id", ""))
        out.discard("")
        return out


def _own(data: dict) -> dict:
    """A copy of a record's data that its record may change (records hold flat lists and dicts)."""
    return {k: (v.copy() if isinstance(v, (list, dict)) else v) for k, v in data.items()}


def _volume_nodes(d: dict) -> set[str]:
    out = set(d.get("standby_paths") or ())
    if d.get("head_node_id"):
        out.add(d["head_node_id"])
    return out


def _discard(index: dict[str, set[str]], key: str, id: str) -> None:
    s = index.get(key)
    if s is not None:
        s.discard(id)
        if not s:
            del index[key]
