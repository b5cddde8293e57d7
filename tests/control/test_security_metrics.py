"""The controller's API is owner-only on a Unix socket and mutual TLS on TCP; metrics are exported."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from tests.support.pki import make_pki


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def controller(tmp, *args: str) -> subprocess.Popen:
    log = open(tmp / "controller.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "meshblock", "controller", "--store",
                             f"sqlite:///{tmp / 'state.db'}", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


async def status(channel) -> pb.ClusterStatus:
    deadline = time.monotonic() + 30
    while True:
        try:
            return await pb_grpc.ClusterServiceStub(channel).GetClusterStatus(pb.GetClusterStatusRequest(),
                                                                             timeout=2)
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_unix_socket_is_owner_only_and_metrics_are_served(short_tmp):
    port = free_port()
    sock = short_tmp / "c.sock"
    # served on the address asked for (in a pod: the pod's), and there only
    p = controller(short_tmp, "--listen", f"unix:{sock}", "--metrics-port", str(port), "--metrics-address", "127.0.0.2")
    try:
        async with grpc.aio.insecure_channel(f"unix:{sock}") as ch:
            st = await status(ch)
            assert st.nodes_up == 0
            await pb_grpc.VolumeServiceStub(ch).ListVolumes(pb.ListVolumesRequest())
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        await asyncio.sleep(2.5)   # at least one reconcile pass
        body = urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5).read().decode()
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        for metric in ("meshblock_reconcile_passes_total", "meshblock_grpc_requests_total",
                       "meshblock_grpc_request_seconds", "meshblock_volumes"):
            assert metric in body, metric
        assert 'method="ListVolumes"' in body
    finally:
        stop(p)


def test_tcp_without_tls_is_refused(short_tmp):
    r = subprocess.run([sys.executable, "-m", "meshblock", "controller", "--store",
                        f"sqlite:///{short_tmp / 's.db'}", "--listen", f"127.0.0.1:{free_port()}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--tls-cert" in r.stderr and "no unauthenticated TCP listener" in r.stderr


async def test_tcp_needs_a_client_certificate(short_tmp):
    pki = make_pki(short_tmp)
    port = free_port()
    p = controller(short_tmp, "--listen", f"127.0.0.1:{port}", "--tls-cert", str(pki / "server.pem"),
                   "--tls-key", str(pki / "server.key"), "--tls-client-ca", str(pki / "ca.pem"))
    try:
        ca = (pki / "ca.pem").read_bytes()
        good = grpc.ssl_channel_credentials(ca, (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes())
        async with grpc.aio.secure_channel(f"localhost:{port}", good) as ch:
            assert (await status(ch)).leader
        anonymous = grpc.ssl_channel_credentials(ca)
        async with grpc.aio.secure_channel(f"localhost:{port}", anonymous) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await pb_grpc.ClusterServiceStub(ch).GetClusterStatus(pb.GetClusterStatusRequest(), timeout=5)
            assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError):
                await pb_grpc.ClusterServiceStub(ch).GetClusterStatus(pb.GetClusterStatusRequest(), timeout=5)
    finally:
        stop(p)


async def test_agents_on_other_hosts_join_over_mutual_tls(short_tmp, tmp_path_factory):
    """Nothing but TCP between controller and agents (as across machines): registration, heartbeats and
    the controller's calls to the agents all go over mutual TLS, and a volume becomes available."""
    from tests.support.agents import AgentProc
    from tests.support.backends import fake_backend
    from tests.support.cluster import ControllerProc

    backend = fake_backend(tmp_path_factory.mktemp("fakespdk-registry"))
    pki = make_pki(short_tmp)
    tls = {"cert": str(pki / "server.pem"), "key": str(pki / "server.key"), "ca": str(pki / "ca.pem")}
    port = free_port()
    ctl = ControllerProc(backend, short_tmp / "ctl", listen=f"127.0.0.1:{port}",
                         extra_args=("--tls-cert", tls["cert"], "--tls-key", tls["key"], "--tls-client-ca", tls["ca"]))
    agents = []
    for i in (1, 2):
        a = AgentProc(backend, short_tmp / f"n{i}", f"n{i}", controller=f"localhost:{port}")
        agent_port = free_port()
        a.argv += ["--listen", f"{a.listen},127.0.0.1:{agent_port}", "--advertise", f"localhost:{agent_port}",
                   "--tls-cert", tls["cert"], "--tls-key", tls["key"], "--tls-ca", tls["ca"]]
        agents.append(a)
    try:
        ctl.start()
        for a in agents:
            a.start()
            await a.wait_healthy()
        await ctl.wait_nodes(2)
        vols, nodes, _ = ctl.stubs()
        listed = await nodes.ListNodes(pb.ListNodesRequest())
        assert sorted(n.endpoint for n in listed.nodes) == sorted(a.argv[a.argv.index("--advertise") + 1]
                                                                  for a in agents)
        v = await vols.CreateVolume(pb.CreateVolumeRequest(name="over-tls", size_bytes=64 << 20, replicas=2))
        assert v.state == "available" and len(v.replica_status) == 2
    finally:
        await ctl.stop()
        for a in agents:
            await a.stop()
            a.kill_targets()


def test_agent_refuses_tcp_without_tls(short_tmp):
    r = subprocess.run([sys.executable, "-m", "meshblock", "agent", "--data-dir", str(short_tmp),
                        "--listen", "127.0.0.1:7999"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--tls-cert" in r.stderr
