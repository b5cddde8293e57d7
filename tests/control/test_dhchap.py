"""DH-HMAC-CHAP through the admin API: the controller makes, seals and hands out hosts' secrets,
every head exporting a volume (standbys too) holds them, and nothing else shows them."""

from __future__ import annotations

import asyncio
import json
import os
import time

import grpc
import pytest

from meshblock import dhchap
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.control.host_auth import link_secret
from meshblock.secretbox import ENV_VAR, SecretBox, new_key_text
from meshblock.spdk import SpdkRpcError
from tests.support.backends import fake_backend
from tests.support.cluster import Cluster
from tests.support.eventually import eventually
from tests.support.initiator import SpdkHost

MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:dhchap"
OTHER = "nqn.2026-11.io.meshblock:host:plain"


async def head_hosts(c: Cluster, v: pb.Volume) -> dict[str, dict]:
    """The volume's host entries as SPDK shows them on every node exporting it (head and standby)."""
    async def read(spdk):
        sub, = await spdk.nvmf_get_subsystems(v.nqn)
        return {h["nqn"]: h for h in sub["hosts"]}
    return await c.on_head_targets(v, read, {})


def names(keys: tuple[str, str]) -> dict:
    d = {"dhchap_key": dhchap.key_name(keys[0])}
    if keys[1]:
        d["dhchap_ctrlr_key"] = dhchap.key_name(keys[1])
    return d


@pytest.fixture
async def keyed(backend, short_tmp):
    c = Cluster(backend, short_tmp, nodes=2, controller_env={ENV_VAR: new_key_text()})
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


async def test_publish_rotate_and_unpublish(keyed):
    c = keyed
    v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB, replicas=2))
    await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=OTHER))
    v = await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST, dhchap_bidirectional=True))
    assert dict(v.host_auth) == {HOST: "dhchap-bidirectional"}
    info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
    keys = (info.dhchap_secret, info.dhchap_ctrl_secret)
    assert all(dhchap.decode(k)[0] == 1 for k in keys) and keys[0] != keys[1]
    plain = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=OTHER))
    assert not plain.dhchap_secret and not plain.dhchap_ctrl_secret

    async def applied(want: dict):
        got = await head_hosts(c, v)
        return got if all(entries.get(HOST, {}) == {"nqn": HOST, **want} for entries in got.values()) else None
    got = await eventually(lambda: applied(names(keys)), 30, "the secrets on every head")
    assert len(got) == 2 and all(entries[OTHER] == {"nqn": OTHER} for entries in got.values())

    # publishing again keeps the secrets; rotating replaces both on every head, hosts stay listed
    await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST, dhchap=True))
    again = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
    assert (again.dhchap_secret, again.dhchap_ctrl_secret) == keys
    await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST, rotate_dhchap=True))
    rotated = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
    new = (rotated.dhchap_secret, rotated.dhchap_ctrl_secret)
    assert new[0] not in keys and new[1] not in keys and new[1]
    await eventually(lambda: applied(names(new)), 30, "the rotated secrets on every head")

    # nothing but GetConnectInfo for the host shows a secret: not the volume, listings, the store
    # or the controller's log
    shown = [await c.volumes.GetVolume(pb.GetVolumeRequest(ref="v1")),
             await c.volumes.ListVolumes(pb.ListVolumesRequest())]
    blobs = [m.SerializeToString() for m in shown] + [(c.controller.data_dir / "state.db").read_bytes(),
                                                      c.controller.log.read_bytes()]
    blobs += [a.log.read_bytes() for a in c.agents]
    for secret in (*keys, *new):
        body = secret.split(":")[2].encode()
        assert not any(body in b for b in blobs)

    v = await c.volumes.UnpublishVolume(pb.UnpublishVolumeRequest(ref="v1", host_nqn=HOST))
    assert dict(v.host_auth) == {}

    async def gone():
        got = await head_hosts(c, v)
        return all(HOST not in entries for entries in got.values())
    await eventually(gone, 30, "the host off every head")
    # the keys left the targets with the host
    for a in c.agents:
        spdk = a.spdk("spdk-head.sock")
        try:
            left = [k["name"] for k in await spdk.keyring_get_keys() if not k.get("removed")]
        finally:
            await spdk.client.close()
        assert not [n for n in left if n in (names(new)["dhchap_key"], names(new)["dhchap_ctrlr_key"])]


