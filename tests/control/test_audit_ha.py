"""The audit log and identities live in the store: after kill -9 of the leader (two controllers on a
real etcd) the new leader authenticates the same tokens, enforces the same quotas and lists the
events the old one recorded."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.control.test_tenants import As, code_of
from tests.support.agents import AgentProc
from tests.support.backends import fake_backend
from tests.support.cluster import ControllerProc
from tests.support.etcd import EtcdServer, _etcd_or_skip

pytestmark = pytest.mark.etcd
MiB = 1 << 20


async def leading(controllers: list[ControllerProc], token: str | None, timeout: float = 30) -> ControllerProc:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in controllers:
            if c.proc.poll() is not None:
                continue
            c.stubs()
            try:
                st = await As(c.channel, token).cluster.GetClusterStatus(pb.GetClusterStatusRequest())
                if st.nodes_up == 1:
                    return c
            except grpc.aio.AioRpcError:
                pass
        await asyncio.sleep(0.05)
    raise AssertionError("no controller became active:\n" + "\n".join(c.tail() for c in controllers))


async def test_audit_log_and_identities_survive_a_failover(tmp_path_factory, short_tmp):
    fake = fake_backend(tmp_path_factory.mktemp("fakespdk-registry"))
    (short_tmp / "etcd").mkdir()
    etcd = EtcdServer(_etcd_or_skip(), short_tmp / "etcd")
    etcd.start()
    url = etcd.url("/audit")
    ctrls = [ControllerProc(fake, short_tmp / f"c{i}", store_url=url, identity=f"c{i}") for i in (1, 2)]
    agent = AgentProc(fake, short_tmp / "n1", "n1", pool_size="1GiB", controller=",".join(c.listen for c in ctrls))
    try:
        for c in ctrls:
            c.start()
        agent.start()
        await agent.wait_healthy()
        leader = await leading(ctrls, None)
        anon = As(leader.channel, None)
        root = (await anon.tenants.CreateIdentity(pb.CreateIdentityRequest(name="root", role="admin"))).token
        admin = As(leader.channel, root)
        await admin.tenants.CreateTenant(pb.CreateTenantRequest(name="acme", quota=pb.TenantQuota(max_volumes=2)))
        ops = (await admin.tenants.CreateIdentity(pb.CreateIdentityRequest(name="ops", tenant="acme",
                                                                           role="tenant-admin"))).token
        await As(leader.channel, ops).volumes.CreateVolume(pb.CreateVolumeRequest(name="a1", size_bytes=16 * MiB))
        before = (await admin.audit.ListAuditEvents(pb.ListAuditEventsRequest())).events
        assert [e.method for e in before] == ["TenantService.CreateIdentity", "TenantService.CreateTenant",
                                              "TenantService.CreateIdentity", "VolumeService.CreateVolume"]

        await leader.stop(signal.SIGKILL)
        new = await leading([c for c in ctrls if c is not leader], root)
        admin, acme = As(new.channel, root), As(new.channel, ops)
        after = (await admin.audit.ListAuditEvents(pb.ListAuditEventsRequest())).events
        assert [(e.id, e.identity, e.method, e.target, e.code) for e in after] == [
            (e.id, e.identity, e.method, e.target, e.code) for e in before]
        # the same identities and quotas on the new leader, and its events follow the old one's
        assert (await code_of(As(new.channel, None).volumes.ListVolumes(pb.ListVolumesRequest())))[0] == \
            grpc.StatusCode.UNAUTHENTICATED
        await acme.volumes.CreateVolume(pb.CreateVolumeRequest(name="a2", size_bytes=16 * MiB))
        code, details = await code_of(acme.volumes.CreateVolume(pb.CreateVolumeRequest(name="a3", size_bytes=MiB)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 2 volumes, in use 2" in details
        last = (await admin.audit.ListAuditEvents(pb.ListAuditEventsRequest(tenant="acme"))).events
        assert [(e.target, e.code) for e in last] == [("a1", "OK"), ("a2", "OK"), ("a3", "RESOURCE_EXHAUSTED")]
        assert last[0].id < last[1].id < last[2].id
    finally:
        for c in ctrls:
            await c.stop()
        await agent.stop()
        etcd.stop()
