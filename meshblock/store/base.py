"""The controller's state store: one asyncio interface, two engines (SQLite and etcd).

The store holds JSON documents ("items") addressed by ``(kind, id)``, each with an optional
name that is unique within its kind. Every change of an item bumps its revision; writes go
through :meth:`StateStore.commit`, which applies a batch of operations all-or-nothing after
checking every expectation (optimistic concurrency). :meth:`StateStore.snapshot` and
:meth:`StateStore.changes` give a consumer a consistent starting point and then every item-level
change after it, in revision order (an informer's list + watch).

Open an engine with :func:`open_store` (``sqlite:///path/to/state.db`` or
``etcd://host:port[,host:port...]?prefix=/meshblock``) and elect a single active
controller with :func:`open_leadership` on the same URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import grpc

from meshblock.errors import MeshblockError

log = logging.getLogger(__name__)

DEFAULT_LEADER_TTL = 3.0


@dataclass(frozen=True)
class Item:
    """One stored document."""

    kind: str            # "node", "volume", "replica", "snapshot", "operation", ...
    id: str              # unique within kind
    name: str | None     # optional; unique within kind when set
    data: dict           # JSON-serialisable
    revision: int        # > 0 once stored; bumps on every change of this item


@dataclass(frozen=True)
class Put:
    """Create or replace an item. ``name=None`` leaves the item without a name."""

    kind: str
    id: str
    data: dict
    name: str | None = None
    expect: int | None = None


@dataclass(frozen=True)
class Delete:
    """Remove an item (removing an absent item with ``expect=None`` is a no-op)."""

    kind: str
    id: str
    expect: int | None = None


@dataclass(frozen=True)
class Check:
    """Assert an item's revision without writing it (``expect=0``: it must not exist)."""

    kind: str
    id: str
    expect: int


Op = Put | Delete | Check


@dataclass(frozen=True)
class Change:
    """One item-level change reported by :meth:`StateStore.changes`."""

    kind: str
    id: str
    item: Item | None    # the item as written; None when the change deleted it
    revision: int        # revision of the commit that made this change


class StoreError(MeshblockError):
    """Any failure of the state store."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or is busy; the outcome of a commit may be unknown."""

    code = grpc.StatusCode.UNAVAILABLE


class Conflict(StoreError):
    """An expectation of a commit failed; nothing was changed."""

    code = grpc.StatusCode.ABORTED

    def __init__(self, kind: str, id: str, expected: int | None, actual: int | None,
                 message: str | None = None):
        self.kind = kind
        self.id = id
        self.expected = expected
        self.actual = actual
        super().__init__(message or f"{kind}/{id}: expected revision {expected}, found {actual}")


class HistoryLost(StoreError):
    """The changes after the requested revision are no longer kept (compacted/pruned): take a new
    snapshot and follow the changes after its revision."""

    code = grpc.StatusCode.OUT_OF_RANGE

    def __init__(self, after: int, oldest: int):
        self.after = after
        self.oldest = oldest     # the oldest revision changes can still be followed from
        super().__init__(f"the changes after revision {after} are no longer kept "
                         f"(history starts after revision {oldest}): take a new snapshot")


class NameTaken(Conflict):
    """A Put's name already belongs to another item of that kind; nothing was changed."""

    code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, kind: str, id: str, name: str, owner: str):
        self.name = name
        self.owner = owner
        super().__init__(kind, id, None, None,
                         f"{kind}/{id}: name {name!r} already belongs to {kind}/{owner}")


