"""Tenants, roles, quotas and the audit log through the admin API: a controller and an agent as
processes (fake SPDK target), real gRPC over the controller's Unix socket."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from tests.support.backends import fake_backend
from tests.support.cluster import Cluster

MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:tenant-test"
NOT_FOUND = grpc.StatusCode.NOT_FOUND


class As:
    """The admin API's stubs, every call made with one bearer token (None: no token)."""

    def __init__(self, channel: grpc.aio.Channel, token: str | None):
        md = (("authorization", f"Bearer {token}"),) if token is not None else None
        for attr, stub in (("volumes", pb_grpc.VolumeServiceStub), ("tenants", pb_grpc.TenantServiceStub),
                           ("audit", pb_grpc.AuditServiceStub), ("hosts", pb_grpc.HostServiceStub),
                           ("nodes", pb_grpc.NodeServiceStub), ("cluster", pb_grpc.ClusterServiceStub)):
            setattr(self, attr, _WithMetadata(stub(channel), md))


class _WithMetadata:
    def __init__(self, stub, md):
        self._stub, self._md = stub, md

    def __getattr__(self, name):
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._md, timeout=30, **kw)


async def code_of(coro) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await coro
    return ei.value.code(), ei.value.details()


@pytest.fixture
def fake(tmp_path_factory):
    return fake_backend(tmp_path_factory.mktemp("fakespdk-registry"))


@pytest.fixture
async def one_node(fake, short_tmp):
    c = Cluster(fake, short_tmp, nodes=1, controller_args=("--audit-prune-interval", "0.2"))
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


async def setup_tenants(c: Cluster) -> dict[str, As]:
    """An admin, tenants acme and globex, and an identity per role; returns stubs per identity."""
    ch = c.controller.stubs() and c.controller.channel
    anon = As(ch, None)
    made = await anon.tenants.CreateIdentity(pb.CreateIdentityRequest(name="root", role="admin"))
    admin = As(ch, made.token)
    for name in ("acme", "globex"):
        await admin.tenants.CreateTenant(pb.CreateTenantRequest(name=name))
    out = {"admin": admin, "anon": anon, "root-token": made.token}
    for name, tenant, role in (("acme-ops", "acme", "tenant-admin"), ("acme-ro", "acme", "viewer"),
                               ("globex-ops", "globex", "tenant-admin")):
        r = await admin.tenants.CreateIdentity(pb.CreateIdentityRequest(name=name, tenant=tenant, role=role))
        assert r.token.startswith("mbt_") and r.identity.tenant == tenant
        out[name] = As(ch, r.token)
        out[name + "-token"] = r.token
    return out


