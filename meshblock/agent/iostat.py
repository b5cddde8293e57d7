"""Per-volume I/O statistics, read from SPDK's own counters of the bdev each head exports (its
raid; the lvol of a single-replica head exported straight from the data target).

One ``bdev_get_iostat`` per SPDK target answers for every volume that target serves, whatever
the number of volumes, and a sample is kept for ``ttl`` seconds, so scrapes and admin calls that
come close together share it. Standby heads serve no I/O and are left out: a volume is reported
by the node heading it only.

SPDK keeps cumulative counters (operations, bytes, and the sum of the latencies in ticks), not a
distribution: the latency is therefore exported as a summary's ``_sum`` and ``_count`` (the mean
over any interval is the ratio of their increases), not as a histogram.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric, SummaryMetricFamily

from ..spdk import SpdkError, SpdkRpc

if TYPE_CHECKING:
    from .node import NodeAgent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VolumeIo:
    volume_id: str
    volume_name: str
    read_ops: int
    write_ops: int
    read_bytes: int
    write_bytes: int
    read_latency_s: float      # summed over every read
    write_latency_s: float
    sampled_at: float          # seconds on the SPDK target's clock
    target: str                # data | head


def volume_io(bdevs: dict[str, tuple[str, str]], iostat: dict[str, Any], target: str) -> list[VolumeIo]:
    """The counters of the volumes in ``bdevs`` (bdev name -> (volume id, volume name)) from one
    ``bdev_get_iostat`` reply; a bdev the reply lacks (a raid not made yet) is left out."""
    rate = float(iostat.get("tick_rate") or 0) or 1.0
    at = float(iostat.get("ticks") or 0) / rate
    out = []
    for b in iostat.get("bdevs", []):
        who = bdevs.get(b.get("name", ""))
        if who is None:
            continue
        out.append(VolumeIo(volume_id=who[0], volume_name=who[1] or who[0],
                            read_ops=int(b.get("num_read_ops", 0)), write_ops=int(b.get("num_write_ops", 0)),
                            read_bytes=int(b.get("bytes_read", 0)), write_bytes=int(b.get("bytes_written", 0)),
                            read_latency_s=int(b.get("read_latency_ticks", 0)) / rate,
                            write_latency_s=int(b.get("write_latency_ticks", 0)) / rate,
                            sampled_at=at, target=target))
    return sorted(out, key=lambda v: v.volume_name)


class IostatSampler:
    """Samples of the I/O counters of the volumes an agent heads, shared for ``ttl`` seconds."""

    def __init__(self, agent: NodeAgent, ttl: float = 1.0):
        self.agent = agent
        self.ttl = ttl
        self._lock = asyncio.Lock()
        self._taken = float("-inf")
        self._last: list[VolumeIo] = []

    async def sample(self) -> list[VolumeIo]:
        async with self._lock:
            if time.monotonic() - self._taken >= self.ttl:
                self._last = await self._take()
                self._taken = time.monotonic()
            return self._last

    def _targets(self) -> list[tuple[str, SpdkRpc, dict[str, tuple[str, str]]]]:
        """Each SPDK target that serves a head of this node, with the bdevs of those heads."""
        agent = self.agent
        data: dict[str, tuple[str, str]] = {}
        head: dict[str, tuple[str, str]] = {}
        for h in list(agent.heads.values()):
            if h.standby:
                continue
            bdev = agent.head_bdevs.get(h.volume_id)
            if bdev is None:
                continue
            in_data = h.direct or agent.head_rpc is agent.rpc
            (data if in_data else head)[bdev] = (h.volume_id, h.volume_name)
        out = []
        if data:
            out.append(("data", agent.rpc, data))
        if head and agent.head_rpc is not None:
            out.append(("head", agent.head_rpc, head))
        return out

    async def _take(self) -> list[VolumeIo]:
        out: list[VolumeIo] = []
        for target, rpc, bdevs in self._targets():
            try:
                out += volume_io(bdevs, await rpc.bdev_get_iostat(), target)
            except (SpdkError, OSError) as e:
                log.warning("I/O statistics of the %s target not read: %s", target, e)
        return out


class VolumeIoCollector:
    """prometheus_client collector of the per-volume counters; scrapes run on the metrics server's
    thread and take their sample on the agent's event loop."""

    def __init__(self, sampler: IostatSampler, loop: asyncio.AbstractEventLoop, timeout: float = 5.0):
        self.sampler = sampler
        self.loop = loop
        self.timeout = timeout

    def describe(self) -> Iterable[Metric]:
        return list(families([]))   # registering must not sample

    def collect(self) -> Iterator[Metric]:
        fut = asyncio.run_coroutine_threadsafe(self.sampler.sample(), self.loop)
        try:
            samples = fut.result(self.timeout)
        except (concurrent.futures.TimeoutError, Exception) as e:  # noqa: BLE001 - a scrape must still answer
            fut.cancel()
            log.warning("per-volume I/O metrics not sampled: %s", e)
            samples = []
        yield from families(samples)


def families(samples: list[VolumeIo]) -> list[Metric]:
    ops = {op: CounterMetricFamily(f"meshblock_volume_{op}_ops", f"{op.capitalize()} operations completed by "
                                   "the volume's head (SPDK bdev_get_iostat)", labels=["volume"])
           for op in ("read", "write")}
    nbytes = {op: CounterMetricFamily(f"meshblock_volume_{op}_bytes", f"Bytes {done} through the volume's head "
                                      "(SPDK bdev_get_iostat)", labels=["volume"])
              for op, done in (("read", "read"), ("write", "written"))}
    latency = SummaryMetricFamily("meshblock_volume_latency_seconds",
                                  "Time from submission to completion of the volume's I/O at its head, summed "
                                  "(SPDK's cumulative latency ticks; no quantiles)", labels=["volume", "op"])
    for s in samples:
        ops["read"].add_metric([s.volume_name], s.read_ops)
        ops["write"].add_metric([s.volume_name], s.write_ops)
        nbytes["read"].add_metric([s.volume_name], s.read_bytes)
        nbytes["write"].add_metric([s.volume_name], s.write_bytes)
        latency.add_metric([s.volume_name, "read"], count_value=s.read_ops, sum_value=s.read_latency_s)
        latency.add_metric([s.volume_name, "write"], count_value=s.write_ops, sum_value=s.write_latency_s)
    return [ops["read"], ops["write"], nbytes["read"], nbytes["write"], latency]
