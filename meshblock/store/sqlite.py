"""Embedded state store: one SQLite file, driven from a dedicated worker thread.

- One connection, used only by one worker thread, so calls are serialized and the event loop
  never blocks on disk I/O.
- WAL journal with ``synchronous=FULL``: a commit that returned survives a crash of the process
  or of the machine.
- Every :meth:`SQLiteStore.commit` is one ``BEGIN IMMEDIATE`` transaction, so multi-item changes
  are atomic, also between processes that share the file (a standby controller); ``busy_timeout``
  makes a writer wait for another's transaction instead of failing.
- A global revision counter: every commit that writes takes the next value, and each item it
  writes gets that value as its revision.
- Change feed: an item row carries the revision of its last write, and a delete leaves a
  tombstone ``(kind, id, revision)`` written by the same transaction, so the changes after a
  revision are the rows and tombstones above it. Tombstones older than ``history`` revisions
  are pruned by later deletes; ``meta.horizon`` records the newest pruned one, and following
  the changes from before it raises :class:`HistoryLost`.
- Leadership is an exclusive ``flock`` on ``<database>.leader``; the kernel drops it the instant
  the holding process dies.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from meshblock.store.base import (
    Change,
    Check,
    Current,
    Delete,
    HistoryLost,
    Item,
    Leadership,
    Op,
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

SCHEMA_VERSION = 2      # 2: tombstones, items_by_revision, meta.horizon
MEMORY = ":memory:"
DEFAULT_HISTORY = 100_000   # revisions of tombstones kept for the change feed

# meta.horizon: the revision of the newest pruned tombstone; changes(after) needs
# after >= horizon. A version-1 database (no tombstones) starts its history at its revision then.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    kind     TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    name     TEXT,
    data     TEXT    NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS items_by_name ON items (kind, name) WHERE name IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
CREATE TABLE IF NOT EXISTS tombstones (
    kind     TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (revision, kind, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_revision ON items (kind, revision);
INSERT OR IGNORE INTO meta (key, value) SELECT 'horizon', value FROM meta WHERE key = 'revision';
"""