async def test_no_tenants_configured_behaves_as_before(one_node):
    c = one_node
    v = await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="v1", size_bytes=16 * MiB))
    assert v.state == "available" and v.tenant == "default"
    # any token (or none) is accepted while no identity exists: every caller is an admin
    stranger = As(c.controller.channel, "not-a-token")
    assert (await stranger.volumes.GetVolume(pb.GetVolumeRequest(ref="v1"))).id == v.id
    tenants = (await stranger.tenants.ListTenants(pb.ListTenantsRequest())).tenants
    assert [(t.name, t.usage.volumes, t.usage.bytes) for t in tenants] == [("default", 1, 16 * MiB)]
    code, _ = await code_of(stranger.volumes.CreateVolume(pb.CreateVolumeRequest(
        name="i1", size_bytes=16 * MiB, iscsi=pb.IscsiOptions(chap_user="u", chap_secret="topsecret-12345"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    events = (await stranger.audit.ListAuditEvents(pb.ListAuditEventsRequest())).events
    assert [(e.method, e.target, e.code, e.identity, e.tenant) for e in events] == [
        ("VolumeService.CreateVolume", "v1", "OK", "", "default"),
        ("VolumeService.CreateVolume", "i1", "INVALID_ARGUMENT", "", "default")]
    assert events[0].peer.startswith("unix:") and "iSCSI settings need protocol iscsi" in events[1].message
    assert "topsecret" not in str(events)
    # a tenant-admin cannot be the first identity: nobody could manage identities afterwards
    code, details = await code_of(stranger.tenants.CreateIdentity(
        pb.CreateIdentityRequest(name="x", role="tenant-admin")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "first identity must be an admin" in details


async def test_isolation_roles_and_authentication(one_node):
    c = one_node
    ids = await setup_tenants(c)
    admin, acme, ro, globex = ids["admin"], ids["acme-ops"], ids["acme-ro"], ids["globex-ops"]
    # from the first identity on, every call authenticates
    code, details = await code_of(ids["anon"].volumes.ListVolumes(pb.ListVolumesRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "give a token" in details
    code, _ = await code_of(As(c.controller.channel, "mbt_forged").volumes.ListVolumes(pb.ListVolumesRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # the controller's existing tests' caller (no token) is refused too, but agents still register
    assert (await admin.nodes.ListNodes(pb.ListNodesRequest())).nodes[0].state == "up"

    a1 = await acme.volumes.CreateVolume(pb.CreateVolumeRequest(name="a1", size_bytes=16 * MiB))
    assert a1.tenant == "acme" and a1.state == "available"
    g1 = await globex.volumes.CreateVolume(pb.CreateVolumeRequest(name="g1", size_bytes=16 * MiB))
    assert g1.tenant == "globex"
    snap = await acme.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="a1", name="a1-s"))
    assert snap.tenant == "acme"

    # I/O statistics: a tenant's callers (viewers too) see its own volumes, an admin every one
    async def stats(who, *refs: str) -> list[tuple[str, str]]:
        got = await who.volumes.GetVolumeStats(pb.GetVolumeStatsRequest(refs=refs))
        return [(x.name, x.tenant) for x in got.volumes]
    assert await stats(globex) == [("g1", "globex")] and await stats(ro) == [("a1", "acme")]
    assert await stats(admin) == [("a1", "acme"), ("g1", "globex")]
    assert (await code_of(globex.volumes.GetVolumeStats(pb.GetVolumeStatsRequest(refs=["a1"]))))[0] == \
        grpc.StatusCode.NOT_FOUND

    # another tenant's objects do not exist for globex, by name or id
    for call in (globex.volumes.GetVolume(pb.GetVolumeRequest(ref="a1")),
                 globex.volumes.GetVolume(pb.GetVolumeRequest(ref=a1.id)),
                 globex.volumes.ResizeVolume(pb.ResizeVolumeRequest(ref="a1", size_bytes=32 * MiB)),
                 globex.volumes.PublishVolume(pb.PublishVolumeRequest(ref="a1", host_nqn=HOST)),
                 globex.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="a1", host_nqn=HOST)),
                 globex.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref="a1", max_iops=1000)),
                 globex.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref="a1", name="steal")),
                 globex.volumes.GetSnapshot(pb.GetSnapshotRequest(ref="a1-s")),
                 globex.volumes.CloneVolume(pb.CloneVolumeRequest(name="steal", source_snapshot_ref="a1-s")),
                 globex.volumes.CloneVolume(pb.CloneVolumeRequest(name="steal", source_volume_ref="a1")),
                 globex.tenants.GetTenant(pb.GetTenantRequest(name="acme"))):
        code, details = await code_of(call)
        assert code == NOT_FOUND, details
    assert not (await globex.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="a1"))).existed
    assert not (await globex.volumes.DeleteSnapshot(pb.DeleteSnapshotRequest(ref="a1-s"))).existed
    assert [v.name for v in (await globex.volumes.ListVolumes(pb.ListVolumesRequest())).volumes] == ["g1"]
    assert [s.name for s in (await globex.volumes.ListSnapshots(pb.ListSnapshotsRequest())).snapshots] == []
    assert [t.name for t in (await globex.tenants.ListTenants(pb.ListTenantsRequest())).tenants] == ["globex"]
    # names are cluster-wide: taken, without saying by whom or with what
    code, details = await code_of(globex.volumes.CreateVolume(pb.CreateVolumeRequest(name="a1", size_bytes=MiB)))
    assert code == grpc.StatusCode.ALREADY_EXISTS and details == "the volume name 'a1' is taken"
    # the volume and its snapshot are untouched; acme and the admin see them
    assert (await acme.volumes.GetVolume(pb.GetVolumeRequest(ref="a1"))).size_bytes == 16 * MiB
    listed = await admin.volumes.ListVolumes(pb.ListVolumesRequest())
    assert [(v.name, v.tenant) for v in listed.volumes] == [("a1", "acme"), ("g1", "globex")]

    # a viewer reads within its tenant and changes nothing
    assert (await ro.volumes.GetVolume(pb.GetVolumeRequest(ref="a1"))).id == a1.id
    for call in (ro.volumes.CreateVolume(pb.CreateVolumeRequest(name="ro1", size_bytes=MiB)),
                 ro.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="a1")),
                 ro.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="a1", host_nqn=HOST))):
        code, details = await code_of(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "viewer" in details
    # tenant admins manage no tenants, identities or nodes
    for call in (acme.tenants.CreateTenant(pb.CreateTenantRequest(name="mine")),
                 acme.tenants.SetTenantQuota(pb.SetTenantQuotaRequest(name="acme", max_volumes=100)),
                 acme.tenants.CreateIdentity(pb.CreateIdentityRequest(name="x", tenant="acme", role="admin")),
                 acme.nodes.CordonNode(pb.CordonNodeRequest(ref="node-1"))):
        assert (await code_of(call))[0] == grpc.StatusCode.PERMISSION_DENIED
    # a deleted identity's token is refused at once
    await admin.tenants.DeleteIdentity(pb.DeleteIdentityRequest(name="globex-ops"))
    assert (await code_of(globex.volumes.ListVolumes(pb.ListVolumesRequest())))[0] == \
        grpc.StatusCode.UNAUTHENTICATED
    # a tenant that owns something is not deleted
    code, details = await code_of(admin.tenants.DeleteTenant(pb.DeleteTenantRequest(name="acme")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "1 volume(s)" in details

    # the audit log: who did what, refusals included; never a token
    events = (await admin.audit.ListAuditEvents(pb.ListAuditEventsRequest())).events
    seen = {(e.identity, e.method, e.target, e.code) for e in events}
    assert ("acme-ops", "VolumeService.CreateVolume", "a1", "OK") in seen
    assert ("globex-ops", "VolumeService.ResizeVolume", "a1", "NOT_FOUND") in seen
    assert ("acme-ro", "VolumeService.CreateVolume", "ro1", "PERMISSION_DENIED") in seen
    assert ("", "VolumeService.ListVolumes", "", "UNAUTHENTICATED") not in seen    # reads are not audited
    dump = str(events)
    assert all(ids[k][4:] not in dump for k in ids if k.endswith("token"))
    mine = (await acme.audit.ListAuditEvents(pb.ListAuditEventsRequest())).events
    assert mine and {e.tenant for e in mine} == {"acme"}


async def test_quotas(one_node):
    ids = await setup_tenants(one_node)
    admin, acme = ids["admin"], ids["acme-ops"]
    t = await admin.tenants.SetTenantQuota(pb.SetTenantQuotaRequest(name="acme", max_bytes=64 * MiB, max_volumes=2,
                                                                   max_iops=2000))
    assert (t.quota.max_bytes, t.quota.max_volumes, t.quota.max_iops) == (64 * MiB, 2, 2000)

    def exhausted(details: str, quota: str, limit: int, used: int) -> None:
        assert f"quota {quota} of tenant 'acme'" in details and f"limit {limit}" in details, details
        assert f"in use {used}" in details, details

    # under an IOPS quota a volume needs an IOPS limit
    code, details = await code_of(acme.volumes.CreateVolume(pb.CreateVolumeRequest(name="a1", size_bytes=32 * MiB)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    exhausted(details, "max_iops", 2000, 0)
    await acme.volumes.CreateVolume(pb.CreateVolumeRequest(name="a1", size_bytes=32 * MiB,
                                                           qos=pb.QosLimits(max_iops=1000)))
    code, details = await code_of(acme.volumes.CreateVolume(pb.CreateVolumeRequest(
        name="a2", size_bytes=48 * MiB, qos=pb.QosLimits(max_iops=1000))))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    exhausted(details, "max_bytes", 64 * MiB, 32 * MiB)
    code, details = await code_of(acme.volumes.ResizeVolume(pb.ResizeVolumeRequest(ref="a1", size_bytes=96 * MiB)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    exhausted(details, "max_bytes", 64 * MiB, 32 * MiB)
    code, details = await code_of(acme.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref="a1", max_iops=3000)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    exhausted(details, "max_iops", 2000, 1000)
    code, details = await code_of(acme.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref="a1", max_iops=0)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "without an IOPS limit" in details
    code, details = await code_of(acme.volumes.CloneVolume(pb.CloneVolumeRequest(
        name="c1", source_volume_ref="a1", size_bytes=48 * MiB, qos=pb.QosLimits(max_iops=1000))))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    exhausted(details, "max_bytes", 64 * MiB, 32 * MiB)
    # what fits is admitted: a clone of 32 MiB fills the capacity and the volume count
    c1 = await acme.volumes.CloneVolume(pb.CloneVolumeRequest(name="c1", source_volume_ref="a1",
                                                              qos=pb.QosLimits(max_iops=1000)))
    assert c1.tenant == "acme"
    await admin.tenants.SetTenantQuota(pb.SetTenantQuotaRequest(name="acme", max_bytes=0))
    code, details = await code_of(acme.volumes.CreateVolume(pb.CreateVolumeRequest(
        name="a3", size_bytes=4 * MiB, qos=pb.QosLimits(max_iops=1000))))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    exhausted(details, "max_volumes", 2, 2)
    use = (await acme.tenants.GetTenant(pb.GetTenantRequest())).usage
    assert (use.volumes, use.bytes, use.iops) == (2, 64 * MiB, 2000)
    # quotas are per tenant: globex is not limited by acme's
    await ids["globex-ops"].volumes.CreateVolume(pb.CreateVolumeRequest(name="g1", size_bytes=128 * MiB))
    # deleting gives the quota back
    await acme.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref="c1"))
    await acme.volumes.CreateVolume(pb.CreateVolumeRequest(name="a3", size_bytes=4 * MiB,
                                                           qos=pb.QosLimits(max_iops=1000)))


async def test_audit_retention_keeps_the_newest(fake, short_tmp):
    c = Cluster(fake, short_tmp, nodes=1, controller_args=("--audit-max-events", "4",
                                                           "--audit-prune-interval", "0.2"))
    try:
        await c.start()
        for i in range(8):
            assert not (await c.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref=f"gone-{i}"))).existed
        audit = pb_grpc.AuditServiceStub(c.controller.channel)
        deadline = time.monotonic() + 10
        while True:
            events = (await audit.ListAuditEvents(pb.ListAuditEventsRequest())).events
            if len(events) <= 4 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert [e.target for e in events] == [f"gone-{i}" for i in range(4, 8)]
        assert {e.code for e in events} == {"OK"}
        # --since: nothing from the future
        later = await audit.ListAuditEvents(pb.ListAuditEventsRequest(since=time.time() + 60))
        assert not later.events
    finally:
        await c.stop()


async def test_prune_by_age_and_count_on_sqlite(short_tmp):
    from meshblock.control.audit import AuditLog, Retention
    from meshblock.control.auth import Caller
    from meshblock.store import open_store

    store = open_store(f"sqlite:///{short_tmp / 'state.db'}")
    async with store:
        log = AuditLog(store, Retention(max_age=3600, max_events=0))
        who = Caller("ops", "acme", "tenant-admin", "unix:")
        now = time.time()
        for age in (7200, 5000, 100, 10):
            await log.record(caller=who, method="VolumeService.CreateVolume", target=f"v{age}", code="OK",
                             message="", at=now - age)
        assert await log.prune(now) == 2
        assert [e.target for e in (await log.list())[0]] == ["v100", "v10"]
        log.retention = Retention(max_age=0, max_events=1)
        assert await log.prune(now) == 1
        assert [e.target for e in (await log.list())[0]] == ["v10"]
        assert [e.target for e in (await log.list(tenant="globex"))[0]] == []


def test_secrets_in_a_request_are_redacted_from_messages():
    from meshblock.control.auth import redact, secret_values, target_of

    req = pb.CreateVolumeRequest(name="v", iscsi=pb.IscsiOptions(chap_user="u", chap_secret="topsecret-12345"))
    assert secret_values(req) == ["topsecret-12345"]
    assert redact("chap_secret 'topsecret-12345' is bad", secret_values(req)) == "chap_secret '[redacted]' is bad"
    assert target_of(pb.PublishVolumeRequest(ref="v", host_nqn="nqn.x", dhchap=True)) == "v host=nqn.x"


async def test_dhchap_secrets_never_reach_the_audit_log(fake, short_tmp):
    from meshblock.secretbox import ENV_VAR, new_key_text

    c = Cluster(fake, short_tmp, nodes=1, controller_env={ENV_VAR: new_key_text()})
    try:
        await c.start()
        await c.volumes.CreateVolume(pb.CreateVolumeRequest(name="d1", size_bytes=16 * MiB))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="d1", host_nqn=HOST, dhchap=True,
                                                              dhchap_bidirectional=True))
        await c.volumes.PublishVolume(pb.PublishVolumeRequest(ref="d1", host_nqn=HOST, rotate_dhchap=True,
                                                              dhchap_bidirectional=True))
        info = await c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="d1", host_nqn=HOST))
        assert info.dhchap_secret.startswith("DHHC-1:") and info.dhchap_ctrl_secret.startswith("DHHC-1:")
        events = (await pb_grpc.AuditServiceStub(c.controller.channel).ListAuditEvents(
            pb.ListAuditEventsRequest())).events
        assert [(e.method, e.target, e.code) for e in events] == [
            ("VolumeService.CreateVolume", "d1", "OK"),
            ("VolumeService.PublishVolume", f"d1 host={HOST}", "OK"),
            ("VolumeService.PublishVolume", f"d1 host={HOST}", "OK")]
        dump = str(events)
        assert "DHHC-1" not in dump and info.dhchap_secret not in dump and info.dhchap_ctrl_secret not in dump
    finally:
        await c.stop()
