"""TLS volumes through the admin API: every published host gets its own PSK, sealed in the store,
given to the heads (on their TLS port) and to GetConnectInfo for that host; SPDK's own initiator
connects with it, and is refused in clear text or with another PSK."""

from __future__ import annotations

import asyncio
import json
import os
import time

import grpc
import pytest

from meshblock import tlspsk
from meshblock.agent.keyring import host_psks
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.secretbox import ENV_VAR, new_key_text
from tests.support.cluster import Cluster
from tests.support.eventually import eventually
from tests.support.initiator import SpdkHost

MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:tls"
OTHER = "nqn.2026-11.io.meshblock:host:other"


async def head_psks(c: Cluster, v: pb.Volume) -> dict[str, dict]:
    """node name -> {host NQN: PSK key name} on every head target exporting the volume."""
    async def read(spdk):
        return {h: name for (nqn, h), name in (await host_psks(spdk, v.nqn)).items()}
    return await c.on_head_targets(v, read, {})


@pytest.fixture
async def keyed(backend, short_tmp):
    c = Cluster(backend, short_tmp, nodes=2, controller_env={ENV_VAR: new_key_text()})
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


@pytest.mark.parametrize("replicas", [1, 2])
async def test_tls_volume_hosts_get_their_psk(keyed, replicas):
    c = keyed
    v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB, replicas=replicas,
                                                            tls=True))
    assert v.tls and v.state == "available"
    await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST))
    v = await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=OTHER))
    info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
    other = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=OTHER))
    assert tlspsk.decode(info.tls_psk)[0] == 1 and info.tls_psk != other.tls_psk
    node = c.agent_by_id(v.head_node_id)
    # the TLS port of the head's node (its head target), not the clear-text ports
    assert {p.trsvcid for p in info.paths if p.node_id == v.head_node_id} == {str(node.port + 2)}
    want = {HOST: tlspsk.key_name(info.tls_psk), OTHER: tlspsk.key_name(other.tls_psk)}
    await eventually(lambda: _all(c, v, want), 30, "each host's PSK on the heads")
    # published again: the same PSK
    await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST))
    again = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
    assert again.tls_psk == info.tls_psk
    # nothing but GetConnectInfo shows it
    blobs = [(await c.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))).SerializeToString(),
             (c.controller.data_dir / "state.db").read_bytes(), c.controller.log.read_bytes(),
             *[a.log.read_bytes() for a in c.agents]]
    body = info.tls_psk.split(":")[2].encode()
    assert not any(body in b for b in blobs)
    await c.volumes.UnpublishVolume(pb.UnpublishVolumeRequest(ref="v1", host_nqn=HOST))
    await eventually(lambda: _all(c, v, {OTHER: want[OTHER]}), 30, "the unpublished host's PSK gone")


async def _all(c: Cluster, v: pb.Volume, want: dict) -> bool:
    got = await head_psks(c, v)
    return all(entries == want for name, entries in got.items()
               if name == c.agent_by_id(v.head_node_id).name or len(v.replica_status) > 1)


async def test_tls_needs_a_secrets_key_and_nvmf(cluster):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=16 * MiB, tls=True))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "--secrets-key-file" in e.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v2", size_bytes=16 * MiB, tls=True,
                                                                  protocol="iscsi"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.spdk
@pytest.mark.parametrize("replicas", [1, 2])
async def test_hosts_connect_with_their_psk_only(real_only, short_tmp, replicas):
    """SPDK's own initiator as the host: its PSK writes and reads; clear text, another host's PSK or
    a made-up one is refused."""
    c = Cluster(real_only, short_tmp / "c", nodes=2, controller_env={ENV_VAR: new_key_text()})
    try:
        await c.start()
        await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB, replicas=replicas,
                                                            tls=True))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=OTHER))
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
        other = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=OTHER))
        p = next(x for x in info.paths if x.ana_state == "optimized")
        where = (info.subnqn, p.traddr, int(p.trsvcid))
        data = os.urandom(4 * MiB)
        (short_tmp / "in.bin").write_bytes(data)

        def host(name: str, psk: str = "") -> SpdkHost:
            return SpdkHost(real_only.install, short_tmp / name, HOST, tls_psk=psk)

        async def reads(h: SpdkHost) -> bool:
            r = await h.read(short_tmp / "out.bin", 4 * MiB, *where)
            return r.returncode == 0 and (short_tmp / "out.bin").read_bytes() == data

        good = host("good", info.tls_psk)
        deadline = time.monotonic() + 30
        while True:
            w = await good.write(short_tmp / "in.bin", *where)
            if w.returncode == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert w.returncode == 0, w.output
        assert await reads(good)
        assert not await reads(host("clear"))
        assert not await reads(host("others", other.tls_psk))
        assert not await reads(host("made-up", tlspsk.generate()))
    finally:
        await c.stop()


async def test_cli_create_get_and_connect(keyed):
    from click.testing import CliRunner

    from meshblock.cli.main import cli

    async def mb(*args: str):
        r = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--endpoint", keyed.controller.listen],
                                    prog_name="meshblock", env={"MESHBLOCK_TOKEN": ""})
        assert r.exit_code == 0, r.output
        return r.output

    await mb("volume", "create", "v1", "--size", "16MiB", "--tls")
    assert "TLS" in await mb("volume", "get", "v1")
    assert json.loads(await mb("volume", "get", "v1", "-o", "json"))["tls"] is True
    await mb("volume", "publish", "v1", "--host-nqn", HOST)
    doc = json.loads(await mb("volume", "connect", "v1", "--host-nqn", HOST, "-o", "json"))
    key = doc["tls_psk"]
    assert tlspsk.decode(key)
    lines = [ln for ln in (await mb("volume", "connect", "v1", "--host-nqn", HOST)).splitlines()
             if ln.startswith("nvme connect")]
    assert lines and all(ln.endswith(f"--tls --tls-key '{key}'") or ln.endswith(f"--tls --tls-key {key}")
                         for ln in lines), lines
