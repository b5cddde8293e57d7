"""What only the SQLite engine promises: file modes, durability settings, URLs."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from meshblock.store import Put, StoreError, open_leadership, open_store
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
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
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
