"""A real controller process with 20 simulated storage nodes (tests/support/sim): volumes of one, two
and three replicas become available, move their heads off a node that dies, resync when it comes
back, and leave nothing behind on the nodes when deleted; an agent restart keeps the data path
serving, and heads stop when no controller renews their lease."""

from __future__ import annotations

import asyncio
import os

import pytest

from meshblock import nqn
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.support.backends import Backend
from tests.support.cluster import ControllerProc
from tests.support.eventually import eventually
from tests.support.sim import SimCluster

NODES = 20
MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:sim-test"


@pytest.fixture
async def sim_cluster(short_tmp, request):
    # a test may ask for a faster head sweep and digests (seconds) with @pytest.mark.sweep_every(N)
    mark = request.node.get_closest_marker("sweep_every")
    every = mark.args[0] if mark else None
    ctl = ControllerProc(Backend("sim", None, dict(os.environ)), short_tmp / "controller",
                         extra_args=("--head-sweep-interval", str(every)) if every else ())
    # 64 MiB replicas rebuild in a quarter of a second
    sim = SimCluster(short_tmp / "sim", pool_bytes=64 << 30, rebuild_rate=256 * MiB, digest_every=every or 10.0)
    ctl.start()
    try:
        await sim.start(NODES, [ctl.listen], labels={"zone": [f"z{i}" for i in range(5)]})
        await ctl.wait_nodes(NODES)
        yield ctl, sim
    finally:
        await ctl.stop()
        await sim.stop()


async def test_failover_resync_and_no_orphans(sim_cluster):
    ctl, sim = sim_cluster
    volumes = ctl.stubs()[0]

    # --- create: 1, 2 and 3 replicas, published to a host --------------------------------------
    specs = [(f"r{r}-{i}", r) for r, n in ((1, 3), (2, 4), (3, 5)) for i in range(n)]
    await asyncio.gather(*(volumes.CreateVolume(pb.CreateVolumeRequest(name=name, size_bytes=64 * MiB, replicas=r,
                                                                       spread="zone"), timeout=60)
                           for name, r in specs))
    for name, _ in specs:
        await volumes.PublishVolume(pb.PublishVolumeRequest(ref=name, host_nqn=HOST), timeout=60)

    async def all_available():
        vs = [await volumes.GetVolume(pb.GetVolumeRequest(ref=name), timeout=10) for name, _ in specs]
        bad = [(v.name, v.state, [r.state for r in v.replica_status]) for v in vs
               if v.state != "available" or any(r.state != "online" for r in v.replica_status)]
        assert not bad, bad
        return vs

    vols = await eventually(all_available, 30, "every volume available with every replica online")
    by_name = {v.name: v for v in vols}
    for name, r in specs:
        v = by_name[name]
        assert len(v.replica_status) == r and len({x.node_id for x in v.replica_status}) == r
        assert v.head_node_id in {x.node_id for x in v.replica_status}
    volume_ids = {v.id for v in vols}
    replica_ids = {r.replica_id for v in vols for r in v.replica_status}

    # --- the node heading the most replicated volumes dies ---------------------------------------
    headed: dict[str, list] = {}
    for v in vols:
        if v.replicas > 1:
            headed.setdefault(v.head_node_id, []).append(v)
    victim_id, moved = max(headed.items(), key=lambda kv: len(kv[1]))
    victim = sim.node(victim_id)
    await victim.kill()

    async def heads_moved():
        for v in moved:
            info = await volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref=v.id, host_nqn=HOST), timeout=10)
            active = [p for p in info.paths if p.ana_state == "optimized"]
            assert len(active) == 1 and active[0].node_id != victim_id, f"{v.name}: paths {info.paths}"
            node = sim.node(active[0].node_id)
            assert node.alive, f"{v.name}: head named on dead node {node.name}"
            got = await volumes.GetVolume(pb.GetVolumeRequest(ref=v.id), timeout=10)
            assert got.head_node_id == node.node_id and got.state in ("available", "degraded"), got
            # the data plane agrees: that node serves the volume, optimized, to the host
            head = node.agent.heads.get(v.id)
            assert head is not None and not head.standby, f"{v.name}: {node.name} holds no active head"
            sub = node.target.subsystems[head.nqn]
            assert sub.ana_state == "optimized" and HOST in sub.hosts, f"{v.name}: {sub}"
            assert node.target.raid(v.id) is not None and node.target.raid(v.id).state == "online"
        return True

    await eventually(heads_moved, 30, f"heads of {[v.name for v in moved]} moved off {victim.name}")

    # --- it comes back: every replica resyncs ------------------------------------------------------
    await victim.revive()
    vols = await eventually(all_available, 45, f"every replica online again after {victim.name} came back")
    for v in vols:
        if v.replicas > 1:
            head = sim.node(v.head_node_id)
            view = {h.head.volume_id: h for h in await head.agent.list_heads()}[v.id]
            assert view.raid_state == "online" and all(leg.state == "in_sync" for leg in view.legs), (v.name, view)

    # --- deletion leaves nothing on any node ------------------------------------------------------------
    for name, _ in specs:
        got = await volumes.DeleteVolume(pb.DeleteVolumeRequest(ref=name), timeout=60)
        assert got.existed

    async def nothing_left():
        left = sim.holdings(volume_ids, replica_ids)
        assert not left, left
        return True

    await eventually(nothing_left, 15, "no replica, export or head of a deleted volume on any node")
    listed = await volumes.ListVolumes(pb.ListVolumesRequest(), timeout=10)
    assert not listed.volumes


