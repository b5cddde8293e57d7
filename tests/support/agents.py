"""Node agents as real processes (`python -m meshblock agent`) for scenario tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from meshblock.proto.meshblock.v1 import agent_pb2 as pb
from meshblock.proto.meshblock.v1 import agent_pb2_grpc as pb_grpc
from meshblock.spdk import SpdkClient, SpdkRpc
from meshblock.spdk.supervisor import pid_alive

from .backends import Backend, loopback_address


class AgentProc:
    def __init__(self, backend: Backend, data_dir: Path, name: str = "node", *, pool_size: str = "256MiB",
                 mem_size: int = 512, interrupt_mode: bool = True, address: str | None = None, port: int = 4420,
                 controller: str = "", labels: dict[str, str] | None = None, prefix: tuple[str, ...] = (),
                 iscsi_port: int | None = None):
        self.backend = backend
        self.data_dir = data_dir
        self.name = name
        self.address = address or loopback_address()
        self.port = port
        self.listen = f"unix:{data_dir / 'agent.sock'}"
        self.argv = [*prefix, sys.executable, "-m", "meshblock", "agent", "--name", name, "--data-dir", str(data_dir),
                     "--pool-size", pool_size, "--mem-size", str(mem_size), "--nvmf-address", self.address,
                     "--nvmf-port", str(port), "--listen", self.listen,
                     "--interrupt-mode" if interrupt_mode else "--polling", "--log-level", "DEBUG"]
        if iscsi_port is not None:
            self.argv += ["--iscsi-port", str(iscsi_port)]
        if controller:
            self.argv += ["--controller", controller]
        for k, v in (labels or {}).items():
            self.argv += ["--label", f"{k}={v}"]
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.aio.Channel | None = None
        self.stub: pb_grpc.AgentServiceStub | None = None

    @property
    def log(self) -> Path:
        return self.data_dir / "agent.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     env=self.backend.env, start_new_session=True)
        out.close()

    async def wait_healthy(self, timeout: float = 60.0) -> pb.HealthReply:
        assert self.proc is not None
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.listen)
            self.stub = pb_grpc.AgentServiceStub(self.channel)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                h = await self.stub.Health(pb.HealthRequest(), timeout=2)
                if h.healthy:
                    return h
                last = h
            except grpc.aio.AioRpcError as e:
                last = e
            await asyncio.sleep(0.1)
        raise AssertionError(f"agent not healthy after {timeout}s: {last}\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        parts = []
        for f in (self.log, self.data_dir / "spdk.log"):
            if f.exists():
                parts.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(parts)

    def target_pid(self, which: str = "spdk.pid") -> int:
        return int((self.data_dir / which).read_text().strip())

    def spdk(self, sock: str = "spdk.sock") -> SpdkRpc:
        return SpdkRpc(SpdkClient(str(self.data_dir / sock)))

    async def close_channel(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel, self.stub = None, None

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        await self.close_channel()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.to_thread(self.proc.wait, timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill_targets(self) -> None:
        """Teardown: end any SPDK target this agent left (after a kill -9 of the agent)."""
        for f in ("spdk.pid", "spdk-head.pid"):
            p = self.data_dir / f
            if p.exists():
                try:
                    pid = int(p.read_text().strip())
                except ValueError:
                    continue
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
