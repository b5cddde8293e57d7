"""The controller at test scale: 100 simulated storage nodes (tests/support/sim, the real AgentService
over gRPC) and 10,000 volumes of one, two and three replicas, with a real controller and a standby
on one SQLite store.

Every volume becomes available and is listed once; the leader is killed and the standby takes over,
confirming every settled volume from two list calls per agent instead of calls per volume; a node
heading many volumes dies and every one of them gets a live head while no surviving agent serves
more calls at once than the controller's per-agent bound; the node comes back and resyncs; and a
change is still applied afterwards."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request

import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from tests.support.backends import Backend
from tests.support.cluster import ControllerProc
from tests.support.eventually import eventually
from tests.support.sim import SimCluster

NODES = 100
VOLUMES = int(os.environ.get("MESHBLOCK_SIM_VOLUMES", "10000"))
PER_AGENT = 16          # the controller's bound on calls to one agent at once (control/agents.py)
MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:sim-scale"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
async def scale_cluster(short_tmp):
    url = f"sqlite:///{short_tmp / 'state.db'}"
    ports = [free_port(), free_port()]
    ctls = [ControllerProc(Backend("sim", None, dict(os.environ)), short_tmp / name, store_url=url, identity=name,
                           node_timeout=6.0, extra_args=("--metrics-port", str(port), "--log-level", os.environ.get("MESHBLOCK_SIM_LOG", "INFO")))
            for name, port in zip(("c1", "c2"), ports)]
    sim = SimCluster(short_tmp / "sim", pool_bytes=64 << 40, rebuild_rate=64 << 30)
    ctls[0].start()
    try:
        await ctls[0].wait_nodes(0)
        ctls[1].start()
        await sim.start(NODES, [c.listen for c in ctls], labels={"zone": [f"z{i}" for i in range(5)]})
        await ctls[0].wait_nodes(NODES, timeout=120)
        yield ctls, ports, sim
    finally:
        for c in ctls:
            await c.stop()
        await sim.stop()


async def _all_available(volumes: pb_grpc.VolumeServiceStub) -> dict[str, pb.Volume]:
    seen: dict[str, pb.Volume] = {}
    token = ""
    while True:
        page = await volumes.ListVolumes(pb.ListVolumesRequest(page_size=1000, page_token=token), timeout=60)
        for v in page.volumes:
            assert v.name not in seen, f"{v.name} listed twice"
            seen[v.name] = v
        token = page.next_page_token
        if not token:
            return seen


async def test_ten_thousand_volumes_mass_failover_and_controller_takeover(scale_cluster):
    ctls, ports, sim = scale_cluster
    volumes = ctls[0].stubs()[0]

    # --- 10,000 volumes through the API, 64 creates at once ----------------------------------------
    sem = asyncio.Semaphore(64)
    states: dict[str, str] = {}

    async def create(i: int) -> None:
        async with sem:
            v = await volumes.CreateVolume(pb.CreateVolumeRequest(name=f"v{i:05d}", size_bytes=64 * MiB,
                                                                  replicas=i % 3 + 1, spread="zone"), timeout=120)
            states[v.name] = v.state

    t0 = time.monotonic()
    await asyncio.gather(*(create(i) for i in range(VOLUMES)))
    print(f"{VOLUMES} creates in {time.monotonic() - t0:.1f} s")
    assert set(states.values()) == {"available"}, {s for s in states.values()}
    listed = await _all_available(volumes)
    assert sorted(listed) == [f"v{i:05d}" for i in range(VOLUMES)]
    assert {v.state for v in listed.values()} == {"available"}
    assert all(len(v.replica_status) == v.replicas for v in listed.values())
    status = await ctls[0].stubs()[2].GetClusterStatus(pb.GetClusterStatusRequest(), timeout=30)
    assert dict(status.volumes_by_state) == {"available": VOLUMES}

    # --- the leader dies; the standby takes over and confirms from the agents' lists ------------------
    for node in sim.nodes:
        node.stats.reset()
    await ctls[0].stop(sig=signal.SIGKILL)
    await ctls[1].wait_nodes(NODES, timeout=60)

    async def all_visited():
        visits = metric(ports[1], "meshblock_reconcile_passes_total")
        waiting = metric(ports[1], 'meshblock_reconcile_queue{when="now"}')
        assert visits >= VOLUMES and waiting == 0, f"{visits:.0f} visits, {waiting:.0f} keys waiting"
        return True
    await eventually(all_visited, 120, "the new leader visited every volume")
    calls: dict[str, int] = {}
    for node in sim.nodes:
        for method, n in node.stats.calls.items():
            calls[method] = calls.get(method, 0) + n
    assert calls.get("ListHeads", 0) >= NODES and calls.get("ListReplicas", 0) >= NODES, calls
    per_volume = sum(calls.get(m, 0) for m in ("EnsureHead", "ExportReplica", "GetReplica", "CreateReplica"))
    assert per_volume <= VOLUMES // 100, calls     # without the lists: at least one call per volume
    status = await ctls[1].stubs()[2].GetClusterStatus(pb.GetClusterStatusRequest(), timeout=30)
    assert dict(status.volumes_by_state) == {"available": VOLUMES}

    leader = ctls[1].stubs()[0]

    # --- the node heading the most replicated volumes dies -------------------------------------------
    headed: dict[str, list[pb.Volume]] = {}
    for v in listed.values():
        if v.replicas > 1:
            headed.setdefault(v.head_node_id, []).append(v)
    victim_id, moved = max(headed.items(), key=lambda kv: len(kv[1]))
    for node in sim.nodes:
        node.stats.reset()
    await sim.node(victim_id).kill()

    async def heads_moved():
        for v in moved:
            got = await leader.GetVolume(pb.GetVolumeRequest(ref=v.id), timeout=30)
            assert got.head_node_id != victim_id and sim.node(got.head_node_id).alive, got.name
            assert got.state in ("available", "degraded"), (got.name, got.state)
        return True

    await eventually(heads_moved, 90, f"the {len(moved)} heads of the dead node moved to live nodes")
    busiest = max(n.stats.max_inflight for n in sim.nodes if n.alive)
    assert 0 < busiest <= PER_AGENT, busiest

    # --- it comes back: its replicas resync ------------------------------------------------------------
    await sim.node(victim_id).revive()

    async def whole_again():
        got = await _all_available(leader)
        bad = [v.name for v in got.values()
               if v.state != "available" or any(r.state != "online" for r in v.replica_status)]
        assert not bad, f"{len(bad)} not whole, e.g. {bad[:5]}"
        return True

    await eventually(whole_again, 120, "every volume whole again after the node came back", interval=2)

    # --- and acts on the next change -----------------------------------------------------------------
    v = next(x for x in listed.values() if x.replicas == 3)
    got = await leader.PublishVolume(pb.PublishVolumeRequest(ref=v.id, host_nqn=HOST), timeout=60)
    assert HOST in got.hosts and got.state == "available"
    head = sim.node(got.head_node_id).agent.heads[v.id]
    assert HOST in head.hosts
