"""`meshblock up` / `meshblock down` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
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


def _nodes(env: dict) -> dict[str, dict]:
    p = meshblock(["node", "list", "-o", "json"], env)
    assert p.returncode == 0, p.stderr
    return {n["name"]: n for n in json.loads(p.stdout)}


def _wait_ready(env: dict, names: list[str], timeout: float = 60) -> dict[str, dict]:
    import time
    deadline = time.monotonic() + timeout
    while True:
        nodes = _nodes(env)
        if all(nodes[n]["readiness"].get("ready") for n in names):
            return nodes
        assert time.monotonic() < deadline, {n: nodes[n]["readiness"] for n in names}
        time.sleep(0.5)


async def test_node_restart_waits_for_the_node_to_be_ready_and_refuses_a_node_that_is_not(backend, tmp_path):
    """`meshblock node restart` of a local cluster without standby heads: the head's node is not
    ready (no standby could take over) and is refused with the reason; another node is stopped,
    started again with the same configuration and waited for until its replica is back in sync."""
    home = tmp_path / "home"
    env = dict(backend.env, MESHBLOCK_HOME=str(home))
    p = meshblock(["up", "--nodes", "3", "--pool-size", "1GiB", "--port", "4420", "--node-timeout", "2"], env)
    assert p.returncode == 0, p.stderr + p.stdout
    try:
        c = meshblock(["volume", "create", "v1", "--size", "64MiB", "--replicas", "3", "-o", "json"], env)
        assert c.returncode == 0, c.stderr
        head = json.loads(c.stdout)["head_node_id"]
        names = {n["id"]: n["name"] for n in _nodes(env).values()}
        head_name = names[head]
        other = sorted(n for n in names.values() if n != head_name)[0]
        nodes = _wait_ready(env, [other])
        assert nodes[head_name]["readiness"] == {
            "ready": False, "reason": "the node heads volume v1 and no standby head could take over "
                                      "(the controller runs with --no-standby-heads)"}
        # the node list says so too, and the agent's /readyz answers the same
        listing = meshblock(["node", "list"], env).stdout
        assert "not ready" in next(ln for ln in listing.splitlines() if ln.startswith(head_name))
        state = json.loads((home / "cluster.json").read_text())
        procs = {n["name"]: n for n in state["nodes"]}
        readyz = procs[head_name]["metrics_url"].replace("/metrics", "/readyz")
        try:
            urllib.request.urlopen(readyz, timeout=10)
            raise AssertionError("a node that is not ready answered 200")
        except urllib.error.HTTPError as e:
            assert e.code == 503 and "no standby head could take over" in e.read().decode()
        with urllib.request.urlopen(procs[other]["metrics_url"].replace("/metrics", "/readyz"), timeout=10) as r:
            assert r.status == 200 and r.read() == b"ready\n"

        refused = meshblock(["node", "restart", head_name], env)
        assert refused.returncode == 1
        assert f"node {head_name} is not ready: the node heads volume v1" in " ".join(refused.stderr.split())
        assert pid_alive(procs[head_name]["pid"])

        old_pids = [procs[other]["pid"], *(int((Path(procs[other]["data_dir"]) / f).read_text())
                                          for f in ("spdk.pid",))]
        r = meshblock(["node", "restart", other, "--timeout", "120"], env, timeout=180)
        assert r.returncode == 0, r.stderr + r.stdout
        print(r.stderr)
        assert f"node {other} restarted and ready" in r.stdout
        assert f"stopping node {other}" in r.stderr and "not ready:" in r.stderr, r.stderr
        assert not any(pid_alive(x) for x in old_pids)
        new = {n["name"]: n for n in json.loads((home / "cluster.json").read_text())["nodes"]}[other]
        assert new["pid"] != procs[other]["pid"] and pid_alive(new["pid"])
        assert new["metrics_url"] == procs[other]["metrics_url"]
        # ready means its replica is back in sync
        v = json.loads(meshblock(["volume", "get", "v1", "-o", "json"], env).stdout)
        mine = [s for s in v["replica_status"] if s["node_name"] == other]
        assert [s["state"] for s in mine] == ["online"], v["replica_status"]
        assert _nodes(env)[other]["readiness"]["ready"] is True
        pids = cluster_pids(home)
    finally:
        d = meshblock(["down"], env)
    assert d.returncode == 0, d.stderr
    assert "stopped 3 agents, 1 controller" in d.stdout
    assert not any(pid_alive(x) for x in pids)
