"""Contract tests of the iSCSI target calls meshblock makes: the fake ``spdk_tgt`` and real SPDK.

Each test runs ``[fake]`` and ``[real]`` (skipped with the reason when no SPDK build is found).
The target is ``spdk_tgt`` polling with a 1 GiB memory pool: SPDK's iSCSI target cannot start
in 512 MiB (its PDU pools do not fit) and has no interrupt mode of its own.
"""

from __future__ import annotations

import asyncio

import pytest

from meshblock.spdk import SpdkExists, SpdkInvalidParams, SpdkNotFound, SpdkRpcError

from .conftest import free_port
from .test_spdk_contract import expect

pytestmark = pytest.mark.timeout(120)

IQN = "iqn.2026-11.io.meshblock:volume:contract"
OTHER = "iqn.2026-11.io.meshblock:volume:other"
HOST_A = "iqn.1993-08.org.debian:01:aaaa"
HOST_B = "iqn.1993-08.org.debian:01:bbbb"


@pytest.fixture
async def iscsi_target(spdk_targets):
    return await spdk_targets("iscsi", app="spdk_tgt", interrupt_mode=False, mem_size=1024)


async def node(t, name: str = IQN) -> dict:
    return next(n for n in await t.rpc.iscsi_get_target_nodes() if n["name"] == name)


async def groups(t) -> dict[int, dict]:
    return {g["tag"]: g for g in await t.rpc.iscsi_get_initiator_groups()}


async def test_portal_initiator_and_target_node(iscsi_target, listen_addr):
    t = iscsi_target
    port = free_port(listen_addr)
    await t.rpc.bdev_malloc_create(2048, 512, name="m0")
    assert await t.rpc.iscsi_create_portal_group(1, [{"host": listen_addr, "port": str(port)}]) is True
    assert await t.rpc.iscsi_get_portal_groups() == [
        {"tag": 1, "portals": [{"host": listen_addr, "port": str(port)}], "private": False}]
    await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_create_portal_group(1, [{"host": listen_addr,
                                                                                  "port": str(port + 1)}]),
                 "Invalid parameters")

    assert await t.rpc.iscsi_create_initiator_group(7, [HOST_A], ["ANY"]) is True
    await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_create_initiator_group(7, [HOST_B], ["ANY"]))
    await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_create_initiator_group(8, [], ["ANY"]))
    # initiators and netmasks are added and removed one list at a time; a duplicate or an
    # absent name is refused; a group may end up empty
    assert await t.rpc.iscsi_initiator_group_add_initiators(7, [HOST_B]) is True
    await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_initiator_group_add_initiators(7, [HOST_B]))
    assert await t.rpc.iscsi_initiator_group_add_initiators(7, netmasks=["127.0.0.0/8"]) is True
    assert (await groups(t))[7] == {"tag": 7, "initiators": [HOST_A, HOST_B], "netmasks": ["ANY", "127.0.0.0/8"]}
    await expect(SpdkInvalidParams, -32602,
                 t.rpc.iscsi_initiator_group_remove_initiators(7, ["iqn.2000-01.com.example:nobody"]))
    assert await t.rpc.iscsi_initiator_group_remove_initiators(7, [HOST_A, HOST_B], ["ANY"]) is True
    assert (await groups(t))[7] == {"tag": 7, "initiators": [], "netmasks": ["127.0.0.0/8"]}
    await t.rpc.iscsi_initiator_group_add_initiators(7, [HOST_A])

    # a target node with one LUN; the queue depth is capped at the target's maximum (64)
    assert await t.rpc.iscsi_create_target_node(IQN, "vol", [{"bdev_name": "m0", "lun_id": 0}],
                                                [{"pg_tag": 1, "ig_tag": 7}], 256) is True
    n = await node(t)
    assert n == {**n, "alias_name": "vol", "pg_ig_maps": [{"pg_tag": 1, "ig_tag": 7}],
                 "luns": [{"bdev_name": "m0", "lun_id": 0}], "queue_depth": 64, "disable_chap": False,
                 "require_chap": False, "mutual_chap": False, "chap_group": 0}
    await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_create_target_node(
        IQN, "vol", [{"bdev_name": "m0", "lun_id": 0}], [{"pg_tag": 1, "ig_tag": 7}], 64))
    for luns, maps in (([{"bdev_name": "nope", "lun_id": 0}], [{"pg_tag": 1, "ig_tag": 7}]),
                       ([{"bdev_name": "m0", "lun_id": 0}], []),
                       ([{"bdev_name": "m0", "lun_id": 0}], [{"pg_tag": 1, "ig_tag": 99}])):
        await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_create_target_node(OTHER, "o", luns, maps, 64))
    assert await t.rpc.iscsi_get_connections() == []
    assert await t.rpc.iscsi_target_node_request_logout(IQN) is True
    await expect(SpdkNotFound, -32602, t.rpc.iscsi_target_node_request_logout(OTHER),
                 f"Target {OTHER} is not found")

    # deleting an initiator group takes it out of every target node's map list
    await t.rpc.iscsi_create_initiator_group(8, [HOST_B], ["ANY"])
    await t.rpc.iscsi_create_target_node(OTHER, "o", [{"bdev_name": "m0", "lun_id": 0}],
                                         [{"pg_tag": 1, "ig_tag": 8}], 64)
    assert await t.rpc.iscsi_delete_initiator_group(8) is True
    assert (await node(t, OTHER))["pg_ig_maps"] == []
    await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_delete_initiator_group(8))

    assert await t.rpc.iscsi_delete_target_node(OTHER) is True
    await expect(SpdkNotFound, -2, t.rpc.iscsi_delete_target_node(OTHER), "No such file or directory")
    assert [n["name"] for n in await t.rpc.iscsi_get_target_nodes()] == [IQN]


