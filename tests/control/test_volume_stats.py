"""Per-volume I/O statistics end to end: the head's SPDK counters through the agent
(GetVolumeIostat), the admin API (GetVolumeStats, tenants see their own) and `meshblock volume top`."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import agent_pb2 as apb
from tests.support.backends import fake_backend
from tests.support.cluster import Cluster
from tests.support.initiator import SpdkHost

MiB = 1 << 20
HOST = "nqn.2014-08.org.nvmexpress:uuid:5a1e0c1a-7d2e-4c55-9d55-0b4c11a57a75"


async def top_json(c: Cluster, *args: str) -> list[dict]:
    from click.testing import CliRunner

    from meshblock.cli.main import cli
    r = await asyncio.to_thread(CliRunner().invoke, cli, ["volume", "top", "-o", "json", *args,
                                                          "--endpoint", c.controller.listen],
                                prog_name="meshblock", env={"MESHBLOCK_TOKEN": ""})
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


async def fake_io(c: Cluster, v: pb.Volume, op: str, ops: int, nbytes: int, latency_ns: int) -> None:
    """I/O the fake SPDK counts on the volume's head bdev (its raid, or its lvol)."""
    agent = c.agent_by_id(v.head_node_id)
    if len(v.replica_status) > 1:
        sock, bdev = "spdk-head.sock", "vol-" + v.id
    else:
        reps = (await agent.stub.ListReplicas(apb.ListReplicasRequest())).replicas
        sock, bdev = "spdk.sock", next(r.lvol_uuid for r in reps if r.replica_id == v.replica_status[0].replica_id)
    spdk = agent.spdk(sock)
    try:
        await spdk.client.call("fakespdk_bdev_io", {"name": bdev, "op": op, "ops": ops, "bytes": nbytes,
                                                    "latency_ticks": latency_ns})
    finally:
        await spdk.client.close()


async def test_stats_and_top_on_fake_heads(tmp_path_factory, short_tmp):
    c = Cluster(fake_backend(tmp_path_factory.mktemp("fakespdk-registry")), short_tmp / "c", nodes=2)
    ports = {}
    for a in c.agents:
        ports[a.name] = free_port()
        a.argv += ["--metrics-port", str(ports[a.name])]
    try:
        await c.start()
        one = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="one", size_bytes=16 * MiB))
        two = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="two", size_bytes=16 * MiB, replicas=2))
        await fake_io(c, one, "read", 10, 10 * 4096, 10 * 50_000)
        await fake_io(c, two, "write", 4, 4 * MiB, 4 * 200_000)

        got = {s.name: s for s in (await c.volumes.GetVolumeStats(pb.GetVolumeStatsRequest())).volumes}
        assert set(got) == {"one", "two"}
        assert (got["one"].read_ops, got["one"].read_bytes, got["one"].write_ops) == (10, 40960, 0)
        assert abs(got["one"].read_latency_seconds - 0.0005) < 1e-9
        assert (got["two"].write_ops, got["two"].write_bytes, got["two"].node_id) == (4, 4 * MiB, two.head_node_id)
        # only the head reports a volume: the standby of "two" has its raid too, but is left out
        for a in c.agents:
            node_id = (a.data_dir / "node-id").read_text().strip()
            listed = (await a.stub.GetVolumeIostat(apb.GetVolumeIostatRequest())).volumes
            assert {(s.volume_name, node_id) for s in listed} <= {("one", one.head_node_id),
                                                                 ("two", two.head_node_id)}

        # each agent's metrics endpoint shows the volumes it heads
        scraped: dict = {}
        for a in c.agents:
            text = await asyncio.to_thread(scrape, ports[a.name])
            for f in text_string_to_metric_families(text):
                for x in f.samples:
                    if x.name.startswith("meshblock_volume_"):
                        scraped[(x.name, tuple(sorted(x.labels.items())), a.name)] = x.value
        head_of = {v.head_node_id: a.name for a in c.agents for v in (one, two)
                   if (a.data_dir / "node-id").read_text().strip() == v.head_node_id}
        assert scraped[("meshblock_volume_read_ops_total", (("volume", "one"),), head_of[one.head_node_id])] == 10
        assert scraped[("meshblock_volume_write_bytes_total", (("volume", "two"),),
                        head_of[two.head_node_id])] == 4 * MiB
        assert scraped[("meshblock_volume_latency_seconds_count", (("op", "write"), ("volume", "two")),
                        head_of[two.head_node_id])] == 4
        assert len({k[2] for k in scraped if k[1][-1] == ("volume", "two")}) == 1   # not the standby

        # one sample: "two" writes while `volume top` takes its two readings, "one" is idle
        async def writes() -> None:
            while True:
                await fake_io(c, two, "write", 100, 100 * 65536, 100 * 100_000)
                await asyncio.sleep(0.1)

        task = asyncio.create_task(writes())
        try:
            rows = await top_json(c, "--interval", "1.5s")
        finally:
            task.cancel()
        assert [r["name"] for r in rows] == ["two", "one"]
        busy, idle = rows
        assert busy["write_iops"] > 0 and busy["write_mibps"] > 0 and busy["read_iops"] == 0
        assert abs(busy["write_latency_us"] - 100.0) < 1e-6 and busy["read_latency_us"] is None
        assert idle["read_iops"] == idle["write_iops"] == 0 and idle["write_latency_us"] is None
        assert [r["name"] for r in await top_json(c, "one", "--interval", "1s")] == ["one"]
    finally:
        await c.stop()


@pytest.mark.spdk
async def test_real_writes_show_in_counters_and_top(real_only, short_tmp):
    c = Cluster(real_only, short_tmp / "c", nodes=1)
    try:
        await c.start()
        await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="busy", size_bytes=32 * MiB))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="busy", host_nqn=HOST))
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="busy", host_nqn=HOST))
        p = info.paths[0]
        src = short_tmp / "in.bin"
        src.write_bytes(os.urandom(8 * MiB))
        host = SpdkHost(real_only.install, short_tmp / "host", HOST)

        # `volume top` takes its readings 4 s apart while the host writes 8 MiB in between
        top = asyncio.create_task(top_json(c, "--interval", "4s"))
        await asyncio.sleep(0.5)
        w = await host.write(src, info.subnqn, p.traddr, int(p.trsvcid))
        assert w.returncode == 0, w.output
        (row,) = await top
        assert row["name"] == "busy" and row["write_iops"] > 0 and row["write_latency_us"] > 0
        assert row["write_mibps"] * row["interval_seconds"] >= 7.9, row

        (s,) = (await c.volumes.GetVolumeStats(pb.GetVolumeStatsRequest(refs=["busy"]))).volumes
        assert s.write_bytes >= 8 * MiB and s.write_ops >= 8 * MiB // 65536 and s.write_latency_seconds > 0
    finally:
        await c.stop()