def sqlite_path(url: str) -> str:
    """``sqlite:///abs/path.db`` -> ``/abs/path.db``; ``sqlite://rel.db`` -> ``rel.db``;
    ``sqlite://:memory:`` -> an in-memory database (one process only, no leadership)."""
    if not url.lower().startswith("sqlite://"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    path = urllib.parse.unquote(url[len("sqlite://"):])
    if path in (MEMORY, "/" + MEMORY):
        return MEMORY
    if not path or path.endswith("/"):
        raise ValueError(f"sqlite URL without a database file: {url!r} (use sqlite:///path/to/state.db)")
    return path


def _create_private_file(path: str) -> None:
    """Create ``path`` owner-only (0600) if it does not exist, and its directory (0700)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)


def _item(kind: str, id: str, name: str | None, data: str, revision: int) -> Item:
    return Item(kind=kind, id=id, name=name, data=json.loads(data), revision=revision)


class SQLiteStore(StateStore):
    """The embedded engine (see the module docstring)."""

    def __init__(self, path: str, *, busy_timeout: float = 10.0, poll_interval: float = 0.25,
                 history: int = DEFAULT_HISTORY):
        if not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a positive number of revisions, not {history!r}")
        self.path = path
        self.busy_timeout = busy_timeout
        self.poll_interval = poll_interval
        self.history = history
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshblock-sqlite")
        self._conn: sqlite3.Connection | None = None   # touched only by the worker thread
        self._closed = False
        self._changed = asyncio.Event()

    # -- worker thread ---------------------------------------------------------------------

    def _open_sync(self) -> sqlite3.Connection:
        if self.path != MEMORY:
            _create_private_file(self.path)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if self.path != MEMORY:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {version} is newer than this "
                                 f"meshblock understands ({SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, fn: Callable[..., Any], args: tuple) -> Any:
        try:
            if self._conn is None:
                self._conn = self._open_sync()
            return fn(self._conn, *args)
        except sqlite3.OperationalError as e:
            raise StoreUnavailable(f"{self.path}: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise StoreError("the state store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, fn, args)

    @staticmethod
    def _get_sync(conn: sqlite3.Connection, kind: str, id: str) -> Item | None:
        row = conn.execute("SELECT name, data, revision FROM items WHERE kind = ? AND id = ?",
                           (kind, id)).fetchone()
        return None if row is None else _item(kind, id, *row)

    @staticmethod
    def _get_by_name_sync(conn: sqlite3.Connection, kind: str, name: str) -> Item | None:
        row = conn.execute("SELECT id, data, revision FROM items WHERE kind = ? AND name = ?",
                           (kind, name)).fetchone()
        return None if row is None else _item(kind, row[0], name, row[1], row[2])

    @staticmethod
    def _list_sync(conn: sqlite3.Connection, kind: str, start_after: str | None, limit: int | None,
                   index: str) -> list[Item]:
        lim = -1 if limit is None else limit
        if index == "id":
            rows = conn.execute(
                "SELECT id, name, data, revision FROM items WHERE kind = ? AND id > ? "
                "ORDER BY id LIMIT ?", (kind, start_after or "", lim)).fetchall()
        else:
            rows = conn.execute(
                "SELECT id, name, data, revision FROM items "
                "WHERE kind = ? AND name IS NOT NULL AND name > ? ORDER BY name LIMIT ?",
                (kind, start_after or "", lim)).fetchall()
        return [_item(kind, *row) for row in rows]

    @staticmethod
    def _count_sync(conn: sqlite3.Connection, kind: str) -> int:
        return conn.execute("SELECT COUNT(*) FROM items WHERE kind = ?", (kind,)).fetchone()[0]

    @staticmethod
    def _revision_sync(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]

    @staticmethod
    def _horizon_sync(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT value FROM meta WHERE key = 'horizon'").fetchone()[0]

    @staticmethod
    def _snapshot_sync(conn: sqlite3.Connection, kinds: Sequence[str]) -> tuple[int, dict[str, list[Item]]]:
        conn.execute("BEGIN")
        try:
            revision = SQLiteStore._revision_sync(conn)
            items = {kind: SQLiteStore._list_sync(conn, kind, None, None, "id") for kind in kinds}
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return revision, items

    @staticmethod
    def _changes_sync(conn: sqlite3.Connection, kinds: Sequence[str], after: int) -> tuple[list[Change], int]:
        """The changes of ``kinds`` above ``after`` in revision order, and the revision they reach."""
        conn.execute("BEGIN")
        try:
            revision = SQLiteStore._revision_sync(conn)
            horizon = SQLiteStore._horizon_sync(conn)
            if after < horizon:
                raise HistoryLost(after, horizon)
            changes: list[Change] = []
            if revision > after:
                marks = ",".join("?" * len(kinds))
                for kind, id, name, data, rev in conn.execute(
                        f"SELECT kind, id, name, data, revision FROM items "
                        f"WHERE kind IN ({marks}) AND revision > ?", (*kinds, after)):
                    changes.append(Change(kind, id, _item(kind, id, name, data, rev), rev))
                for kind, id, rev in conn.execute(
                        f"SELECT kind, id, revision FROM tombstones "
                        f"WHERE revision > ? AND kind IN ({marks})", (after, *kinds)):
                    changes.append(Change(kind, id, None, rev))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        # A key has at most one change per revision; a tombstone older than the item's row
        # (deleted, then created again) sorts before it, so a replay ends with the item.
        changes.sort(key=lambda c: (c.revision, c.kind, c.id))
        return changes, max(revision, after)

    @staticmethod
    def _prune_sync(conn: sqlite3.Connection, revision: int, history: int) -> None:
        """Drop the tombstones more than ``history`` revisions old; move the horizon past them."""
        bound = revision - history
        if bound <= 0:
            return
        newest = conn.execute("SELECT MAX(revision) FROM tombstones WHERE revision <= ?", (bound,)).fetchone()[0]
        if newest is None:
            return
        conn.execute("DELETE FROM tombstones WHERE revision <= ?", (bound,))
        conn.execute("UPDATE meta SET value = MAX(value, ?) WHERE key = 'horizon'", (newest,))

    @staticmethod
    def _commit_sync(conn: sqlite3.Connection, ops: Sequence[Op],
                     history: int) -> tuple[dict[tuple[str, str], int], int, bool]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current: dict[tuple[str, str], Current] = {}
            for op in ops:
                row = conn.execute("SELECT revision, name FROM items WHERE kind = ? AND id = ?",
                                   (op.kind, op.id)).fetchone()
                current[(op.kind, op.id)] = Current(row[0], row[1]) if row else Current(0, None)
            owners: dict[tuple[str, str], str | None] = {}
            for op in ops:
                if isinstance(op, Put) and op.name is not None:
                    row = conn.execute("SELECT id FROM items WHERE kind = ? AND name = ?",
                                       (op.kind, op.name)).fetchone()
                    owners[(op.kind, op.name)] = row[0] if row else None
            plan = plan_commit(ops, current, owners)
            result: dict[tuple[str, str], int] = {(op.kind, op.id): 0 for op in ops if isinstance(op, Delete)}
            if not plan.writes:
                revision = SQLiteStore._revision_sync(conn)
                conn.execute("ROLLBACK")
                return result, revision, False
            revision = SQLiteStore._revision_sync(conn) + 1
            # Names first released (deletes, renames), then claimed: a commit may move a name.
            for op in plan.deletes:
                conn.execute("DELETE FROM items WHERE kind = ? AND id = ?", (op.kind, op.id))
                conn.execute("INSERT INTO tombstones (kind, id, revision) VALUES (?, ?, ?)",
                             (op.kind, op.id, revision))
            if plan.deletes:
                SQLiteStore._prune_sync(conn, revision, history)
            for op in plan.puts:
                cur = current[(op.kind, op.id)]
                if cur.name is not None and cur.name != op.name:
                    conn.execute("UPDATE items SET name = NULL WHERE kind = ? AND id = ?", (op.kind, op.id))
            for op in plan.puts:
                conn.execute(
                    "INSERT INTO items (kind, id, name, data, revision) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (kind, id) DO UPDATE SET name = excluded.name, data = excluded.data, "
                    "revision = excluded.revision",
                    (op.kind, op.id, op.name, encode_data(op.data), revision))
                result[(op.kind, op.id)] = revision
            conn.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (revision,))
            conn.execute("COMMIT")
            return result, revision, True
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- StateStore --------------------------------------------------------------------------

    async def open(self) -> None:
        await self._call(lambda conn: None)

    async def get(self, kind: str, id: str) -> Item | None:
        check_key(kind, id)
        return await self._call(self._get_sync, kind, id)

    async def get_by_name(self, kind: str, name: str) -> Item | None:
        check_kind(kind)
        return await self._call(self._get_by_name_sync, kind, name)

    async def list(self, kind: str, *, start_after: str | None = None, limit: int | None = None,
                   index: str = "id") -> list[Item]:
        check_list_args(kind, limit, index)
        return await self._call(self._list_sync, kind, start_after, limit, index)

    async def count(self, kind: str) -> int:
        check_kind(kind)
        return await self._call(self._count_sync, kind)

    async def commit_revision(self, ops: Sequence[Put | Delete | Check]) -> tuple[int, dict[tuple[str, str], int]]:
        ops = validate_ops(ops)
        if not ops:
            return await self._call(self._revision_sync), {}
        result, revision, wrote = await self._call(self._commit_sync, ops, self.history)
        if wrote:
            self._notify()
        return revision, result

    async def snapshot(self, kinds: Sequence[str]) -> tuple[int, dict[str, list[Item]]]:
        kinds = check_kinds(kinds)
        return await self._call(self._snapshot_sync, kinds)

    async def changes(self, kinds: Sequence[str], after: int) -> AsyncIterator[list[Change]]:
        # Commits through this object wake the reader at once (_notify); other connections'
        # are found by reading again every poll_interval (a read that finds the counter at
        # `after` costs two lookups).
        kinds = check_kinds(kinds)
        check_after(after)
        while not self._closed:
            event = self._changed            # taken before reading: no wake-up is lost
            try:
                batch, after = await self._call(self._changes_sync, kinds, after)
            except StoreUnavailable:
                batch = []                   # busy: read again after the poll interval
            except HistoryLost:
                raise
            except StoreError:
                if self._closed:
                    return
                raise
            if batch:
                yield batch
                continue
            await wait_until(event.wait(), self.poll_interval)

    async def revision(self) -> int:
        """The store's global revision (the last commit that wrote)."""
        return await self._call(self._revision_sync)

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._notify()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_sync)
        finally:
            self._executor.shutdown(wait=False)


