"""NVMe/TCP over TLS on the target side, the same on the fake and on real SPDK: secure-channel
listeners, hosts with a PSK from the keyring, SPDK's own initiator opening TLS with its PSK, and
the one listening socket per address and port that every subsystem of a target shares."""

from __future__ import annotations

import os

import pytest

from meshblock import tlspsk
from meshblock.agent.keyring import Keyring, host_psks
from meshblock.agent.exports import Exporter, ExportSpec
from meshblock.spdk import SpdkRpcError

from .conftest import MiB, free_port
from .test_spdk_contract import HOST1, HOST2, NQN, subsystem

pytestmark = pytest.mark.timeout(180)


def key_file(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, 0o600)
    return str(path)


async def attached(host, name: str, addr: str, port: int, nqn: str, hostnqn: str, psk: str | None = None) -> bool:
    try:
        await host.rpc.bdev_nvme_attach_controller(name, addr, port, nqn, hostnqn=hostnqn, psk=psk, timeout=30)
    except SpdkRpcError:
        return False
    await host.rpc.bdev_nvme_detach_controller(name)
    return True


async def test_tls_listener_and_host_psk(spdk_targets, listen_addr, tmp_path):
    t = await spdk_targets("tgt", interrupt_mode=False)
    await t.rpc.nvmf_create_transport("TCP")
    await t.rpc.bdev_malloc_create(8 * MiB // 512, 512, name="m0")
    psk1, psk2 = tlspsk.generate(), tlspsk.generate()
    await t.rpc.keyring_file_add_key("psk1", key_file(tmp_path, "psk1", psk1))
    await t.rpc.nvmf_create_subsystem(NQN)
    await t.rpc.nvmf_subsystem_add_ns(NQN, "m0")
    assert await t.rpc.nvmf_subsystem_add_host(NQN, HOST1, psk="psk1") is True
    await t.rpc.nvmf_subsystem_add_host(NQN, HOST2)
    # nvmf_get_subsystems does not show a host's PSK; the nvmf configuration does
    hosts = {h["nqn"]: h for h in (await subsystem(t))["hosts"]}
    assert hosts == {HOST1: {"nqn": HOST1}, HOST2: {"nqn": HOST2}}
    assert await host_psks(t.rpc) == {(NQN, HOST1): "psk1"}
    port = free_port(listen_addr)
    assert await t.rpc.nvmf_subsystem_add_listener(NQN, listen_addr, port, secure_channel=True) is True

    host = await spdk_targets("host", interrupt_mode=False)
    await host.rpc.keyring_file_add_key("right", key_file(tmp_path, "right", psk1))
    await host.rpc.keyring_file_add_key("wrong", key_file(tmp_path, "wrong", psk2))
    # the host's PSK opens TLS; clear text, another PSK or a host without one on the target do not
    assert await attached(host, "T0", listen_addr, port, NQN, HOST1, psk="right")
    assert not await attached(host, "T1", listen_addr, port, NQN, HOST1)
    assert not await attached(host, "T2", listen_addr, port, NQN, HOST1, psk="wrong")
    assert not await attached(host, "T3", listen_addr, port, NQN, HOST2, psk="right")

    # one socket per address and port: a clear-text port stays clear for a listener that asks for a
    # secure channel, so TLS subsystems need a port of their own
    clear = free_port(listen_addr)
    await t.rpc.bdev_malloc_create(8 * MiB // 512, 512, name="m2")
    await t.rpc.bdev_malloc_create(8 * MiB // 512, 512, name="m3")
    await t.rpc.nvmf_create_subsystem(NQN + "2")
    await t.rpc.nvmf_subsystem_add_ns(NQN + "2", "m2")
    await t.rpc.nvmf_subsystem_add_host(NQN + "2", HOST2)
    await t.rpc.nvmf_subsystem_add_listener(NQN + "2", listen_addr, clear)
    await t.rpc.nvmf_create_subsystem(NQN + "3")
    await t.rpc.nvmf_subsystem_add_ns(NQN + "3", "m3")
    await t.rpc.nvmf_subsystem_add_host(NQN + "3", HOST1, psk="psk1")
    assert await t.rpc.nvmf_subsystem_add_listener(NQN + "3", listen_addr, clear, secure_channel=True) is True
    assert await attached(host, "T4", listen_addr, clear, NQN + "3", HOST1)            # clear text
    assert not await attached(host, "T5", listen_addr, clear, NQN + "3", HOST1, psk="right")


async def test_exporter_keeps_host_psks(spdk_target, tmp_path, listen_addr):
    t = spdk_target
    await t.rpc.nvmf_create_transport("TCP")
    await t.rpc.bdev_malloc_create(8 * MiB // 512, 512, name="m0")
    keydir = tmp_path / "keys"
    ex = Exporter(t.rpc, Keyring(t.rpc, keydir))
    first, second = tlspsk.generate(), tlspsk.generate()
    spec = ExportSpec(nqn=NQN, bdev_name="m0", namespace_uuid="6c1b9a3e-2f7d-4c55-9a0e-1d2b3c4d5e6f",
                      address=listen_addr, port=free_port(listen_addr), hosts=frozenset({HOST1, HOST2}),
                      secure=True, host_psks=((HOST1, first), (HOST2, second)))
    st = await ex.ensure(spec)
    assert st.host_psks == {HOST1: tlspsk.fingerprint(first), HOST2: tlspsk.fingerprint(second)}
    assert await host_psks(t.rpc, NQN) == {(NQN, HOST1): tlspsk.key_name(first), (NQN, HOST2): tlspsk.key_name(second)}
    assert (keydir / tlspsk.key_name(first)).read_text() == first
    assert (keydir / tlspsk.key_name(first)).stat().st_mode & 0o777 == 0o600
    await ex.ensure(spec)    # the same again: nothing changes

    # a new PSK for a host: its entry is made again with it, the old key is gone
    third = tlspsk.generate()
    await ex.ensure(ExportSpec(**{**spec.__dict__, "host_psks": ((HOST1, third), (HOST2, second))}))
    assert await host_psks(t.rpc, NQN) == {(NQN, HOST1): tlspsk.key_name(third), (NQN, HOST2): tlspsk.key_name(second)}
    live = {k["name"] for k in await t.rpc.keyring_get_keys() if not k.get("removed")}
    assert live == {tlspsk.key_name(third), tlspsk.key_name(second)}
    assert not (keydir / tlspsk.key_name(first)).exists()
    # a stray key is pruned, the ones in use stay
    await Keyring(t.rpc, keydir).ensure(first, tlspsk.KEY_NAME_PREFIX)
    assert await Keyring(t.rpc, keydir).prune() == 1
    assert (keydir / tlspsk.key_name(second)).exists()
    assert await ex.remove(NQN) is True
    assert not [k for k in await t.rpc.keyring_get_keys() if not k.get("removed")]
