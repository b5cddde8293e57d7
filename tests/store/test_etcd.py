"""What only the etcd engine promises: its key layout, URLs, several endpoints, errors."""

from __future__ import annotations

import asyncio
import json
import time

import aetcd
import pytest

from meshblock.store import Conflict, Delete, NameTaken, Put, StoreUnavailable, open_store
from meshblock.store.etcd import EtcdConfig, parse_etcd_url
from tests.store.conftest import _free_port


def test_etcd_urls():
    assert parse_etcd_url("etcd://127.0.0.1:2379") == EtcdConfig((("127.0.0.1", 2379),), "/meshblock", 5.0)
    cfg = parse_etcd_url("etcd://10.0.0.1:2379,etcd-b,[::1]:3379?prefix=/prod/mb/&timeout=2.5")
    assert cfg.endpoints == (("10.0.0.1", 2379), ("etcd-b", 2379), ("::1", 3379))
    assert cfg.prefix == "/prod/mb" and cfg.timeout == 2.5
    assert parse_etcd_url("etcd://h?prefix=x").prefix == "/x"
    for bad in ("etcd://", "etcd://h:port", "etcd://h:2379/meshblock", "http://h:2379"):
        with pytest.raises(ValueError):
            parse_etcd_url(bad)


@pytest.mark.etcd
async def test_key_layout(etcd_server):
    url = etcd_server.url()
    prefix = parse_etcd_url(url).prefix
    client = aetcd.Client(host="127.0.0.1", port=etcd_server.client_port, timeout=5)
    async with open_store(url) as store:
        revs = await store.commit([Put("volume", "v1", {"size": 7}, name="data")])
        obj = await client.get(f"{prefix}/objects/volume/v1".encode())
        assert json.loads(obj.value) == {"name": "data", "data": {"size": 7}}
        assert obj.mod_revision == revs[("volume", "v1")]
        assert (await client.get(f"{prefix}/names/volume/data".encode())).value == b"v1"
        await store.commit([Put("volume", "v1", {"size": 7}, name="renamed")])
        assert await client.get(f"{prefix}/names/volume/data".encode()) is None
        assert (await client.get(f"{prefix}/names/volume/renamed".encode())).value == b"v1"
    await client.close()


@pytest.mark.etcd
async def test_several_endpoints_fail_over(etcd_server):
    dead = _free_port()
    url = f"etcd://127.0.0.1:{dead},{etcd_server.endpoint}?prefix=/failover-test"
    async with open_store(url) as store:
        await store.commit([Put("node", "n1", {})])
        assert (await store.get("node", "n1")).id == "n1"


async def test_unreachable_etcd_is_unavailable():
    store = open_store(f"etcd://127.0.0.1:{_free_port()}?timeout=1")
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.get("node", "n1")
    assert time.monotonic() - t0 < 5
    await store.close()


@pytest.mark.etcd
async def test_store_rides_out_an_etcd_crash(own_etcd_server):
    """kill -9 of etcd itself: acknowledged commits survive, the store and its change feed recover."""
    server = own_etcd_server
    store = open_store(server.url() + "&timeout=2")
    try:
        await store.commit([Put("volume", f"v{n}", {"n": n}, name=f"vol{n}") for n in range(20)])
        after, _ = await store.commit_revision([])
        feed = store.changes(["volume"], after)
        first = asyncio.ensure_future(feed.__anext__())
        await asyncio.sleep(0.2)                      # the feed watches
        server.kill()
        with pytest.raises(StoreUnavailable):
            await store.commit([Put("volume", "during", {})])
        await asyncio.to_thread(server.start)
        t0 = time.monotonic()
        while True:                                   # the client reconnects by itself
            try:
                await store.commit([Put("volume", "after", {})])
                break
            except StoreUnavailable:
                assert time.monotonic() - t0 < 15
                await asyncio.sleep(0.2)
        assert await store.count("volume") == 21
        assert (await store.get_by_name("volume", "vol7")).data == {"n": 7}
        later, _ = await store.commit_revision([Put("volume", "later", {})])
        # the feed watched again from where it was: every change once, in order
        batches = [await asyncio.wait_for(first, 15)]
        while batches[-1][-1].revision < later:
            batches.append(await asyncio.wait_for(feed.__anext__(), 10))
        assert [(c.id, c.revision) for b in batches for c in b] == \
            [("after", (await store.get("volume", "after")).revision), ("later", later)]
        await feed.aclose()
    finally:
        await store.close()


