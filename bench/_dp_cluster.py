"""A `meshblock up` cluster as bench/data_path.py drives it: CLI calls, PIDs, kills and restarts."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from _dp_proc import CommandLog, Procs, Started, alive, cmdline, kill_pid, log, stop_pids, wait_gone

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc


def cpumask_of(pid: int) -> str:
    """The -m argument of an SPDK target's command line."""
    args = cmdline(pid).split()
    for i, a in enumerate(args[:-1]):
        if a == "-m":
            return args[i + 1]
    return "?"


def target_config(pid: int) -> dict:
    """How an SPDK target runs: its core mask, interrupt or polling mode, and whether its posix sockets
    send with zero-copy (SPDK's default) or not (enable_zerocopy_send_server=false in a --json config)."""
    args = cmdline(pid).split()
    zc = "on"
    for i, a in enumerate(args[:-1]):
        if a in ("--json", "-c"):
            with contextlib.suppress(OSError, ValueError):
                cfg = json.loads(Path(args[i + 1]).read_text())
                for sub in cfg.get("subsystems", []):
                    for m in sub.get("config") or []:
                        if m.get("method") == "sock_impl_set_options" and \
                                m.get("params", {}).get("enable_zerocopy_send_server") is False:
                            zc = "off"
    return {"cpumask": cpumask_of(pid), "mode": "interrupt" if "--interrupt-mode" in args else "polling",
            "zero_copy_send": zc}