async def test_lun_follows_its_bdev(iscsi_target, listen_addr):
    """A LUN whose bdev goes away leaves its target node; the node stays and takes the LUN back."""
    t = iscsi_target
    await t.rpc.bdev_malloc_create(2048, 512, name="m0")
    await t.rpc.iscsi_create_portal_group(1, [{"host": listen_addr, "port": str(free_port(listen_addr))}])
    await t.rpc.iscsi_create_initiator_group(1, [HOST_A], ["ANY"])
    await t.rpc.iscsi_create_target_node(IQN, "vol", [{"bdev_name": "m0", "lun_id": 0}],
                                         [{"pg_tag": 1, "ig_tag": 1}], 64)
    await t.rpc.bdev_malloc_delete("m0")
    for _ in range(100):   # the LUN is removed once SPDK has processed the hot removal
        if not (await node(t))["luns"]:
            break
        await asyncio.sleep(0.05)
    assert (await node(t))["luns"] == []
    await t.rpc.bdev_malloc_create(2048, 512, name="m0")
    assert await t.rpc.iscsi_target_node_add_lun(IQN, "m0", lun_id=0) is True
    await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_target_node_add_lun(IQN, "m0", lun_id=0))
    await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_target_node_add_lun(OTHER, "m0", lun_id=0))
    assert (await node(t))["luns"] == [{"bdev_name": "m0", "lun_id": 0}]


async def test_chap_auth_groups(iscsi_target, listen_addr):
    t = iscsi_target
    await t.rpc.bdev_malloc_create(2048, 512, name="m0")
    await t.rpc.iscsi_create_portal_group(1, [{"host": listen_addr, "port": str(free_port(listen_addr))}])
    await t.rpc.iscsi_create_initiator_group(3, [HOST_A], ["ANY"])
    assert await t.rpc.iscsi_create_auth_group(3, [{"user": "alice", "secret": "0123456789abcdef"}]) is True
    await expect(SpdkExists, -32602, t.rpc.iscsi_create_auth_group(3), "Could not add auth group (3), File exists")
    await expect(SpdkInvalidParams, -32602, t.rpc.iscsi_create_auth_group(4, [{"user": "bob"}]),
                 "Invalid parameters")
    await expect(SpdkRpcError, -32602, t.rpc.iscsi_create_auth_group(4, [{"user": "bob", "secret": "x" * 256}]),
                 "Could not add secret to auth group (4), Invalid argument")
    assert await t.rpc.iscsi_get_auth_groups() == [
        {"tag": 3, "secrets": [{"user": "alice", "secret": "0123456789abcdef"}]}]
    await t.rpc.iscsi_create_target_node(IQN, "vol", [{"bdev_name": "m0", "lun_id": 0}],
                                         [{"pg_tag": 1, "ig_tag": 3}], 64, require_chap=True, chap_group=3)
    n = await node(t)
    assert (n["disable_chap"], n["require_chap"], n["mutual_chap"], n["chap_group"]) == (False, True, False, 3)
    # set_auth replaces every setting: what is left out goes back to off / group 0
    assert await t.rpc.iscsi_target_node_set_auth(IQN, disable_chap=True) is True
    n = await node(t)
    assert (n["disable_chap"], n["require_chap"], n["chap_group"]) == (True, False, 0)
    await expect(SpdkRpcError, -32602, t.rpc.iscsi_target_node_set_auth(IQN, disable_chap=True, require_chap=True),
                 "Invalid combination of auth params")
    await expect(SpdkNotFound, -32602, t.rpc.iscsi_target_node_set_auth(OTHER, disable_chap=True),
                 f"Could not find target {OTHER}")
    assert await t.rpc.iscsi_delete_auth_group(3) is True
    await expect(SpdkNotFound, -32602, t.rpc.iscsi_delete_auth_group(3), "Could not find auth group (3)")
    assert await t.rpc.iscsi_get_auth_groups() == []
