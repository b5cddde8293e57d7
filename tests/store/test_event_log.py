"""The event log on both store engines: events written in batches read back in the order recorded,
page by page, and pruned by age and by count (as the audit log is)."""

from __future__ import annotations

from meshblock.control.audit import Retention
from meshblock.control.events import EventLog, EventRecorder
from meshblock.model.events import VOLUME_HEAD


async def test_events_written_listed_and_pruned(store):
    clock = [1_000_000.0]
    log = EventLog(store, Retention(max_age=3600, max_events=150))
    rec = EventRecorder(log, clock=lambda: clock[0])
    for i in range(210):       # more than one transaction's worth
        clock[0] += 60 if i == 10 else 0.001
        rec.record(VOLUME_HEAD, object=f"v{i}", object_id=f"id{i}", message="moved", fields={"to": f"n{i % 3}"},
                   node_ids=[f"n{i % 3}"])
    assert await rec.flush() and rec.written == 210
    got, last, more = await log.scan(after=None, limit=50, match=lambda e: "n1" in e.node_ids)
    assert len(got) == 50 and more and [e.object for e in got[:2]] == ["v1", "v4"]
    assert got[0].fields == {"to": "n1"} and abs(got[0].time - 1_000_000.002) < 1e-6
    rest, _, more = await log.scan(after=last, limit=500, match=lambda e: "n1" in e.node_ids)
    assert len(rest) == 20 and not more
    # by count: the oldest go first; by age: everything older than an hour before `now`
    assert await log.prune(now=clock[0]) == 60
    left, _, _ = await log.scan(after=None, limit=500)
    assert len(left) == 150 and left[0].object == "v60"
    t100 = next(e.time for e in left if e.object == "v100")
    assert await log.prune(now=t100 + 3600) == 40
    left, _, _ = await log.scan(after=None, limit=500)
    assert [e.object for e in left] == [f"v{i}" for i in range(100, 210)]
