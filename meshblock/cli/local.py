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
import urllib.error
import urllib.parse
import urllib.request
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
        atomic_write(cfg.data_dir / "agent.json", cfg.to_json())
        p = _start_agent(cfg.data_dir, metrics_port)
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


def _start_agent(data_dir: Path, metrics_port: int) -> subprocess.Popen:
    """A node's agent, in the background, from the configuration in its directory (agent.json)."""
    with open(data_dir / "agent.log", "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "meshblock", "agent", "--config", str(data_dir / "agent.json"),
                                 "--metrics-port", str(metrics_port)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(data_dir))


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


def _agent_pids(n: NodeProcess) -> list[int]:
    """A node's running agent: the one `up` started, or one restarted by hand (its pid file)."""
    out = [n.pid] if pid_alive(n.pid) else []
    try:
        pid = int((Path(n.data_dir) / "agent.pid").read_text().strip())
    except (OSError, ValueError):
        return out
    if pid not in out and pid_alive(pid) and "agent" in process_cmdline(pid):
        out.append(pid)
    return out


async def _stop(pids: list[int], timeout: float) -> None:
    """SIGTERM, then SIGKILL for what is left after ``timeout`` seconds."""
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    for pid in await _wait_gone(pids, timeout):
        _kill(pid, signal.SIGKILL)
    await _wait_gone(pids, 5.0)


def readyz_url(metrics_url: str) -> str:
    """The agent's /readyz, served with its metrics."""
    u = urllib.parse.urlsplit(metrics_url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/readyz", "", ""))


def _get_readyz(url: str, timeout: float) -> tuple[bool | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200, ""
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace").strip()
        return False, body.removeprefix("not ready: ") or f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return None, f"its agent does not answer at {url} ({getattr(e, 'reason', e)})"


async def node_ready(url: str, timeout: float = 8.0) -> tuple[bool | None, str]:
    """What the agent's /readyz says: (True, ""), (False, why not), or (None, why it did not answer)."""
    return await asyncio.to_thread(_get_readyz, url, timeout)


async def restart_node(home: Path, name: str, *, force: bool = False, timeout: float = 300.0,
                       log=print) -> NodeProcess:
    """Stop node ``name``'s agent and SPDK targets, start its agent again with the same configuration
    and wait until the node is ready again (its agent's /readyz). Refuses a node that is not ready
    (it could go down now only at the cost of a volume's data path) unless ``force``."""
    state = read_state(home)
    if not state:
        raise ClusterError(f"no local cluster under {home}; `meshblock up` starts one")
    nodes = [NodeProcess(**n) for n in state.get("nodes", [])]
    proc = next((n for n in nodes if n.name == name and n.name != "controller"), None)
    if proc is None:
        names = ", ".join(n.name for n in nodes if n.name != "controller")
        raise ClusterError(f"no node {name!r} in the local cluster under {home} (its nodes: {names})")
    if not proc.metrics_url:
        raise ClusterError(f"node {name} was started without a metrics port, where its readiness is served; "
                           "`meshblock down` and `meshblock up` start it with one")
    url = readyz_url(proc.metrics_url)
    agents = _agent_pids(proc)
    if agents:
        ready, reason = await node_ready(url)
        if not ready:
            if not force:
                raise ClusterError(
                    f"node {name} is not ready: {reason}. Restarting it now would leave a volume without "
                    f"an in-sync replica or a head; wait until `meshblock node get {name}` says ready, or "
                    "restart it anyway with --force")
            log(f"node {name} is not ready ({reason}); restarting it anyway (--force)")
    else:
        log(f"node {name}: its agent is not running")
    data_dir = Path(proc.data_dir)
    targets = _target_pids(data_dir)
    if agents or targets:
        log(f"stopping node {name}: agent (pid {', '.join(map(str, agents)) or '-'}), "
            f"SPDK targets (pid {', '.join(map(str, targets)) or '-'})")
    await _stop(agents, 20.0)
    await _stop(_target_pids(data_dir), 10.0)    # what the agent left running
    port = urllib.parse.urlsplit(proc.metrics_url).port
    assert port is not None
    p = _start_agent(data_dir, port)
    proc.pid = p.pid
    state = read_state(home) or {"nodes": []}
    state["nodes"] = [dict(n, pid=p.pid) if n.get("name") == name else n for n in state.get("nodes", [])]
    atomic_write(home / "cluster.json", json.dumps(state, indent=2))
    log(f"started node {name}'s agent (pid {p.pid}); waiting until the node is ready (at most {timeout:g} s)")
    t0 = time.monotonic()
    last = None
    while True:
        if p.poll() is not None:
            raise ClusterError(f"node {name}'s agent exited while starting (status {p.returncode}); "
                               f"last lines of its log:\n" + _tail(data_dir / "agent.log"))
        ready, reason = await node_ready(url)
        if ready:
            log(f"node {name} is ready again after {time.monotonic() - t0:.1f} s")
            return proc
        if reason != last:
            log(f"  {time.monotonic() - t0:5.1f} s  not ready: {reason}")
            last = reason
        if time.monotonic() - t0 > timeout:
            raise ClusterError(f"node {name} is not ready {timeout:g} s after its restart: {reason}. Its agent "
                               f"runs on (pid {p.pid}); see `meshblock node get {name}` and {data_dir / 'agent.log'}")
        await asyncio.sleep(0.5)


async def down(home: Path, log=print) -> int:
    """Stop every agent and target of the local cluster; return how many processes were stopped."""
    state = read_state(home)
    if not state:
        log(f"no cluster under {home}")
        return 0
    nodes = [NodeProcess(**n) for n in state.get("nodes", [])]
    # agents restarted by hand since `up` leave their pid in their node directory
    agents = list(dict.fromkeys(pid for n in nodes for pid in _agent_pids(n)))
    await _stop(agents, 20.0)
    targets = [p for n in nodes for p in _target_pids(Path(n.data_dir))]
    await _stop(targets, 10.0)
    (home / "cluster.json").unlink(missing_ok=True)
    n_agents = sum(1 for n in nodes if n.name != "controller" and n.pid in agents)
    n_ctl = len(agents) - n_agents
    log(f"stopped {n_agents} agents, {n_ctl} controller and {len(targets)} leftover SPDK targets under {home}")
    return len(agents) + len(targets)
