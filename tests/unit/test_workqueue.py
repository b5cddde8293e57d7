"""The reconciler's work queue: each key once, never by two workers at once, nothing lost, failures
backed off, scheduled keys released on time."""

from __future__ import annotations

import asyncio

import pytest

from meshblock.control.workqueue import ShutDown, WorkQueue


async def test_a_key_added_many_times_is_queued_once_and_comes_in_order():
    q = WorkQueue()
    for k in ["a", "b", "a", "c", "b", "a"]:
        q.add(k)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_added_while_held_comes_back_after_done_and_not_before():
    q = WorkQueue()
    q.add("v")
    held = await q.get()
    q.add("v")
    q.add("v")
    assert len(q) == 0            # not handed to a second worker while the first holds it
    q.done(held)
    assert len(q) == 1
    assert await q.get() == "v"
    q.done("v")
    assert len(q) == 0


async def test_workers_never_hold_one_key_together():
    q = WorkQueue()
    holding: set[str] = set()
    overlaps = 0
    seen = 0

    async def worker():
        nonlocal overlaps, seen
        while True:
            try:
                k = await q.get()
            except ShutDown:
                return
            if k in holding:
                overlaps += 1
            holding.add(k)
            seen += 1
            await asyncio.sleep(0)
            if seen < 200:
                q.add(k)          # a change arrives while it is being reconciled
                q.add(f"k{seen % 7}")
            holding.discard(k)
            q.done(k)

    ws = [asyncio.create_task(worker()) for _ in range(8)]
    for i in range(7):
        q.add(f"k{i}")
    while seen < 200 or len(q) or q.active:
        await asyncio.sleep(0.01)
    q.shut_down()
    await asyncio.gather(*ws)
    assert overlaps == 0
    assert seen >= 200


async def test_failures_back_off_exponentially_and_forget_resets():
    q = WorkQueue(base_delay=0.01, max_delay=0.04)
    assert [q.retry("x") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
    assert q.failures("x") == 4
    q.forget("x")
    assert q.failures("x") == 0
    assert q.retry("x") == 0.01


async def test_a_scheduled_key_is_released_when_due_and_an_earlier_add_wins():
    q = WorkQueue()
    loop = asyncio.get_running_loop()
    q.add_after("late", 0.2)
    q.add_after("soon", 0.05)
    t0 = loop.time()
    assert await asyncio.wait_for(q.get(), 2) == "soon"
    assert loop.time() - t0 >= 0.04
    q.done("soon")
    q.add_after("late", 5.0)      # a later schedule does not push back an earlier one
    assert await asyncio.wait_for(q.get(), 2) == "late"
    q.done("late")
    q.add_after("now", 10.0)
    q.add("now")                  # an immediate add supersedes the schedule
    assert await asyncio.wait_for(q.get(), 1) == "now"
    q.done("now")
    assert q.delayed == 0


async def test_shut_down_wakes_waiting_workers():
    q = WorkQueue()
    w = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    q.shut_down()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(w, 1)


async def test_urgent_keys_come_first_in_their_order_and_each_key_once():
    q = WorkQueue()
    for k in ["a", "b", "c"]:
        q.add(k)
    q.add("x", urgent=True)
    q.add("b", urgent=True)      # waiting as routine: promoted, and not handed out twice
    q.add("y", urgent=True)
    assert len(q) == 5
    got = [await q.get() for _ in range(5)]
    assert got == ["x", "b", "y", "a", "c"]
    assert len(q) == 0
    q.add("b")                    # b is held: comes back once, after done
    for k in got:
        q.done(k)
    assert len(q) == 1 and await q.get() == "b"


async def test_an_urgent_add_while_held_comes_back_urgent():
    q = WorkQueue()
    q.add("v")
    held = await q.get()
    q.add("r")
    q.add("v", urgent=True)
    q.done(held)
    assert [await q.get(), await q.get()] == ["v", "r"]
