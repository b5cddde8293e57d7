"""iSCSI volumes through the admin API: controller and agents as processes, fake SPDK and real SPDK.

What SPDK holds is read from the head node's head target; the host's view (real SPDK and
Debian's libiscsi tools) is in test_iscsi_host.py.
"""

from __future__ import annotations

import signal

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.support.cluster import Cluster

from .test_api import code_of
from .test_replicated import down, up, wait_for

MiB = 1 << 20
INIT_A = "iqn.1993-08.org.debian:01:host-a"
INIT_B = "iqn.1993-08.org.debian:01:host-b"
NQN_HOST = "nqn.2026-11.io.meshblock:host:api-test"

pytestmark = pytest.mark.timeout(300)


async def iscsi_targets(c: Cluster, node_id: str) -> dict[str, tuple[list[str], dict]]:
    """Target nodes on a node's head target: name -> (allowed initiators, the node as SPDK shows it)."""
    spdk = c.agent_by_id(node_id).spdk("spdk-head.sock")
    try:
        groups = {g["tag"]: g for g in await spdk.iscsi_get_initiator_groups()}
        return {n["name"]: (groups[n["pg_ig_maps"][0]["ig_tag"]]["initiators"], n)
                for n in await spdk.iscsi_get_target_nodes()}
    finally:
        await spdk.client.close()


def create(name: str, replicas: int = 1, **iscsi) -> pb.CreateVolumeRequest:
    return pb.CreateVolumeRequest(name=name, size_bytes=64 * MiB, replicas=replicas, protocol="iscsi",
                                  iscsi=pb.IscsiOptions(**iscsi))


async def test_iscsi_volume_create_publish_connect_delete(cluster):
    c = cluster
    v = await c.volumes.CreateVolume(create("i1"))
    assert (v.state, v.protocol, v.nqn, v.target_iqn) == ("available", "iscsi", "",
                                                           f"iqn.2026-11.io.meshblock:volume:{v.id}")
    assert (await c.volumes.CreateVolume(create("i1"))).id == v.id
    code, details = await code_of(c.volumes.CreateVolume(pb.CreateVolumeRequest(name="i1", size_bytes=64 * MiB)))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "protocol iscsi" in details
    # nobody published yet: the head holds no target node
    assert await iscsi_targets(c, v.head_node_id) == {}

    v = await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="i1", initiator_iqn=INIT_A))
    assert list(v.hosts) == [INIT_A]
    # an IQN in host_nqn is taken too, in any case
    v = await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="i1", host_nqn=INIT_B.upper()))
    assert list(v.hosts) == [INIT_A, INIT_B]
    targets = await iscsi_targets(c, v.head_node_id)
    assert list(targets) == [v.target_iqn] and targets[v.target_iqn][0] == [INIT_A, INIT_B]
    assert targets[v.target_iqn][1]["luns"] == [{"bdev_name": f"vol-{v.id}", "lun_id": 0}]

    info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="i1", initiator_iqn=INIT_A))
    head = c.agent_by_id(v.head_node_id)
    assert (info.protocol, info.target_iqn, info.initiator_iqn, info.subnqn) == ("iscsi", v.target_iqn, INIT_A, "")
    assert [(p.transport, p.traddr, p.trsvcid) for p in info.paths] == [("iscsi", head.address, "3260")]

    v = await c.volumes.UnpublishVolume(pb.UnpublishVolumeRequest(ref="i1", initiator_iqn=INIT_B))
    assert (await iscsi_targets(c, v.head_node_id))[v.target_iqn][0] == [INIT_A]
    assert (await c.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="i1"))).existed
    assert await iscsi_targets(c, v.head_node_id) == {}