def _close_won_fd(attempt: asyncio.Future) -> None:
    if not attempt.cancelled() and attempt.exception() is None and attempt.result() is not None:
        os.close(attempt.result())


class SQLiteLeadership(Leadership):
    """Leader = the holder of an exclusive ``flock`` on ``<database>.leader``.

    The lock belongs to the open file, so it vanishes with the process (even on ``kill -9``);
    standbys try again every ``retry_interval`` seconds. The leader checks every
    ``check_interval`` seconds that the lock file is still the one it locked (a removed or
    replaced file would let another candidate lock a new one) and sets ``lost`` if not.
    """

    def __init__(self, db_path: str, candidate_id: str, *, retry_interval: float = 0.5,
                 check_interval: float = 1.0):
        super().__init__(candidate_id)
        if db_path == MEMORY:
            raise ValueError("leadership needs a database file, not an in-memory database")
        self.lock_path = db_path + ".leader"
        self.retry_interval = retry_interval
        self.check_interval = check_interval
        self._fd: int | None = None
        self._monitor: asyncio.Task | None = None

    def _try_acquire(self) -> int | None:
        directory = os.path.dirname(os.path.abspath(self.lock_path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if not self._same_file(fd):
            os.close(fd)   # the file was replaced between open and flock: try again
            return None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.candidate_id}\n".encode(), 0)
        return fd

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.lock_path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)

    async def _acquire_once(self) -> int | None:
        attempt = asyncio.ensure_future(asyncio.to_thread(self._try_acquire))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # the thread may still win the lock: never keep it without a campaign behind it
            attempt.add_done_callback(_close_won_fd)
            raise

    async def campaign(self) -> None:
        if self._is_leader:
            return
        while True:
            self._check_open()
            fd = await self._acquire_once()
            if fd is not None:
                break
            await asyncio.sleep(self.retry_interval)
        if self._closed:
            os.close(fd)
            self._check_open()
        self._fd = fd
        self.lost.clear()
        self._is_leader = True
        self._monitor = asyncio.create_task(self._check_lock(), name=f"leader-lock {self.lock_path}")

    async def _check_lock(self) -> None:
        while self._is_leader and self._fd is not None:
            await asyncio.sleep(self.check_interval)
            fd = self._fd
            if fd is None:
                return
            if not await asyncio.to_thread(self._same_file, fd):
                self._mark_lost(f"reason=lock-file-replaced path={self.lock_path}")
                self._release()
                return

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)   # drops the flock

    async def resign(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None and monitor is not asyncio.current_task():
            monitor.cancel()
            try:
                await monitor
            except asyncio.CancelledError:
                pass
        self._is_leader = False
        self._release()

    def _read_leader(self) -> str | None:
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.pread(fd, 4096, 0).decode(errors="replace").strip() or None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None   # nobody holds it
        finally:
            os.close(fd)

    async def current_leader(self) -> str | None:
        if self._is_leader:
            return self.candidate_id
        return await asyncio.to_thread(self._read_leader)
