"""`meshblock volume top`: the busiest volumes, live, from their heads' I/O counters.

Rates are the difference of two samples of the cumulative counters (GetVolumeStats) over the
interval between them on the head's SPDK clock; a volume whose head moved or whose counters
restarted between the samples is shown from the next pair on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import click
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..proto.meshblock.v1 import admin_pb2 as pb
from . import output as out
from .admin import DURATION, Invocation, admin_options, volume

MiB = 1 << 20


@dataclass(frozen=True)
class VolumeRate:
    name: str
    volume_id: str
    node_id: str
    read_iops: float
    write_iops: float
    read_mibps: float
    write_mibps: float
    read_latency_us: float | None      # mean over the interval; None without reads
    write_latency_us: float | None
    interval_seconds: float

    @property
    def iops(self) -> float:
        return self.read_iops + self.write_iops

    @property
    def mibps(self) -> float:
        return self.read_mibps + self.write_mibps


def _mean_us(latency_s: float, ops: int) -> float | None:
    return latency_s / ops * 1e6 if ops > 0 else None


def rates(before: list[pb.VolumeStats], after: list[pb.VolumeStats], wall_seconds: float = 0.0) -> list[VolumeRate]:
    """Per-volume rates between two samples, busiest first (I/O per second, then MiB/s).

    The interval is the head's own (``sampled_at``); ``wall_seconds`` stands in where a head's
    clock did not advance (a sample reused from its short cache)."""
    prev = {s.volume_id: s for s in before}
    out = []
    for s in after:
        p = prev.get(s.volume_id)
        if p is None or p.node_id != s.node_id:
            continue
        d = {f: getattr(s, f) - getattr(p, f) for f in ("read_ops", "write_ops", "read_bytes", "write_bytes",
                                                         "read_latency_seconds", "write_latency_seconds")}
        if any(v < 0 for v in d.values()):
            continue   # the counters restarted (the head's bdev was made again)
        dt = s.sampled_at - p.sampled_at
        if dt <= 0:
            dt = wall_seconds
        if dt <= 0:
            continue
        out.append(VolumeRate(name=s.name, volume_id=s.volume_id, node_id=s.node_id,
                              read_iops=d["read_ops"] / dt, write_iops=d["write_ops"] / dt,
                              read_mibps=d["read_bytes"] / dt / MiB, write_mibps=d["write_bytes"] / dt / MiB,
                              read_latency_us=_mean_us(d["read_latency_seconds"], d["read_ops"]),
                              write_latency_us=_mean_us(d["write_latency_seconds"], d["write_ops"]),
                              interval_seconds=dt))
    return sorted(out, key=lambda r: (-r.iops, -r.mibps, r.name))


def _lat(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def rates_table(rows: list[VolumeRate], nodes: dict[str, str]) -> Table:
    t = out.table("VOLUME", "NODE", "READ IOPS", "WRITE IOPS", "READ MiB/s", "WRITE MiB/s", "READ LAT",
                  "WRITE LAT")
    for r in rows:
        t.add_row(r.name, nodes.get(r.node_id, r.node_id[:8]), f"{r.read_iops:,.0f}", f"{r.write_iops:,.0f}",
                  f"{r.read_mibps:.1f}", f"{r.write_mibps:.1f}", _lat(r.read_latency_us), _lat(r.write_latency_us))
    return t


@volume.command("top")
@click.argument("names", nargs=-1)
@click.option("--interval", type=DURATION, default="2s", show_default=True,
              help="Time between samples (and refreshes).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Show the N busiest volumes.")
@admin_options
def volume_top(inv: Invocation, names: tuple[str, ...], interval: float, limit: int) -> None:
    """The busiest volumes (all you see, or NAMES), refreshed every --interval like top: I/O per
    second, MiB/s and mean latency of reads and writes at each volume's head.

    With -o json: one sample (two readings --interval apart) as a JSON list, busiest first."""
    interval = max(interval, 0.05)
    request = pb.GetVolumeStatsRequest(refs=list(names))
    with inv.client() as c:
        def sample() -> tuple[pb.GetVolumeStatsReply, float]:
            return c.volumes.GetVolumeStats(request), time.monotonic()

        before, t0 = sample()
        if inv.json:
            time.sleep(interval)
            after, t1 = sample()
            out.print_json([asdict(r) for r in rates(list(before.volumes), list(after.volumes), t1 - t0)[:limit]])
            return
        nodes = {n.id: n.name for n in c.nodes.ListNodes(pb.ListNodesRequest()).nodes}
        from rich.live import Live

        def frame(rows: list[VolumeRate], reply: pb.GetVolumeStatsReply | None) -> Group:
            parts: list = [rates_table(rows[:limit], nodes)]
            if reply is not None and reply.unreachable:
                parts.append(Text(f"heads not answering: {', '.join(reply.unreachable)}", style="yellow"))
            parts.append(Text.from_markup(f"[dim]{len(rows)} volume(s) with a sample; refreshing every "
                                          f"{out.duration(interval)}; Ctrl-C to stop[/dim]"))
            return Group(*parts)

        try:
            with Live(frame([], None), console=out.console(), auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    after, t1 = sample()
                    live.update(frame(rates(list(before.volumes), list(after.volumes), t1 - t0), after),
                                refresh=True)
                    before, t0 = after, t1
        except KeyboardInterrupt:
            return