class MeshCluster:
    def __init__(self, home: Path, port: int, procs: Procs, cmds: CommandLog, section: str):
        self.home = home
        self.port = port
        self.procs = procs
        self.cmds = cmds
        self.section = section
        self.env = dict(os.environ, MESHBLOCK_HOME=str(home))
        self.mb = [sys.executable, "-m", "meshblock"]
        self.seen_pids: set[int] = set()
        self.replacement_controller: Started | None = None
        self.restarted_agents: dict[str, Started] = {}
        self._channel: grpc.Channel | None = None
        self.up_seconds = 0.0

    # --- CLI -------------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 180.0, check: bool = True, record: bool = True) -> str:
        argv = [*self.mb, *args]
        if record:
            self.cmds.add(self.section, f"MESHBLOCK_HOME={self.home} .venv/bin/meshblock "
                          + shlex.join([str(a) for a in args]))
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and r.returncode:
            raise RuntimeError(f"meshblock {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        return r.stdout

    def cli_json(self, *args: str, timeout: float = 180.0) -> dict:
        return json.loads(self.cli(*args, "-o", "json", timeout=timeout))

    def up(self, nodes: int = 3) -> None:
        t0 = time.monotonic()
        try:
            self.cli("up", "--nodes", str(nodes), "--port", str(self.port), "-o", "json", timeout=240)
        finally:
            self.up_seconds = time.monotonic() - t0
            self.pids()

    def down(self) -> dict:
        self.pids()
        self.close()
        rc: object = None
        try:
            r = subprocess.run([*self.mb, "down"], env=self.env, capture_output=True, text=True, timeout=150,
                               check=False)
            rc = r.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        extra = [s for s in [self.replacement_controller, *self.restarted_agents.values()] if s is not None]
        for s in extra:
            self.procs.stop(s)
        left = [p for p in sorted(self.seen_pids) if alive(p)]
        if left:   # only processes of this cluster (recorded from its cluster.json and pid files)
            left = stop_pids(left, 10, signal.SIGKILL)
        return {"down_rc": rc, "left_after_down": left}

    # --- processes -------------------------------------------------------------------------------
    def state(self) -> dict:
        f = self.home / "cluster.json"
        return json.loads(f.read_text()) if f.exists() else {"nodes": []}

    def node_names(self) -> list[str]:
        return [n["name"] for n in self.state()["nodes"] if n["name"] != "controller"]

    def node_dir(self, name: str) -> Path:
        return self.home / "nodes" / name

    def node_id(self, name: str) -> str:
        return (self.node_dir(name) / "node-id").read_text().strip()

    def name_of(self, node_id: str) -> str:
        for n in self.node_names():
            if self.node_id(n) == node_id:
                return n
        return node_id

    def _pidfile(self, path: Path) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(path.read_text().strip())
            if alive(pid):
                return pid
        return None

    def agent_pid(self, name: str) -> int | None:
        pid = self._pidfile(self.node_dir(name) / "agent.pid")
        if pid and "agent" in cmdline(pid):
            return pid
        for n in self.state()["nodes"]:
            if n["name"] == name and alive(n["pid"]):
                return n["pid"]
        return None

    def target_pid(self, name: str, kind: str) -> int | None:
        """kind: "spdk" (data target) or "spdk-head" (head target)."""
        pid = self._pidfile(self.node_dir(name) / f"{kind}.pid")
        if pid and str(self.node_dir(name) / f"{kind}.sock") in cmdline(pid):
            return pid
        return None

    def controller_pid(self) -> int | None:
        if self.replacement_controller is not None and alive(self.replacement_controller.pid):
            return self.replacement_controller.pid
        for n in self.state()["nodes"]:
            if n["name"] == "controller" and alive(n["pid"]):
                return n["pid"]
        return None

    def pids(self) -> dict[str, int]:
        out = {}
        c = self.controller_pid()
        if c:
            out["controller"] = c
        for name in self.node_names():
            a = self.agent_pid(name)
            if a:
                out[f"{name}/agent"] = a
            for kind, label in (("spdk", "data-target"), ("spdk-head", "head-target")):
                p = self.target_pid(name, kind)
                if p:
                    out[f"{name}/{label}"] = p
        self.seen_pids.update(out.values())
        return out

    def layout(self) -> dict[str, dict]:
        """Per SPDK target of the cluster: its -m core mask and whether it runs in interrupt mode."""
        out = {}
        for label, pid in self.pids().items():
            if label.endswith("target"):
                out[label] = {"pid": pid, **target_config(pid)}
        return out

    def settings(self) -> dict:
        """meshblock's data-path settings as this cluster runs them: the head core mask its agents were
        given and the data target's configuration."""
        name = self.node_names()[0]
        cfg = json.loads((self.node_dir(name) / "agent.json").read_text())
        pid = self.target_pid(name, "spdk")
        data = target_config(pid) if pid else {}
        return {"head_cpumask": cfg.get("head_cpumask"), "data_cpumask": data.get("cpumask"),
                "data_mode": data.get("mode"), "zero_copy_send": data.get("zero_copy_send"),
                "data_target_cmdline": cmdline(pid) if pid else ""}

    # --- gRPC ------------------------------------------------------------------------------------
    def stubs(self):
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"unix:{self.home / 'controller.sock'}")
        return (pb_grpc.VolumeServiceStub(self._channel), pb_grpc.NodeServiceStub(self._channel),
                pb_grpc.ClusterServiceStub(self._channel))

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def volume(self, ref: str) -> pb.Volume:
        return self.stubs()[0].GetVolume(pb.GetVolumeRequest(ref=ref), timeout=5)

    def connect_info(self, ref: str, host: str) -> pb.ConnectInfo:
        return self.stubs()[0].GetConnectInfo(pb.GetConnectInfoRequest(ref=ref, host_nqn=host), timeout=5)

    def node_state(self, node_id: str) -> str:
        return self.stubs()[1].GetNode(pb.GetNodeRequest(ref=node_id), timeout=5).state

    def nodes_up(self) -> int:
        return self.stubs()[2].GetClusterStatus(pb.GetClusterStatusRequest(), timeout=5).nodes_up

    def wait(self, what: str, fn, timeout: float, interval: float = 0.1):
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                v = fn()
                if v:
                    return v
                last = v
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
            time.sleep(interval)
        raise TimeoutError(f"{what}: not within {timeout:g}s (last: {last})")

    def wait_nodes_up(self, n: int = 3, timeout: float = 90.0) -> None:
        self.wait(f"{n} nodes up", lambda: self.nodes_up() >= n, timeout)

    def wait_redundant(self, ref: str, timeout: float) -> float:
        """Until every replica of the volume is online; returns when that was seen (monotonic)."""
        def ok():
            v = self.volume(ref)
            return len(v.replica_status) == v.replicas and all(r.state == "online" for r in v.replica_status)
        self.wait(f"volume {ref} fully redundant", ok, timeout, 0.1)
        return time.monotonic()

    # --- kill / restart --------------------------------------------------------------------------
    def kill_node(self, name: str, targets: tuple[str, ...]) -> dict[str, int]:
        """SIGKILL the node's agent and the given targets ("spdk", "spdk-head"); returns what was killed."""
        killed = {}
        a = self.agent_pid(name)
        if a:
            killed["agent"] = a
        for kind in targets:
            p = self.target_pid(name, kind)
            if p:
                killed[kind] = p
        self.seen_pids.update(killed.values())
        for p in killed.values():
            kill_pid(p, signal.SIGKILL)
        wait_gone(list(killed.values()), 10)
        old = self.restarted_agents.pop(name, None)
        if old is not None and old.popen is not None:
            with contextlib.suppress(Exception):
                old.popen.wait(2)
        return killed

    def restart_agent(self, name: str) -> Started:
        cfg = self.node_dir(name) / "agent.json"
        argv = [*self.mb, "agent", "--config", str(cfg)]
        self.cmds.add(self.section, f".venv/bin/meshblock agent --config {cfg}", f"restart {name} (background)")
        s = self.procs.spawn(f"{self.section}/{name}/agent", argv, self.node_dir(name) / "agent.log", env=self.env,
                             cwd=self.node_dir(name))
        self.restarted_agents[name] = s
        self.seen_pids.add(s.pid)
        return s

    def stop_agent(self, name: str, timeout: float = 30.0) -> None:
        """SIGTERM the agent (it stops its targets) and wait until it and its targets are gone."""
        pids = [p for p in (self.agent_pid(name), self.target_pid(name, "spdk"), self.target_pid(name, "spdk-head"))
                if p]
        self.seen_pids.update(pids)
        a = self.agent_pid(name)
        if a:
            kill_pid(a, signal.SIGTERM)
        if not wait_gone(pids, timeout):
            stop_pids(pids, 5, signal.SIGKILL)
        s = self.restarted_agents.pop(name, None)
        if s is not None:
            self.procs.stop(s, 1)

    def set_agent_config(self, name: str, **changes) -> None:
        cfg = self.node_dir(name) / "agent.json"
        d = json.loads(cfg.read_text())
        d.update(changes)
        tmp = cfg.with_suffix(".tmp")
        tmp.write_text(json.dumps(d, indent=2, sort_keys=True))
        os.replace(tmp, cfg)
        self.cmds.add(self.section, f"edit {cfg}: " + json.dumps(changes))

    def restart_controller(self, node_timeout: float) -> None:
        old = self.controller_pid()
        if old:
            self.seen_pids.add(old)
            stop_pids([old], 20)
        if self.replacement_controller is not None:
            self.procs.stop(self.replacement_controller, 5)
        cdir = self.home / "controller"
        argv = [*self.mb, "controller", "--store", f"sqlite:///{cdir / 'state.db'}", "--listen",
                f"unix:{self.home / 'controller.sock'}", "--identity", "local", "--node-timeout", str(node_timeout)]
        self.cmds.add(self.section, f"MESHBLOCK_HOME={self.home} .venv/bin/meshblock "
                      + shlex.join(argv[3:]), "replacement controller (background)")
        self.close()
        self.replacement_controller = self.procs.spawn(f"{self.section}/controller", argv, cdir / "controller.log",
                                                       env=self.env, cwd=cdir)
        self.seen_pids.add(self.replacement_controller.pid)
        self.wait_nodes_up(3, 90)
        log(f"controller restarted with --node-timeout {node_timeout:g} (pid {self.replacement_controller.pid})")
