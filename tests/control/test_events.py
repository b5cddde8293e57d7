"""The event log through the admin API and `meshblock events`: a real controller process with three
simulated storage nodes (tests/support/sim). The node heading a tenant's volume dies: the events
show its head moving and the volume degrading; `--follow` prints the volume coming back as it
happens; a tenant sees only its own volumes' events, an admin the nodes' too."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime

import click
import grpc
import pytest
from click.testing import CliRunner

from meshblock.cli.events import events as events_command
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from tests.control.test_tenants import As, code_of
from tests.support.backends import Backend
from tests.support.cluster import ControllerProc
from tests.support.eventually import eventually
from tests.support.sim import SimCluster

MiB = 1 << 20


@click.group()
def root() -> None:
    """`meshblock` with the events command."""


root.add_command(events_command)


@pytest.fixture
async def sim3(short_tmp):
    ctl = ControllerProc(Backend("sim", None, dict(os.environ)), short_tmp / "controller", node_timeout=2.0)
    sim = SimCluster(short_tmp / "sim", pool_bytes=8 << 30, rebuild_rate=1024 * MiB)
    ctl.start()
    try:
        await sim.start(3, [ctl.listen])
        await ctl.wait_nodes(3)
        yield ctl, sim
    finally:
        await ctl.stop()
        await sim.stop()


async def mb(ctl: ControllerProc, *args: str, token: str, ok: bool = True):
    """`meshblock ARGS` against the controller (in a thread: the simulated nodes share this loop)."""
    argv = [*args, "--endpoint", ctl.listen, "--token", token]
    r = await asyncio.to_thread(CliRunner().invoke, root, argv, prog_name="meshblock", catch_exceptions=False)
    assert (r.exit_code == 0) == ok, r.output
    return r


async def listed(ctl: ControllerProc, *args: str, token: str) -> list[dict]:
    return json.loads((await mb(ctl, "events", *args, "-o", "json", token=token)).stdout)


async def test_head_move_degraded_follow_and_tenancy(sim3):
    ctl, sim = sim3
    ctl.stubs()
    anon = As(ctl.channel, None)
    root_tok = (await anon.tenants.CreateIdentity(pb.CreateIdentityRequest(name="root", role="admin"))).token
    admin = As(ctl.channel, root_tok)
    tokens = {}
    for tenant in ("acme", "globex"):
        await admin.tenants.CreateTenant(pb.CreateTenantRequest(name=tenant))
        tokens[tenant] = (await admin.tenants.CreateIdentity(pb.CreateIdentityRequest(
            name=f"{tenant}-ops", tenant=tenant, role="tenant-admin"))).token
    acme, globex = As(ctl.channel, tokens["acme"]), As(ctl.channel, tokens["globex"])
    await acme.volumes.CreateVolume(pb.CreateVolumeRequest(name="a1", size_bytes=64 * MiB, replicas=3))
    await globex.volumes.CreateVolume(pb.CreateVolumeRequest(name="g1", size_bytes=64 * MiB))

    async def available(who: As, name: str):
        v = await who.volumes.GetVolume(pb.GetVolumeRequest(ref=name))
        assert v.state == "available" and all(r.state == "online" for r in v.replica_status), v
        return v

    a1 = await eventually(lambda: available(acme, "a1"), 20, "a1 available")
    await eventually(lambda: available(globex, "g1"), 20, "g1 available")

    # --- the node heading a1 dies: its head moves and a1 degrades -----------------------------------
    victim = sim.node(a1.head_node_id)
    killed_at = datetime.now().isoformat()
    await victim.kill()

    async def moved_and_degraded():
        got = await listed(ctl, "--volume", "a1", token=tokens["acme"])
        heads = [e for e in got if e["kind"] == "volume.head"]
        states = [(e["fields"]["from"], e["fields"]["to"]) for e in got if e["kind"] == "volume.state"]
        assert heads and heads[-1]["fields"]["reason"] == "failover", got
        assert ("available", "degraded") in states, states
        return got

    got = await eventually(moved_and_degraded, 20, "a1's head move and degraded state in `meshblock events`")
    first, move = [e for e in got if e["kind"] == "volume.head"]
    assert first["fields"]["reason"] == "placement" and first["fields"]["to_id"] == victim.node_id
    assert move["fields"]["from"] == victim.name and move["fields"]["to_id"] != victim.node_id
    assert move["object"] == "a1" and move["object_id"] == a1.id and move["tenant"] == "acme"
    assert f"from {victim.name} to " in move["message"] and "(failover)" in move["message"]
    assert {e["kind"] for e in got} <= {"volume.state", "volume.head", "replica.rebuild"}
    resyncs = [e for e in got if e["kind"] == "replica.rebuild"]
    assert resyncs and resyncs[0]["fields"]["reason"] == "resync after failover"
    # a reconcile pass that repeats records no transition twice in a row
    for kind in ("volume.state", "volume.head"):
        seq = [tuple(sorted(e["fields"].items())) for e in got if e["kind"] == kind]
        assert all(a != b for a, b in zip(seq, seq[1:])), seq
    ids = [e["id"] for e in got]
    assert ids == sorted(ids)

    # --- --follow: the volume coming back is printed as it happens ---------------------------------------
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meshblock", "events", "--follow", "-o", "json", "--volume", "a1", "--since",
        killed_at, "--endpoint", ctl.listen, "--token", tokens["acme"], stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        async def next_event() -> dict:
            line = await asyncio.wait_for(follower.stdout.readline(), 20)
            assert line, (await follower.stderr.read()).decode()
            return json.loads(line)

        while (e := await next_event())["kind"] != "volume.head":    # what happened since the kill
            pass
        assert e["id"] == move["id"]
        await victim.revive()
        seen = []
        while not (e["kind"] == "volume.state" and e["fields"]["to"] == "available"):
            e = await next_event()
            seen.append((e["kind"], e["fields"].get("phase") or e["fields"].get("to")))
        assert ("replica.rebuild", "finished") in seen, seen
    finally:
        follower.terminate()
        await follower.wait()

    # --- tenancy: globex sees only g1; an admin sees the nodes, and filters by node and kind --------------------
    theirs = await listed(ctl, token=tokens["globex"])
    assert theirs and {e["object"] for e in theirs} == {"g1"}
    code, _ = await code_of(globex.volumes.GetVolume(pb.GetVolumeRequest(ref="a1")))
    assert code == grpc.StatusCode.NOT_FOUND
    assert await listed(ctl, "--volume", "a1", token=tokens["globex"]) == []
    node_events = await listed(ctl, "--node", victim.name, "--kind", "node", token=root_tok)
    assert [e["fields"]["to"] for e in node_events if e["kind"] == "node.state"][-2:] == ["down", "up"]
    assert await listed(ctl, "--kind", "node", token=tokens["acme"]) == []
    by_node = await listed(ctl, "--node", victim.name, "--volume", "a1", "--kind", "volume.head", token=root_tok)
    assert [e["fields"]["reason"] for e in by_node] == ["placement", "failover"]
    table = (await mb(ctl, "events", "--volume", "a1", token=tokens["acme"])).stdout
    assert "volume.head" in table and f"head moved from {victim.name}" in table

    # the stream authenticates as every other call, and a bad --since is a usage error
    stream = pb_grpc.EventServiceStub(ctl.channel).WatchEvents(pb.ListEventsRequest())
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stream.read()
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    r = await mb(ctl, "events", "--since", "last tuesday", token=root_tok, ok=False)
    assert r.exit_code == 2 and "neither a duration" in r.output
