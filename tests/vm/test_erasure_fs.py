"""File systems on an erasure-coded volume, seen from a real kernel with plain `nvme connect`.

A 2+1 volume on four nodes gets ext4 (mkfs defaults) and random 4 KiB writes with fsync, checked after
a remount. A node holding a shard is killed: the data reads back degraded (reconstructed from parity);
the lost shard is replaced on the spare node and rebuilt; checked after a remount; the other non-head
node is killed, so the rebuilt shard must serve its part: checked again. Still degraded, the volume
gets xfs (4 KiB sectors, as the CSI node plugin makes it: docs/erasure-coding.md) and writes; the two
nodes come back, the missing shard is rebuilt, and xfs is checked after a remount.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.testbed.nvme import find_namespace, nvme_connect
from tests.control.test_replicated import down, up
from tests.vm.test_csi_node import FIRST_NVMF_PORT, real_backend_or_skip
from tests.support.cluster import Cluster

pytestmark = [pytest.mark.vm, pytest.mark.spdk]
MiB = 1 << 20
TOOL = "/meshblock/tests/vm/blockfile.py"


async def wait_volume(c: Cluster, pred, what: str, timeout: float = 600) -> pb.Volume:
    # SPDK's raid5f rebuilds one stripe (here 4 KiB) per request, 16 at a time: a 256 MiB shard takes
    # about half a minute on an idle 2-core machine, several under a busy test run
    deadline = time.monotonic() + timeout
    while True:
        v = await c.volumes.GetVolume(pb.GetVolumeRequest(ref="ec"))
        if pred(v):
            return v
        assert time.monotonic() < deadline, f"the volume never got {what}: {v}"
        await asyncio.sleep(0.5)


def nodes_of(v: pb.Volume) -> set[str]:
    return {r.node_name for r in v.replica_status if r.state != "deleting"}


def check(g, mnt: str, when: str) -> None:
    g.run("sync; echo 3 > /proc/sys/vm/drop_caches")
    r = g.run(["python3", TOOL, "check", f"{mnt}/data"], timeout=600)
    assert r.rc == 0 and "bad 0" in r.stdout, f"{when}: {r.stdout} {r.stderr}"


async def test_filesystems_through_node_losses_and_rebuilds(testbed, short_tmp):
    backend = real_backend_or_skip()
    addr = testbed.host_address
    c = Cluster(backend, short_tmp / "c", nodes=4, prefix=tuple(testbed.netns_argv()), address=addr,
                first_port=FIRST_NVMF_PORT, pool_size="2GiB",
                controller_args=("--replace-after", "3", "--no-standby-heads"))
    g = testbed.guest("a")
    mnt = "/mnt/ec"
    nqn = ""
    try:
        await c.start()
        v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="ec", size_bytes=512 * MiB,
                                                                erasure=pb.ErasureCoding(data=2, parity=1)))
        assert v.state == "available", v
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="ec", host_nqn=g.hostnqn))
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="ec", host_nqn=g.hostnqn))
        (p,) = info.paths
        nqn = info.subnqn
        nvme_connect(g, nqn, p.traddr, int(p.trsvcid)).check()
        dev = find_namespace(g, v.namespace_uuid).device
        # no discard: a deallocate would reach the raid5f, which has none
        assert g.check(f"cat /sys/block/{dev.rsplit('/', 1)[1]}/queue/discard_max_bytes").strip() == "0"
        remount = f"umount {mnt} && mount {dev} {mnt}"

        g.check(f"mkfs.ext4 -F -q {dev} && mkdir -p {mnt} && mount {dev} {mnt}", timeout=600)
        g.check(["python3", TOOL, "write", f"{mnt}/data", "400", "7"], timeout=900)
        g.check(remount)
        check(g, mnt, "ext4 after a remount")

        head = c.agent_by_id(v.head_node_id).name
        first, second = sorted(nodes_of(v) - {head})
        spare = next(a.name for a in c.agents if a.name not in nodes_of(v))
        await down(c, first)
        await wait_volume(c, lambda v: v.state == "degraded", "degraded")
        check(g, mnt, "ext4 with a node lost (degraded reads)")
        await wait_volume(c, lambda v: v.state == "available" and spare in nodes_of(v), "rebuilt on the spare")
        g.check(remount)
        check(g, mnt, "ext4 after the rebuild")
        await down(c, second)
        await wait_volume(c, lambda v: v.state == "degraded", "degraded again")
        check(g, mnt, "ext4 after the rebuild, with another node lost")

        g.check(f"umount {mnt} && mkfs.xfs -f -q -s size=4096 {dev} && mount {dev} {mnt}", timeout=600)
        g.check(["python3", TOOL, "write", f"{mnt}/data", "400", "8"], timeout=900)
        check(g, mnt, "xfs written degraded")
        await up(c, first)
        await up(c, second)
        v = await wait_volume(c, lambda v: v.state == "available" and len(v.replica_status) == 3, "whole again")
        assert nodes_of(v) & {first, second} and spare in nodes_of(v) and head in nodes_of(v)
        g.check(remount)
        check(g, mnt, "xfs after the rebuild")
    finally:
        g.run(f"umount {mnt}")
        if nqn:
            g.run(f"nvme disconnect -n {nqn}")
        await c.stop()
