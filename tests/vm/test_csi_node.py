"""The CSI driver on a real kernel: the plugin runs in a guest (controller and node roles), the
storage cluster (controller, three agents, real SPDK) on the host side of the test bed's bridge.

The guest reaches the admin API over mutual TLS and the volumes over NVMe/TCP, as a Kubernetes node
would. A scenario script in the guest checks a volume's life with data (stage, mkfs, publish,
expand, read-only, raw block), and csi-sanity's Node specs run there too when csi-sanity is found
(``meshblock csi-sanity install`` builds it; ``MESHBLOCK_CSI_SANITY`` names another).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.csi.conftest import csi_sanity_binary, sanity_node_specs
from tests.support.backends import real_backend, real_spdk
from tests.support.cluster import Cluster
from tests.support.pki import make_pki

pytestmark = [pytest.mark.vm, pytest.mark.spdk]

SOCKET = "/run/csi/csi.sock"
ADMIN_PORT = 7443
FIRST_NVMF_PORT = 4430
TLS_DIR = "/etc/meshblock/tls"
REPO = Path(__file__).resolve().parents[2]


def guest_pythonpath() -> str:
    """The checkout and its virtual environment's packages, as the guest sees them (/meshblock)."""
    site = sorted((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    if not site:
        pytest.skip("no .venv in the checkout: the guest runs the plugin from it (run scripts/setup)")
    return f"/meshblock:/meshblock/{site[0].relative_to(REPO)}"


def real_backend_or_skip():
    backend = real_backend()
    if backend is None:
        pytest.skip(f"real SPDK not found: {real_spdk()[1]}")
    return backend


@pytest.fixture
async def csi_guest(testbed, short_tmp):
    backend = real_backend_or_skip()
    pythonpath = guest_pythonpath()
    addr = testbed.host_address
    (short_tmp / "pki").mkdir()
    pki = make_pki(short_tmp / "pki", ips=(addr,))
    cluster = Cluster(backend, short_tmp / "c", nodes=3, prefix=tuple(testbed.netns_argv()), address=addr,
                      first_port=FIRST_NVMF_PORT, controller_listen=f"{addr}:{ADMIN_PORT}", pool_size="2GiB",
                      controller_args=("--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                                       "--tls-client-ca", str(pki / "ca.pem")))
    g = testbed.guest("a")
    try:
        await cluster.start()
        await start_plugin(g, pki, addr, pythonpath)
        yield g, cluster, pythonpath
    finally:
        clean_guest(g)
        await cluster.stop()


async def start_plugin(g, pki: Path, addr: str, pythonpath: str) -> None:
    """The CSI plugin (both roles) in guest ``g``, reaching the controller at ``addr`` over mutual TLS."""
    for name in ("ca.pem", "client.pem", "client.key"):
        g.write_file(f"{TLS_DIR}/{name}", (pki / name).read_bytes(), mode=0o600)
    g.check("mkdir -p /run/csi && rm -f /run/csi/csi.sock")
    g.check(f"PYTHONPATH={pythonpath} setsid python3 -m meshblock csi --endpoint unix://{SOCKET} "
            f"--controller --node --node-id {g.name} --admin-endpoint {addr}:{ADMIN_PORT} "
            f"--ca {TLS_DIR}/ca.pem --cert {TLS_DIR}/client.pem --key {TLS_DIR}/client.key "
            f"--log-level DEBUG >/tmp/csi-plugin.log 2>&1 </dev/null &")
    deadline = time.monotonic() + 180
    while g.run(f"test -S {SOCKET}").rc != 0:
        assert time.monotonic() < deadline, g.run("tail -30 /tmp/csi-plugin.log").stdout
        await asyncio.sleep(1)


def clean_guest(g) -> None:
    """Stop the plugin and leave nothing of the scenarios attached or mounted."""
    g.run("pkill -f 'meshblock csi'; for s in $(ls /sys/class/nvme-subsystem 2>/dev/null); do "
          "n=$(cat /sys/class/nvme-subsystem/$s/subsysnqn); case $n in *io.meshblock:volume*) "
          "nvme disconnect -n $n;; esac; done; umount -R /var/lib/mbcsi-scenario /var/lib/mbcsi-iscsi 2>/dev/null; "
          "for t in $(cat /sys/class/iscsi_session/*/targetname 2>/dev/null | grep ':volume:'); do "
          "iscsiadm -m node -T $t --logout; iscsiadm -m node -T $t -o delete; done; true")


def run_scenario(g, pythonpath: str, script: str) -> str:
    """Run a scenario script in the guest against the plugin; its output, once it said SCENARIO OK."""
    res = g.run(["python3", f"/meshblock/tests/vm/{script}", f"unix://{SOCKET}"],
                env={"PYTHONPATH": pythonpath}, timeout=900)
    log = g.run("tail -40 /tmp/csi-plugin.log").stdout
    assert res.rc == 0, f"{res.stdout}\n{res.stderr}\n--- plugin log ---\n{log}"
    assert "SCENARIO OK" in res.stdout
    return res.stdout


async def test_volume_life_on_a_real_kernel(csi_guest):
    g, cluster, pythonpath = csi_guest
    run_scenario(g, pythonpath, "csi_guest_scenario.py")
    # the controller saw the node plugin register this guest as a host
    from meshblock.proto.meshblock.v1 import admin_pb2 as pb
    from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
    cluster.controller.stubs()
    hosts = await pb_grpc.HostServiceStub(cluster.controller.channel).ListHosts(pb.ListHostsRequest())
    assert [(h.id, h.host_nqn) for h in hosts.hosts] == [(g.name, g.hostnqn)]
    left = await cluster.volumes.ListVolumes(pb.ListVolumesRequest())
    assert not left.volumes, "the scenario's volumes were deleted"


async def test_iscsi_volume_life_on_a_real_kernel(csi_guest):
    g, cluster, pythonpath = csi_guest
    print(run_scenario(g, pythonpath, "csi_iscsi_scenario.py"))
    from meshblock.proto.meshblock.v1 import admin_pb2 as pb
    from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
    cluster.controller.stubs()
    hosts = await pb_grpc.HostServiceStub(cluster.controller.channel).ListHosts(pb.ListHostsRequest())
    assert [(h.id, h.initiator_iqn) for h in hosts.hosts] == [(g.name, g.iqn)]
    assert not (await cluster.volumes.ListVolumes(pb.ListVolumesRequest())).volumes


async def test_csi_sanity_node_specs(csi_guest):
    binary = csi_sanity_binary()
    g, cluster, _ = csi_guest
    g.copy_in(binary, "/usr/local/bin/csi-sanity", mode=0o755)
    g.write_file("/tmp/csi-params.yaml", 'replicas: "2"\n')
    res = g.run("cd /tmp && csi-sanity --csi.endpoint " + SOCKET + " --csi.stagingdir /tmp/csi-staging "
                "--csi.mountdir /tmp/csi-mount --csi.testvolumesize 67108864 --csi.testvolumeexpandsize 134217728 "
                "--csi.testvolumeparameters /tmp/csi-params.yaml --ginkgo.focus 'Node Service' "
                "--ginkgo.no-color > /tmp/csi-sanity.out 2>&1", timeout=1800)
    out = g.run("cat /tmp/csi-sanity.out").stdout
    summary = out[out.find("Summarizing"):] if "Summarizing" in out else "\n".join(out.splitlines()[-5:])
    failures = [block for block in out.split("------------------------------") if "[FAILED]" in block][:3]
    detail = "\n".join(failures)[-6000:]
    if res.rc != 0:
        import shutil as _sh
        keep = Path("/tmp/mb-csi-sanity-logs")
        _sh.rmtree(keep, ignore_errors=True)
        _sh.copytree(cluster.root, keep, ignore=_sh.ignore_patterns("*.img", "*.sock", "pki"))
        g.copy_out("/tmp/csi-plugin.log", keep / "csi-plugin.log")
        g.copy_out("/tmp/csi-sanity.out", keep / "csi-sanity.out")
    assert res.rc == 0, f"{summary}\n{detail}\n(logs kept in /tmp/mb-csi-sanity-logs)"
    # every Node spec ran and passed (the other groups are filtered out by the focus)
    assert "SUCCESS!" in summary and " 0 Failed" in summary, summary
    ran = int(summary.split("Ran ")[1].split(" of")[0])
    assert ran == sanity_node_specs(binary), summary