async def test_agent_restart_and_head_lease(sim_cluster):
    """An agent restart leaves the data path serving and the controller gives the new agent its heads
    again; without a controller the replicated heads stop serving once their lease runs out, and
    serve again when a controller answers."""
    ctl, sim = sim_cluster
    volumes = ctl.stubs()[0]
    for name, r in (("rep", 3), ("single", 1)):
        await volumes.CreateVolume(pb.CreateVolumeRequest(name=name, size_bytes=64 * MiB, replicas=r), timeout=60)
        await volumes.PublishVolume(pb.PublishVolumeRequest(ref=name, host_nqn=HOST), timeout=60)

    async def available(name: str):
        v = await ctl.stubs()[0].GetVolume(pb.GetVolumeRequest(ref=name), timeout=10)
        assert v.state == "available" and v.head_node_id, v
        node = sim.node(v.head_node_id)
        head = node.agent.heads.get(v.id)
        assert head is not None and not head.standby, f"{node.name} does not know it heads {name}"
        sub = node.target.subsystems[head.nqn]
        assert sub.ana_state == "optimized" and HOST in sub.hosts, sub
        return v

    rep = await eventually(lambda: available("rep"), 30, "replicated volume served")
    single = await eventually(lambda: available("single"), 30, "single-replica volume served")

    # the head node's agent restarts: its target keeps exporting, the new agent is told its heads again
    node = sim.node(rep.head_node_id)
    old_instance = node.instance_id
    await node.restart_agent()
    assert node.instance_id != old_instance
    assert node.target.subsystems[rep.nqn].ana_state == "optimized"
    assert not node.agent.heads
    await eventually(lambda: available("rep"), 30, "replicated volume re-applied to the restarted agent")

    # no controller: the replicated head stops serving when its lease runs out; a single replica cannot
    # move, so its head keeps serving
    await ctl.stop()
    rep_node, single_node = sim.node(rep.head_node_id), sim.node(single.head_node_id)

    async def stopped():
        sub = rep_node.target.subsystems.get(rep.nqn)
        assert sub is not None and sub.ana_state == "inaccessible" and not sub.hosts, sub
        return True

    await eventually(stopped, 30, "replicated head stopped after its lease ran out")
    assert single_node.target.subsystems[single.nqn].ana_state == "optimized"

    ctl.start()     # the stubs of the stopped one are closed: ctl.stubs() dials afresh
    await ctl.wait_nodes(NODES)
    await eventually(lambda: available("rep"), 30, "replicated volume served again under a controller")
    await eventually(lambda: available("single"), 30, "single-replica volume still served")