def counting_round_trips(store) -> list[str]:
    """The etcd calls a store makes from now on, by method."""
    calls: list[str] = []
    kv = store._conn.kv

    async def counted(method, request):
        calls.append(method)
        return await kv(method, request)

    store._conn.kv = counted
    return calls


@pytest.mark.etcd
async def test_commits_with_known_revisions_take_one_round_trip(etcd_server):
    """A commit whose revisions are pinned and whose names are known is one transaction; when
    what the store remembers is out of date (another writer), it still conflicts or reads and
    plans, and the name index stays exact."""
    url = etcd_server.url()
    prefix = parse_etcd_url(url).prefix
    client = aetcd.Client(host="127.0.0.1", port=etcd_server.client_port, timeout=5)

    async def names() -> dict[str, bytes]:
        base = f"{prefix}/names/".encode()
        return {kv.key[len(base):].decode(): kv.value for kv in await client.get_prefix(base)}

    async with open_store(url) as a, open_store(url) as b:
        calls_a, calls_b = counting_round_trips(a), counting_round_trips(b)
        r = (await a.commit([Put("volume", "v1", {"n": 1}, name="data", expect=0)]))[("volume", "v1")]
        r = (await a.commit([Put("volume", "v1", {"n": 2}, name="data", expect=r)]))[("volume", "v1")]
        r = (await a.commit([Put("volume", "v1", {"n": 3}, name="renamed", expect=r)]))[("volume", "v1")]
        assert calls_a == ["Txn"] * 3
        assert await names() == {"volume/renamed": b"v1"}

        # b never saw v1: a Put that keeps the name proves it with a compare on the name key
        r = (await b.commit([Put("volume", "v1", {"n": 4}, name="renamed", expect=r)]))[("volume", "v1")]
        r = (await b.commit([Put("volume", "v1", {"n": 5}, name="third", expect=r)]))[("volume", "v1")]
        assert calls_b == ["Txn"] * 2
        assert await names() == {"volume/third": b"v1"}

        # a remembers an older revision: a stale expectation conflicts and writes nothing
        calls_a.clear()
        with pytest.raises(Conflict):
            await a.commit([Put("volume", "v1", {"n": 9}, name="renamed", expect=r - 1)])
        # an up-to-date expectation a cannot vouch for by name (v1 is "third", not "renamed"):
        # the blind transaction fails, the store reads and renames correctly
        r = (await a.commit([Put("volume", "v1", {"n": 6}, name="renamed", expect=r)]))[("volume", "v1")]
        assert (await a.get("volume", "v1")).data == {"n": 6}
        assert await names() == {"volume/renamed": b"v1"}

        # a name handed from one item to another in one commit, and a nameless Put of an item
        # whose name the store does not know: both read first, both keep the index exact
        r2 = (await b.commit([Put("volume", "v2", {}, name="spare", expect=0)]))[("volume", "v2")]
        await a.commit([Delete("volume", "v2", expect=r2),
                        Put("volume", "v3", {}, name="spare", expect=0)])
        assert await names() == {"volume/renamed": b"v1", "volume/spare": b"v3"}
        r = (await b.commit([Put("volume", "v1", {"n": 7}, expect=r)]))[("volume", "v1")]
        assert await names() == {"volume/spare": b"v3"}
        # a delete whose name is known frees it in one transaction
        calls_b.clear()
        await b.commit([Delete("volume", "v1", expect=r)])
        assert calls_b == ["Txn"]
        assert await a.get("volume", "v1") is None
        # a name taken by another item: NameTaken, nothing written
        with pytest.raises(NameTaken):
            await a.commit([Put("volume", "v4", {}, name="spare", expect=0)])
        assert await a.get("volume", "v4") is None
    await client.close()