class StateStore(ABC):
    """Asynchronous, transactional store of the cluster's desired state."""

    async def open(self) -> None:
        """Connect eagerly (optional: every call connects on first use)."""

    @abstractmethod
    async def get(self, kind: str, id: str) -> Item | None: ...

    @abstractmethod
    async def get_by_name(self, kind: str, name: str) -> Item | None: ...

    @abstractmethod
    async def list(self, kind: str, *, start_after: str | None = None, limit: int | None = None,
                   index: str = "id") -> list[Item]:
        """Items of ``kind`` sorted by id (``index="id"``) or by name (``index="name"``, only
        items that have a name), after ``start_after`` (an id or a name), at most ``limit``."""

    @abstractmethod
    async def count(self, kind: str) -> int: ...

    async def commit(self, ops: Sequence[Op]) -> dict[tuple[str, str], int]:
        """Check every expectation and apply every write atomically, or change nothing and raise
        :class:`Conflict` / :class:`NameTaken`. Returns the new revision of each written item
        (0 for a deleted one). Items written by one commit share its revision."""
        return (await self.commit_revision(ops))[1]

    @abstractmethod
    async def commit_revision(self, ops: Sequence[Op]) -> tuple[int, dict[tuple[str, str], int]]:
        """Like :meth:`commit`, but also returns the revision of the commit: the one its
        :class:`Change` records carry. A commit that writes nothing (checks only) returns the
        store's current revision as of its checks."""

    @abstractmethod
    async def snapshot(self, kinds: Sequence[str]) -> tuple[int, dict[str, list[Item]]]:
        """Every item of the given kinds as of ONE store revision, and that revision
        (kind -> items sorted by id; every requested kind is a key). Follow it with
        ``changes(kinds, after=revision)``."""

    @abstractmethod
    def changes(self, kinds: Sequence[str], after: int) -> AsyncIterator[list[Change]]:
        """Batches of the changes of items of ``kinds`` made by commits with revision > ``after``.

        Changes come in revision order, each once; one commit's changes never straddle two
        batches, and revisions grow strictly from one batch to the next. Replaying them onto a
        :meth:`snapshot` taken at ``after`` gives the store's state. A put carries the item as
        written; several writes of one item between two reads of the engine may come as one
        change, the last (SQLite keeps only an item's last write, and a tombstone per delete).
        Writes through this store object arrive promptly after their commit returns; other
        connections' and processes' within the engine's poll interval or watch latency. Raises
        :class:`HistoryLost` if ``after`` is older than the history the store keeps. Ends when
        the store is closed.
        """

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class Leadership(ABC):
    """One active controller at a time.

    ``campaign()`` returns once this candidate leads. While leading, ``lost`` is set if the
    leadership is lost (lease expired, lock file replaced): the holder must stop acting at once.
    ``lost`` is cleared when a later ``campaign()`` wins again.
    """

    def __init__(self, candidate_id: str):
        self.candidate_id = candidate_id
        self.lost = asyncio.Event()
        self._is_leader = False
        self._closed = False

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    @abstractmethod
    async def campaign(self) -> None:
        """Return once this candidate leads (at once if it already does). Cancelling a campaign
        leaves nothing behind that could block other candidates. Raises StoreError if closed."""

    @abstractmethod
    async def resign(self) -> None: ...

    @abstractmethod
    async def current_leader(self) -> str | None:
        """The id of the candidate that leads now, if any (informational)."""

    async def close(self) -> None:
        """Resign and release everything; a campaign still running ends with StoreError."""
        self._closed = True
        await self.resign()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this leadership candidate is closed")

    def _mark_lost(self, why: str = "") -> None:
        if self._is_leader:
            self._is_leader = False
            log.warning("leadership lost candidate=%s %s", self.candidate_id, why)
            self.lost.set()


# -- URL handling ------------------------------------------------------------------------------

def open_store(url: str) -> StateStore:
    """A store for ``url``; it connects on first use (or ``await store.open()``)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from meshblock.store.sqlite import SQLiteStore, sqlite_path
        return SQLiteStore(sqlite_path(url))
    if scheme == "etcd":
        from meshblock.store.etcd import EtcdStore, parse_etcd_url
        return EtcdStore(parse_etcd_url(url))
    raise ValueError(f"unsupported state store URL {url!r}: use sqlite:///path/to/state.db "
                     "or etcd://host:port[,host:port...]?prefix=/meshblock")


def open_leadership(url: str, candidate_id: str, ttl: float = DEFAULT_LEADER_TTL) -> Leadership:
    """Leader election among controllers sharing the store at ``url``.

    SQLite: an exclusive ``flock`` on ``<database>.leader`` (``ttl`` is unused: the kernel drops the
    lock when the process dies). etcd: a lease of ``ttl`` seconds on ``<prefix>/leader``.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from meshblock.store.sqlite import SQLiteLeadership, sqlite_path
        return SQLiteLeadership(sqlite_path(url), candidate_id)
    if scheme == "etcd":
        from meshblock.store.etcd import EtcdLeadership, parse_etcd_url
        return EtcdLeadership(parse_etcd_url(url), candidate_id, ttl=ttl)
    raise ValueError(f"unsupported state store URL {url!r}")


# -- helpers shared by the engines ---------------------------------------------------------------

async def wait_until(aw, timeout: float):
    """Await ``aw`` for at most ``timeout`` seconds; its result, or None on time-out (then it is
    cancelled). Unlike asyncio.wait_for on Python 3.11, a cancellation of the caller is never lost."""
    fut = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({fut}, timeout=timeout)
    finally:
        if not fut.done():
            fut.cancel()
    return fut.result() if done else None