async def test_iscsi_input_is_checked(cluster):
    c = cluster
    bad = [
        (pb.CreateVolumeRequest(name="x", size_bytes=64 * MiB, protocol="fc"), "protocol"),
        (pb.CreateVolumeRequest(name="x", size_bytes=64 * MiB, iscsi=pb.IscsiOptions(chap_user="u")), "iscsi"),
        (create("x", chap_user="alice"), "iscsi.chap_secret"),
        (create("x", chap_secret="0123456789abcdef"), "iscsi.chap_user"),
        (create("x", chap_user="alice", chap_secret="short"), "iscsi.chap_secret"),
        (create("x", netmasks=["10.0.0.0/40"]), "iscsi.netmasks"),
    ]
    for req, field in bad:
        code, details = await code_of(c.volumes.CreateVolume(req))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field + ":"), (field, details)
    await c.volumes.CreateVolume(create("i1", chap_user="alice", chap_secret="0123456789abcdef",
                                        netmasks=["127.0.0.0/8"]))
    await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="n1", size_bytes=64 * MiB))
    for req, field in [
        (pb.PublishVolumeRequest(ref="i1", initiator_iqn="iqn.2026-13.com.example:x"), "initiator_iqn"),
        (pb.PublishVolumeRequest(ref="i1", host_nqn=NQN_HOST), "host_nqn"),
        (pb.PublishVolumeRequest(ref="i1"), "initiator_iqn"),
        (pb.PublishVolumeRequest(ref="i1", initiator_iqn=INIT_A, host_nqn=INIT_B), "host_nqn"),
        (pb.PublishVolumeRequest(ref="n1", initiator_iqn=INIT_A), "initiator_iqn"),
    ]:
        code, details = await code_of(c.volumes.PublishVolume(req))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field + ":"), (field, details)
    v = await c.volumes.GetVolume(pb.GetVolumeRequest(ref="i1"))
    # the secret never leaves the controller through the API
    assert v.chap_user == "alice" and list(v.iscsi_netmasks) == ["127.0.0.0/8"]
    assert "0123456789abcdef" not in str(v)
    code, _ = await code_of(c.volumes.CreateVolume(create("i1", chap_user="alice", chap_secret="fedcba9876543210",
                                                          netmasks=["127.0.0.0/8"])))
    assert code == grpc.StatusCode.ALREADY_EXISTS


async def test_replicated_iscsi_head_moves_with_its_target_name(cluster):
    c = cluster
    v = await c.volumes.CreateVolume(create("r3", replicas=3))
    assert v.state == "available" and sorted(r.state for r in v.replica_status) == ["online"] * 3
    v = await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="r3", initiator_iqn=INIT_A))
    old = c.agent_by_id(v.head_node_id)
    assert list(await iscsi_targets(c, v.head_node_id)) == [v.target_iqn]
    await down(c, old.name)
    v = await wait_for(c, "r3", lambda x: x.head_node_id not in ("", v.head_node_id) and x.state == "degraded")
    new = c.agent_by_id(v.head_node_id)
    targets = await iscsi_targets(c, v.head_node_id)
    assert list(targets) == [v.target_iqn] and targets[v.target_iqn][0] == [INIT_A]
    info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="r3", initiator_iqn=INIT_A))
    assert [(p.traddr, p.trsvcid) for p in info.paths] == [(new.address, "3260")]
    await up(c, old.name)
    await wait_for(c, "r3", lambda x: x.state == "available")
    assert (await c.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="r3"))).existed
    assert await iscsi_targets(c, new.data_dir.joinpath("node-id").read_text().strip()) == {}


async def test_node_without_iscsi_target_faults_the_volume_saying_why(backend, short_tmp):
    c = Cluster(backend, short_tmp, nodes=1)
    c.agents[0].argv += ["--head-app", "nvmf_tgt"]
    try:
        await c.start()
        v = await c.volumes.CreateVolume(create("i1"))
        assert v.state == "faulted" and "no iSCSI target" in v.message and "spdk_tgt" in v.message, v
        assert (await c.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="i1"))).existed
    finally:
        await c.stop()


async def test_agent_restart_keeps_and_reapplies_the_export(cluster):
    c = cluster
    v = await c.volumes.CreateVolume(create("i1"))
    await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="i1", initiator_iqn=INIT_A))
    before = await iscsi_targets(c, v.head_node_id)
    a = c.agent_by_id(v.head_node_id)
    await a.stop(signal.SIGKILL)          # its SPDK targets keep running and keep serving
    assert await iscsi_targets(c, v.head_node_id) == before
    a.start()
    await a.wait_healthy()
    # the controller re-applies to the new agent instance; later changes reach SPDK as before
    v = await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="i1", initiator_iqn=INIT_B))
    targets = await iscsi_targets(c, v.head_node_id)
    assert list(targets) == [v.target_iqn] and targets[v.target_iqn][0] == [INIT_A, INIT_B]
    assert targets[v.target_iqn][1]["pg_ig_maps"] == before[v.target_iqn][1]["pg_ig_maps"]
