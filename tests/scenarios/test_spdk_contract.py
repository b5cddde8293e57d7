"""Contract tests: the same scenarios against the fake SPDK target and against real SPDK.

Each test runs twice, ``[fake]`` and ``[real]`` (the latter skipped with the reason when no SPDK
build is found, see tests/conftest.py).  The assertions are what SPDK's source says and what
real SPDK answered; where the fake differed, the fake was fixed, not the test.  Error codes and
messages are SPDK's own: synchronous failures answer ``-errno`` with the errno text, failures
reported from completion callbacks answer ``-32602`` (``-32603`` for some) with the errno text,
and the NVMe-oF RPCs use free text.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import pytest

from meshblock.spdk import (
    SpdkBusy,
    SpdkExists,
    SpdkInvalidParams,
    SpdkMethodNotFound,
    SpdkNoSpace,
    SpdkNotFound,
    SpdkRpcError,
)

from .conftest import MiB, SpdkTarget, free_port

pytestmark = pytest.mark.timeout(120)

LVS = "lvs0"
NQN = "nqn.2026-11.io.meshblock:contract"
HOST1 = "nqn.2026-11.io.meshblock:host:one"
HOST2 = "nqn.2026-11.io.meshblock:host:two"
DISCOVERY = "nqn.2014-08.org.nvmexpress.discovery"


async def expect(exc: type[SpdkRpcError], code: int, coro, message: str | None = None) -> SpdkRpcError:
    with pytest.raises(exc) as ei:
        await coro
    assert ei.value.code == code, (ei.value.code, ei.value.message)
    if message is not None:
        assert ei.value.message == message
    return ei.value


async def pool(t: SpdkTarget, aio_file, name: str = "aio0", size: int = 256 * MiB) -> str:
    """An AIO bdev on a sparse file with an lvstore on it; returns the lvstore UUID."""
    await t.rpc.bdev_aio_create(aio_file(name, size), name, block_size=512)
    return await t.rpc.bdev_lvol_create_lvstore(name, LVS if name == "aio0" else f"lvs-{name}")


async def bdev(t: SpdkTarget, name: str) -> dict:
    (b,) = await t.rpc.bdev_get_bdevs(name)
    return b


async def lvstore(t: SpdkTarget, name: str = LVS) -> dict:
    (s,) = await t.rpc.bdev_lvol_get_lvstores(name)
    return s


async def lvols(t: SpdkTarget) -> dict[str, dict]:
    return {lv["name"]: lv for lv in await t.rpc.bdev_lvol_get_lvols()}


async def subsystem(t: SpdkTarget, nqn: str = NQN) -> dict:
    (s,) = await t.rpc.nvmf_get_subsystems(nqn)
    return s


# --- application and wire ------------------------------------------------------------------------

async def test_version_methods_and_unknown_method(spdk_target):
    t = spdk_target
    v = await t.rpc.spdk_get_version()
    assert v["version"].startswith("SPDK v")
    assert {"major", "minor", "patch", "suffix"} <= set(v["fields"])
    assert await t.rpc.framework_wait_init() is True
    methods = set(await t.rpc.rpc_get_methods())
    assert {"bdev_aio_create", "bdev_lvol_create", "bdev_lvol_snapshot", "bdev_raid_create",
            "nvmf_create_subsystem", "nvmf_subsystem_add_listener", "bdev_nvme_attach_controller",
            "spdk_kill_instance"} <= methods
    assert "iscsi_create_target_node" not in methods  # nvmf_tgt has no iSCSI target
    await expect(SpdkMethodNotFound, -32601, t.client.call("no_such_method"), "Method not found")
    await expect(SpdkMethodNotFound, -32601, t.client.call("iscsi_get_target_nodes"), "Method not found")
    await expect(SpdkInvalidParams, -32602, t.client.call("spdk_get_version", {"x": 1}),
                 "spdk_get_version method requires no parameters")


async def _raw_exchange(sock: str, chunks: list[bytes], n_answers: int, timeout: float = 10.0) -> list:
    reader, writer = await asyncio.open_unix_connection(sock)
    try:
        for c in chunks:
            writer.write(c)
            await writer.drain()
            await asyncio.sleep(0.05)
        answers: list = []
        buf = b""
        deadline = time.monotonic() + timeout
        while len(answers) < n_answers:
            data = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    answers.append(json.loads(line))
        return answers
    finally:
        writer.close()


async def test_wire_stream_split_concatenated_notifications(spdk_target):
    t = spdk_target
    req = lambda m, i, **kw: json.dumps({"jsonrpc": "2.0", "method": m, "id": i, **kw}).encode()
    two = req("spdk_get_version", 1) + req("bdev_get_bdevs", 2, params={"name": "nope"})
    note = json.dumps({"jsonrpc": "2.0", "method": "spdk_get_version"}).encode()  # no id: no answer
    split = req("rpc_get_methods", 3)
    answers = await _raw_exchange(t.sock, [two[:7], two[7:40], two[40:] + note, split[:5], split[5:]], 3)
    by_id = {a["id"]: a for a in answers}
    assert set(by_id) == {1, 2, 3}
    assert by_id[1]["result"]["version"].startswith("SPDK v")
    assert by_id[2]["error"] == {"code": -19, "message": "No such device"}
    assert isinstance(by_id[3]["result"], list)
    # a value that is not a request; then malformed JSON: SPDK closes the connection (the
    # "Parse error" answer it queues is never sent); _raw_exchange returns early only on EOF
    answers = await _raw_exchange(t.sock, [b'{"jsonrpc":"2.0","id":5}', b'{"method": ]'], 2, timeout=5)
    assert answers == [{"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid request"}}]
    assert (await t.rpc.spdk_get_version())["version"]  # the target itself is fine


# --- AIO and lvstores ----------------------------------------------------------------------------

async def test_aio_bdev_and_lvstore_capacity(spdk_target, aio_file):
    t = spdk_target
    f = aio_file("pool", 256 * MiB)
    # a regular file has no detectable block size
    await expect(SpdkInvalidParams, -22, t.rpc.bdev_aio_create(f, "aio0"), "Invalid argument")
    await expect(SpdkNotFound, -2, t.rpc.bdev_aio_create(f + ".missing", "aio0", block_size=512),
                 "No such file or directory")
    assert await t.rpc.bdev_aio_create(f, "aio0", block_size=512) == "aio0"
    await expect(SpdkExists, -17, t.rpc.bdev_aio_create(f, "aio0", block_size=512), "File exists")
    b = await bdev(t, "aio0")
    assert b["product_name"] == "AIO disk" and b["block_size"] == 512 and b["num_blocks"] == 256 * MiB // 512
    assert b["aliases"] == [b["uuid"]] and b["claimed"] is False
    assert b["driver_specific"]["aio"]["filename"] == f
    assert b["supported_io_types"]["read"] and b["supported_io_types"]["write"]
    assert (await bdev(t, b["uuid"]))["name"] == "aio0"  # the UUID is an alias
    await expect(SpdkNotFound, -19, t.rpc.bdev_get_bdevs("nope"), "No such device")

    lvs_uuid = await t.rpc.bdev_lvol_create_lvstore("aio0", LVS)
    s = await lvstore(t)
    # 64 clusters of 4 MiB; the blobstore metadata takes the first one
    assert s == {**s, "uuid": lvs_uuid, "name": LVS, "base_bdev": "aio0", "total_data_clusters": 63,
                 "free_clusters": 63, "block_size": 512, "cluster_size": 4 * MiB}
    b = await bdev(t, "aio0")
    assert b["claimed"] is True and b["claim_type"] == "read_many_write_one"  # the blobstore's claim
    (by_uuid,) = await t.client.call("bdev_lvol_get_lvstores", {"uuid": lvs_uuid})
    assert by_uuid["name"] == LVS
    # the base bdev is claimed: it cannot be opened for writing again
    await expect(SpdkRpcError, -1, t.rpc.bdev_lvol_create_lvstore("aio0", "other"), "Operation not permitted")
    await t.rpc.bdev_aio_create(aio_file("pool2", 64 * MiB), "aio1", block_size=512)
    await expect(SpdkExists, -17, t.rpc.bdev_lvol_create_lvstore("aio1", LVS), "File exists")
    s2 = await t.rpc.bdev_lvol_create_lvstore("aio1", "small", cluster_sz=MiB)
    (small,) = await t.client.call("bdev_lvol_get_lvstores", {"uuid": s2})
    assert small["cluster_size"] == MiB and small["total_data_clusters"] == 63 and small["free_clusters"] == 63
    await expect(SpdkNotFound, -19, t.rpc.bdev_lvol_get_lvstores("nope"), "No such device")
    await expect(SpdkInvalidParams, -22,
                 t.client.call("bdev_lvol_get_lvstores", {"uuid": lvs_uuid, "lvs_name": LVS}), "Invalid argument")
    assert await t.rpc.bdev_lvol_delete_lvstore("small") is True
    assert (await bdev(t, "aio1"))["claimed"] is False
    await expect(SpdkNotFound, -19, t.rpc.bdev_lvol_delete_lvstore("small"), "No such device")


async def test_lvol_create_resize_and_space(spdk_target, aio_file):
    t = spdk_target
    lvs_uuid = await pool(t, aio_file)
    thin = await t.rpc.bdev_lvol_create("thin", 64 * MiB, LVS, thin_provision=True)
    b = await bdev(t, f"{LVS}/thin")
    assert b["name"] == thin and b["uuid"] == thin and b["aliases"] == [f"{LVS}/thin"]
    assert b["product_name"] == "Logical Volume" and b["block_size"] == 512 and b["num_blocks"] == 64 * MiB // 512
    lvd = b["driver_specific"]["lvol"]
    assert lvd["lvol_store_uuid"] == lvs_uuid and lvd["base_bdev"] == "aio0" and lvd["thin_provision"] is True
    assert lvd["num_allocated_clusters"] == 0 and lvd["snapshot"] is False and lvd["clone"] is False
    lv = (await lvols(t))["thin"]
    assert lv == {**lv, "alias": f"{LVS}/thin", "uuid": thin, "is_thin_provisioned": True, "is_snapshot": False,
                  "is_clone": False, "num_allocated_clusters": 0, "lvs": {"name": LVS, "uuid": lvs_uuid}}
    assert (await lvstore(t))["free_clusters"] == 63

    await expect(SpdkExists, -17, t.rpc.bdev_lvol_create("thin", 4 * MiB, LVS), "File exists")
    await expect(SpdkNotFound, -19, t.rpc.bdev_lvol_create("x", 4 * MiB, "nolvs"), "No such device")
    # thick: takes its clusters now; larger than the free space: ENOSPC from the blobstore callback
    await expect(SpdkNoSpace, -32602, t.rpc.bdev_lvol_create("huge", 1024 * MiB, LVS, thin_provision=False),
                 "No space left on device")
    await t.rpc.bdev_lvol_create("thick", 40 * MiB, LVS, thin_provision=False)
    assert (await lvols(t))["thick"]["num_allocated_clusters"] == 10
    assert (await lvstore(t))["free_clusters"] == 53
    # a thin lvol may overcommit
    await t.rpc.bdev_lvol_create("big", 1024 * MiB, LVS, thin_provision=True)
    assert (await lvstore(t))["free_clusters"] == 53

    # resize: thin grows freely, thick grows by whole clusters, shrink returns them
    assert await t.rpc.bdev_lvol_resize(f"{LVS}/thin", 128 * MiB) is True
    assert (await bdev(t, thin))["num_blocks"] == 128 * MiB // 512
    await t.rpc.bdev_lvol_resize(f"{LVS}/thick", 48 * MiB)
    assert (await lvstore(t))["free_clusters"] == 51
    await t.rpc.bdev_lvol_resize(f"{LVS}/thick", 8 * MiB)
    assert (await lvstore(t))["free_clusters"] == 61
    assert (await bdev(t, f"{LVS}/thick"))["num_blocks"] == 8 * MiB // 512
    await expect(SpdkNoSpace, -32602, t.rpc.bdev_lvol_resize(f"{LVS}/thick", 1024 * MiB), "No space left on device")
    await expect(SpdkNotFound, -19, t.rpc.bdev_lvol_resize(f"{LVS}/nope", 8 * MiB), "No such device")
    await expect(SpdkNotFound, -19, t.rpc.bdev_lvol_resize("aio0", 8 * MiB), "No such device")  # not an lvol

    # delete by alias and by UUID; unknown names
    assert await t.rpc.bdev_lvol_delete(f"{LVS}/thick") is True
    assert await t.rpc.bdev_lvol_delete(thin) is True
    assert set(await lvols(t)) == {"big"}
    assert (await lvstore(t))["free_clusters"] == 63
    await expect(SpdkNotFound, -19, t.rpc.bdev_lvol_delete(f"{LVS}/thick"), "No such device")
    await expect(SpdkNotFound, -19, t.rpc.bdev_get_bdevs(f"{LVS}/thick"), "No such device")


async def test_qos_rate_limits(spdk_target, aio_file):
    """bdev_set_qos_limit as a volume head uses it: limits read back from bdev_get_bdevs."""
    t = spdk_target
    await pool(t, aio_file)
    lv = await t.rpc.bdev_lvol_create("lv", 16 * MiB, LVS)
    none = {"rw_ios_per_sec": 0, "rw_mbytes_per_sec": 0, "r_mbytes_per_sec": 0, "w_mbytes_per_sec": 0}
    assert (await bdev(t, lv))["assigned_rate_limits"] == none
    # set by alias, read by UUID; IOPS as given, bandwidth in MiB/s
    assert await t.rpc.bdev_set_qos_limit(f"{LVS}/lv", rw_ios_per_sec=2000, rw_mbytes_per_sec=100) is True
    assert (await bdev(t, lv))["assigned_rate_limits"] == {**none, "rw_ios_per_sec": 2000, "rw_mbytes_per_sec": 100}
    # with QoS on and no I/O channel open on the bdev, SPDK refuses every further change: the RPC's
    # own open restarts QoS and the change meets that restart (an agent sets limits before export)
    again = await expect(SpdkInvalidParams, -32602, t.rpc.bdev_set_qos_limit(lv, rw_ios_per_sec=0),
                         "Failed to configure rate limit: Resource temporarily unavailable")
    assert again.method == "bdev_set_qos_limit"
    # exported, the bdev has channels (the subsystem's poll groups): changes go through
    await t.rpc.nvmf_create_transport("TCP")
    await t.rpc.nvmf_create_subsystem(NQN, allow_any_host=True)
    await t.rpc.nvmf_subsystem_add_ns(NQN, lv)
    # limits not named stay; 0 lifts one
    await t.rpc.bdev_set_qos_limit(lv, rw_mbytes_per_sec=0, w_mbytes_per_sec=7)
    assert (await bdev(t, lv))["assigned_rate_limits"] == {**none, "rw_ios_per_sec": 2000, "w_mbytes_per_sec": 7}
    # an IOPS limit off SPDK's 1000 steps is rounded up, silently for the caller (meshblock refuses it)
    await t.rpc.bdev_set_qos_limit(lv, rw_ios_per_sec=1500)
    assert (await bdev(t, lv))["assigned_rate_limits"]["rw_ios_per_sec"] == 2000
    await t.rpc.bdev_set_qos_limit(lv, rw_ios_per_sec=0, rw_mbytes_per_sec=0, r_mbytes_per_sec=0, w_mbytes_per_sec=0)
    assert (await bdev(t, lv))["assigned_rate_limits"] == none
    await t.rpc.bdev_set_qos_limit(lv, r_mbytes_per_sec=5)     # and on again
    assert (await bdev(t, lv))["assigned_rate_limits"] == {**none, "r_mbytes_per_sec": 5}
    await expect(SpdkInvalidParams, -22, t.client.call("bdev_set_qos_limit", {"name": lv}),
                 "No rate limits specified")
    await expect(SpdkNotFound, -19, t.rpc.bdev_set_qos_limit("nope", rw_ios_per_sec=1000), "No such device")
    await expect(SpdkRpcError, -32603, t.client.call("bdev_set_qos_limit", {"name": lv, "rw_ios_per_sec": -1000}),
                 "spdk_json_decode_object failed")


async def test_snapshot_clone_inflate_read_only(spdk_target, aio_file):
    t = spdk_target
    await pool(t, aio_file)
    vol = await t.rpc.bdev_lvol_create("vol", 16 * MiB, LVS, thin_provision=False)
    assert (await lvstore(t))["free_clusters"] == 59

    snap = await t.rpc.bdev_lvol_snapshot(f"{LVS}/vol", "snap")
    ls = await lvols(t)
    # the snapshot takes the origin's clusters; the origin becomes a thin clone of it
    assert ls["snap"] == {**ls["snap"], "uuid": snap, "is_snapshot": True, "is_clone": False,
                          "is_thin_provisioned": False, "num_allocated_clusters": 4}
    assert ls["vol"] == {**ls["vol"], "uuid": vol, "is_snapshot": False, "is_clone": True,
                         "is_thin_provisioned": True, "num_allocated_clusters": 0}
    assert (await lvstore(t))["free_clusters"] == 59
    sd = (await bdev(t, snap))["driver_specific"]["lvol"]
    assert sd["snapshot"] is True and sd["clones"] == ["vol"]
    vd = (await bdev(t, vol))["driver_specific"]["lvol"]
    assert vd["clone"] is True and vd["base_snapshot"] == "snap" and vd["thin_provision"] is True
    assert (await bdev(t, snap))["supported_io_types"]["write"] is False  # read-only

    await expect(SpdkExists, -32602, t.rpc.bdev_lvol_snapshot(f"{LVS}/vol", "snap"), "File exists")
    await expect(SpdkNotFound, -19, t.rpc.bdev_lvol_snapshot(f"{LVS}/none", "s2"), "No such device")
    # snapshots are read-only: no snapshot of, no resize of a snapshot
    await expect(SpdkInvalidParams, -32602, t.rpc.bdev_lvol_snapshot(f"{LVS}/snap", "s2"), "Invalid argument")
    await expect(SpdkRpcError, -32602, t.rpc.bdev_lvol_resize(f"{LVS}/snap", 32 * MiB), "Operation not permitted")
    # clones only from read-only lvols
    await expect(SpdkInvalidParams, -32602, t.rpc.bdev_lvol_clone(f"{LVS}/vol", "c0"), "Invalid argument")
    clone = await t.rpc.bdev_lvol_clone(f"{LVS}/snap", "clone")
    ls = await lvols(t)
    assert ls["clone"] == {**ls["clone"], "uuid": clone, "is_clone": True, "is_thin_provisioned": True,
                           "num_allocated_clusters": 0}
    assert sorted((await bdev(t, snap))["driver_specific"]["lvol"]["clones"]) == ["clone", "vol"]
    await expect(SpdkExists, -32602, t.rpc.bdev_lvol_clone(f"{LVS}/snap", "vol"), "File exists")

    # a snapshot with two clones cannot be deleted
    await expect(SpdkRpcError, -32603, t.rpc.bdev_lvol_delete(f"{LVS}/snap"), "Operation not permitted")

    # inflate: the clone gets all its clusters and leaves the snapshot
    assert await t.rpc.bdev_lvol_inflate(f"{LVS}/clone") is True
    ls = await lvols(t)
    assert ls["clone"] == {**ls["clone"], "is_clone": False, "is_thin_provisioned": False,
                           "num_allocated_clusters": 4}
    assert (await bdev(t, snap))["driver_specific"]["lvol"]["clones"] == ["vol"]
    assert (await lvstore(t))["free_clusters"] == 55

    # now one clone left: deleting the snapshot hands its clusters to the clone
    assert await t.rpc.bdev_lvol_delete(f"{LVS}/snap") is True
    ls = await lvols(t)
    assert "snap" not in ls
    assert ls["vol"] == {**ls["vol"], "is_clone": False, "num_allocated_clusters": 4}
    assert "base_snapshot" not in (await bdev(t, vol))["driver_specific"]["lvol"]
    assert (await lvstore(t))["free_clusters"] == 55

    # read-only lvols: no resize, no snapshot; a clone of one works
    assert await t.rpc.bdev_lvol_set_read_only(f"{LVS}/clone") is True
    await expect(SpdkRpcError, -32602, t.rpc.bdev_lvol_resize(f"{LVS}/clone", 32 * MiB), "Operation not permitted")
    await expect(SpdkInvalidParams, -32602, t.rpc.bdev_lvol_snapshot(f"{LVS}/clone", "s3"), "Invalid argument")
    c2 = await t.rpc.bdev_lvol_clone(f"{LVS}/clone", "c2")
    assert (await lvols(t))["clone"]["is_snapshot"] is True
    assert (await bdev(t, c2))["driver_specific"]["lvol"]["base_snapshot"] == "clone"
    await expect(SpdkNotFound, -19, t.rpc.bdev_lvol_inflate(f"{LVS}/none"), "No such device")
    await expect(SpdkNotFound, -19, t.rpc.bdev_lvol_set_read_only(f"{LVS}/none"), "No such device")


async def test_lvol_in_use_delete_and_shrink(spdk_target, aio_file):
    """An exported lvol is claimed; SPDK still deletes it (hot-remove) but refuses to shrink it."""
    t = spdk_target
    await pool(t, aio_file)
    lv = await t.rpc.bdev_lvol_create("exp", 32 * MiB, LVS)
    await t.rpc.nvmf_create_subsystem(NQN, allow_any_host=True)
    await t.rpc.nvmf_create_subsystem(NQN + "2")
    assert await t.rpc.nvmf_subsystem_add_ns(NQN, f"{LVS}/exp") == 1
    b = await bdev(t, lv)
    assert b["claimed"] is True and b["claim_type"] == "exclusive_write"
    # claimed: no second namespace, no raid member
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_add_ns(NQN + "2", lv), "Invalid parameters")
    await t.rpc.bdev_lvol_create("other", 32 * MiB, LVS)
    await expect(SpdkRpcError, -1, t.rpc.bdev_raid_create("r0", "raid1", [lv, f"{LVS}/other"]),
                 "Failed to create RAID bdev r0: Operation not permitted")
    assert await t.rpc.bdev_raid_get_bdevs() == []
    assert (await bdev(t, f"{LVS}/other"))["claimed"] is False
    # growing an open bdev is fine, shrinking it is not
    await t.rpc.bdev_lvol_resize(lv, 64 * MiB)
    assert (await bdev(t, lv))["num_blocks"] == 64 * MiB // 512
    await expect(SpdkBusy, -32602, t.rpc.bdev_lvol_resize(lv, 16 * MiB), "Device or resource busy")
    assert (await bdev(t, lv))["num_blocks"] == 64 * MiB // 512
    # deleting it is allowed: the namespace goes away with it
    assert await t.rpc.bdev_lvol_delete(lv) is True
    assert (await subsystem(t))["namespaces"] == []
    assert "exp" not in await lvols(t)


async def test_restart_keeps_lvstore_not_subsystems(spdk_target, aio_file, listen_addr):
    t = spdk_target
    f = aio_file("pool", 256 * MiB)
    await t.rpc.bdev_aio_create(f, "aio0", block_size=512)
    lvs_uuid = await t.rpc.bdev_lvol_create_lvstore("aio0", LVS)
    await t.rpc.bdev_lvol_create("thin", 64 * MiB, LVS, thin_provision=True)
    await t.rpc.bdev_lvol_create("thick", 20 * MiB, LVS, thin_provision=False)
    await t.rpc.bdev_lvol_snapshot(f"{LVS}/thick", "snap")
    await t.rpc.bdev_lvol_clone(f"{LVS}/snap", "clone")
    await t.rpc.bdev_lvol_create("ro", 8 * MiB, LVS, thin_provision=True)
    await t.rpc.bdev_lvol_set_read_only(f"{LVS}/ro")
    await t.rpc.bdev_lvol_resize(f"{LVS}/thin", 96 * MiB)
    await t.rpc.nvmf_create_transport("TCP")
    await t.rpc.nvmf_create_subsystem(NQN, allow_any_host=True)
    await t.rpc.nvmf_subsystem_add_ns(NQN, f"{LVS}/thin")
    await t.rpc.nvmf_subsystem_add_listener(NQN, listen_addr, free_port(listen_addr))
    before_lvs = await lvstore(t)
    before_lvols = await lvols(t)
    before_bdevs = {n: await bdev(t, lv["uuid"]) for n, lv in before_lvols.items()}

    await t.kill9()
    await t.start()
    assert await t.rpc.bdev_lvol_get_lvstores() == []
    assert [s["nqn"] for s in await t.rpc.nvmf_get_subsystems()] == [DISCOVERY]
    assert await t.rpc.nvmf_get_transports() == []
    await t.rpc.bdev_aio_create(f, "aio0", block_size=512)
    after = await lvstore(t)
    assert after["uuid"] == lvs_uuid
    for k in ("name", "base_bdev", "total_data_clusters", "free_clusters", "cluster_size", "block_size"):
        assert after[k] == before_lvs[k], k
    after_lvols = await lvols(t)
    assert set(after_lvols) == set(before_lvols)
    for name, lv in before_lvols.items():
        a = after_lvols[name]
        for k in ("uuid", "alias", "is_thin_provisioned", "is_snapshot", "is_clone", "num_allocated_clusters"):
            assert a[k] == lv[k], (name, k)
        b = await bdev(t, lv["alias"])
        assert b["name"] == lv["uuid"] and b["num_blocks"] == before_bdevs[name]["num_blocks"]
        assert b["driver_specific"]["lvol"] == before_bdevs[name]["driver_specific"]["lvol"]
    assert (await bdev(t, f"{LVS}/ro"))["supported_io_types"]["write"] is False
    assert (await bdev(t, "aio0"))["claimed"] is True


# --- NVMe-oF target ------------------------------------------------------------------------------

async def test_transport_and_subsystem_lifecycle(spdk_target):
    t = spdk_target
    assert await t.rpc.nvmf_create_transport("TCP") is True
    await expect(SpdkExists, -32603, t.rpc.nvmf_create_transport("TCP"), "Transport type 'TCP' already exists")
    (tr,) = await t.rpc.nvmf_get_transports()
    assert tr["trtype"] == "TCP" and tr["max_queue_depth"] == 128 and tr["max_io_qpairs_per_ctrlr"] == 127
    assert (await t.rpc.nvmf_get_transports("tcp"))[0]["trtype"] == "TCP"
    await expect(SpdkNotFound, -19, t.rpc.nvmf_get_transports("RDMA"), "No such device")

    (disc,) = await t.rpc.nvmf_get_subsystems()
    assert disc == {"nqn": DISCOVERY, "subtype": "Discovery", "listen_addresses": [], "allow_any_host": True,
                    "hosts": []}
    assert await t.rpc.nvmf_create_subsystem(NQN, serial_number="MB0001", model_number="meshblock volume",
                                             max_namespaces=8) is True
    s = await subsystem(t)
    assert s == {**s, "nqn": NQN, "subtype": "NVMe", "listen_addresses": [], "allow_any_host": False,
                 "hosts": [], "serial_number": "MB0001", "model_number": "meshblock volume", "max_namespaces": 8,
                 "namespaces": []}
    await t.rpc.nvmf_create_subsystem(NQN + "2")
    s2 = await subsystem(t, NQN + "2")
    assert s2["serial_number"] == "0" * 20 and s2["model_number"] == "SPDK bdev Controller"
    assert s2["max_namespaces"] == 32
    assert [x["nqn"] for x in await t.rpc.nvmf_get_subsystems()] == [DISCOVERY, NQN, NQN + "2"]
    await t.rpc.nvmf_create_subsystem(NQN[:-1])  # subsystems are kept sorted by NQN, not by age
    assert [x["nqn"] for x in await t.rpc.nvmf_get_subsystems()] == [DISCOVERY, NQN[:-1], NQN, NQN + "2"]
    await t.rpc.nvmf_delete_subsystem(NQN[:-1])

    await expect(SpdkRpcError, -32603, t.rpc.nvmf_create_subsystem(NQN), f"Unable to create subsystem {NQN}")
    bad = "iqn.2026-11.io.meshblock:x"
    await expect(SpdkRpcError, -32603, t.rpc.nvmf_create_subsystem(bad), f"Unable to create subsystem {bad}")
    long = "nqn.2026-11.io.meshblock:" + "x" * 200
    await expect(SpdkRpcError, -32603, t.rpc.nvmf_create_subsystem(long), f"Unable to create subsystem {long}")
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_create_subsystem(NQN + "3", serial_number="S" * 21),
                 "Invalid parameters")
    missing = NQN + ":missing"
    await expect(SpdkNotFound, -32602, t.rpc.nvmf_delete_subsystem(missing),
                 f"Subsystem with NQN '{missing}' not found")
    await expect(SpdkNotFound, -19, t.rpc.nvmf_get_subsystems(missing), "No such device")
    assert await t.rpc.nvmf_delete_subsystem(NQN + "2") is True
    assert [x["nqn"] for x in await t.rpc.nvmf_get_subsystems()] == [DISCOVERY, NQN]


async def test_namespaces(spdk_target, aio_file):
    t = spdk_target
    await pool(t, aio_file)
    a = await t.rpc.bdev_lvol_create("a", 16 * MiB, LVS)
    b = await t.rpc.bdev_lvol_create("b", 16 * MiB, LVS)
    await t.rpc.nvmf_create_subsystem(NQN, max_namespaces=4)
    assert await t.rpc.nvmf_subsystem_add_ns(NQN, a) == 1
    assert await t.rpc.nvmf_subsystem_add_ns(NQN, f"{LVS}/b", nsid=3) == 3
    ns = (await subsystem(t))["namespaces"]
    assert ns == [{"nsid": 1, "bdev_name": a, "name": a, "nguid": a.replace("-", "").upper(), "uuid": a},
                  {"nsid": 3, "bdev_name": b, "name": b, "nguid": b.replace("-", "").upper(), "uuid": b}]
    c = await t.rpc.bdev_lvol_create("c", 16 * MiB, LVS)
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_add_ns(NQN, c, nsid=3), "Invalid parameters")
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_add_ns(NQN, c, nsid=5), "Invalid parameters")
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_add_ns(NQN, "nope"), "Invalid parameters")
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_add_ns(NQN, a), "Invalid parameters")  # claimed
    await expect(SpdkNotFound, -32602, t.rpc.nvmf_subsystem_add_ns(NQN + "x", c),
                 f"Subsystem with NQN '{NQN}x' not found")
    assert await t.rpc.nvmf_subsystem_add_ns(NQN, c) == 2  # the first free NSID
    assert await t.rpc.nvmf_subsystem_remove_ns(NQN, 1) is True
    assert (await bdev(t, a))["claimed"] is False
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_remove_ns(NQN, 1), "Invalid parameters")
    assert [n["nsid"] for n in (await subsystem(t))["namespaces"]] == [2, 3]
    # deleting the subsystem releases its bdevs
    await t.rpc.nvmf_delete_subsystem(NQN)
    assert (await bdev(t, b))["claimed"] is False and (await bdev(t, c))["claimed"] is False


async def test_listeners_and_ana(spdk_target, listen_addr):
    t = spdk_target
    port = free_port(listen_addr)
    await t.rpc.nvmf_create_subsystem(NQN, ana_reporting=True, max_namespaces=2)
    await t.rpc.nvmf_create_subsystem(NQN + "2")
    # no transport yet
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_add_listener(NQN, listen_addr, port),
                 "Invalid parameters")
    await t.rpc.nvmf_create_transport("TCP")
    assert await t.rpc.nvmf_subsystem_add_listener(NQN, listen_addr, port) is True
    addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": listen_addr, "trsvcid": str(port)}
    assert (await subsystem(t))["listen_addresses"] == [addr]
    assert await t.rpc.nvmf_subsystem_get_listeners(NQN) == [
        {"address": addr, "ana_states": [{"ana_group": 1, "ana_state": "optimized"},
                                         {"ana_group": 2, "ana_state": "optimized"}]}]
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_add_listener(NQN, listen_addr, port),
                 "Invalid parameters")
    # the port is really bound: nobody else can listen there
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError):
            s.bind((listen_addr, port))
            s.listen()
    # a port another process holds cannot be used
    with socket.socket() as s:
        s.bind((listen_addr, 0))
        s.listen()
        taken = s.getsockname()[1]
        await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_add_listener(NQN, listen_addr, taken),
                     "Invalid parameters")
    # two subsystems share one listen address
    assert await t.rpc.nvmf_subsystem_add_listener(NQN + "2", listen_addr, port) is True
    assert await t.rpc.nvmf_subsystem_get_listeners(NQN + "2") == [{"address": addr}]

    assert await t.rpc.nvmf_subsystem_listener_set_ana_state(NQN, "non_optimized", listen_addr, port,
                                                             anagrpid=2) is True
    (lst,) = await t.rpc.nvmf_subsystem_get_listeners(NQN)
    assert lst["ana_states"] == [{"ana_group": 1, "ana_state": "optimized"},
                                 {"ana_group": 2, "ana_state": "non_optimized"}]
    await t.rpc.nvmf_subsystem_listener_set_ana_state(NQN, "inaccessible", listen_addr, port)
    (lst,) = await t.rpc.nvmf_subsystem_get_listeners(NQN)
    assert {x["ana_state"] for x in lst["ana_states"]} == {"inaccessible"}
    await expect(SpdkRpcError, -32603,
                 t.rpc.nvmf_subsystem_listener_set_ana_state(NQN + "2", "optimized", listen_addr, port),
                 "error setting ANA state: -22")  # ANA reporting is off
    await expect(SpdkRpcError, -32603,
                 t.rpc.nvmf_subsystem_listener_set_ana_state(NQN, "optimized", listen_addr, port + 1),
                 "error setting ANA state: -22")  # no such listener

    assert await t.rpc.nvmf_subsystem_remove_listener(NQN, listen_addr, port) is True
    await expect(SpdkInvalidParams, -32602, t.rpc.nvmf_subsystem_remove_listener(NQN, listen_addr, port),
                 "Invalid parameters")
    assert await t.rpc.nvmf_subsystem_get_listeners(NQN) == []
    # still bound for the other subsystem; free once that one lets go too
    with socket.socket() as s, pytest.raises(OSError):
        s.bind((listen_addr, port))
        s.listen()
    await t.rpc.nvmf_delete_subsystem(NQN + "2")
    await asyncio.sleep(0.2)
    with socket.socket() as s:
        s.bind((listen_addr, port))
        s.listen()


async def test_hosts_and_allow_any_host(spdk_target):
    t = spdk_target
    await t.rpc.nvmf_create_subsystem(NQN)
    assert await t.rpc.nvmf_subsystem_add_host(NQN, HOST1) is True
    await t.rpc.nvmf_subsystem_add_host(NQN, HOST2)
    assert (await subsystem(t))["hosts"] == [{"nqn": HOST2}, {"nqn": HOST1}]  # newest first
    await expect(SpdkRpcError, -32603, t.rpc.nvmf_subsystem_add_host(NQN, HOST1), "Internal error")
    await expect(SpdkRpcError, -32603, t.rpc.nvmf_subsystem_add_host(NQN, "not-an-nqn"), "Internal error")
    assert await t.rpc.nvmf_subsystem_remove_host(NQN, HOST1) is True
    assert (await subsystem(t))["hosts"] == [{"nqn": HOST2}]
    await expect(SpdkRpcError, -32603, t.rpc.nvmf_subsystem_remove_host(NQN, HOST1), "Internal error")
    await expect(SpdkNotFound, -32602, t.rpc.nvmf_subsystem_add_host(NQN + "x", HOST1),
                 f"Subsystem with NQN '{NQN}x' not found")
    assert await t.rpc.nvmf_subsystem_allow_any_host(NQN, True) is True
    assert (await subsystem(t))["allow_any_host"] is True
    await t.rpc.nvmf_subsystem_allow_any_host(NQN, False)
    assert (await subsystem(t))["allow_any_host"] is False
    assert await t.rpc.nvmf_subsystem_get_controllers(NQN) == []


# --- NVMe-oF host side ---------------------------------------------------------------------------

async def test_attach_between_targets(spdk_target, spdk_targets, aio_file, listen_addr):
    exp = spdk_target                       # interrupt mode, exports a volume
    await pool(exp, aio_file)
    vol = await exp.rpc.bdev_lvol_create("vol", 24 * MiB, LVS)
    port = free_port(listen_addr)
    await exp.rpc.nvmf_create_transport("TCP")
    await exp.rpc.nvmf_create_subsystem(NQN, serial_number="MB42")
    await exp.rpc.nvmf_subsystem_add_ns(NQN, vol)
    await exp.rpc.nvmf_subsystem_add_host(NQN, HOST1)
    await exp.rpc.nvmf_subsystem_add_listener(NQN, listen_addr, port)

    host = await spdk_targets("host", interrupt_mode=False)   # a polling target can attach over TCP
    names = await host.rpc.bdev_nvme_attach_controller("N0", listen_addr, port, NQN, hostnqn=HOST1)
    assert names == ["N0n1"]
    b = await bdev(host, "N0n1")
    assert b["product_name"] == "NVMe disk" and b["block_size"] == 512 and b["num_blocks"] == 24 * MiB // 512
    assert b["uuid"] == vol
    (c,) = await host.rpc.bdev_nvme_get_controllers()
    assert c["name"] == "N0"
    (path,) = c["ctrlrs"]
    assert path["state"] == "enabled" and path["host"]["nqn"] == HOST1
    assert path["trid"] == {**path["trid"], "trtype": "TCP", "adrfam": "IPv4", "traddr": listen_addr,
                            "trsvcid": str(port), "subnqn": NQN}
    (ctrlr,) = await exp.rpc.nvmf_subsystem_get_controllers(NQN)
    assert ctrlr["hostnqn"] == HOST1
    await expect(SpdkNotFound, -22, host.rpc.bdev_nvme_get_controllers("N9"), "Controller N9 does not exist")

    # refused connects all end as -EIO: host not allowed, unknown subsystem, nothing listening
    await expect(SpdkRpcError, -5, host.rpc.bdev_nvme_attach_controller("N1", listen_addr, port, NQN,
                                                                         hostnqn=HOST2), "Input/output error")
    await expect(SpdkRpcError, -5, host.rpc.bdev_nvme_attach_controller("N2", listen_addr, port, NQN + "x",
                                                                         hostnqn=HOST1), "Input/output error")
    await expect(SpdkRpcError, -5, host.rpc.bdev_nvme_attach_controller("N3", listen_addr, free_port(listen_addr),
                                                                         NQN, hostnqn=HOST1), "Input/output error")
    assert [x["name"] for x in await host.rpc.bdev_nvme_get_controllers()] == ["N0"]
    await expect(SpdkExists, -114, host.rpc.bdev_nvme_attach_controller("N0", listen_addr, port, NQN,
                                                                         hostnqn=HOST1),
                 "A controller named N0 already exists with the specified network path")
    # a target in interrupt mode cannot use NVMe/TCP as a host at all
    await exp.rpc.nvmf_subsystem_allow_any_host(NQN, True)
    await expect(SpdkRpcError, -95, exp.rpc.bdev_nvme_attach_controller("L0", listen_addr, port, NQN),
                 "Operation not supported")

    assert await host.rpc.bdev_nvme_detach_controller("N0") is True
    assert await host.rpc.bdev_nvme_get_controllers() == []
    await expect(SpdkNotFound, -19, host.rpc.bdev_get_bdevs("N0n1"), "No such device")
    await expect(SpdkNotFound, -19, host.rpc.bdev_nvme_detach_controller("N0"), "No such device")
    for _ in range(50):
        if await exp.rpc.nvmf_subsystem_get_controllers(NQN) == []:
            break
        await asyncio.sleep(0.1)
    assert await exp.rpc.nvmf_subsystem_get_controllers(NQN) == []


async def _wait_for(pred, timeout: float = 10.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = await pred()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def test_attached_controller_follows_the_target(spdk_target, spdk_targets, aio_file, listen_addr):
    """Namespace changes reach the host (AEN); a host taken off the allowlist loses its controller
    ("failed", bdevs kept) and gets it back, with a new controller ID, once allowed again."""
    exp = spdk_target
    await pool(exp, aio_file)
    a = await exp.rpc.bdev_lvol_create("a", 16 * MiB, LVS)
    b = await exp.rpc.bdev_lvol_create("b", 16 * MiB, LVS)
    port = free_port(listen_addr)
    await exp.rpc.nvmf_create_transport("TCP")
    await exp.rpc.nvmf_create_subsystem(NQN)
    await exp.rpc.nvmf_subsystem_add_ns(NQN, a)
    await exp.rpc.nvmf_subsystem_add_host(NQN, HOST1)
    await exp.rpc.nvmf_subsystem_add_listener(NQN, listen_addr, port)
    host = await spdk_targets("host", interrupt_mode=False)
    assert await host.rpc.bdev_nvme_attach_controller("N0", listen_addr, port, NQN, hostnqn=HOST1) == ["N0n1"]

    async def names():
        return sorted(x["name"] for x in await host.rpc.bdev_get_bdevs())

    async def state():
        (c,) = await host.rpc.bdev_nvme_get_controllers("N0")
        return c["ctrlrs"][0]["state"], c["ctrlrs"][0]["cntlid"]

    await exp.rpc.nvmf_subsystem_add_ns(NQN, b)
    assert await _wait_for(lambda: _eq(names, ["N0n1", "N0n2"]))
    assert (await bdev(host, "N0n2"))["uuid"] == b
    await exp.rpc.bdev_lvol_resize(a, 32 * MiB)
    assert await _wait_for(lambda: _eq_blocks(host, "N0n1", 32 * MiB // 512))
    await exp.rpc.nvmf_subsystem_remove_ns(NQN, 2)
    assert await _wait_for(lambda: _eq(names, ["N0n1"]))

    await exp.rpc.nvmf_subsystem_remove_host(NQN, HOST1)
    assert await exp.rpc.nvmf_subsystem_get_controllers(NQN) == []
    assert await _wait_for(lambda: _eq(state, ("failed", 1)))
    assert await names() == ["N0n1"]
    await exp.rpc.nvmf_subsystem_add_host(NQN, HOST1)
    assert await _wait_for(lambda: _eq(state, ("enabled", 2)))
    (ctrlr,) = await exp.rpc.nvmf_subsystem_get_controllers(NQN)
    assert ctrlr["cntlid"] == 2 and ctrlr["hostnqn"] == HOST1
    await host.rpc.bdev_nvme_detach_controller("N0")
    assert await _wait_for(lambda: _eq(lambda: exp.rpc.nvmf_subsystem_get_controllers(NQN), []))


async def test_multipath_and_failover_paths(spdk_target, spdk_targets, aio_file):
    from tests.support.backends import loopback_address

    exp = spdk_target
    await pool(exp, aio_file)
    vol = await exp.rpc.bdev_lvol_create("v", 8 * MiB, LVS)
    a1, a2 = loopback_address(), loopback_address()
    p1, p2 = free_port(a1), free_port(a2)
    await exp.rpc.nvmf_create_transport("TCP")
    await exp.rpc.nvmf_create_subsystem(NQN, allow_any_host=True, ana_reporting=True)
    await exp.rpc.nvmf_subsystem_add_ns(NQN, vol)
    await exp.rpc.nvmf_subsystem_add_listener(NQN, a1, p1)
    await exp.rpc.nvmf_subsystem_add_listener(NQN, a2, p2, ana_state="non_optimized")
    host = await spdk_targets("host", interrupt_mode=False)
    # multipath (the default): one controller per path, one bdev
    assert await host.rpc.bdev_nvme_attach_controller("M", a1, p1, NQN, hostnqn=HOST1) == ["Mn1"]
    assert await host.rpc.bdev_nvme_attach_controller("M", a2, p2, NQN, hostnqn=HOST1) == ["Mn1"]
    (m,) = await host.rpc.bdev_nvme_get_controllers("M")
    assert [(c["trid"]["traddr"], c["cntlid"]) for c in m["ctrlrs"]] == [(a1, 1), (a2, 2)]
    paths = (await bdev(host, "Mn1"))["driver_specific"]["nvme"]
    assert [(x["trid"]["traddr"], x["ns_data"]["ana_state"]) for x in paths] == \
        [(a1, "optimized"), (a2, "non_optimized")]
    await expect(SpdkInvalidParams, -22, host.rpc.bdev_nvme_attach_controller(
        "M", a1, free_port(a1), NQN, hostnqn=HOST1, multipath="failover"), "Invalid argument")
    await expect(SpdkExists, -17, host.rpc.bdev_nvme_attach_controller("X", a1, p1, NQN, hostnqn=HOST1),
                 "File exists")  # that path is taken by M
    # failover: alternates are remembered, not connected
    assert await host.rpc.bdev_nvme_attach_controller("F", a1, p1, NQN, hostnqn=HOST2, multipath="failover") == []
    assert await host.rpc.bdev_nvme_attach_controller("F", a2, p2, NQN, hostnqn=HOST2, multipath="failover") == []
    (f,) = await host.rpc.bdev_nvme_get_controllers("F")
    (only,) = f["ctrlrs"]
    assert only["trid"]["traddr"] == a1 and [x["traddr"] for x in only["alternate_trids"]] == [a2]
    assert [c["cntlid"] for c in await exp.rpc.nvmf_subsystem_get_controllers(NQN)] == [1, 2, 3]
    await host.client.call("bdev_nvme_detach_controller", {"name": "M", "traddr": a2, "trsvcid": str(p2)})
    (m,) = await host.rpc.bdev_nvme_get_controllers("M")
    assert [c["trid"]["traddr"] for c in m["ctrlrs"]] == [a1]
    await expect(SpdkNotFound, -6, host.client.call("bdev_nvme_detach_controller", {"name": "M", "traddr": a2}),
                 "No such device or address")


async def _eq(fn, want) -> bool:
    return await fn() == want


async def _eq_blocks(t: SpdkTarget, name: str, want: int) -> bool:
    return (await bdev(t, name))["num_blocks"] == want


async def test_aio_delete_unloads_lvstore(spdk_target, aio_file):
    """Deleting the AIO bdev under an lvstore hot-removes everything on it; the data stays."""
    t = spdk_target
    f = aio_file("pool", 128 * MiB)
    await t.rpc.bdev_aio_create(f, "aio0", block_size=512)
    lvs_uuid = await t.rpc.bdev_lvol_create_lvstore("aio0", LVS)
    lv = await t.rpc.bdev_lvol_create("v", 8 * MiB, LVS)
    await t.rpc.nvmf_create_subsystem(NQN)
    await t.rpc.nvmf_subsystem_add_ns(NQN, lv)
    assert await t.rpc.bdev_aio_delete("aio0") is True
    assert await t.rpc.bdev_lvol_get_lvstores() == [] and await t.rpc.bdev_get_bdevs() == []
    assert (await subsystem(t))["namespaces"] == []
    await expect(SpdkNotFound, -19, t.rpc.bdev_aio_delete("aio0"), "No such device")
    await t.rpc.bdev_aio_create(f, "aio0", block_size=512)
    assert (await lvstore(t))["uuid"] == lvs_uuid
    assert (await bdev(t, f"{LVS}/v"))["uuid"] == lv


# --- raid ----------------------------------------------------------------------------------------

async def _wait_raid(t: SpdkTarget, pred, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        (r,) = await t.rpc.bdev_raid_get_bdevs()
        if pred(r) or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.1)


async def test_raid1_over_lvols(spdk_target, aio_file):
    t = spdk_target
    await pool(t, aio_file)
    a = await t.rpc.bdev_lvol_create("ra", 32 * MiB, LVS)
    b = await t.rpc.bdev_lvol_create("rb", 32 * MiB, LVS)
    assert await t.rpc.bdev_raid_create("r1", "raid1", [f"{LVS}/ra", b]) is True
    (r,) = await t.rpc.bdev_raid_get_bdevs()
    assert r == {**r, "name": "r1", "state": "online", "raid_level": "raid1", "strip_size_kb": 0,
                 "superblock": False, "num_base_bdevs": 2, "num_base_bdevs_discovered": 2,
                 "num_base_bdevs_operational": 2}
    assert "process" not in r
    assert [(x["name"], x["uuid"], x["is_configured"]) for x in r["base_bdevs_list"]] == \
        [(f"{LVS}/ra", a, True), (b, b, True)]
    assert all(x["data_offset"] == 0 and x["data_size"] == 32 * MiB // 512 for x in r["base_bdevs_list"])
    rb = await bdev(t, "r1")
    assert rb["product_name"] == "Raid Volume" and rb["num_blocks"] == 32 * MiB // 512 and rb["uuid"] == r["uuid"]
    assert rb["driver_specific"]["raid"]["state"] == "online"
    assert (await bdev(t, a))["claimed"] is True
    assert await t.rpc.bdev_raid_get_bdevs("configuring") == []
    assert len(await t.rpc.bdev_raid_get_bdevs("online")) == 1

    await expect(SpdkExists, -17, t.rpc.bdev_raid_create("r1", "raid1", [a, b]),
                 "Failed to create RAID bdev r1: File exists")
    c = await t.rpc.bdev_lvol_create("rc", 32 * MiB, LVS)
    await expect(SpdkRpcError, -1, t.rpc.bdev_raid_create("r2", "raid1", [c, a]),
                 "Failed to create RAID bdev r2: Operation not permitted")
    assert (await bdev(t, c))["claimed"] is False
    await expect(SpdkInvalidParams, -22, t.rpc.bdev_raid_create("r3", "raid1", [c]),
                 "Failed to create RAID bdev r3: Invalid argument")  # raid1 needs two

    # remove a member: degraded but online
    assert await t.rpc.bdev_raid_remove_base_bdev(b) is True
    (r,) = await t.rpc.bdev_raid_get_bdevs()
    assert r["state"] == "online" and r["num_base_bdevs_discovered"] == 1 and r["num_base_bdevs_operational"] == 1
    assert r["base_bdevs_list"][1] == {**r["base_bdevs_list"][1], "name": None, "is_configured": False,
                                       "uuid": "00000000-0000-0000-0000-000000000000"}
    assert (await bdev(t, b))["claimed"] is False
    await expect(SpdkNotFound, -19, t.rpc.bdev_raid_remove_base_bdev(b), "Failed to remove base bdev from raid bdev")

    # add one back: it is rebuilt, which writes (allocates) the whole thin lvol
    assert await t.rpc.bdev_raid_add_base_bdev("r1", c) is True
    r = await _wait_raid(t, lambda r: "process" not in r and r["num_base_bdevs_discovered"] == 2)
    assert r["num_base_bdevs_operational"] == 2 and r["base_bdevs_list"][1]["name"] == c
    assert (await lvols(t))["rc"]["num_allocated_clusters"] == 8

    # a member's lvol deleted underneath: hot-removed from the raid
    await t.rpc.bdev_lvol_delete(c)
    r = await _wait_raid(t, lambda r: r["num_base_bdevs_discovered"] == 1)
    assert r["state"] == "online" and r["num_base_bdevs_operational"] == 1

    assert await t.rpc.bdev_raid_delete("r1") is True
    assert await t.rpc.bdev_raid_get_bdevs() == []
    assert (await bdev(t, a))["claimed"] is False
    await expect(SpdkNotFound, -19, t.rpc.bdev_get_bdevs("r1"), "No such device")
    await expect(SpdkNotFound, -19, t.rpc.bdev_raid_delete("r1"), "raid bdev r1 not found")


async def test_raid_waits_for_missing_base(spdk_target, aio_file):
    t = spdk_target
    await pool(t, aio_file)
    a = await t.rpc.bdev_lvol_create("ra", 16 * MiB, LVS)
    assert await t.rpc.bdev_raid_create("r0", "raid0", [a, "later"], strip_size_kb=64) is True
    (r,) = await t.rpc.bdev_raid_get_bdevs("configuring")
    assert r["state"] == "configuring" and r["num_base_bdevs_discovered"] == 1
    assert r["base_bdevs_list"][1] == {**r["base_bdevs_list"][1], "name": "later", "is_configured": False}
    await expect(SpdkNotFound, -19, t.rpc.bdev_get_bdevs("r0"), "No such device")
    # the missing base bdev appears (here as an lvol renamed into place is not possible, so a malloc)
    await t.rpc.bdev_malloc_create(16 * MiB // 512, 512, name="later")
    r = await _wait_raid(t, lambda r: r["state"] == "online")
    assert r["state"] == "online" and r["num_base_bdevs_discovered"] == 2
    assert (await bdev(t, "r0"))["num_blocks"] == 2 * 16 * MiB // 512
    # raid0 tolerates no missing member: removing one takes it offline
    await t.rpc.bdev_raid_remove_base_bdev("later")
    r = await _wait_raid(t, lambda r: r["state"] == "offline")
    assert r["state"] == "offline"
    await expect(SpdkNotFound, -19, t.rpc.bdev_get_bdevs("r0"), "No such device")
    await t.rpc.bdev_raid_delete("r0")
    assert await t.rpc.bdev_raid_get_bdevs() == []
    assert (await bdev(t, a))["claimed"] is False


async def test_raid_superblock_survives_restart(spdk_target, aio_file):
    t = spdk_target
    f = aio_file("pool", 128 * MiB)
    await t.rpc.bdev_aio_create(f, "aio0", block_size=512)
    await t.rpc.bdev_lvol_create_lvstore("aio0", LVS)
    x = await t.rpc.bdev_lvol_create("x", 16 * MiB, LVS)
    y = await t.rpc.bdev_lvol_create("y", 16 * MiB, LVS)
    z = await t.rpc.bdev_lvol_create("z", 16 * MiB, LVS)
    assert await t.rpc.bdev_raid_create("rs", "raid1", [x, y], superblock=True) is True
    (r,) = await t.rpc.bdev_raid_get_bdevs()
    # the data starts after the superblock area: 1 MiB, rounded up to the lvol's cluster
    assert r["superblock"] is True and r["base_bdevs_list"][0]["data_offset"] == 4 * MiB // 512
    assert (await bdev(t, "rs"))["num_blocks"] == 12 * MiB // 512
    assert (await lvols(t))["x"]["num_allocated_clusters"] == 1  # the superblock was written
    raid_uuid = r["uuid"]
    await t.rpc.bdev_raid_remove_base_bdev(y)
    # y still carries the superblock of rs: no other raid may take it
    await expect(SpdkExists, -17, t.rpc.bdev_raid_create("r2", "raid1", [y, z]),
                 "Failed to create RAID bdev r2: File exists")

    await t.kill9()
    await t.start()
    assert await t.rpc.bdev_raid_get_bdevs() == []
    await t.rpc.bdev_aio_create(f, "aio0", block_size=512)
    # examine found the superblock on x: the raid is back, degraded, its member named by bdev name
    (r,) = await _wait_for(lambda: t.rpc.bdev_raid_get_bdevs("online"))
    assert r["name"] == "rs" and r["uuid"] == raid_uuid and r["num_base_bdevs_discovered"] == 1
    assert [b["name"] for b in r["base_bdevs_list"]] == [x, None]
    assert (await bdev(t, x))["claimed"] is True and (await bdev(t, y))["claimed"] is False
    # deleting it without clear_sb leaves the superblock on x; with clear_sb it is wiped
    await t.rpc.bdev_raid_delete("rs")
    await expect(SpdkExists, -17, t.rpc.bdev_raid_create("r3", "raid1", [x, z]),
                 "Failed to create RAID bdev r3: File exists")
    await t.client.call("bdev_raid_create", {"name": "r4", "raid_level": "raid1", "base_bdevs": [z, "later"]})
    assert await t.client.call("bdev_raid_delete", {"name": "r4", "clear_sb": True}) is True


# --- lifecycle ---------------------------------------------------------------------------------

async def test_kill_instance_removes_socket(spdk_target):
    t = spdk_target
    assert await t.rpc.spdk_kill_instance("SIGTERM") is True
    assert t.proc is not None
    rc = await asyncio.to_thread(t.proc.wait, 30)
    assert rc == 0
    assert not os.path.exists(t.sock)
