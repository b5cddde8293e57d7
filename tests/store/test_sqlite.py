"""What only the SQLite engine promises: file modes, durability settings, URLs."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat

import pytest

from meshblock.store import Change, Delete, HistoryLost, Put, StoreError, open_leadership, open_store
from meshblock.store.sqlite import MEMORY, SQLiteStore, sqlite_path


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_files_are_owner_only(tmp_path):
    db = tmp_path / "new-dir" / "state.db"
    store = open_store(f"sqlite://{db}")
    other = open_store(f"sqlite://{db}")          # keeps the WAL files around after store closes
    lead = open_leadership(f"sqlite://{db}", "me")
    try:
        await store.commit([Put("node", "n1", {"secret": "x"})])
        await other.open()
        await lead.campaign()
        assert mode(db.parent) == 0o700
        for path in (db, f"{db}-wal", f"{db}-shm", f"{db}.leader"):
            assert mode(path) == 0o600, path
    finally:
        await lead.close()
        await store.close()
        await other.close()


async def test_wal_and_full_sync(tmp_path):
    store = open_store(f"sqlite://{tmp_path}/state.db")
    try:
        await store.open()
        assert isinstance(store, SQLiteStore)
        pragmas = await store._call(lambda c: (c.execute("PRAGMA journal_mode").fetchone()[0],
                                               c.execute("PRAGMA synchronous").fetchone()[0],
                                               c.execute("PRAGMA busy_timeout").fetchone()[0]))
        assert pragmas == ("wal", 2, 10000)     # synchronous 2 = FULL
    finally:
        await store.close()


async def test_reopen_keeps_data_and_revisions_grow(tmp_path):
    url = f"sqlite://{tmp_path}/state.db"
    async with open_store(url) as store:
        r1 = (await store.commit([Put("volume", "v1", {"size": 1}, name="one")]))[("volume", "v1")]
    async with open_store(url) as store:
        item = await store.get_by_name("volume", "one")
        assert item.data == {"size": 1} and item.revision == r1
        r2 = (await store.commit([Put("volume", "v2", {})]))[("volume", "v2")]
        assert r2 > r1
        assert await store.revision() == r2
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        conn.close()


async def test_in_memory_database():
    async with open_store("sqlite://:memory:") as store:
        await store.commit([Put("node", "n1", {}, name="a")])
        assert (await store.get_by_name("node", "a")).id == "n1"
    with pytest.raises(ValueError):
        open_leadership("sqlite://:memory:", "me")


async def test_closed_store_refuses_calls(tmp_path):
    store = open_store(f"sqlite://{tmp_path}/state.db")
    await store.commit([Put("node", "n1", {})])
    await store.close()
    await store.close()                           # idempotent
    with pytest.raises(StoreError):
        await store.get("node", "n1")


def test_sqlite_urls():
    assert sqlite_path("sqlite:///var/lib/meshblock/state.db") == "/var/lib/meshblock/state.db"
    assert sqlite_path("sqlite://state.db") == "state.db"
    assert sqlite_path("sqlite:///tmp/with%20space.db") == "/tmp/with space.db"
    assert sqlite_path("sqlite://:memory:") == MEMORY
    for bad in ("sqlite://", "sqlite:///var/lib/", "postgres://x"):
        with pytest.raises(ValueError):
            sqlite_path(bad)
    with pytest.raises(ValueError):
        open_store("mysql://localhost/db")


# The schema of version 1 (before the change feed), as such databases were created.
V1_SCHEMA = """
CREATE TABLE items (kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT, data TEXT NOT NULL,
                    revision INTEGER NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
CREATE UNIQUE INDEX items_by_name ON items (kind, name) WHERE name IS NOT NULL;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('revision', 7);
INSERT INTO items VALUES ('volume', 'v1', 'one', '{"size":1}', 3), ('volume', 'v2', NULL, '{}', 7);
PRAGMA user_version = 1;
"""


async def test_a_database_from_before_the_change_feed_is_migrated(tmp_path):
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db)
    conn.executescript(V1_SCHEMA)
    conn.close()
    async with open_store(f"sqlite://{db}") as store:
        rev, snap = await store.snapshot(["volume"])
        assert rev == 7 and [(it.id, it.name, it.revision) for it in snap["volume"]] == \
            [("v1", "one", 3), ("v2", None, 7)]
        # deletes before the migration left no trace: the feed starts at the revision it had
        with pytest.raises(HistoryLost) as exc:
            await store.changes(["volume"], 6).__anext__()
        assert exc.value.oldest == 7
        feed = store.changes(["volume"], 7)
        gone, _ = await store.commit_revision([Delete("volume", "v1")])
        assert await asyncio.wait_for(feed.__anext__(), 5) == [Change("volume", "v1", None, gone)]
        await feed.aclose()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT kind, id, revision FROM tombstones").fetchall() == [("volume", "v1", 8)]
    finally:
        conn.close()


async def test_tombstones_stay_bounded(tmp_path):
    async with SQLiteStore(str(tmp_path / "state.db"), history=10) as store:
        await store.commit([Put("volume", "kept", {})])                  # revision 1
        for n in range(40):                                               # t<n>: put 2n+2, deleted 2n+3
            await store.commit([Put("volume", f"t{n}", {})])
            await store.commit([Delete("volume", f"t{n}")])
        revision, _ = await store.commit_revision([])
        assert revision == 81
        tombstones = await store._call(lambda c: c.execute("SELECT revision FROM tombstones").fetchall())
        assert sorted(r for r, in tombstones) == [73, 75, 77, 79, 81]     # the last 10 revisions' deletes
        with pytest.raises(HistoryLost):
            await store.changes(["volume"], 1).__anext__()
        # within the kept history, the feed has every delete (t36 was created and deleted after 72)
        batch = await store.changes(["volume"], 72).__anext__()
        assert batch == [Change("volume", f"t{n}", None, 2 * n + 3) for n in range(35, 40)]
