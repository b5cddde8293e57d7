"""One tenant per StorageClass: the CSI controller makes each call with the token in the call's
secrets (key tenantToken), else with its own (--admin-token-file). A real controller with tenants,
one agent on the fake SPDK target, and the CSI plugin process on its Unix socket."""

from __future__ import annotations

import grpc
import pytest

from meshblock.proto.csi.v1 import csi_pb2 as csi
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.control.test_tenants import As
from tests.csi.conftest import Plugin
from tests.csi.test_controller import code_of, create_req
from tests.support.backends import fake_backend
from tests.support.cluster import Cluster

MiB = 1 << 20


@pytest.fixture
async def tenant_cluster(tmp_path_factory, short_tmp):
    c = Cluster(fake_backend(tmp_path_factory.mktemp("fakespdk-registry")), short_tmp / "c", nodes=1)
    plugin = None
    try:
        await c.start()
        c.controller.stubs()
        anon = As(c.controller.channel, None)
        root = (await anon.tenants.CreateIdentity(pb.CreateIdentityRequest(name="root", role="admin"))).token
        admin = As(c.controller.channel, root)
        # the plugin's own identity: an admin of the default tenant (the node plugin registers hosts)
        plugin_tok = (await admin.tenants.CreateIdentity(pb.CreateIdentityRequest(name="csi", role="admin"))).token
        (short_tmp / "csi-token").write_text(plugin_tok + "\n")
        tokens = {"root": root}
        for name, quota in (("acme", 1), ("globex", 0)):
            await admin.tenants.CreateTenant(pb.CreateTenantRequest(name=name,
                                                                    quota=pb.TenantQuota(max_volumes=quota)))
            tokens[name] = (await admin.tenants.CreateIdentity(pb.CreateIdentityRequest(
                name=f"{name}-csi", tenant=name, role="tenant-admin"))).token
        plugin = Plugin(c, short_tmp, extra_args=("--admin-token-file", str(short_tmp / "csi-token")))
        yield admin, plugin, tokens
    finally:
        if plugin is not None:
            await plugin.close()
        await c.stop()


async def test_each_storage_class_token_is_its_tenant(tenant_cluster):
    admin, p, tokens = tenant_cluster
    ctl = p.controller
    acme, globex = {"tenantToken": tokens["acme"]}, {"tenantToken": tokens["globex"]}
    made = (await ctl.CreateVolume(create_req("pvc-a", 8 * MiB, secrets=acme))).volume
    v = await admin.volumes.GetVolume(pb.GetVolumeRequest(ref=made.volume_id))
    assert v.tenant == "acme"
    # the same request again is the same volume (the tenant's own name lookup)
    assert (await ctl.CreateVolume(create_req("pvc-a", 8 * MiB, secrets=acme))).volume.volume_id == made.volume_id
    assert await code_of(ctl.CreateVolume(create_req("pvc-b", 8 * MiB, secrets=acme))) == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    # another StorageClass's tenant cannot reach it
    assert await code_of(ctl.ControllerExpandVolume(csi.ControllerExpandVolumeRequest(
        volume_id=made.volume_id, capacity_range=csi.CapacityRange(required_bytes=16 * MiB), secrets=globex))) == \
        grpc.StatusCode.NOT_FOUND
    await ctl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=made.volume_id, secrets=globex))
    assert (await admin.volumes.GetVolume(pb.GetVolumeRequest(ref=made.volume_id))).state == "available"
    assert await code_of(ctl.CreateVolume(create_req("pvc-x", 8 * MiB, secrets={"tenantToken": "mbt_wrong"}))) == \
        grpc.StatusCode.UNAUTHENTICATED
    # no token in the secrets: the plugin's own identity (an admin: the default tenant)
    other = (await ctl.CreateVolume(create_req("pvc-d", 8 * MiB))).volume
    assert (await admin.volumes.GetVolume(pb.GetVolumeRequest(ref=other.volume_id))).tenant == "default"
    # the right tenant deletes it
    await ctl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=made.volume_id, secrets=acme))
    assert await code_of(admin.volumes.GetVolume(pb.GetVolumeRequest(ref=made.volume_id))) == \
        grpc.StatusCode.NOT_FOUND