async def test_whole_volume_down_comes_back(sim_cluster):
    """Every node of a three-replica volume goes down. A replica that fell behind before the others
    went down does not bring the volume back on its own; one that held every write does, and the
    others rebuild from it. After a full outage at once, the volume comes back when its nodes do."""
    ctl, sim = sim_cluster
    volumes = ctl.stubs()[0]

    async def get(name: str):
        return await volumes.GetVolume(pb.GetVolumeRequest(ref=name), timeout=10)

    async def state_is(name: str, *states: str):
        v = await get(name)
        assert v.state in states, (v.state, v.message, [(r.node_id, r.state) for r in v.replica_status])
        return v

    async def whole(name: str):
        v = await state_is(name, "available")
        assert all(r.state == "online" for r in v.replica_status), v.replica_status
        return v

    for name in ("cascade", "outage"):
        await volumes.CreateVolume(pb.CreateVolumeRequest(name=name, size_bytes=64 * MiB, replicas=3, spread="zone"),
                                   timeout=60)
        await volumes.PublishVolume(pb.PublishVolumeRequest(ref=name, host_nqn=HOST), timeout=60)
        await eventually(lambda name=name: whole(name), 30, f"{name} available")

    # --- one replica's node goes down while the head writes on; then the other two go down at once ---
    v = await get("cascade")
    head = v.head_node_id
    behind, other = sorted(r.node_id for r in v.replica_status if r.node_id != head)
    await sim.node(behind).kill()
    await eventually(lambda: state_is("cascade", "degraded"), 30, "degraded without the first node")
    await asyncio.gather(sim.node(head).kill(), sim.node(other).kill())
    await eventually(lambda: state_is("cascade", "faulted"), 30, "faulted with every node down")

    await sim.node(behind).revive()
    await ctl.wait_nodes(NODES - 2)
    # the controller knows it is back; give its visits time to act on that (a head would take well
    # under a second), then the volume must still be down
    await asyncio.sleep(3.0)
    v = await state_is("cascade", "faulted")
    assert not sim.node(behind).agent.heads, "a head was built on the replica that fell behind"

    await sim.node(other).revive()
    v = await eventually(lambda: state_is("cascade", "available", "degraded"), 30, "served again from a member in sync")
    assert v.head_node_id == other, f"head on {v.head_node_id}, not on {other} (the one in sync)"
    await sim.node(head).revive()
    await eventually(lambda: whole("cascade"), 45, "every replica rebuilt")

    # --- a full outage at once --------------------------------------------------------------------------
    v = await get("outage")
    nodes = [r.node_id for r in v.replica_status]
    await asyncio.gather(*(sim.node(n).kill() for n in nodes))
    await eventually(lambda: state_is("outage", "faulted"), 30, "faulted with every node down")
    await asyncio.gather(*(sim.node(n).revive() for n in nodes))
    await eventually(lambda: whole("outage"), 45, "served again with every replica in sync after the outage")


