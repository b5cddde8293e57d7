"""A controller process plus agent processes: a real cluster for control-plane scenarios."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc

from .agents import AgentProc
from .backends import Backend


class ControllerProc:
    def __init__(self, backend: Backend, data_dir: Path, store_url: str | None = None, identity: str = "c1",
                 env: dict | None = None, node_timeout: float = 3.0, listen: str | None = None,
                 extra_args: tuple[str, ...] = (), prefix: tuple[str, ...] = ()):
        self.data_dir = data_dir
        self.listen = f"unix:{data_dir / 'controller.sock'}"   # what the test and the agents use
        listen = ",".join([self.listen] + ([listen] if listen else []))
        self.store_url = store_url or f"sqlite:///{data_dir / 'state.db'}"
        self.env = dict(backend.env, **(env or {}))
        self.argv = [*prefix, sys.executable, "-m", "meshblock", "controller", "--store", self.store_url, "--listen",
                     listen, "--identity", identity, "--node-timeout", str(node_timeout), "--log-level",
                     "DEBUG", *extra_args]
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.aio.Channel | None = None

    @property
    def log(self) -> Path:
        return self.data_dir / "controller.log"

    def start(self, extra_env: dict | None = None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(self.env, **(extra_env or {})), start_new_session=True)

    def stubs(self):
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.listen)
        return (pb_grpc.VolumeServiceStub(self.channel), pb_grpc.NodeServiceStub(self.channel),
                pb_grpc.ClusterServiceStub(self.channel))

    async def wait_nodes(self, n: int, timeout: float = 60.0) -> pb.ClusterStatus:
        _, _, cs = self.stubs()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"controller exited {self.proc.returncode}:\n{self.tail()}")
            try:
                st = await cs.GetClusterStatus(pb.GetClusterStatusRequest(), timeout=2)
                if st.nodes_up >= n:
                    return st
                last = st
            except grpc.aio.AioRpcError as e:
                last = e
            await asyncio.sleep(0.1)
        raise AssertionError(f"{n} nodes not up after {timeout}s: {last}\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Cluster:
    def __init__(self, backend: Backend, root: Path, nodes: int = 3, controller_env: dict | None = None,
                 controller_args: tuple[str, ...] = (), *, prefix: tuple[str, ...] = (), address: str | None = None,
                 first_port: int = 4420, controller_listen: str | None = None, pool_size: str = "1GiB"):
        """``prefix`` runs every process through it (``ip netns exec NS``); ``address`` puts all nodes'
        NVMe/TCP listeners on one address (ports from ``first_port``) instead of a loopback address each;
        ``controller_listen`` adds a TCP listener to the controller's Unix socket."""
        self.backend = backend
        self.root = root
        self.controller = ControllerProc(backend, root / "controller", env=controller_env,
                                         extra_args=controller_args, prefix=prefix, listen=controller_listen)
        self.agents = [AgentProc(backend, root / f"node-{i}", f"node-{i}", controller=self.controller.listen,
                                 labels={"zone": f"z{i}"}, pool_size=pool_size, prefix=prefix, address=address,
                                 port=first_port + (3 * (i - 1) if address else 0),   # a node uses port to port+2
                                 iscsi_port=3260 + i - 1 if address else None)
                       for i in range(1, nodes + 1)]

    async def start(self) -> None:
        self.controller.start()
        for a in self.agents:
            a.start()
        for a in self.agents:
            await a.wait_healthy()
        await self.controller.wait_nodes(len(self.agents))

    async def stop(self) -> None:
        await self.controller.stop()

        async def stop_agent(a: AgentProc) -> None:
            await a.stop()
            a.kill_targets()
        # the nodes shut down independently (each agent then its own SPDK targets): all at once
        errors = [e for e in await asyncio.gather(*(stop_agent(a) for a in self.agents), return_exceptions=True)
                  if isinstance(e, BaseException)]
        if errors:
            raise errors[0]

    @property
    def volumes(self) -> pb_grpc.VolumeServiceStub:
        return self.controller.stubs()[0]

    @property
    def nodes(self) -> pb_grpc.NodeServiceStub:
        return self.controller.stubs()[1]

    @property
    def cluster(self) -> pb_grpc.ClusterServiceStub:
        return self.controller.stubs()[2]

    def agent_by_id(self, node_id: str) -> AgentProc:
        for a in self.agents:
            if (a.data_dir / "node-id").read_text().strip() == node_id:
                return a
        raise KeyError(node_id)

    async def on_head_targets(self, v: pb.Volume, read, default=None) -> dict:
        """node name -> ``await read(rpc)`` on the head target of every node holding a replica of
        ``v`` (``default`` where that fails: no head target there, or nothing exported yet)."""
        out = {}
        for st in v.replica_status:
            agent = self.agent_by_id(st.node_id)
            spdk = agent.spdk("spdk-head.sock")
            try:
                out[agent.name] = await read(spdk)
            except Exception:   # noqa: BLE001 - see above
                out[agent.name] = default
            finally:
                await spdk.client.close()
        return out


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
