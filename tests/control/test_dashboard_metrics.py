"""The chart's dashboard and alerts only read metrics meshblock exports: every metric name in a
dashboard query or an alert expression is served by a running cluster's controller or agents."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.control.test_metrics_endpoints import metrics_cluster, scrape
from tests.control.test_volume_stats import fake_io

CHART = Path(__file__).resolve().parents[2] / "charts" / "meshblock"
METRIC = re.compile(r"\bmeshblock_[a-z0-9_]+")
MiB = 1 << 20
# the series a family of each type is exposed as (a family with no sample still has its # HELP/# TYPE lines)
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "summary": ("_sum", "_count", "_created", ""),
            "histogram": ("_bucket", "_sum", "_count", "_created"), "untyped": ("",)}


def queries(node) -> list[str]:
    """Every PromQL query of a dashboard: panel targets' expr and template variables' query."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "query", "definition") and isinstance(v, str):
                out.append(v)
            else:
                out += queries(v)
    elif isinstance(node, list):
        for v in node:
            out += queries(v)
    return out


def referenced() -> dict[str, set[str]]:
    """metric name -> where it is used."""
    used: dict[str, set[str]] = {}
    dash = json.loads((CHART / "dashboards" / "meshblock.json").read_text())
    for q in queries(dash):
        for name in METRIC.findall(q):
            used.setdefault(name, set()).add("dashboard")
    rules = (CHART / "templates" / "prometheusrule.yaml").read_text()
    exprs = re.findall(r"^\s*expr:(.*)$", rules, re.M)
    assert len(exprs) >= 5
    for e in exprs:
        for name in METRIC.findall(e):
            used.setdefault(name, set()).add("alerts")
    return used


def exported(body: str) -> set[str]:
    """The series names a scrape's families can hold, with or without a sample in this one."""
    names = set()
    for fam in text_string_to_metric_families(body):
        names |= {fam.name + s for s in SUFFIXES.get(fam.type, ("",))}
        names |= {s.name for s in fam.samples}
    return names


def test_references_are_parsed():
    used = referenced()
    assert {"meshblock_node_up", "meshblock_volumes", "meshblock_volume_latency_seconds_sum"} <= set(used)
    assert all(n == n.rstrip("_") for n in used)


async def test_every_metric_the_dashboard_and_alerts_use_is_exported(short_tmp, tmp_path_factory):
    used = referenced()
    c, ports = metrics_cluster(short_tmp, tmp_path_factory)
    try:
        await c.start()
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="dash", size_bytes=16 * MiB), timeout=10)
        await fake_io(c, v, "write", 8, 8 * 4096, 8 * 100_000)
        urls = [f"http://127.0.0.1:{p}/metrics" for p in ports]
        # what the cluster holds shows in the series the panels and alerts read (the leader sets its
        # gauges on its periodic cluster pass)
        want = [(0, "meshblock_controller_leader 1.0"), (0, 'meshblock_node_up{node="node-1"} 1.0'),
                (0, 'meshblock_node_up{node="node-2"} 1.0'), (0, 'meshblock_volumes{state="available"} 1.0'),
                (0, 'meshblock_node_pool_free_bytes{node="node-1"}'),
                (None, 'meshblock_volume_write_ops_total{volume="dash"} 8.0')]
        deadline = time.monotonic() + 15
        while True:
            bodies = await asyncio.gather(*(asyncio.to_thread(scrape, u) for u in urls))
            absent = [w for i, w in want if w not in (bodies[0] if i == 0 else "".join(bodies[1:]))]
            if not absent or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert not absent, f"not scraped: {absent}"
        names = set().union(*(exported(b) for b in bodies))
        missing = {n: sorted(w) for n, w in used.items() if n not in names}
        assert not missing, f"used but not exported: {missing}"
    finally:
        await c.stop()