@pytest.mark.sweep_every(2.0)
async def test_head_sweep_follows_digests(sim_cluster):
    """Nodes whose heads did not change are not listed again; a leg a head loses while every node
    stays up (its export stopped admitting the head) is still noticed, through the digest the head
    node's heartbeats carry, and repaired."""
    ctl, sim = sim_cluster
    volumes = ctl.stubs()[0]
    await volumes.CreateVolume(pb.CreateVolumeRequest(name="fenced", size_bytes=64 * MiB, replicas=3, spread="zone"),
                               timeout=60)

    async def whole():
        v = await volumes.GetVolume(pb.GetVolumeRequest(ref="fenced"), timeout=10)
        assert v.state == "available" and all(r.state == "online" for r in v.replica_status), v
        return v

    v = await eventually(whole, 30, "volume available")
    # a sweep every 2 s, digests every 2 s: after 5 s quiet, the first listings have happened
    await asyncio.sleep(5)
    sim.reset_stats()
    await asyncio.sleep(4.2)
    listed = sim.load()["calls"].get("ListHeads", 0)
    assert listed < NODES // 2, f"{listed} ListHeads in two sweeps of {NODES} unchanged nodes"

    # the export of one replica stops admitting the head (as if its allowlist were lost): the head's
    # raid fails that leg; no node goes down
    head = sim.node(v.head_node_id)
    other = next(r for r in v.replica_status if r.node_id != head.node_id)
    node = sim.node(other.node_id)
    node.target.set_hosts(nqn("replica", other.replica_id), frozenset())

    async def legs(in_sync: bool):
        view = {h.head.volume_id: h for h in await head.agent.list_heads()}[v.id]
        assert all(leg.state == "in_sync" for leg in view.legs) == in_sync, view.legs
        return view

    await legs(in_sync=False)
    # only the controller can give the leg back: fence the export to the head again and re-add it
    await eventually(lambda: legs(in_sync=True), 45, "the lost leg noticed by the head sweep and rebuilt")
    assert sim.node(other.node_id).target.subsystems[nqn("replica", other.replica_id)].hosts
    await eventually(whole, 15, "volume whole again")


async def test_a_mass_resync_shares_a_budget_of_visits(short_tmp):
    """Replicas rebuilding at once share a budget of visits (here almost none: one visit each per
    100 s and more), so their volumes are not applied again every half second while they rebuild;
    each finished rebuild is still found by the head sweep and its replica comes back online."""
    ctl = ControllerProc(Backend("sim", None, dict(os.environ)), short_tmp / "controller",
                         extra_args=("--head-sweep-interval", "1", "--rebuild-visits", "0.01"))
    # 64 MiB replicas rebuild in 8 s
    sim = SimCluster(short_tmp / "sim", pool_bytes=64 << 30, rebuild_rate=8 * MiB, digest_every=1.0)
    ctl.start()
    try:
        await sim.start(6, [ctl.listen], labels={"zone": ["z0", "z1", "z2"]})
        await ctl.wait_nodes(6)
        volumes = ctl.stubs()[0]
        names = [f"m{i}" for i in range(8)]
        await asyncio.gather(*(volumes.CreateVolume(pb.CreateVolumeRequest(name=n, size_bytes=64 * MiB, replicas=3,
                                                                           spread="zone"), timeout=60)
                               for n in names))

        async def replicas_online(want: int):
            vs = [await volumes.GetVolume(pb.GetVolumeRequest(ref=n), timeout=10) for n in names]
            bad = [(v.name, [r.state for r in v.replica_status]) for v in vs
                   if sum(r.state == "online" for r in v.replica_status) < want]
            assert not bad, bad
            return vs

        vols = await eventually(lambda: replicas_online(3), 60, "every replica online")
        # the node holding the most replicas dies (heads it held move) and comes back: a resync
        holds: dict[str, list[str]] = {}
        for v in vols:
            for r in v.replica_status:
                holds.setdefault(r.node_id, []).append(v.name)
        victim_id, resyncing = max(holds.items(), key=lambda kv: len(kv[1]))
        assert len(resyncing) >= 3, holds
        victim = sim.node(victim_id)
        await victim.kill()

        async def settled_without_victim():
            for v in await replicas_online(2):
                mine = [r for r in v.replica_status if r.node_id == victim_id]
                assert v.head_node_id != victim_id and all(r.state != "online" for r in mine), v
            return True

        await eventually(settled_without_victim, 60, f"volumes served without {victim.name}")
        await victim.revive()
        sim.reset_stats()
        await eventually(lambda: replicas_online(3), 60, f"the replicas on {victim.name} resynced")
        calls = sim.load()["calls"]
        # a few visits each, driven by changes (about 20 EnsureHead calls per volume, to its head and
        # two standby heads); visited every half second while they rebuild, they took about 58
        assert calls.get("EnsureHead", 0) <= 30 * len(resyncing), (calls, len(resyncing))
    finally:
        await ctl.stop()
        await sim.stop()
