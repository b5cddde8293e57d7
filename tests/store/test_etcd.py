"""What only the etcd engine promises: its key layout, URLs, several endpoints, errors."""

from __future__ import annotations

import asyncio
import json
import time

import aetcd
import pytest

from meshblock.store import Put, StoreUnavailable, open_store
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