async def test_dhchap_needs_a_secrets_key(cluster):
    await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=16 * MiB, replicas=1))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await cluster.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST, dhchap=True))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--secrets-key-file" in e.value.details()
    v = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))
    assert list(v.hosts) == [] and dict(v.host_auth) == {}


@pytest.mark.spdk
async def test_hosts_connect_with_their_keys_only(real_only, short_tmp):
    """SPDK's own initiator as the host: the right keys read and write; no key, a wrong key or a wrong
    controller key is refused; after a rotation only the new keys work."""
    c = Cluster(real_only, short_tmp / "c", nodes=2, controller_env={ENV_VAR: new_key_text()})
    try:
        await c.start()
        await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB, replicas=2))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST, dhchap_bidirectional=True))
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
        p = next(x for x in info.paths if x.ana_state == "optimized")
        where = (info.subnqn, p.traddr, int(p.trsvcid))
        data = os.urandom(4 * MiB)
        (short_tmp / "in.bin").write_bytes(data)

        def host(name: str, key: str = "", ctrl: str = "") -> SpdkHost:
            return SpdkHost(real_only.install, short_tmp / name, HOST, dhchap_secret=key, dhchap_ctrl_secret=ctrl)

        good = host("good", info.dhchap_secret, info.dhchap_ctrl_secret)

        async def reads(h: SpdkHost) -> bool:
            r = await h.read(short_tmp / "out.bin", 4 * MiB, *where)
            return r.returncode == 0 and (short_tmp / "out.bin").read_bytes() == data

        # the head may still be taking the keys: the right ones work within a few tries
        deadline = time.monotonic() + 30
        while True:
            w = await good.write(short_tmp / "in.bin", *where)
            if w.returncode == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert w.returncode == 0, w.output
        assert await reads(good)
        assert not await reads(host("none"))
        assert not await reads(host("wrong", dhchap.generate(), info.dhchap_ctrl_secret))
        assert not await reads(host("wrong-ctrl", info.dhchap_secret, dhchap.generate()))

        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST, rotate_dhchap=True))
        new = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
        fresh = host("fresh", new.dhchap_secret, new.dhchap_ctrl_secret)
        deadline = time.monotonic() + 30
        while not await reads(fresh) and time.monotonic() < deadline:
            await asyncio.sleep(1)
        assert await reads(fresh)
        assert not await reads(good)
    finally:
        await c.stop()


async def test_links_between_nodes_authenticate(backend, short_tmp):
    """With a secrets key, a replica's export admits the head's node only when it proves the node's
    link secret: the fence no longer rests on an NQN anyone can claim."""
    key = new_key_text()
    box = SecretBox.load(env={ENV_VAR: key})
    c = Cluster(backend, short_tmp / "c", nodes=2, controller_env={ENV_VAR: key})
    try:
        await c.start()
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=64 * MiB, replicas=2))
        assert v.state == "available" and all(r.state == "online" for r in v.replica_status)
        head_nqn = f"nqn.2026-11.io.meshblock:node:{v.head_node_id}"
        listeners = {}
        for r in v.replica_status:
            spdk = c.agent_by_id(r.node_id).spdk()
            try:
                sub, = await spdk.nvmf_get_subsystems(f"nqn.2026-11.io.meshblock:replica:{r.replica_id}")
            finally:
                await spdk.client.close()
            hosts = {h["nqn"]: h.get("dhchap_key") for h in sub["hosts"]}
            listeners[r.replica_id] = sub["listen_addresses"][0]
            # the head and the standby head, each with its own node's secret
            assert hosts == {f"nqn.2026-11.io.meshblock:node:{s.node_id}": dhchap.key_name(link_secret(box, s.node_id))
                             for s in v.replica_status}
        # another node's target claims the head node's NQN to reach a replica export
        target = next(r for r in v.replica_status if r.node_id == v.head_node_id)
        la = listeners[target.replica_id]
        export = (la["traddr"], la["trsvcid"], f"nqn.2026-11.io.meshblock:replica:{target.replica_id}")
        impostor = c.agent_by_id(next(r.node_id for r in v.replica_status if r.node_id != v.head_node_id))
        rpc = impostor.spdk("spdk-head.sock")
        try:
            # the NQN alone is not enough...
            with pytest.raises(SpdkRpcError):
                await rpc.bdev_nvme_attach_controller("probe", *export, hostnqn=head_nqn, timeout=30)
            # ...the head node's secret is
            stolen = short_tmp / "stolen"
            stolen.write_text(link_secret(box, v.head_node_id))
            stolen.chmod(0o600)
            await rpc.keyring_file_add_key("stolen", str(stolen))
            await rpc.bdev_nvme_attach_controller("probe", *export, hostnqn=head_nqn, dhchap_key="stolen", timeout=30)
            await rpc.bdev_nvme_detach_controller("probe")
            await rpc.keyring_file_remove_key("stolen")
        finally:
            await rpc.client.close()
        # the volume serves on: the legs are in sync
        v = await c.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))
        assert v.state == "available" and all(r.state == "online" for r in v.replica_status)
    finally:
        await c.stop()


