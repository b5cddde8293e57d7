"""A caller waiting on the reconciler gets its volume visited at once, but not while the volume keeps
failing: then the work queue's backoff paces the retries instead of back to back (a failing agent
call once drove hundreds of visits a second)."""

from __future__ import annotations

import asyncio
import contextlib

from meshblock.control.reconciler import Reconciler, volume_key
from meshblock.control.repo import Repo
from meshblock.model import Volume
from meshblock.store import open_store

VID = "7d4c7f0e-5f0c-4b8e-9a55-0d2c1f3e9b11"


class _Liveness:
    async def settle(self) -> None:
        return None


async def _visits_while_waiting(tmp_path, fail: bool, seconds: float = 1.0) -> int:
    store = open_store(f"sqlite:///{tmp_path / ('f' if fail else 'h')}.db")
    repo = Repo(store)
    await repo.commit(create=[Volume(id=VID, name="v", size_bytes=1 << 20)])
    r = Reconciler(repo=repo, agents=None, liveness=_Liveness(), interval=0.25)
    visits = 0

    async def reconcile_volume(v, reps, nodes):
        nonlocal visits
        visits += 1
        if fail:
            raise RuntimeError("agent call failed")

    r.reconcile_volume = reconcile_volume
    loop = asyncio.create_task(r.run())

    async def never() -> bool:
        return False

    try:
        await asyncio.wait_for(r.view.ready.wait(), 10)
        assert await r.wait_for(never, seconds, volume_key(VID)) is False
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await r.view.stop()
        await store.close()
    return visits


async def test_a_waiter_does_not_spin_the_reconciler_on_a_failing_volume(tmp_path):
    failing = await _visits_while_waiting(tmp_path, fail=True)
    assert 2 <= failing <= 8, failing             # backoff 0.05, 0.1, 0.2, 0.4 ... s
    healthy = await _visits_while_waiting(tmp_path, fail=False)
    assert healthy > 2 * failing, (healthy, failing)  # a waiter still speeds up visits that succeed
