"""Crash safety: a writer process is killed with SIGKILL at a random moment while committing."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
from collections import defaultdict

from meshblock.store import open_store
from tests.store._proc import GROUP
from tests.store.conftest import proc_cmd


async def _run_and_kill(url: str) -> list[int]:
    """Start the writer, kill -9 it at a random moment; the groups it acknowledged."""
    child = await asyncio.create_subprocess_exec(*proc_cmd("crash-writer", url), stdout=asyncio.subprocess.PIPE)
    acked: list[int] = []
    first = asyncio.Event()

    async def read() -> None:
        async for line in child.stdout:
            acked.append(int(line))
            first.set()

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(first.wait(), 30)
        await asyncio.sleep(random.uniform(0.05, 0.6))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
        await asyncio.wait_for(reader, 10)    # every acknowledgement written before the kill
    assert child.returncode == -signal.SIGKILL
    return acked


async def test_kill_9_loses_no_acknowledged_commit(store_url):
    acked: list[int] = []
    for _ in range(2):                        # the second writer continues after the first crash
        acked += await _run_and_kill(store_url)
    assert acked == sorted(set(acked)), "acknowledgements are in commit order"

    store = open_store(store_url)
    try:
        items = await store.list("crash")
        groups: dict[int, dict[str, int]] = defaultdict(dict)
        for it in items:
            number, part = it.id.split("-")
            assert it.data["group"] == int(number)
            groups[int(number)][part] = it.revision
        # nothing torn: a group is there entirely (written by one commit: one revision) or not at all
        for number, parts in groups.items():
            assert sorted(parts) == sorted(GROUP), f"group {number} is torn: {parts}"
            assert len(set(parts.values())) == 1
        # nothing acknowledged is lost; at most the commit in flight at the kill went through
        # without its acknowledgement (twice: once per kill)
        missing = set(acked) - set(groups)
        assert not missing, f"acknowledged groups lost: {sorted(missing)}"
        assert len(set(groups) - set(acked)) <= 2
        counter = await store.get("counter", "c")
        assert counter.data["group"] == max(groups)
        for number in acked:
            named = await store.get_by_name("crash", f"group-{number:06d}")
            assert named is not None and named.id == f"{number:06d}-a"
    finally:
        await store.close()
    if store_url.startswith("sqlite://"):
        path = store_url[len("sqlite://"):]

        def integrity() -> tuple:
            conn = sqlite3.connect(path)
            try:
                return conn.execute("PRAGMA integrity_check").fetchone()
            finally:
                conn.close()

        assert await asyncio.to_thread(integrity) == ("ok",)
    print(f"{len(acked)} acknowledged commits survived two kill -9s intact")