def check_kind(kind: str) -> None:
    if not isinstance(kind, str) or not kind or "/" in kind or "\x00" in kind:
        raise ValueError(f"invalid kind {kind!r}: a non-empty string without '/'")


def check_key(kind: str, id: str) -> None:
    check_kind(kind)
    if not isinstance(id, str) or not id or "\x00" in id:
        raise ValueError(f"invalid id {id!r} for kind {kind!r}")


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """Validate a list of kinds (not a bare string); duplicates dropped, order kept."""
    if isinstance(kinds, (str, bytes)):
        raise TypeError(f"kinds must be a sequence of kinds, not the string {kinds!r}")
    out = tuple(dict.fromkeys(kinds))
    if not out:
        raise ValueError("at least one kind is needed")
    for kind in out:
        check_kind(kind)
    return out


def check_after(after: int) -> None:
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValueError(f"after must be a revision (an integer >= 0), not {after!r}")


def check_list_args(kind: str, limit: int | None, index: str) -> None:
    check_kind(kind)
    if index not in ("id", "name"):
        raise ValueError(f"index must be 'id' or 'name', not {index!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, not {limit!r}")


def encode_data(data: Any) -> str:
    if not isinstance(data, dict):
        raise TypeError(f"item data must be a dict, not {type(data).__name__}")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def validate_ops(ops: Iterable[Op]) -> list[Op]:
    """Type-check a commit's operations; one operation per item."""
    ops = list(ops)
    seen: set[tuple[str, str]] = set()
    for op in ops:
        if not isinstance(op, (Put, Delete, Check)):
            raise TypeError(f"not a store operation: {op!r}")
        check_key(op.kind, op.id)
        if (op.kind, op.id) in seen:
            raise ValueError(f"{op.kind}/{op.id} appears more than once in one commit")
        seen.add((op.kind, op.id))
        expect = op.expect
        if expect is not None and (not isinstance(expect, int) or isinstance(expect, bool) or expect < 0):
            raise ValueError(f"{op.kind}/{op.id}: expect must be None or an integer >= 0, not {expect!r}")
        if isinstance(op, Check) and expect is None:
            raise ValueError(f"{op.kind}/{op.id}: a Check needs an expected revision")
        if isinstance(op, Put):
            if op.name is not None and (not isinstance(op.name, str) or not op.name or "\x00" in op.name):
                raise ValueError(f"{op.kind}/{op.id}: invalid name {op.name!r}")
            encode_data(op.data)
    return ops


@dataclass(frozen=True)
class Current:
    """An item's state as a commit found it (revision 0: absent)."""

    revision: int
    name: str | None


@dataclass
class Plan:
    """What a commit must write besides the items themselves."""

    puts: list[Put]
    deletes: list[Delete]                    # of items that exist
    names_freed: set[tuple[str, str]]        # (kind, name) index entries to remove
    names_claimed: dict[tuple[str, str], str]  # (kind, name) -> id entries to (re)write

    @property
    def writes(self) -> bool:
        return bool(self.puts or self.deletes)


def plan_commit(ops: Sequence[Op], current: Mapping[tuple[str, str], Current],
                owners: Mapping[tuple[str, str], str | None]) -> Plan:
    """Check a commit against the state it found; raise Conflict/NameTaken or return the plan.

    ``current`` has every op's item; ``owners`` maps each name a Put claims to the id that holds
    it now (None: free). Names released by the same commit (deleted or renamed items) may be
    claimed by another of its Puts.
    """
    for op in ops:
        actual = current[(op.kind, op.id)].revision
        if op.expect is not None and op.expect != actual:
            raise Conflict(op.kind, op.id, op.expect, actual)
    freed: set[tuple[str, str]] = set()
    for op in ops:
        cur = current[(op.kind, op.id)]
        if cur.name is None:
            continue
        if isinstance(op, Delete) or (isinstance(op, Put) and op.name != cur.name):
            freed.add((op.kind, cur.name))
    claimed: dict[tuple[str, str], str] = {}
    for op in ops:
        if not isinstance(op, Put) or op.name is None:
            continue
        key = (op.kind, op.name)
        if key in claimed:
            raise NameTaken(op.kind, op.id, op.name, claimed[key])
        owner = owners.get(key)
        if owner is not None and owner != op.id and key not in freed:
            raise NameTaken(op.kind, op.id, op.name, owner)
        claimed[key] = op.id
    return Plan(
        puts=[op for op in ops if isinstance(op, Put)],
        deletes=[op for op in ops if isinstance(op, Delete) and current[(op.kind, op.id)].revision],
        names_freed=freed - claimed.keys(),
        names_claimed=claimed,
    )
