"""DH-HMAC-CHAP on the target side, the same on the fake and on real SPDK: the file keyring, host
entries with keys, key replacement, and the Exporter that keeps them as a spec asks."""

from __future__ import annotations

import os

import pytest

from meshblock import dhchap
from meshblock.agent.exports import Exporter, ExportSpec
from meshblock.agent.keyring import Keyring
from meshblock.dhchap import HostKeys
from meshblock.spdk import SpdkExists, SpdkInvalidParams, SpdkNotFound, SpdkNotPermitted, SpdkRpcError

from .conftest import MiB
from .test_spdk_contract import HOST1, HOST2, NQN, expect, subsystem

pytestmark = pytest.mark.timeout(120)


def key_file(tmp_path, name: str, text: str, mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


async def test_keyring_and_host_keys(spdk_target, tmp_path):
    t = spdk_target
    k1 = key_file(tmp_path, "k1", dhchap.generate())
    k2 = key_file(tmp_path, "k2", dhchap.generate())
    k3 = key_file(tmp_path, "k3", dhchap.generate())
    loose = key_file(tmp_path, "loose", dhchap.generate(), 0o644)
    assert await t.rpc.keyring_file_add_key("key1", k1) is True
    await expect(SpdkExists, -17, t.rpc.keyring_file_add_key("key1", k1), "File exists")
    await expect(SpdkNotPermitted, -1, t.rpc.keyring_file_add_key("loose", loose), "Operation not permitted")
    await expect(SpdkNotFound, -2, t.rpc.keyring_file_add_key("gone", str(tmp_path / "nothing")),
                 "No such file or directory")
    await t.rpc.keyring_file_add_key("key2", k2)
    await t.rpc.keyring_file_add_key("key3", k3)
    assert sorted(k["name"] for k in await t.rpc.keyring_get_keys()) == ["key1", "key2", "key3"]

    await t.rpc.nvmf_create_subsystem(NQN)
    # a key the keyring does not hold
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_add_host(NQN, HOST1, dhchap_key="nokey"),
                 "Invalid parameters")
    assert await t.rpc.nvmf_subsystem_add_host(NQN, HOST1, dhchap_key="key1", dhchap_ctrlr_key="key2") is True
    await t.rpc.nvmf_subsystem_add_host(NQN, HOST2)
    hosts = {h["nqn"]: h for h in (await subsystem(t))["hosts"]}
    assert hosts[HOST1] == {"nqn": HOST1, "dhchap_key": "key1", "dhchap_ctrlr_key": "key2"}
    assert hosts[HOST2] == {"nqn": HOST2}
    # replaced keys; then none at all (the host connects without authenticating)
    assert await t.rpc.nvmf_subsystem_set_keys(NQN, HOST1, dhchap_key="key3") is True
    hosts = {h["nqn"]: h for h in (await subsystem(t))["hosts"]}
    assert hosts[HOST1] == {"nqn": HOST1, "dhchap_key": "key3"}
    await t.rpc.nvmf_subsystem_set_keys(NQN, HOST1)
    hosts = {h["nqn"]: h for h in (await subsystem(t))["hosts"]}
    assert hosts[HOST1] == {"nqn": HOST1}
    # keys of a host that is not on the list
    with pytest.raises(SpdkRpcError):
        await t.rpc.nvmf_subsystem_set_keys(NQN, "nqn.2026-11.io.meshblock:host:three", dhchap_key="key1")
    assert await t.rpc.keyring_file_remove_key("key1") is True
    await expect(SpdkNotFound, -126, t.rpc.keyring_file_remove_key("key1"), "Required key not available")
    assert "key1" not in {k["name"] for k in await t.rpc.keyring_get_keys() if not k.get("removed")}


async def test_exporter_keeps_host_keys(spdk_target, tmp_path):
    t = spdk_target
    await t.rpc.nvmf_create_transport("TCP")
    await t.rpc.bdev_malloc_create(8 * MiB // 512, 512, name="m0")
    keydir = tmp_path / "keys"
    ring = Keyring(t.rpc, keydir)
    ex = Exporter(t.rpc, ring)
    first = HostKeys.new(bidirectional=True)
    spec = ExportSpec(nqn=NQN, bdev_name="m0", namespace_uuid="6c1b9a3e-2f7d-4c55-9a0e-1d2b3c4d5e6f",
                      address="127.0.0.1", port=0, hosts=frozenset({HOST1, HOST2}),
                      host_keys=((HOST1, first),))
    # no listener needed here: only the hosts are looked at
    spec = ExportSpec(**{**spec.__dict__, "port": 4420 + os.getpid() % 1000})

    def hosts(sub):
        return {h["nqn"]: (h.get("dhchap_key", ""), h.get("dhchap_ctrlr_key", "")) for h in sub["hosts"]}

    await ex.ensure(spec)
    assert hosts(await subsystem(t)) == {HOST1: (dhchap.key_name(first.key), dhchap.key_name(first.ctrl_key)),
                                         HOST2: ("", "")}
    files = sorted(p.name for p in keydir.iterdir())
    assert files == sorted([dhchap.key_name(first.key), dhchap.key_name(first.ctrl_key)])
    assert all((keydir / f).stat().st_mode & 0o777 == 0o600 for f in files)
    assert keydir.stat().st_mode & 0o777 == 0o700
    assert (keydir / dhchap.key_name(first.key)).read_text() == first.key
    await ex.ensure(spec)       # the same again: nothing changes
    assert hosts(await subsystem(t))[HOST1][0] == dhchap.key_name(first.key)

    # rotated: the host entry stays (connections too), the keys are new, the old ones are gone
    second = HostKeys.new(bidirectional=False)
    await ex.ensure(ExportSpec(**{**spec.__dict__, "host_keys": ((HOST1, second), (HOST2, first))}))
    assert hosts(await subsystem(t)) == {HOST1: (dhchap.key_name(second.key), ""),
                                         HOST2: (dhchap.key_name(first.key), dhchap.key_name(first.ctrl_key))}
    live = {k["name"] for k in await t.rpc.keyring_get_keys() if not k.get("removed")}
    assert live == {dhchap.key_name(second.key), dhchap.key_name(first.key), dhchap.key_name(first.ctrl_key)}

    # a host dropped from the list takes its keys with it
    await ex.ensure(ExportSpec(**{**spec.__dict__, "hosts": frozenset({HOST2}), "host_keys": ((HOST2, first),)}))
    assert set(hosts(await subsystem(t))) == {HOST2}
    live = {k["name"] for k in await t.rpc.keyring_get_keys() if not k.get("removed")}
    assert dhchap.key_name(second.key) not in live
    assert not (keydir / dhchap.key_name(second.key)).exists()

    # a key left behind by a crash between two steps is pruned; the ones in use stay
    stray = HostKeys.new(False)
    await ring.ensure(stray.key)
    assert await ring.prune() == 1
    assert not (keydir / dhchap.key_name(stray.key)).exists()
    assert (keydir / dhchap.key_name(first.key)).exists()

    # the subsystem removed: its keys too
    assert await ex.remove(NQN) is True
    assert not [k for k in await t.rpc.keyring_get_keys() if not k.get("removed")]
    assert list(keydir.iterdir()) == []
