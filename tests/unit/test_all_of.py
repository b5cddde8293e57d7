"""``all_of``: agent calls made at once, every one waited for, the first failure raised."""

from __future__ import annotations

import asyncio

import pytest

from meshblock.util import all_of


async def test_results_come_in_argument_order_and_the_calls_overlap():
    started: list[str] = []
    everyone_in = asyncio.Event()

    async def call(name: str) -> str:
        started.append(name)
        if len(started) == 3:
            everyone_in.set()
        await asyncio.wait_for(everyone_in.wait(), 5)   # one after another, the first would wait forever
        return name

    assert await all_of(call("a"), call("b"), call("c")) == ["a", "b", "c"]
    assert started == ["a", "b", "c"]


async def test_a_failure_is_raised_only_after_the_others_have_ended():
    finished: list[str] = []

    async def ok(delay: float) -> None:
        await asyncio.sleep(delay)
        finished.append(f"ok {delay}")

    async def fail(msg: str) -> None:
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="first"):
        await all_of(ok(0.05), fail("first"), fail("second"), ok(0.1))
    assert finished == ["ok 0.05", "ok 0.1"]   # nothing left running behind the error
    assert await all_of() == []
