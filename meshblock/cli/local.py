"""A local cluster on one machine: `meshblock up` / `meshblock down`.

Each node is an agent process with its own SPDK target, RPC socket, NVMe/TCP
address on the loopback network (127.0.0.11, .12, ...) and a sparse pool file,
all under MESHBLOCK_HOME.  Processes run in the background in their own
sessions; cluster.json records them so `meshblock down` can stop every one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from ..agent.config import AgentConfig
from ..proto.meshblock.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc
from ..secretbox import write_key_file
from ..spdk import find_spdk
from ..spdk.supervisor import process_cmdline, pid_alive
from ..util import atomic_write, metrics_url


def meshblock_home(value: str | None = None) -> Path:
    return Path(value or os.environ.get("MESHBLOCK_HOME") or "~/.meshblock").expanduser()


@dataclass
class NodeProcess:
    name: str
    pid: int
    data_dir: str
    listen: str
    nvmf_address: str
    nvmf_port: int
    metrics_url: str = ""        # where Prometheus scrapes the process


class ClusterError(RuntimeError):
    pass



METRICS_ADDRESS = "127.0.0.1"


def free_metrics_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on the metrics address now (each socket stays bound until all
    are chosen, so no port is picked twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind((METRICS_ADDRESS, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def controller_endpoint(home: Path) -> str:
    return f"unix:{home / 'controller.sock'}"


def node_configs(home: Path, nodes: int, pool_size: int, base_octet: int, port: int) -> list[AgentConfig]:
    # heads poll; they share core 0 with the interrupt-mode data targets and leave the other
    # cores to hosts (a host polling on a head's core starves it: docs/performance/data-path.md)
    head_mask = "0x1"
    out = []
    for i in range(1, nodes + 1):
        d = home / "nodes" / f"node-{i}"
        out.append(AgentConfig(name=f"node-{i}", data_dir=d, pool_size_bytes=pool_size,
                               nvmf_address=f"127.0.0.{base_octet + i - 1}", nvmf_port=port,
                               cpumask="0x1", head_cpumask=head_mask, interrupt_mode=True,
                               labels={"zone": f"local-{i}"}, controller=controller_endpoint(home)))
    return out


def read_state(home: Path) -> dict | None:
    f = home / "cluster.json"
    if not f.exists():
        return None
    return json.loads(f.read_text())


def running_nodes(home: Path) -> list[NodeProcess]:
    state = read_state(home)
    if not state:
        return []
    return [NodeProcess(**n) for n in state.get("nodes", []) if pid_alive(n["pid"])]


async def agent_health(listen: str, timeout: float = 2.0) -> agent_pb2.HealthReply | None:
    try:
        async with grpc.aio.insecure_channel(listen) as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            return await stub.Health(agent_pb2.HealthRequest(), timeout=timeout)
    except grpc.aio.AioRpcError:
        return None


async def controller_nodes_up(listen: str) -> int:
    try:
        async with grpc.aio.insecure_channel(listen) as ch:
            token = os.environ.get("MESHBLOCK_TOKEN", "")   # a home whose cluster has identities
            st = await admin_pb2_grpc.ClusterServiceStub(ch).GetClusterStatus(
                admin_pb2.GetClusterStatusRequest(), timeout=1.0,
                metadata=(("authorization", f"Bearer {token}"),) if token else None)
            return st.nodes_up
    except grpc.aio.AioRpcError:
        return -1


def _tail(path: Path, n: int = 15) -> str:
    if not path.exists():
        return f"(no {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


async def up(home: Path, nodes: int, pool_size: int, base_octet: int = 11, port: int = 4420,
             timeout: float = 60.0, log=print, node_timeout: float = 3.0,
             standby_heads: bool = False) -> list[NodeProcess]:
    find_spdk()  # fail at once, saying where we looked, when SPDK is absent
    if running_nodes(home):
        raise ClusterError(f"a cluster is already running under {home}; `meshblock down` stops it")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    procs: list[NodeProcess] = []
    cdir = home / "controller"
    cdir.mkdir(exist_ok=True)
    write_key_file(cdir / "secrets.key")    # kept across `down` and `up`: it opens the store's secrets
    # every process serves Prometheus metrics on a loopback port of its own: `meshblock cluster
    # status` lists them, and so do cluster.json and `up -o json`
    ports = free_metrics_ports(nodes + 1)
    with open(cdir / "controller.log", "ab") as out:
        p = subprocess.Popen([sys.executable, "-m", "meshblock", "controller",
                              "--store", f"sqlite:///{cdir / 'state.db'}", "--listen", controller_endpoint(home),
                              "--secrets-key-file", str(cdir / "secrets.key"),
                              "--identity", "local", "--node-timeout", str(node_timeout),
                              "--metrics-port", str(ports[0]),
                              "--standby-heads" if standby_heads else "--no-standby-heads"],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=str(cdir), env=dict(os.environ, MESHBLOCK_HOME=str(home)))
    procs.append(NodeProcess(name="controller", pid=p.pid, data_dir=str(cdir), listen=controller_endpoint(home),
                             nvmf_address="", nvmf_port=0, metrics_url=metrics_url(METRICS_ADDRESS, ports[0])))
    for cfg, metrics_port in zip(node_configs(home, nodes, pool_size, base_octet, port), ports[1:]):
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        cfg.ensure_node_id()
        cfg_file = cfg.data_dir / "agent.json"
        atomic_write(cfg_file, cfg.to_json())
        with open(cfg.data_dir / "agent.log", "ab") as out:
            p = subprocess.Popen([sys.executable, "-m", "meshblock", "agent", "--config", str(cfg_file),
                                  "--metrics-port", str(metrics_port)],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=str(cfg.data_dir))
        procs.append(NodeProcess(name=cfg.name, pid=p.pid, data_dir=str(cfg.data_dir), listen=cfg.listen,
                                 nvmf_address=cfg.nvmf_address, nvmf_port=cfg.nvmf_port,
                                 metrics_url=metrics_url(METRICS_ADDRESS, metrics_port)))
    atomic_write(home / "cluster.json", json.dumps({"nodes": [n.__dict__ for n in procs]}, indent=2))
    deadline = time.monotonic() + timeout
    pending = {n.name: n for n in procs}
    while pending:
        for name, n in list(pending.items()):
            if not pid_alive(n.pid):
                await down(home, log=lambda *_: None)
                log_file = "controller.log" if name == "controller" else "agent.log"
                raise ClusterError(f"{name} exited while starting; last lines of its log:\n"
                                   + _tail(Path(n.data_dir) / log_file))
            if name == "controller":
                if await controller_nodes_up(n.listen) >= nodes:
                    del pending[name]
                continue
            h = await agent_health(n.listen, timeout=1.0)
            if h is not None and h.healthy:
                del pending[name]
        if pending and time.monotonic() > deadline:
            names = ", ".join(sorted(pending))
            await down(home, log=lambda *_: None)
            raise ClusterError(f"nodes {names} not healthy after {timeout:g}s; see their agent.log and spdk.log")
        if pending:
            await asyncio.sleep(0.1)
    return procs


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in pids if pid_alive(p)]
        if not pids:
            return []
        await asyncio.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


def _target_pids(data_dir: Path) -> list[int]:
    """SPDK targets of a node that are still running (checked against their command line)."""
    out = []
    for name, sock in (("spdk.pid", "spdk.sock"), ("spdk-head.pid", "spdk-head.sock")):
        f = data_dir / name
        try:
            pid = int(f.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid_alive(pid) and str(data_dir / sock) in process_cmdline(pid):
            out.append(pid)
    return out


async def down(home: Path, log=print) -> int:
    """Stop every agent and target of the local cluster; return how many processes were stopped."""
    state = read_state(home)
    if not state:
        log(f"no cluster under {home}")
        return 0
    nodes = [NodeProcess(**n) for n in state.get("nodes", [])]
    agents = [n.pid for n in nodes if pid_alive(n.pid)]
    for n in nodes:  # agents restarted by hand since `up` leave their pid in their node directory
        f = Path(n.data_dir) / "agent.pid"
        try:
            pid = int(f.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid not in agents and pid_alive(pid) and "agent" in process_cmdline(pid):
            agents.append(pid)
    for pid in agents:
        _kill(pid, signal.SIGTERM)
    for pid in await _wait_gone(agents, 20.0):
        _kill(pid, signal.SIGKILL)
    targets = [p for n in nodes for p in _target_pids(Path(n.data_dir))]
    for pid in targets:
        _kill(pid, signal.SIGTERM)
    for pid in await _wait_gone(targets, 10.0):
        _kill(pid, signal.SIGKILL)
    await _wait_gone(agents + targets, 5.0)
    (home / "cluster.json").unlink(missing_ok=True)
    n_agents = sum(1 for n in nodes if n.name != "controller" and n.pid in agents)
    n_ctl = len(agents) - n_agents
    log(f"stopped {n_agents} agents, {n_ctl} controller and {len(targets)} leftover SPDK targets under {home}")
    return len(agents) + len(targets)
