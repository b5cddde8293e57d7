"""The StateStore contract, run against both engines (SQLite and a real etcd)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import aetcd
import pytest

from meshblock.store import (
    Change,
    Check,
    Conflict,
    Delete,
    HistoryLost,
    Item,
    NameTaken,
    Put,
    StoreError,
    open_store,
)
from meshblock.store.etcd import parse_etcd_url
from meshblock.store.sqlite import SQLiteStore, sqlite_path
from tests.store._proc import increment
from tests.store.conftest import proc_cmd


def uid() -> str:
    return str(uuid.uuid4())


# -- basic reads and writes ------------------------------------------------------------------

async def test_put_then_get(store):
    vid = uid()
    revs = await store.commit([Put("volume", vid, {"size": 1 << 30, "tags": ["a", "é"]}, name="vol-1")])
    rev = revs[("volume", vid)]
    assert rev > 0
    item = await store.get("volume", vid)
    assert item == Item("volume", vid, "vol-1", {"size": 1 << 30, "tags": ["a", "é"]}, rev)
    assert await store.get("volume", uid()) is None
    assert await store.get("node", vid) is None          # kinds are separate spaces
    assert (await store.get_by_name("volume", "vol-1")).id == vid
    assert await store.get_by_name("volume", "vol-2") is None
    assert await store.get_by_name("node", "vol-1") is None


async def test_revision_bumps_on_every_change(store):
    a, b = uid(), uid()
    r1 = await store.commit([Put("node", a, {"v": 1}), Put("node", b, {"v": 1})])
    assert r1[("node", a)] == r1[("node", b)] > 0       # one commit, one revision
    r2 = await store.commit([Put("node", a, {"v": 2})])
    assert r2[("node", a)] > r1[("node", a)]
    assert (await store.get("node", a)).revision == r2[("node", a)]
    assert (await store.get("node", b)).revision == r1[("node", b)]
    r3 = await store.commit([Put("node", a, {"v": 2})])   # an identical write is still a change
    assert r3[("node", a)] > r2[("node", a)]


async def test_delete(store):
    a = uid()
    await store.commit([Put("snapshot", a, {}, name="s1")])
    assert await store.count("snapshot") == 1
    assert await store.commit([Delete("snapshot", a)]) == {("snapshot", a): 0}
    assert await store.get("snapshot", a) is None
    assert await store.get_by_name("snapshot", "s1") is None
    assert await store.count("snapshot") == 0
    assert await store.commit([Delete("snapshot", a)]) == {("snapshot", a): 0}   # absent: no-op
    await store.commit([Put("snapshot", uid(), {}, name="s1")])                    # name is free again


async def test_list_sorted_and_paginated_by_id(store):
    ids = sorted(uid() for _ in range(23))
    shuffled = ids[:]
    random.shuffle(shuffled)
    await store.commit([Put("replica", i, {"i": i}) for i in shuffled])
    await store.commit([Put("replicas", uid(), {}), Put("replic", uid(), {})])   # neighbouring kinds
    assert await store.count("replica") == 23
    assert [it.id for it in await store.list("replica")] == ids
    pages, after = [], None
    while True:
        page = await store.list("replica", start_after=after, limit=5)
        if not page:
            break
        assert len(page) <= 5
        pages.append(page)
        after = page[-1].id
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [it.id for p in pages for it in p] == ids
    assert all(it.data == {"i": it.id} and it.kind == "replica" for p in pages for it in p)
    assert await store.list("replica", start_after=ids[-1]) == []
    assert [it.id for it in await store.list("replica", start_after=ids[10][:-1] + "~")] == ids[11:]
    assert await store.list("operation") == [] and await store.count("operation") == 0


async def test_list_by_name(store):
    names = [f"vol-{n:02d}" for n in range(12)]
    await store.commit([Put("volume", uid(), {"n": n}, name=n) for n in reversed(names)])
    await store.commit([Put("volume", uid(), {"unnamed": True}) for _ in range(3)])
    assert await store.count("volume") == 15
    by_name = await store.list("volume", index="name")
    assert [it.name for it in by_name] == names            # unnamed items are not in the name index
    assert [it.data["n"] for it in by_name] == names
    page1 = await store.list("volume", index="name", limit=5)
    page2 = await store.list("volume", index="name", start_after=page1[-1].name, limit=5)
    page3 = await store.list("volume", index="name", start_after=page2[-1].name, limit=5)
    assert [it.name for it in page1 + page2 + page3] == names
    assert len(await store.list("volume")) == 15
    with pytest.raises(ValueError):
        await store.list("volume", index="size")
    with pytest.raises(ValueError):
        await store.list("volume", limit=0)


# -- names -----------------------------------------------------------------------------------

async def test_name_is_unique_within_kind(store):
    a, b = uid(), uid()
    rev = (await store.commit([Put("volume", a, {"x": 1}, name="data")]))[("volume", a)]
    with pytest.raises(NameTaken) as exc:
        await store.commit([Put("volume", b, {"x": 2}, name="data")])
    assert (exc.value.kind, exc.value.id, exc.value.name, exc.value.owner) == ("volume", b, "data", a)
    assert isinstance(exc.value, Conflict)
    assert await store.get("volume", b) is None
    assert (await store.get("volume", a)).revision == rev
    # the same name in another kind is fine; re-putting the owner with its name is fine
    await store.commit([Put("snapshot", b, {}, name="data")])
    await store.commit([Put("volume", a, {"x": 3}, name="data")])
    assert (await store.get_by_name("volume", "data")).data == {"x": 3}
    # two puts of one commit claiming one name
    c, d = uid(), uid()
    with pytest.raises(NameTaken):
        await store.commit([Put("volume", c, {}, name="twin"), Put("volume", d, {}, name="twin")])
    assert await store.get("volume", c) is None and await store.get("volume", d) is None


async def test_rename_frees_the_old_name(store):
    a, b = uid(), uid()
    await store.commit([Put("volume", a, {}, name="old")])
    await store.commit([Put("volume", a, {}, name="new")])
    assert await store.get_by_name("volume", "old") is None
    assert (await store.get_by_name("volume", "new")).id == a
    await store.commit([Put("volume", b, {}, name="old")])          # free for another item
    assert (await store.get_by_name("volume", "old")).id == b
    await store.commit([Put("volume", a, {})])                      # dropping the name frees it too
    assert (await store.get("volume", a)).name is None
    assert await store.get_by_name("volume", "new") is None
    assert [it.id for it in await store.list("volume", index="name")] == [b]


async def test_names_can_move_within_one_commit(store):
    a, b, c = uid(), uid(), uid()
    await store.commit([Put("volume", a, {}, name="x"), Put("volume", b, {}, name="y"),
                        Put("volume", c, {}, name="z")])
    # swap x and y; c is deleted and its name taken over in the same commit
    d = uid()
    await store.commit([Put("volume", a, {}, name="y"), Put("volume", b, {}, name="x"),
                        Delete("volume", c), Put("volume", d, {}, name="z")])
    assert {n: (await store.get_by_name("volume", n)).id for n in "xyz"} == {"x": b, "y": a, "z": d}
    assert await store.get("volume", c) is None


# -- expectations and atomicity --------------------------------------------------------------

async def test_expectations(store):
    a = uid()
    with pytest.raises(Conflict) as exc:
        await store.commit([Put("volume", a, {}, expect=5)])
    assert (exc.value.kind, exc.value.id, exc.value.expected, exc.value.actual) == ("volume", a, 5, 0)
    rev = (await store.commit([Put("volume", a, {"v": 1}, expect=0)]))[("volume", a)]
    with pytest.raises(Conflict) as exc:
        await store.commit([Put("volume", a, {"v": 2}, expect=0)])        # must not exist
    assert exc.value.actual == rev and not isinstance(exc.value, NameTaken)
    rev2 = (await store.commit([Put("volume", a, {"v": 2}, expect=rev)]))[("volume", a)]
    with pytest.raises(Conflict):
        await store.commit([Put("volume", a, {"v": 3}, expect=rev)])      # stale
    with pytest.raises(Conflict):
        await store.commit([Delete("volume", a, expect=rev)])
    assert (await store.commit([Check("volume", a, rev2)])) == {}        # checks write nothing
    assert (await store.commit([Check("volume", uid(), 0)])) == {}
    with pytest.raises(Conflict):
        await store.commit([Check("volume", a, 0)])
    assert await store.commit([Delete("volume", a, expect=rev2)]) == {("volume", a): 0}
    assert await store.get("volume", a) is None
    await store.commit([Delete("volume", a, expect=0)])                  # absent, as expected


async def test_failing_check_changes_nothing(store):
    a, b, c, z = uid(), uid(), uid(), uid()
    revs = await store.commit([Put("volume", a, {"v": 1}, name="A"), Put("volume", b, {"v": 1}, name="B"),
                               Put("node", z, {}), Put("volume", uid(), {}, name="E")])
    await store.commit([Put("node", z, {})])
    before = {i: await store.get("volume", i) for i in (a, b)}
    stale = revs[("node", z)]
    for failing in (Check("node", z, stale), Check("node", uid(), 7), Check("node", z, 0),
                    Put("volume", c, {}, name="E")):
        with pytest.raises(Conflict):
            await store.commit([
                Put("volume", a, {"v": 2}, name="A2"),     # would rename
                Delete("volume", b),                        # would delete (and free "B")
                Put("replica", c, {"v": 2}, name="B"),
                failing,
            ])
        assert {i: await store.get("volume", i) for i in (a, b)} == before
        assert await store.get("replica", c) is None and await store.get("volume", c) is None
        assert (await store.get_by_name("volume", "A")).id == a
        assert await store.get_by_name("volume", "A2") is None
        assert (await store.get_by_name("volume", "B")).id == b
        assert await store.count("replica") == 0 and await store.count("volume") == 3


async def test_invalid_commits_are_rejected(store):
    a = uid()
    with pytest.raises(ValueError):
        await store.commit([Put("volume", a, {}), Delete("volume", a)])   # one op per item
    with pytest.raises(TypeError):
        await store.commit([Put("volume", a, ["not", "a", "dict"])])
    with pytest.raises(TypeError):
        await store.commit([Put("volume", a, {"x": object()})])
    with pytest.raises(ValueError):
        await store.commit([Put("vol/ume", a, {})])
    with pytest.raises(ValueError):
        await store.commit([Put("volume", "", {})])
    with pytest.raises(ValueError):
        await store.commit([Put("volume", a, {}, expect=-1)])
    assert await store.commit([]) == {}
    assert await store.count("volume") == 0


# -- concurrency -----------------------------------------------------------------------------

async def test_concurrent_read_modify_write(store, store2):
    """Two loops of 100 increments on one item, each through its own connection."""
    vid = uid()
    t0 = time.monotonic()
    conflicts = await asyncio.gather(increment(store, "volume", vid, 100), increment(store2, "volume", vid, 100))
    elapsed = time.monotonic() - t0
    item = await store.get("volume", vid)
    assert item.data == {"n": 200}
    print(f"200 increments in {elapsed:.2f} s, {sum(conflicts)} conflicts retried")


async def test_read_modify_write_across_processes(store, store_url):
    """One loop in a child process, one here: transactions stay correct between processes."""
    vid = uid()
    child = await asyncio.create_subprocess_exec(*proc_cmd("increment", store_url, "volume", vid, "100"),
                                                 stdout=asyncio.subprocess.PIPE)
    try:
        assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"ready"
        await increment(store, "volume", vid, 100)
        out, _ = await asyncio.wait_for(child.communicate(), 60)
        assert child.returncode == 0 and out.startswith(b"done"), out
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert (await store.get("volume", vid)).data == {"n": 200}


async def test_long_listings(store):
    """More items than one etcd range page (500) and one name page (100)."""
    ids = sorted(f"{n:04d}-{uid()}" for n in range(620))
    for chunk in range(0, len(ids), 60):
        await store.commit([Put("replica", i, {}, name=f"r{i}" if int(i[:4]) % 4 == 0 else None)
                            for i in ids[chunk:chunk + 60]])
    assert await store.count("replica") == 620
    assert [it.id for it in await store.list("replica")] == ids
    assert [it.id for it in await store.list("replica", start_after=ids[99], limit=510)] == ids[100:610]
    named = [f"r{i}" for i in ids if int(i[:4]) % 4 == 0]
    assert [it.name for it in await store.list("replica", index="name")] == named
    assert [it.name for it in await store.list("replica", index="name", start_after=named[9], limit=120)] \
        == named[10:130]


# -- snapshot and change feed ----------------------------------------------------------------

def open_engine(store_url: str, **sqlite_options):
    """A store on ``store_url``; the SQLite engine with the given constructor options."""
    if store_url.startswith("sqlite:"):
        return SQLiteStore(sqlite_path(store_url), **sqlite_options)
    return open_store(store_url)


async def forget_history(store_url: str) -> None:
    """Make the changes up to now unreplayable: etcd compacts its history; SQLite prunes
    tombstones, which a delete through a store that keeps only 2 revisions of them does."""
    if store_url.startswith("sqlite:"):
        async with open_engine(store_url, history=2) as short:
            for _ in range(2):
                scratch = uid()
                await short.commit([Put("scratch", scratch, {})])
                await short.commit([Delete("scratch", scratch)])
        return
    async with open_store(store_url) as s:      # etcd keeps the compaction revision itself
        revision, _ = await s.commit_revision([Put("scratch", uid(), {})])
    host, port = parse_etcd_url(store_url).endpoints[0]
    client = aetcd.Client(host=host, port=port, timeout=5)
    try:
        await client.compact(revision, physical=True)
    finally:
        await client.close()


def replay(state: dict[tuple[str, str], Item], batches: list[list[Change]]) -> None:
    for batch in batches:
        for change in batch:
            if change.item is None:
                state.pop((change.kind, change.id), None)
            else:
                state[(change.kind, change.id)] = change.item


async def listed(store, kinds) -> dict[tuple[str, str], Item]:
    return {(it.kind, it.id): it for kind in kinds for it in await store.list(kind)}


async def collect_until(feed, revision: int, timeout: float = 10.0) -> list[list[Change]]:
    """Batches from ``feed`` until one reports a change at ``revision`` or later."""
    batches: list[list[Change]] = []
    deadline = time.monotonic() + timeout
    while not batches or batches[-1][-1].revision < revision:
        batches.append(await asyncio.wait_for(feed.__anext__(), max(0.01, deadline - time.monotonic())))
    return batches


def check_order(batches: list[list[Change]], after: int) -> int:
    """Revisions above ``after``, growing strictly from batch to batch and never falling within
    one; each item at most once per revision; puts carry the item as written. Returns the last."""
    last = after
    seen: set[tuple[str, str, int]] = set()
    for batch in batches:
        assert batch, "an empty batch"
        assert batch[0].revision > last, (batch[0], last)
        for change in batch:
            assert change.revision >= last
            assert (change.kind, change.id, change.revision) not in seen
            seen.add((change.kind, change.id, change.revision))
            if change.item is not None:
                assert (change.item.kind, change.item.id, change.item.revision) == \
                    (change.kind, change.id, change.revision)
            last = change.revision
    return last


FEED = ("volume", "replica")


async def test_snapshot_then_changes_replay_to_the_final_state(store):
    vols = [uid() for _ in range(5)]
    reps = [uid() for _ in range(3)]
    await store.commit([Put("volume", v, {"n": n}, name=f"v{n}") for n, v in enumerate(vols)]
                       + [Put("replica", r, {"volume": vols[0]}) for r in reps]
                       + [Put("node", uid(), {})])
    after, snap = await store.snapshot(["volume", "replica", "volume"])
    assert set(snap) == set(FEED)
    assert snap["volume"] == await store.list("volume") and snap["replica"] == await store.list("replica")
    assert [it.id for it in snap["volume"]] == sorted(vols)
    assert after >= max(it.revision for items in snap.values() for it in items)
    state = {(it.kind, it.id): it for items in snap.values() for it in items}
    feed = store.changes(FEED, after)

    # a history written before the feed reads anything: it must all come back, in order
    await store.commit([Put("volume", vols[0], {"n": 10}, name="v0")])           # update
    await store.commit([Put("volume", vols[1], {"n": 1}, name="renamed")])        # rename
    await store.commit([Put("volume", vols[3], {"n": 3}, name="v1")])             # takes the freed name
    await store.commit([Delete("volume", vols[2])])                                # delete
    await store.commit([Delete("replica", reps[0])])
    await store.commit([Put("replica", reps[0], {"again": True})])                 # re-created later
    await store.commit([Delete("volume", vols[4])])                                # deleted and re-created
    await store.commit([Put("volume", vols[4], {"back": True}, name="v4")])       # between two reads
    await store.commit([Put("node", uid(), {}), Put("scratch", uid(), {})])       # kinds not followed
    await store.commit([Put("volume", vols[0], {}, name="v1"), Put("volume", vols[3], {}, name="v0"),
                        Delete("replica", reps[2]), Put("replica", uid(), {"new": 1})])   # one commit, many
    last, _ = await store.commit_revision([Put("volume", vols[1], {"n": 2}, name="renamed")])
    batches = await collect_until(feed, last)
    assert check_order(batches, after) == last
    assert {c.kind for b in batches for c in b} == set(FEED)
    replay(state, batches)
    assert state == await listed(store, FEED)
    assert state[("volume", vols[4])].data == {"back": True}
    assert state[("replica", reps[0])].data == {"again": True}

    # and while the consumer keeps up, commit by commit, from two tasks at once
    async def writer(tag: str) -> None:
        for n in range(8):
            victim = uid()
            await store.commit([Put("volume", victim, {tag: n}), Put("replica", reps[1], {tag: n})])
            await store.commit([Delete("volume", victim), Put("volume", vols[n % 5], {tag: n})])

    live: list[list[Change]] = []

    async def consume() -> None:
        while True:
            live.append(await feed.__anext__())

    consumer = asyncio.ensure_future(consume())
    await asyncio.gather(writer("a"), writer("b"))
    last, _ = await store.commit_revision([Put("volume", vols[0], {"end": True})])
    deadline = time.monotonic() + 10
    while not live or live[-1][-1].revision < last:
        assert time.monotonic() < deadline and not consumer.done(), "the last change did not arrive"
        await asyncio.sleep(0.02)
    consumer.cancel()
    assert check_order(batches + live, after) == last
    replay(state, live)
    assert state == await listed(store, FEED)


async def test_changes_from_another_connection_and_process(store, store2, store_url):
    after, snap = await store.snapshot(["node"])
    assert snap == {"node": []}
    feed = store.changes(["node"], after)
    nothing = asyncio.ensure_future(feed.__anext__())
    await asyncio.sleep(0.6)                     # more than two of SQLite's polls
    assert not nothing.done()                    # no change, no batch
    a = uid()
    rev, _ = await store2.commit_revision([Put("node", a, {"by": "store2"}, name="n-a")])
    batch = await asyncio.wait_for(nothing, 10)
    assert batch == [Change("node", a, Item("node", a, "n-a", {"by": "store2"}, rev), rev)]

    b = uid()
    child = await asyncio.create_subprocess_exec(*proc_cmd("commit-one", store_url, "node", b),
                                                 stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0 and out.strip() == b"done"
    batch = await asyncio.wait_for(feed.__anext__(), 10)
    assert [(c.id, c.item.data) for c in batch] == [(b, {"from": "child"})]
    assert batch[0].revision == (await store.get("node", b)).revision > rev

    gone, _ = await store2.commit_revision([Delete("node", a)])
    batch = await asyncio.wait_for(feed.__anext__(), 10)
    assert batch == [Change("node", a, None, gone)]
    await feed.aclose()


async def test_own_commits_arrive_without_waiting_for_a_poll(store_url):
    # an hour between SQLite's polls: only the direct notification can deliver within the bound
    async with open_engine(store_url, poll_interval=3600) as s:
        after, _ = await s.commit_revision([])
        feed = s.changes(["volume"], after)
        vid = uid()
        for n in range(3):
            pending = asyncio.ensure_future(feed.__anext__())
            await asyncio.sleep(0.1)                # the feed has read everything and waits
            rev, _ = await s.commit_revision([Put("volume", vid, {"n": n})])
            batch = await asyncio.wait_for(pending, 5)
            assert [(c.id, c.revision, c.item.data) for c in batch] == [(vid, rev, {"n": n})]
        await feed.aclose()


async def test_commit_revision_is_the_revision_of_its_changes(store):
    after, _ = await store.snapshot(["volume"])
    feed = store.changes(["volume"], after)
    a, b = uid(), uid()
    r1, revs = await store.commit_revision([Put("volume", a, {}), Put("volume", b, {}, name="b")])
    assert r1 > after and revs == {("volume", a): r1, ("volume", b): r1}
    batch = await asyncio.wait_for(feed.__anext__(), 10)
    assert sorted((c.id, c.revision, c.item.revision) for c in batch) == sorted([(a, r1, r1), (b, r1, r1)])
    r2, revs = await store.commit_revision([Delete("volume", a), Check("volume", b, r1)])
    assert r2 > r1 and revs == {("volume", a): 0}
    assert await asyncio.wait_for(feed.__anext__(), 10) == [Change("volume", a, None, r2)]
    # commits that write nothing report the current revision
    assert await store.commit_revision([Check("volume", b, r1)]) == (r2, {})
    absent = uid()
    assert await store.commit_revision([Delete("volume", absent)]) == (r2, {("volume", absent): 0})
    assert await store.commit_revision([]) == (r2, {})
    assert (await store.snapshot(["volume"]))[0] == r2
    r3, _ = await store.commit_revision([Put("volume", b, {"x": 1}, name="b")])
    assert await asyncio.wait_for(feed.__anext__(), 10) == \
        [Change("volume", b, Item("volume", b, "b", {"x": 1}, r3), r3)]    # nothing in between
    await feed.aclose()


async def test_history_lost(store, store_url):
    a = uid()
    await store.commit([Put("volume", a, {})])
    old, _ = await store.snapshot(["volume"])
    await store.commit([Delete("volume", a)])
    await forget_history(store_url)
    feed = store.changes(["volume"], old)
    with pytest.raises(HistoryLost) as exc:
        await asyncio.wait_for(feed.__anext__(), 10)
    assert exc.value.after == old and exc.value.oldest > old
    # start over: a new snapshot, and the changes after it
    rev, snap = await store.snapshot(["volume"])
    assert snap == {"volume": []} and rev >= exc.value.oldest
    feed = store.changes(["volume"], rev)
    b = uid()
    r, _ = await store.commit_revision([Put("volume", b, {})])
    batch = await asyncio.wait_for(feed.__anext__(), 10)
    assert [(c.id, c.revision) for c in batch] == [(b, r)]
    await feed.aclose()


async def test_changes_end_on_close_and_check_their_arguments(store_url):
    s = open_store(store_url)
    with pytest.raises(TypeError):
        await s.snapshot("volume")                  # a kind, not a list of kinds
    with pytest.raises(ValueError):
        await s.snapshot([])
    with pytest.raises(ValueError):
        await s.changes(["volume"], -1).__anext__()
    after, _ = await s.commit_revision([Put("volume", uid(), {})])
    feed = s.changes(["volume"], after)
    pending = asyncio.ensure_future(feed.__anext__())
    await asyncio.sleep(0.1)
    await s.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(StoreError):
        await s.get("volume", uid())
