"""Real data over NVMe/TCP: a host outside the cluster (SPDK's spdk_dd) writes and reads replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest

from meshblock.proto.meshblock.v1 import agent_pb2 as pb
from tests.support.agents import AgentProc
from tests.support.initiator import SpdkHost

pytestmark = pytest.mark.spdk

MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:test-initiator"
STRANGER = "nqn.2026-11.io.meshblock:host:stranger"


@pytest.fixture
async def node(real_only, tmp_path):
    if not real_only.install.has("spdk_dd"):
        pytest.skip("spdk_dd is not in this SPDK build")
    a = AgentProc(real_only, tmp_path / "node", "node")
    a.start()
    try:
        await a.wait_healthy()
        yield a
    finally:
        await a.stop()
        a.kill_targets()


def pattern(path, nbytes: int) -> bytes:
    data = os.urandom(nbytes)
    path.write_bytes(data)
    return data


async def exported_replica(node: AgentProc, size: int, hosts: list[str]) -> pb.Export:
    r = str(uuid.uuid4())
    await node.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=size))
    return await node.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=r, allowed_host_nqns=hosts))


async def test_write_then_read_back_over_nvme_tcp(node, real_only, tmp_path):
    e = await exported_replica(node, 16 * MiB, [HOST])
    host = SpdkHost(real_only.install, tmp_path / "host", HOST)
    data = pattern(tmp_path / "in.bin", 4 * MiB)
    w = await host.write(tmp_path / "in.bin", e.nqn, e.address, e.port)
    assert w.returncode == 0, w.output
    r = await host.read(tmp_path / "out.bin", 4 * MiB, e.nqn, e.address, e.port)
    assert r.returncode == 0, r.output
    assert (tmp_path / "out.bin").read_bytes() == data


async def test_host_not_on_allowlist_is_refused(node, real_only, tmp_path):
    e = await exported_replica(node, 16 * MiB, [HOST])
    stranger = SpdkHost(real_only.install, tmp_path / "stranger", STRANGER)
    pattern(tmp_path / "in.bin", MiB)
    w = await stranger.write(tmp_path / "in.bin", e.nqn, e.address, e.port)
    assert w.returncode != 0
    # nothing reached the replica: the allowed host reads zeroes (a thin lvol reads as zero)
    host = SpdkHost(real_only.install, tmp_path / "host", HOST)
    r = await host.read(tmp_path / "out.bin", MiB, e.nqn, e.address, e.port)
    assert r.returncode == 0, r.output
    assert (tmp_path / "out.bin").read_bytes() == bytes(MiB)


async def test_data_survives_kill_9_of_the_target(node, real_only, tmp_path):
    e = await exported_replica(node, 16 * MiB, [HOST])
    host = SpdkHost(real_only.install, tmp_path / "host", HOST)
    data = pattern(tmp_path / "in.bin", 4 * MiB)
    w = await host.write(tmp_path / "in.bin", e.nqn, e.address, e.port)
    assert w.returncode == 0, w.output
    old = node.target_pid()
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        h = await node.stub.Health(pb.HealthRequest())
        if h.healthy and h.target_pid != old:
            break
        await asyncio.sleep(0.1)
    assert h.healthy and h.target_restarts == 1
    r = await host.read(tmp_path / "out.bin", 4 * MiB, e.nqn, e.address, e.port)
    assert r.returncode == 0, r.output
    assert (tmp_path / "out.bin").read_bytes() == data