async def test_cli_publish_get_and_connect(keyed):
    from click.testing import CliRunner

    from meshblock.cli.main import cli

    await keyed.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=16 * MiB, replicas=1))

    async def mb(*args: str):
        r = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--endpoint", keyed.controller.listen],
                                    prog_name="meshblock", env={"MESHBLOCK_TOKEN": ""})
        assert r.exit_code == 0, r.output
        return r.output

    assert "(bidirectional DH-HMAC-CHAP)" in await mb("volume", "publish", "v1", "--host-nqn", HOST,
                                                        "--dhchap-bidirectional")
    assert f"{HOST} (bidirectional DH-HMAC-CHAP)" in await mb("volume", "get", "v1")
    doc = json.loads(await mb("volume", "connect", "v1", "--host-nqn", HOST, "-o", "json"))
    key, ctrl = doc["dhchap_secret"], doc["dhchap_ctrl_secret"]
    assert dhchap.decode(key) and dhchap.decode(ctrl)
    got = json.loads(await mb("volume", "get", "v1", "-o", "json"))
    assert got["host_auth"] == {HOST: "dhchap-bidirectional"} and key not in json.dumps(got)
    lines = [ln for ln in (await mb("volume", "connect", "v1", "--host-nqn", HOST)).splitlines()
             if ln.startswith("nvme connect")]
    assert lines and all(ln.endswith(f"--dhchap-secret '{key}' --dhchap-ctrl-secret '{ctrl}'") or
                         ln.endswith(f"--dhchap-secret {key} --dhchap-ctrl-secret {ctrl}") for ln in lines), lines


async def test_a_controller_without_the_key_leaves_such_volumes_alone(tmp_path_factory, short_tmp):
    """Restarted without its secrets key, a controller says why it cannot serve a volume whose host
    authenticates and changes nothing of it; with the key back, all is as before."""
    key = new_key_text()
    # a head lease (the node timeout less a second) that outlasts the restarts on a loaded machine:
    # heads whose lease ran out would stop by themselves, and this is about what the controller does
    c = Cluster(fake_backend(tmp_path_factory.mktemp("fakespdk-registry")), short_tmp / "c", nodes=2,
                controller_env={ENV_VAR: key}, controller_args=("--node-timeout", "10"))
    try:
        await c.start()
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=16 * MiB, replicas=2))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=HOST, dhchap=True))
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
        want = names((info.dhchap_secret, ""))
        await eventually(lambda: _all_have(c, v, want), 30, "the secret on both heads")

        await c.controller.stop()
        c.controller.env.pop(ENV_VAR)
        c.controller.start()
        await c.controller.wait_nodes(2)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "secrets key" in e.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as e:     # a change it could not apply is refused at once
            await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=OTHER))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "secrets key" in e.value.details()
        await asyncio.sleep(2)                        # passes of the reconciler: the heads stay as they were
        assert await _all_have(c, v, want)
        assert "no secrets key" in c.controller.log.read_text()

        await c.controller.stop()
        c.controller.env[ENV_VAR] = key
        c.controller.start()
        await c.controller.wait_nodes(2)
        again = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="v1", host_nqn=HOST))
        assert again.dhchap_secret == info.dhchap_secret
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="v1", host_nqn=OTHER))
        await eventually(lambda: _has_other(c, v), 30, "the plain host on both heads")
    finally:
        await c.stop()


async def _all_have(c: Cluster, v: pb.Volume, want: dict) -> bool:
    got = await head_hosts(c, v)
    return len(got) == 2 and all(entries.get(HOST) == {"nqn": HOST, **want} for entries in got.values())


async def _has_other(c: Cluster, v: pb.Volume) -> bool:
    got = await head_hosts(c, v)
    return all(OTHER in entries for entries in got.values())
