"""DH-HMAC-CHAP through CSI: a StorageClass parameter asks for it, ControllerPublishVolume publishes
the node's host with it, and the publish context (which Kubernetes keeps in the VolumeAttachment,
readable by many) never carries a secret: the node plugin fetches them from the controller."""

from __future__ import annotations

import pytest
from grpc import StatusCode as Code

from meshblock.proto.csi.v1 import csi_pb2 as csi
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.secretbox import ENV_VAR, new_key_text
from tests.csi.conftest import HOST_NQN, NODE_ID, with_plugin
from tests.csi.test_controller import code_of, create_req, mount_cap, wait_registered
from tests.support.backends import fake_backend
from tests.support.cluster import Cluster


@pytest.fixture
async def keyed_csi(tmp_path_factory, short_tmp):
    c = Cluster(fake_backend(tmp_path_factory.mktemp("fakespdk-registry")), short_tmp / "c", nodes=2,
                controller_env={ENV_VAR: new_key_text()})
    async with with_plugin(c, short_tmp) as both:
        yield both


async def test_storage_class_dhchap_publishes_with_authentication(keyed_csi):
    c, p = keyed_csi
    ctl = p.controller
    await wait_registered(c)
    for bad in ({"dhchap": "maybe"}, {"dhchap": "true", "protocol": "iscsi"}):
        assert await code_of(ctl.CreateVolume(create_req("bad", parameters=bad))) == Code.INVALID_ARGUMENT
    v = (await ctl.CreateVolume(create_req("auth-1", parameters={"dhchap": "bidirectional", "replicas": "2"}))).volume
    assert v.volume_context["dhchap"] == "dhchap-bidirectional"
    pub = csi.ControllerPublishVolumeRequest(volume_id=v.volume_id, node_id=NODE_ID, volume_capability=mount_cap(),
                                             volume_context=v.volume_context)
    ctx = (await ctl.ControllerPublishVolume(pub)).publish_context
    admin_v = await c.volumes.GetVolume(pb.GetVolumeRequest(ref=v.volume_id))
    assert dict(admin_v.host_auth) == {HOST_NQN: "dhchap-bidirectional"}
    info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref=v.volume_id, host_nqn=HOST_NQN))
    assert info.dhchap_secret and info.dhchap_ctrl_secret
    assert not any(s in value for value in ctx.values() for s in (info.dhchap_secret, info.dhchap_ctrl_secret))
    # idempotent: the same secrets
    assert (await ctl.ControllerPublishVolume(pub)).publish_context == ctx
    again = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref=v.volume_id, host_nqn=HOST_NQN))
    assert (again.dhchap_secret, again.dhchap_ctrl_secret) == (info.dhchap_secret, info.dhchap_ctrl_secret)
    # unpublished: the secrets go with the host
    await ctl.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=v.volume_id, node_id=NODE_ID))
    assert dict((await c.volumes.GetVolume(pb.GetVolumeRequest(ref=v.volume_id))).host_auth) == {}
    # a class without the parameter: no authentication
    plain = (await ctl.CreateVolume(create_req("plain-1"))).volume
    assert "dhchap" not in plain.volume_context
    await ctl.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(
        volume_id=plain.volume_id, node_id=NODE_ID, volume_capability=mount_cap(), volume_context=plain.volume_context))
    assert dict((await c.volumes.GetVolume(pb.GetVolumeRequest(ref=plain.volume_id))).host_auth) == {}
    log = p.log.read_text()
    assert info.dhchap_secret not in log and info.dhchap_ctrl_secret not in log
