"""`meshblock up` / `meshblock down` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import grpc

from meshblock.proto.meshblock.v1 import agent_pb2 as pb
from meshblock.proto.meshblock.v1 import agent_pb2_grpc as pb_grpc
from meshblock.spdk.supervisor import pid_alive
from tests.support.initiator import SpdkHost

MiB = 1 << 20


def meshblock(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshblock", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_up_without_spdk_fails_at_once_saying_where_it_looked(tmp_path):
    env = dict(os.environ, MESHBLOCK_SPDK_DIR=str(tmp_path / "no-spdk"), MESHBLOCK_HOME=str(tmp_path / "home"))
    p = meshblock(["up"], env, timeout=30)
    assert p.returncode == 1
    assert f"MESHBLOCK_SPDK_DIR={tmp_path / 'no-spdk'}" in p.stderr and "SPDK not found" in p.stderr
    assert not (tmp_path / "home" / "cluster.json").exists()


def cluster_pids(home: Path) -> list[int]:
    state = json.loads((home / "cluster.json").read_text())
    pids = [n["pid"] for n in state["nodes"]]
    for n in state["nodes"]:
        for f in ("spdk.pid", "spdk-head.pid"):
            p = Path(n["data_dir"]) / f
            if p.exists():
                pids.append(int(p.read_text()))
    return pids


async def test_up_serves_replicas_and_down_leaves_nothing(backend, tmp_path):
    home = tmp_path / "home"
    env = dict(backend.env, MESHBLOCK_HOME=str(home))
    p = meshblock(["up", "--nodes", "3", "--pool-size", "1GiB", "--port", "4420", "--node-timeout", "2", "-o",
                   "json"], env)
    assert p.returncode == 0, p.stderr + p.stdout
    try:
        out = json.loads(p.stdout)
        assert [n["name"] for n in out["nodes"]] == ["controller", "node-1", "node-2", "node-3"]
        assert [n["nvmf_address"] for n in out["nodes"][1:]] == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
        pids = cluster_pids(home)
        # the failure detector's timeout reaches the controller
        argv = open(f"/proc/{out['nodes'][0]['pid']}/cmdline", "rb").read().split(b"\0")
        assert argv[argv.index(b"--node-timeout") + 1] == b"2.0"
        assert len(pids) == 7 and all(pid_alive(x) for x in pids)  # controller, 3 agents, 3 targets
        # every process serves Prometheus metrics on a loopback port of its own, recorded with it,
        # and the cluster status lists them all
        urls = [n["metrics_url"] for n in out["nodes"]]
        assert len(set(urls)) == 4 and all(u.startswith("http://127.0.0.1:") for u in urls), urls
        assert [n["metrics_url"] for n in json.loads((home / "cluster.json").read_text())["nodes"]] == urls
        st = meshblock(["cluster", "status", "-o", "json"], env)
        assert st.returncode == 0, st.stderr
        assert json.loads(st.stdout)["metrics_endpoints"] == [
            {"component": "controller", "node": "", "url": urls[0]},
            *({"component": "agent", "node": n["name"], "url": n["metrics_url"]} for n in out["nodes"][1:])]
        for n, metric in zip(out["nodes"], ["meshblock_grpc_requests_total", *["meshblock_agent_target_up"] * 3]):
            with urllib.request.urlopen(n["metrics_url"], timeout=5) as r:
                assert metric in r.read().decode(), n["name"]
        # a second `up` refuses rather than starting a second cluster on the same files
        again = meshblock(["up", "--nodes", "3"], env)
        assert again.returncode == 1 and "already running" in again.stderr
        node1 = out["nodes"][1]
        async with grpc.aio.insecure_channel(node1["listen"]) as ch:
            stub = pb_grpc.AgentServiceStub(ch)
            r = str(uuid.uuid4())
            await stub.CreateReplica(pb.CreateReplicaRequest(replica_id=r, size_bytes=64 * MiB))
            host_nqn = "nqn.2026-11.io.meshblock:host:outside"
            e = await stub.ExportReplica(pb.ExportReplicaRequest(replica_id=r, allowed_host_nqns=[host_nqn]))
        if backend.real and backend.install.has("spdk_dd"):
            host = SpdkHost(backend.install, tmp_path / "host", host_nqn)
            data = os.urandom(8 * MiB)
            (tmp_path / "in.bin").write_bytes(data)
            w = await host.write(tmp_path / "in.bin", e.nqn, e.address, e.port)
            assert w.returncode == 0, w.output
            rd = await host.read(tmp_path / "out.bin", 8 * MiB, e.nqn, e.address, e.port)
            assert rd.returncode == 0, rd.output
            assert (tmp_path / "out.bin").read_bytes() == data
    finally:
        d = meshblock(["down"], env)
    assert d.returncode == 0, d.stderr
    assert "stopped 3 agents, 1 controller" in d.stdout
    assert not any(pid_alive(x) for x in pids)
    assert not (home / "cluster.json").exists()
    assert "no cluster" in meshblock(["down"], env).stdout
