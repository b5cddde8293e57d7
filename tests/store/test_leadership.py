"""Leader election: one active controller at a time, fast takeover when the leader dies."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request

import aetcd
import pytest

from meshblock.store import StoreError, open_leadership
from meshblock.store.etcd import parse_etcd_url
from tests.store.conftest import TAKEOVERS, proc_cmd


class Candidate:
    """A candidate controller in its own process (tests/store/_proc.py candidate)."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str, id: str, ttl: float = 3.0) -> Candidate:
        proc = await asyncio.create_subprocess_exec(*proc_cmd("candidate", url, id, str(ttl)),
                                                    stdout=asyncio.subprocess.PIPE)
        return cls(proc)

    async def _read(self) -> None:
        async for line in self.proc.stdout:
            await self.lines.put(line.decode().strip())

    async def expect(self, prefix: str, timeout: float) -> str:
        async def find() -> str:
            while True:
                line = await self.lines.get()
                if line.startswith(prefix):
                    return line
        return await asyncio.wait_for(find(), timeout)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        self._reader.cancel()


def engine_of(url: str) -> str:
    return url.split(":", 1)[0]


async def test_standby_takes_over_after_kill_9(store_url):
    a = await Candidate.start(store_url, "ctl-a")
    b = None
    try:
        await a.expect("leader ctl-a", 30)
        b = await Candidate.start(store_url, "ctl-b")
        await b.expect("campaigning ctl-b", 30)
        await asyncio.sleep(1.0)
        assert b.lines.empty(), "the standby must not lead while the leader lives"
        os.kill(a.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        await b.expect("leader ctl-b", 15)
        takeover = time.monotonic() - killed
    finally:
        await a.kill()
        if b is not None:
            await b.kill()
    TAKEOVERS.append((engine_of(store_url), takeover))
    print(f"{engine_of(store_url)}: the standby led {takeover:.2f} s after kill -9 of the leader")
    assert takeover < 10


async def test_one_leader_at_a_time(store_url):
    one = open_leadership(store_url, "one")
    two = open_leadership(store_url, "two")
    try:
        await asyncio.wait_for(one.campaign(), 10)
        assert one.is_leader and await one.current_leader() == "one"
        standby = asyncio.create_task(two.campaign())
        await asyncio.sleep(1.2)
        assert not standby.done() and not two.is_leader
        assert await two.current_leader() == "one"
        t0 = time.monotonic()
        await one.resign()
        assert not one.is_leader and not one.lost.is_set()     # resigning is not losing
        await asyncio.wait_for(standby, 5)
        print(f"{engine_of(store_url)}: handover after resign took {time.monotonic() - t0:.2f} s")
        assert two.is_leader and await one.current_leader() == "two"
        await two.resign()
        assert await one.current_leader() is None
    finally:
        await one.close()
        await two.close()


async def test_cancelled_or_closed_campaign_leaves_nothing_behind(store_url):
    one = open_leadership(store_url, "one")
    two = open_leadership(store_url, "two")
    try:
        for delay in (0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05):
            attempt = asyncio.create_task(one.campaign())
            await asyncio.sleep(delay)
            attempt.cancel()
            await asyncio.gather(attempt, return_exceptions=True)
            if one.is_leader:
                await one.resign()
            await asyncio.wait_for(two.campaign(), 2)     # nothing left over blocks another candidate
            await two.resign()
        await two.campaign()
        pending = asyncio.create_task(one.campaign())
        await asyncio.sleep(0.2)
        await one.close()
        with pytest.raises(StoreError):
            await asyncio.wait_for(pending, 5)
        assert not one.is_leader and two.is_leader
    finally:
        await one.close()
        await two.close()


async def test_sqlite_leader_loses_when_its_lock_file_goes(tmp_path):
    url = f"sqlite://{tmp_path}/state.db"
    one = open_leadership(url, "one")
    two = open_leadership(url, "two")
    try:
        await one.campaign()
        assert oct(os.stat(one.lock_path).st_mode & 0o777) == oct(0o600)
        os.unlink(one.lock_path)                      # someone removed it: another could lock a new one
        await asyncio.wait_for(one.lost.wait(), 5)
        assert not one.is_leader
        await asyncio.wait_for(two.campaign(), 5)
        assert two.is_leader
    finally:
        await one.close()
        await two.close()


@pytest.mark.etcd
async def test_etcd_leader_loses_when_its_lease_is_revoked(etcd_server):
    url = etcd_server.url()
    cfg = parse_etcd_url(url)
    one = open_leadership(url, "one", ttl=3)
    two = open_leadership(url, "two", ttl=3)
    client = aetcd.Client(host="127.0.0.1", port=etcd_server.client_port, timeout=5)
    try:
        await one.campaign()
        key = await client.get(f"{cfg.prefix}/leader".encode())
        assert key.value == b"one" and key.lease
        t0 = time.monotonic()
        await client.revoke_lease(key.lease)          # as if it had expired
        await asyncio.wait_for(one.lost.wait(), 5)
        print(f"etcd: the leader noticed the revoked lease after {time.monotonic() - t0:.2f} s")
        assert not one.is_leader
        await asyncio.wait_for(two.campaign(), 5)
        assert await one.current_leader() == "two"
    finally:
        await client.close()
        await one.close()
        await two.close()


@pytest.mark.etcd
async def test_etcd_leader_loses_when_it_cannot_renew(etcd_server):
    """etcd stops answering (SIGSTOP): the leader gives up by itself within its TTL."""
    url = etcd_server.url()
    one = open_leadership(url, "one", ttl=2)
    try:
        await one.campaign()
        await asyncio.sleep(0.3)
        os.kill(etcd_server.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            await asyncio.wait_for(one.lost.wait(), 5)
            gave_up = time.monotonic() - stopped
        finally:
            os.kill(etcd_server.pid, signal.SIGCONT)
        print(f"etcd: the leader gave up {gave_up:.2f} s after etcd stopped answering (TTL 2 s)")
        assert gave_up < 2.5 and not one.is_leader     # within the TTL, give or take scheduling
    finally:
        await _wait_healthy(etcd_server)
        await one.close()


async def _wait_healthy(server) -> None:
    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://{server.endpoint}/health", timeout=1) as r:
                return b"true" in r.read()
        except OSError:
            return False

    for _ in range(100):
        if await asyncio.to_thread(healthy):
            return
        await asyncio.sleep(0.1)


@pytest.mark.etcd
async def test_etcd_leader_keeps_its_lease_while_its_loop_is_busy(etcd_server):
    """A leader whose event loop does nothing for several TTLs (a takeover indexing a large cluster
    in one go) keeps its lease: it is refreshed from a thread of its own."""
    url = etcd_server.url()
    one = open_leadership(url, "one", ttl=2)
    two = open_leadership(url, "two", ttl=2)
    try:
        await one.campaign()
        time.sleep(5)                 # blocks the loop: no coroutine of the leader runs
        await asyncio.sleep(0.1)      # whatever the loop owes now runs
        assert one.is_leader and not one.lost.is_set()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(two.campaign(), 3)
        assert await one.current_leader() == "one"
    finally:
        await one.close()
        await two.close()
