"""DH-HMAC-CHAP with the Linux kernel's NVMe/TCP initiator (nvme-cli, on the bookworm-backports
kernel): a guest connects to a replicated volume with the secrets `volume connect` gives, and is
refused without them, with a wrong host secret or a wrong controller secret. A rotation leaves the
connected host's I/O running; its next connection needs the new secrets."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from meshblock import dhchap
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.secretbox import ENV_VAR, new_key_text
from meshblock.testbed.nvme import controllers, find_namespace, nvme_connect, wait_gone
from tests.support.cluster import Cluster
from tests.vm.test_csi_node import real_backend_or_skip
from tests.vm.test_kernels import BACKPORTS_GUEST

pytestmark = [pytest.mark.vm, pytest.mark.spdk]
MiB = 1 << 20
FIRST_PORT = 4630


async def until_applied(cluster: Cluster, v: pb.Volume, host: str, secret: str, timeout: float = 30.0) -> None:
    """Until the head holds ``secret`` for ``host`` (what SPDK's host entry names)."""
    want = dhchap.key_name(secret)
    agent = cluster.agent_by_id(v.head_node_id)
    deadline = time.monotonic() + timeout
    while True:
        spdk = agent.spdk("spdk-head.sock")
        try:
            subs = await spdk.nvmf_get_subsystems(v.nqn)
        finally:
            await spdk.client.close()
        if any(h["nqn"] == host and h.get("dhchap_key") == want for h in subs[0]["hosts"]):
            return
        assert time.monotonic() < deadline, subs
        await asyncio.sleep(0.3)


async def test_kernel_host_authenticates(testbed, short_tmp):
    backend = real_backend_or_skip()
    # Debian 12's own kernel has no NVMe in-band authentication (CONFIG_NVME_HOST_AUTH); its
    # bookworm-backports kernel has it
    g = testbed.guest(BACKPORTS_GUEST, kernel="backports")
    cluster = Cluster(backend, short_tmp / "c", nodes=2, prefix=tuple(testbed.netns_argv()),
                      address=testbed.host_address, first_port=FIRST_PORT, controller_env={ENV_VAR: new_key_text()})
    nqn = ""
    try:
        await cluster.start()
        await cluster.volumes.CreateVolume(pb.CreateVolumeRequest(name="auth", size_bytes=64 * MiB, replicas=2))
        v = await cluster.volumes.PublishVolume(pb.PublishVolumeRequest(ref="auth", host_nqn=g.hostnqn,
                                                                        dhchap_bidirectional=True))
        info = await cluster.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="auth", host_nqn=g.hostnqn))
        nqn = info.subnqn
        await until_applied(cluster, v, g.hostnqn, info.dhchap_secret)
        head = next(p for p in info.paths if p.ana_state == "optimized")

        # The guest kernel's first authentication is slow (10-20 s under TCG on a busy machine; later
        # ones take 1-3 s). SPDK drops a controller that has sent no keep-alive within the keep-alive
        # timeout (the kernel asks for 5 s, SPDK's minimum is 10 s), authenticated or not, and the
        # kernel, still connecting, only notices when its own 60 s command timeout runs out: the first
        # refusal then took 60-80 s, or the guest ended the command first. With a keep-alive timeout as
        # long as the kernel's wait, a wrong secret is refused as soon as the target has checked it.
        def connect(key: str = "", ctrl: str = ""):
            return nvme_connect(g, nqn, head.traddr, int(head.trsvcid), dhchap_secret=key, dhchap_ctrl_secret=ctrl,
                                keep_alive_tmo=60)

        for key, ctrl, what in (("", "", "no secret"), (dhchap.generate(), info.dhchap_ctrl_secret, "a wrong secret"),
                                (info.dhchap_secret, dhchap.generate(), "a wrong controller secret")):
            r = connect(key, ctrl)
            assert not r.ok and controllers(g, nqn) == {}, f"connected with {what}: {r.describe()}"
            assert not r.timed_out, f"neither connected nor refused with {what}: {r.describe()}"

        r = connect(info.dhchap_secret, info.dhchap_ctrl_secret)
        head_log = (cluster.agent_by_id(v.head_node_id).data_dir / "spdk-head.log").read_text()[-3000:]
        assert r.ok, f"{r.describe()}\n{g.run('dmesg | tail -20').stdout}\n--- head target ---\n{head_log}"
        dev = find_namespace(g, info.namespace_uuid).device
        data = os.urandom(4 * MiB)
        digest = hashlib.sha256(data).hexdigest()
        g.write_file("/tmp/auth.bin", data)
        g.check(f"dd if=/tmp/auth.bin of={dev} bs=1M oflag=direct status=none")

        def read_back(offset_mib: int = 0) -> str:
            return g.check(f"dd if={dev} bs=1M count=4 skip={offset_mib} iflag=direct status=none | sha256sum"
                           ).split()[0]
        assert read_back() == digest

        # rotated while connected: the connection stays and keeps doing I/O
        await cluster.volumes.PublishVolume(pb.PublishVolumeRequest(ref="auth", host_nqn=g.hostnqn,
                                                                    rotate_dhchap=True))
        new = await cluster.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref="auth", host_nqn=g.hostnqn))
        assert new.dhchap_secret != info.dhchap_secret and new.dhchap_ctrl_secret != info.dhchap_ctrl_secret
        await until_applied(cluster, v, g.hostnqn, new.dhchap_secret)
        g.check(f"dd if=/tmp/auth.bin of={dev} bs=1M seek=8 oflag=direct status=none")
        assert read_back(8) == digest and read_back() == digest
        assert list(controllers(g, nqn).values()) == ["live"]

        # the next connection needs the new secrets
        g.check(f"nvme disconnect -n {nqn}")
        wait_gone(g, dev)
        r = connect(info.dhchap_secret, info.dhchap_ctrl_secret)
        assert not r.ok and controllers(g, nqn) == {}, f"connected with the old secrets: {r.describe()}"
        connect(new.dhchap_secret, new.dhchap_ctrl_secret).check()
        dev = find_namespace(g, info.namespace_uuid).device
        assert read_back() == digest and read_back(8) == digest
    finally:
        if nqn:
            g.run(f"nvme disconnect -n {nqn}")
        await cluster.stop()
