"""The event recorder: events go to the store in batches, a transition repeated by a reconcile pass is
recorded once, and while the store refuses writes the events wait in a bounded queue that drops the
oldest (counted) and writes the rest, in order, once the store is back."""

from __future__ import annotations

import asyncio

import pytest

from meshblock.control.events import EventLog, EventRecorder
from meshblock.model.events import NODE_STATE, VOLUME_STATE
from meshblock.store.base import StoreUnavailable


class FakeLog(EventLog):
    """Keeps the batches it is given; refuses them while ``down``."""

    def __init__(self):
        super().__init__(store=None)  # type: ignore[arg-type]
        self.batches: list[list] = []
        self.down = False

    async def write(self, events):
        await asyncio.sleep(0)
        if self.down:
            raise StoreUnavailable("store unreachable")
        self.batches.append(list(events))

    @property
    def written(self) -> list:
        return [e for b in self.batches for e in b]


def state(rec: EventRecorder, volume: str, frm: str, to: str) -> bool:
    return rec.record(VOLUME_STATE, object=volume, object_id=f"id-{volume}", message=f"{frm} -> {to}",
                      tenant="acme", fields={"from": frm, "to": to})


async def test_events_are_written_in_batches_in_order():
    log = FakeLog()
    rec = EventRecorder(log, batch=100, flush_after=0.05)
    task = asyncio.create_task(rec.run())
    try:
        for i in range(250):
            rec.record(NODE_STATE, object=f"n{i}", object_id=f"n{i}", message="down", fields={"to": "down"})
        assert not log.batches            # recording never waits for the store
        for _ in range(100):
            if rec.written == 250:
                break
            await asyncio.sleep(0.01)
        assert [len(b) for b in log.batches] == [100, 100, 50]
        assert [e.object for e in log.written] == [f"n{i}" for i in range(250)]
        ids = [e.id for e in log.written]
        assert ids == sorted(ids) and len(set(ids)) == 250   # strictly rising, even within one microsecond
    finally:
        task.cancel()


async def test_a_repeated_transition_is_recorded_once():
    log = FakeLog()
    rec = EventRecorder(log)
    assert state(rec, "v1", "available", "degraded")
    assert not state(rec, "v1", "available", "degraded")      # the same pass again
    assert state(rec, "v2", "available", "degraded")          # another volume
    # another topic of the same volume does not reset the state's memory
    assert rec.record("volume.head", object="v1", object_id="id-v1", message="moved", fields={"to": "n2"})
    assert not state(rec, "v1", "available", "degraded")
    assert state(rec, "v1", "degraded", "available")          # back, then down again: both recorded
    assert state(rec, "v1", "available", "degraded")
    rec.forget("id-v1")                                      # deleted: a new volume of that name starts afresh
    assert state(rec, "v1", "available", "degraded")
    assert rec.repeats == 2
    await rec.flush()
    assert [(e.object, e.fields["to"]) for e in log.written] == [
        ("v1", "degraded"), ("v2", "degraded"), ("v1", "n2"), ("v1", "available"), ("v1", "degraded"),
        ("v1", "degraded")]
    assert log.written[0].tenant == "acme" and log.written[0].kind == VOLUME_STATE


async def test_store_down_drops_the_oldest_and_never_blocks():
    log = FakeLog()
    log.down = True
    rec = EventRecorder(log, capacity=10, batch=4, flush_after=0, retry_after=0.01, retry_max=0.02)
    task = asyncio.create_task(rec.run())
    try:
        for i in range(15):
            assert rec.record(NODE_STATE, object=f"n{i}", object_id=f"n{i}", message="down", fields={"to": "down"})
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert not log.batches and rec.failures > 0
        assert rec.dropped == 5 and rec.queued == 10
        log.down = False
        for _ in range(100):
            if rec.queued == 0:
                break
            await asyncio.sleep(0.01)
        # the ten newest, in the order recorded, in batches
        assert [e.object for e in log.written] == [f"n{i}" for i in range(5, 15)]
        assert max(len(b) for b in log.batches) <= 4
    finally:
        task.cancel()


def test_recording_never_raises():
    rec = EventRecorder(FakeLog())
    assert rec.record(VOLUME_STATE, object="v", message="x" * 2000, fields={"n": 3})   # values become strings
    assert not rec.record(VOLUME_STATE, object="v", message="y", fields=object())     # type: ignore[arg-type]
    assert rec.queued == 1


@pytest.mark.parametrize("budget", [3, 1000])
async def test_scan_filters_and_stops_at_its_budget(tmp_path, budget):
    from meshblock.store import open_store

    store = open_store(f"sqlite://{tmp_path}/state.db")
    await store.open()
    try:
        log = EventLog(store)
        rec = EventRecorder(log)
        for i in range(6):
            state(rec, f"v{i % 2}", "available" if i % 4 < 2 else "degraded", "degraded" if i % 4 < 2 else "available")
        assert await rec.flush()
        got, last, more = await log.scan(after=None, limit=10, match=lambda e: e.object == "v1", budget=budget)
        if budget == 3:
            assert [e.object for e in got] == ["v1"] and more and last is not None
            rest, _, more = await log.scan(after=last, limit=10, match=lambda e: e.object == "v1")
            assert len(rest) == 2 and not more
        else:
            assert len(got) == 3 and not more
    finally:
        await store.close()
