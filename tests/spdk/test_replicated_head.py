"""A replicated head on real SPDK: raid1 over replicas on three nodes, written by an outside host."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest

from meshblock import nqn
from meshblock.proto.meshblock.v1 import agent_pb2 as pb
from tests.support.agents import AgentProc
from tests.support.initiator import SpdkHost

pytestmark = pytest.mark.spdk
MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:head-test"


@pytest.fixture
async def nodes(real_only, short_tmp):
    if not real_only.install.has("spdk_dd"):
        pytest.skip("spdk_dd is not in this SPDK build")
    agents = [AgentProc(real_only, short_tmp / f"n{i}", f"n{i}", pool_size="512MiB") for i in range(3)]
    for a in agents:
        a.start()
    try:
        for a in agents:
            await a.wait_healthy()
        yield agents
    finally:
        for a in agents:
            await a.stop()
            a.kill_targets()


async def head_spec(nodes, vid, rids, in_sync, hosts=(HOST,)):
    head = nodes[0]
    head_nqn = (await head.stub.GetNodeInfo(pb.GetNodeInfoRequest())).host_nqn
    legs = []
    for a, rid in zip(nodes, rids):
        e = await a.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=rid, allowed_host_nqns=[head_nqn]))
        node_id = (await a.stub.GetNodeInfo(pb.GetNodeInfoRequest())).node_id
        legs.append(pb.HeadLeg(replica_id=rid, node_id=node_id, subsystem_nqn=e.nqn, address=e.address, port=e.port))
    return pb.HeadSpec(volume_id=vid, nqn=nqn("volume", vid), namespace_uuid=vid, legs=legs,
                       allowed_host_nqns=list(hosts), in_sync_replica_ids=list(in_sync))


async def wait_legs(head: AgentProc, spec: pb.HeadSpec, want: set[str], timeout: float = 60) -> pb.HeadStatus:
    deadline = time.monotonic() + timeout
    while True:
        st = await head.stub.EnsureHead(spec)
        if {leg.state for leg in st.legs} == want or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.5)


async def read_replica(a: AgentProc, rid: str, host: SpdkHost, path, nbytes: int) -> bytes:
    await a.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=rid, allowed_host_nqns=[HOST]))
    r = await host.read(path, nbytes, nqn("replica", rid), a.address, 4420)
    assert r.returncode == 0, r.output
    return path.read_bytes()


async def test_raid1_head_serves_and_survives_a_replica_crash(nodes, real_only, short_tmp):
    vid = str(uuid.uuid4())
    rids = [str(uuid.uuid4()) for _ in nodes]
    for a, rid in zip(nodes, rids):
        await a.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=rid, size_bytes=64 * MiB))
    spec = await head_spec(nodes, vid, rids, in_sync=rids)
    st = await nodes[0].stub.EnsureHead(spec)
    assert st.raid_state == "online" and st.size_bytes == 64 * MiB and st.port == 4421
    assert [leg.state for leg in st.legs] == ["in_sync"] * 3
    # the head target copies rebuilds in 8 MiB windows (SPDK's default is 1 MiB)
    sock = "spdk-head.sock" if (nodes[0].data_dir / "spdk-head.pid").exists() else "spdk.sock"
    bdev_config = await nodes[0].spdk(sock).client.call("framework_get_config", {"name": "bdev"})
    raid_options = [c["params"] for c in bdev_config if c["method"] == "bdev_raid_set_options"]
    assert [o["process_window_size_kb"] for o in raid_options] == [8192]
    host = SpdkHost(real_only.install, short_tmp / "host", HOST)
    first = os.urandom(16 * MiB)
    (short_tmp / "a.bin").write_bytes(first)
    w = await host.write(short_tmp / "a.bin", st.nqn, st.address, st.port)
    assert w.returncode == 0, w.output

    # node 2 goes away entirely (agent and target): the head keeps serving, degraded
    lost = nodes[2]
    target = lost.target_pid()
    await lost.stop(signal.SIGKILL)
    os.kill(target, signal.SIGKILL)
    second = os.urandom(8 * MiB)
    (short_tmp / "b.bin").write_bytes(second)
    w = await host.write(short_tmp / "b.bin", st.nqn, st.address, st.port)
    assert w.returncode == 0, w.output
    st = await nodes[0].stub.EnsureHead(spec)
    assert [leg.state for leg in st.legs] == ["in_sync", "in_sync", "missing"], st

    # it comes back: re-applying the head (from the two in-sync replicas) rebuilds the third
    lost.start()
    await lost.wait_healthy()
    spec = await head_spec(nodes, vid, rids, in_sync=rids[:2])
    st = await wait_legs(nodes[0], spec, {"in_sync"}, timeout=120)
    assert [leg.state for leg in st.legs] == ["in_sync"] * 3, st
    r = await host.read(short_tmp / "out.bin", 16 * MiB, st.nqn, st.address, st.port)
    assert r.returncode == 0, r.output
    expected = second + first[8 * MiB:]
    assert (short_tmp / "out.bin").read_bytes() == expected

    # every replica holds the same data, the rebuilt one too
    assert (await nodes[0].stub.DeleteHead(pb.DeleteHeadRequest(volume_id=vid))).existed
    assert not (await nodes[0].stub.ListHeads(pb.ListHeadsRequest())).heads
    for a, rid in zip(nodes, rids):
        assert await read_replica(a, rid, host, short_tmp / f"r-{rid}.bin", 16 * MiB) == expected, a.name


async def test_a_standby_head_is_inaccessible_until_promoted_then_rebuilds_from_the_seed(nodes, real_only, short_tmp):
    """Node 1 exports the volume as a standby (same NQN and namespace, other controller ids, ANA
    inaccessible) while node 0 serves it; node 0 goes, node 1 is promoted from one in-sync replica:
    the others are rebuilt from it under the same exported namespace, and the data is there."""
    vid = str(uuid.uuid4())
    rids = [str(uuid.uuid4()) for _ in nodes]
    for a, rid in zip(nodes, rids):
        await a.stub.CreateReplica(pb.CreateReplicaRequest(replica_id=rid, size_bytes=32 * MiB))
    infos = [await a.stub.GetNodeInfo(pb.GetNodeInfoRequest()) for a in nodes]
    both = [infos[0].host_nqn, infos[1].host_nqn]
    legs = []
    for a, info, rid in zip(nodes, infos, rids):
        e = await a.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=rid, allowed_host_nqns=both))
        legs.append(pb.HeadLeg(replica_id=rid, node_id=info.node_id, subsystem_nqn=e.nqn, address=e.address,
                               port=e.port))

    def spec(standby: bool, in_sync, cntlids) -> pb.HeadSpec:
        return pb.HeadSpec(volume_id=vid, nqn=nqn("volume", vid), namespace_uuid=vid, legs=legs,
                           allowed_host_nqns=[HOST], in_sync_replica_ids=list(in_sync), replica_count=6,
                           standby=standby, cntlid_min=cntlids[0], cntlid_max=cntlids[1])

    active = await nodes[0].stub.EnsureHead(spec(False, rids, (1, 999)))
    standby = await nodes[1].stub.EnsureHead(spec(True, rids, (1000, 1999)))
    assert (active.ana_state, active.standby) == ("optimized", False)
    assert (standby.ana_state, standby.standby, standby.raid_state) == ("inaccessible", True, "online")
    assert [leg.state for leg in standby.legs] == ["in_sync"] * 3     # made whole, nothing rebuilt
    spdk = nodes[1].spdk("spdk-head.sock") if (nodes[1].data_dir / "spdk-head.pid").exists() else nodes[1].spdk()
    try:
        (sub,) = await spdk.nvmf_get_subsystems(nqn("volume", vid))
        assert (sub["min_cntlid"], sub["max_cntlid"]) == (1000, 1999)
        # the same namespace identity as the active head's export (hosts compare UUID and NGUID)
        assert sub["namespaces"][0]["uuid"] == vid
        assert sub["namespaces"][0]["nguid"] == vid.replace("-", "").upper()
        (lst,) = await spdk.nvmf_subsystem_get_listeners(nqn("volume", vid))
        assert {x["ana_state"] for x in lst["ana_states"]} == {"inaccessible"}
    finally:
        await spdk.client.close()
    # the standby refuses I/O (spdk_dd does not report failed writes, so the data is checked), the
    # active head serves it
    host = SpdkHost(real_only.install, short_tmp / "host", HOST)
    stray = os.urandom(MiB)
    (short_tmp / "stray.bin").write_bytes(stray)
    await host.write(short_tmp / "stray.bin", standby.nqn, standby.address, standby.port)
    r = await host.read(short_tmp / "seen.bin", MiB, active.nqn, active.address, active.port)
    assert r.returncode == 0, r.output
    assert (short_tmp / "seen.bin").read_bytes() == bytes(MiB), "a write through the standby path reached the data"
    data = os.urandom(16 * MiB)
    (short_tmp / "d.bin").write_bytes(data)
    w = await host.write(short_tmp / "d.bin", active.nqn, active.address, active.port)
    assert w.returncode == 0, w.output
    # a hold cannot be put on (or lifted from) a standby
    await expect_failed_precondition(nodes[1].stub.SetHeadAccess(
        pb.SetHeadAccessRequest(volume_id=vid, ana_state="optimized")))

    # node 0 goes; fence it, promote node 1 from replica 1 alone: replicas 0 and 2 are rebuilt from it
    assert (await nodes[0].stub.DeleteHead(pb.DeleteHeadRequest(volume_id=vid))).existed
    for a, rid in zip(nodes, rids):
        await a.stub.ExportReplica(pb.ExportReplicaRequest(replica_id=rid, allowed_host_nqns=[infos[1].host_nqn]))
    promoted = await nodes[1].stub.EnsureHead(spec(False, [rids[1]], (1000, 1999)))
    assert (promoted.ana_state, promoted.standby) == ("optimized", False)
    assert promoted.address == standby.address and promoted.port == standby.port
    deadline = time.monotonic() + 120
    st = promoted
    while [leg.state for leg in st.legs] != ["in_sync"] * 3:
        assert time.monotonic() < deadline, st
        await asyncio.sleep(0.5)
        st = await nodes[1].stub.EnsureHead(spec(False, [rids[1]], (1000, 1999)))
    r = await host.read(short_tmp / "out.bin", 16 * MiB, promoted.nqn, promoted.address, promoted.port)
    assert r.returncode == 0, r.output
    assert (short_tmp / "out.bin").read_bytes() == data
    assert (await nodes[1].stub.DeleteHead(pb.DeleteHeadRequest(volume_id=vid))).existed
    for a, rid in zip(nodes, rids):   # the rebuilt replicas hold the data too
        assert await read_replica(a, rid, host, short_tmp / f"r-{rid}.bin", 16 * MiB) == data, a.name


async def expect_failed_precondition(coro) -> None:
    import grpc
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await coro
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION, ei.value.details()
