"""The per-volume I/O collector (one bdev_get_iostat per target and scrape, standbys left out, a
short cache) and `volume top`'s rates from two samples."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meshblock.agent.iostat import IostatSampler, VolumeIoCollector
from meshblock.agent.model import Head, HeadLeg
from meshblock.cli.top import rates
from meshblock.proto.meshblock.v1 import admin_pb2 as pb

V1, V2, V3 = ("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222",
              "33333333-3333-4333-8333-333333333333")
MiB = 1 << 20


class Iostat:
    """An SPDK target's bdev_get_iostat, counting the calls."""

    def __init__(self, bdevs: list[dict]):
        self.bdevs = bdevs
        self.calls: list = []

    async def bdev_get_iostat(self, names=None) -> dict:
        self.calls.append(names)
        return {"tick_rate": 2_000_000_000, "ticks": 10_000_000_000, "bdevs": self.bdevs}


def head(vid: str, name: str, legs: int, standby: bool = False) -> Head:
    return Head(volume_id=vid, nqn="", namespace_uuid=vid, legs=tuple(HeadLeg(f"r{i}", "n") for i in range(legs)),
                hosts=frozenset(), replica_count=legs, standby=standby, volume_name=name)


def agent() -> SimpleNamespace:
    data = Iostat([{"name": "lvol-uuid-1", "num_read_ops": 3, "bytes_read": 3 * 4096, "num_write_ops": 0,
                    "bytes_written": 0, "read_latency_ticks": 6000, "write_latency_ticks": 0},
                   {"name": "some-other-bdev", "num_read_ops": 99}])
    raid = Iostat([{"name": "vol-" + V2, "num_read_ops": 0, "bytes_read": 0, "num_write_ops": 8,
                    "bytes_written": 8 * MiB, "read_latency_ticks": 0, "write_latency_ticks": 4_000_000},
                   {"name": "vol-" + V3, "num_write_ops": 5}])
    return SimpleNamespace(rpc=data, head_rpc=raid,
                           heads={V1: head(V1, "db", 1), V2: head(V2, "logs", 2), V3: head(V3, "spare", 2, True)},
                           head_bdevs={V1: "lvol-uuid-1", V2: "vol-" + V2, V3: "vol-" + V3})


async def test_collector_one_call_per_target_and_scrape_standbys_left_out():
    a = agent()
    registry = CollectorRegistry()
    registry.register(VolumeIoCollector(IostatSampler(a, ttl=30.0), asyncio.get_running_loop()))
    assert a.rpc.calls == [] and a.head_rpc.calls == []            # registering does not sample
    text = (await asyncio.to_thread(generate_latest, registry)).decode()
    assert a.rpc.calls == [None] and a.head_rpc.calls == [None]    # all bdevs, one call each
    got = {(x.name, tuple(sorted(x.labels.items()))): x.value
           for f in text_string_to_metric_families(text) for x in f.samples}
    assert got == {
        ("meshblock_volume_read_ops_total", (("volume", "db"),)): 3,
        ("meshblock_volume_read_ops_total", (("volume", "logs"),)): 0,
        ("meshblock_volume_write_ops_total", (("volume", "db"),)): 0,
        ("meshblock_volume_write_ops_total", (("volume", "logs"),)): 8,
        ("meshblock_volume_read_bytes_total", (("volume", "db"),)): 3 * 4096,
        ("meshblock_volume_read_bytes_total", (("volume", "logs"),)): 0,
        ("meshblock_volume_write_bytes_total", (("volume", "db"),)): 0,
        ("meshblock_volume_write_bytes_total", (("volume", "logs"),)): 8 * MiB,
        ("meshblock_volume_latency_seconds_count", (("op", "read"), ("volume", "db"))): 3,
        ("meshblock_volume_latency_seconds_sum", (("op", "read"), ("volume", "db"))): 3e-6,
        ("meshblock_volume_latency_seconds_count", (("op", "write"), ("volume", "db"))): 0,
        ("meshblock_volume_latency_seconds_sum", (("op", "write"), ("volume", "db"))): 0,
        ("meshblock_volume_latency_seconds_count", (("op", "read"), ("volume", "logs"))): 0,
        ("meshblock_volume_latency_seconds_sum", (("op", "read"), ("volume", "logs"))): 0,
        ("meshblock_volume_latency_seconds_count", (("op", "write"), ("volume", "logs"))): 8,
        ("meshblock_volume_latency_seconds_sum", (("op", "write"), ("volume", "logs"))): 0.002,
    }
    assert "spare" not in text and "some-other-bdev" not in text
    await asyncio.to_thread(generate_latest, registry)             # within the ttl: the same sample
    assert len(a.rpc.calls) == len(a.head_rpc.calls) == 1


async def test_sample_skips_a_target_that_fails_and_names_fall_back_to_ids():
    a = agent()

    async def broken(names=None):
        raise OSError("socket gone")
    a.head_rpc.bdev_get_iostat = broken
    a.heads[V1] = head(V1, "", 1)
    got = await IostatSampler(a, ttl=0).sample()
    assert [(v.volume_name, v.read_ops, v.sampled_at, v.target) for v in got] == [(V1, 3, 5.0, "data")]


def stats(name: str, node: str, at: float, **counters) -> pb.VolumeStats:
    return pb.VolumeStats(volume_id="id-" + name, name=name, node_id=node, sampled_at=at, **counters)


def test_rates_from_two_samples_busiest_first():
    before = [stats("a", "n1", 100.0, read_ops=100, read_bytes=100 * 4096, read_latency_seconds=0.01),
              stats("b", "n1", 100.0, write_ops=10, write_bytes=10 * MiB, write_latency_seconds=0.1),
              stats("moved", "n1", 100.0, write_ops=5),
              stats("reset", "n2", 50.0, write_ops=500)]
    after = [stats("a", "n1", 102.0, read_ops=300, read_bytes=300 * 4096, read_latency_seconds=0.03),
             stats("b", "n1", 102.0, write_ops=1010, write_bytes=1010 * MiB, write_latency_seconds=0.6),
             stats("moved", "n3", 3.0, write_ops=7),
             stats("reset", "n2", 52.0, write_ops=3),
             stats("new", "n1", 102.0, read_ops=1)]
    rows = rates(before, after, wall_seconds=2.1)
    assert [r.name for r in rows] == ["b", "a"]   # moved, restarted and new volumes wait for the next pair
    b, a = rows
    assert (b.write_iops, b.write_mibps, b.read_iops, b.interval_seconds) == (500.0, 500.0, 0.0, 2.0)
    assert abs(b.write_latency_us - 500.0) < 1e-9 and b.read_latency_us is None
    assert (a.read_iops, a.read_mibps) == (100.0, 200 * 4096 / 2 / MiB)
    assert abs(a.read_latency_us - 100.0) < 1e-9


def test_rates_use_the_wall_clock_when_the_head_sample_is_reused():
    s = [stats("a", "n1", 7.0, read_ops=10)]
    (r,) = rates(s, s, wall_seconds=1.0)
    assert (r.read_iops, r.interval_seconds) == (0.0, 1.0)
