"""iSCSI volumes seen from a host: real SPDK, Debian's libiscsi tools (libiscsi-bin) and libiscsi.

A local cluster (controller and three agents as processes) exports volumes of one and three
replicas; an initiator that is published finds, inspects, writes and reads them; one that is
not, a wrong CHAP secret, an unpublished initiator and a deleted volume are refused.
"""

from __future__ import annotations

import os

import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.support import iscsi_host as host
from tests.support.cluster import Cluster

from .test_iscsi import INIT_A, INIT_B, create, iscsi_targets
from .test_replicated import down, wait_for

MiB = 1 << 20
SECRET = "0123456789abcdef"

pytestmark = [pytest.mark.spdk, pytest.mark.timeout(600)]


@pytest.fixture
async def real_cluster(real_only, short_tmp):
    why = host.missing()
    if why:
        pytest.skip(why)
    if not real_only.install.has("spdk_tgt"):
        pytest.skip("this SPDK build has no spdk_tgt (the iSCSI target)")
    c = Cluster(real_only, short_tmp / "c", nodes=3)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


async def portal_of(c: Cluster, name: str, initiator: str) -> tuple[str, str]:
    info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref=name, initiator_iqn=initiator))
    (p,) = info.paths
    return f"{p.traddr}:{p.trsvcid}", info.target_iqn


async def serial(portal: str, target: str, initiator: str, **chap) -> str:
    """The LUN's unit serial number (VPD page 0x80)."""
    r = await host.tool("iscsi-inq", "-i", initiator, "-e", "1", "-c", "128", host.url(portal, target, **chap))
    assert r.returncode == 0, r.output
    return next(line.split(":", 1)[1].strip().strip("[]") for line in r.output.splitlines() if "Serial" in line)


async def test_published_initiator_sees_writes_and_reads(real_cluster):
    c = real_cluster
    for name, replicas in (("i1", 1), ("i3", 3)):
        v = await c.volumes.CreateVolume(create(name, replicas=replicas))
        assert v.state == "available", v
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref=name, initiator_iqn=INIT_A))
        portal, target = await portal_of(c, name, INIT_A)

        r = await host.tool("iscsi-ls", "-i", INIT_A, "-s", f"iscsi://{portal}")
        assert r.returncode == 0 and f"Target:{target} Portal:{portal}" in r.output and "Lun:0" in r.output, r.output
        r = await host.tool("iscsi-ls", "-i", INIT_B, "-s", f"iscsi://{portal}")   # discovery shows it to A only
        assert target not in r.output, r.output
        r = await host.tool("iscsi-inq", "-i", INIT_A, host.url(portal, target))
        assert r.returncode == 0 and "Peripheral Device Type:DIRECT_ACCESS" in r.output, r.output
        r = await host.tool("iscsi-readcapacity16", "-i", INIT_A, host.url(portal, target))
        assert r.returncode == 0 and f"Total size:{64 * MiB}" in r.output, r.output

        data = os.urandom(4 * MiB)
        await host.write(portal, target, INIT_A, MiB, data)
        assert await host.read(portal, target, INIT_A, MiB, len(data)) == data
        # SPDK's serial is the bdev's name, cut to 31 characters: the raid named after the volume
        assert await serial(portal, target, INIT_A) == f"vol-{v.id}"[:31]

        # an initiator that was never published is refused at login
        r = await host.tool("iscsi-inq", "-i", INIT_B, host.url(portal, target))
        assert r.returncode != 0 and "Authorization failure" in r.output, r.output
        # unpublished: refused too
        await c.volumes.UnpublishVolume(pb.UnpublishVolumeRequest(ref=name, initiator_iqn=INIT_A))
        r = await host.tool("iscsi-inq", "-i", INIT_A, host.url(portal, target))
        assert r.returncode != 0 and "Login Failed" in r.output, r.output
        # published again, the data is still there
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref=name, initiator_iqn=INIT_A))
        assert await host.read(portal, target, INIT_A, MiB, len(data)) == data

        # deleted: the head keeps no target node and discovery shows nothing
        assert (await c.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref=name))).existed
        assert await iscsi_targets(c, v.head_node_id) == {}
        r = await host.tool("iscsi-ls", "-i", INIT_A, "-s", f"iscsi://{portal}")
        assert target not in r.output, r.output


async def test_chap_is_required_and_checked(real_cluster):
    c = real_cluster
    await c.volumes.CreateVolume(create("c1", chap_user="alice", chap_secret=SECRET))
    await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="c1", initiator_iqn=INIT_A))
    portal, target = await portal_of(c, "c1", INIT_A)
    r = await host.tool("iscsi-inq", "-i", INIT_A, host.url(portal, target, user="alice", secret="wrong-secret-0"))
    assert r.returncode != 0 and "Authentication failure" in r.output, r.output
    r = await host.tool("iscsi-inq", "-i", INIT_A, host.url(portal, target))
    assert r.returncode != 0 and "Login Failed" in r.output, r.output
    r = await host.tool("iscsi-inq", "-i", INIT_A, host.url(portal, target, user="alice", secret=SECRET))
    assert r.returncode == 0, r.output
    data = os.urandom(MiB)
    await host.write(portal, target, INIT_A, 0, data, user="alice", secret=SECRET)
    assert await host.read(portal, target, INIT_A, 0, MiB, user="alice", secret=SECRET) == data
    with pytest.raises(host.IscsiError, match="Authentication failure"):
        await host.read(portal, target, INIT_A, 0, MiB, user="alice", secret="not-the-secret", block_size=4096)


async def test_head_failover_keeps_target_name_serial_and_data(real_cluster):
    c = real_cluster
    v = await c.volumes.CreateVolume(create("f3", replicas=3))
    await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="f3", initiator_iqn=INIT_A))
    portal, target = await portal_of(c, "f3", INIT_A)
    data = os.urandom(4 * MiB)
    await host.write(portal, target, INIT_A, 0, data)
    before = await serial(portal, target, INIT_A)

    await down(c, c.agent_by_id(v.head_node_id).name)
    moved = await wait_for(c, "f3", lambda x: x.head_node_id not in ("", v.head_node_id) and x.state == "degraded")
    new_portal, new_target = await portal_of(c, "f3", INIT_A)
    assert new_portal != portal and new_target == target
    assert await serial(new_portal, target, INIT_A) == before
    assert await host.read(new_portal, target, INIT_A, 0, len(data)) == data
    assert moved.target_iqn == target
