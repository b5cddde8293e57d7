"""A caller waiting on the reconciler speeds passes up, but not while a volume keeps failing: then
the retries come at the pass interval instead of back to back (a failing agent call once drove
hundreds of passes a second)."""

from __future__ import annotations

import asyncio
import contextlib

from meshblock.control.reconciler import Reconciler
from meshblock.model import GroupSnapshot, Node, Replica, Snapshot, Volume


class _Repo:
    def __init__(self, volumes: list):
        self.volumes = volumes

    async def list(self, kind):
        return {Volume: self.volumes, Node: [], Replica: [], Snapshot: [], GroupSnapshot: []}[kind]


class _Liveness:
    async def settle(self) -> None:
        return None


async def _passes_while_waiting(fail: bool, seconds: float = 1.0) -> int:
    r = Reconciler(repo=_Repo([Volume(id="7d4c7f0e-5f0c-4b8e-9a55-0d2c1f3e9b11", name="v", size_bytes=1 << 20)]), agents=None, liveness=_Liveness(),
                   interval=0.25)
    passes = 0

    async def reconcile_volume(v, reps, nodes):
        nonlocal passes
        passes += 1
        if fail:
            raise RuntimeError("agent call failed")

    r.reconcile_volume = reconcile_volume
    loop = asyncio.create_task(r.run())

    async def never() -> bool:
        return False

    try:
        assert await r.wait_for(never, seconds) is False
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    return passes


async def test_a_waiter_does_not_spin_the_reconciler_on_a_failing_volume():
    failing = await _passes_while_waiting(fail=True)
    assert failing <= 1 / 0.25 + 2, failing        # about one pass per interval
    healthy = await _passes_while_waiting(fail=False)
    assert healthy > 2 * failing, (healthy, failing)  # a waiter still speeds up passes that succeed
