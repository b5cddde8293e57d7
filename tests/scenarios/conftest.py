"""SPDK target processes for scenario tests: the fake one and, where found, the real one.

``spdk_target`` is parametrized through the shared ``backend`` fixture (tests/conftest.py) over
"fake" and "real"; the real tier is marked ``spdk`` and skipped with the reason when no SPDK
build is found.  Every target is started the way meshblock runs replica targets (``--no-huge
-s 512 -m 0x1 --no-pci --disable-cpumask-locks``, in interrupt mode unless asked otherwise),
gets its own short socket directory (Unix socket paths are limited to 107 bytes) and is stopped
by PID in teardown, SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from meshblock.spdk import SpdkClient, SpdkError, SpdkRpc
from tests.support.backends import Backend, loopback_address

MiB = 1 << 20


class SpdkTarget:
    """One ``nvmf_tgt`` process (fake or real) with an async client bound to its socket."""

    def __init__(self, backend: Backend, workdir: Path, name: str = "tgt", *, interrupt_mode: bool = True,
                 app: str = "nvmf_tgt", mem_size: int = 512):
        self.backend = backend
        self.workdir = workdir
        self.name = name
        self.interrupt_mode = interrupt_mode
        self.app = app
        self.mem_size = mem_size
        self.sockdir = Path(tempfile.mkdtemp(prefix="spdk-", dir="/tmp"))
        self.sock = str(self.sockdir / f"{name}.sock")
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.client = SpdkClient(self.sock, timeout=30.0)
        self.rpc = SpdkRpc(self.client)
        self.starts = 0

    @property
    def kind(self) -> str:
        return self.backend.kind

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def argv(self) -> list[str]:
        args = [str(self.backend.install.program(self.app)), "--no-huge", "-s", str(self.mem_size), "-m", "0x1",
                "--no-pci", "--disable-cpumask-locks", "-r", self.sock]
        if self.interrupt_mode:
            args.append("--interrupt-mode")
        return args

    async def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:  # noqa: ASYNC230 - a local log file
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out,  # noqa: ASYNC220
                                         stderr=subprocess.STDOUT, env=self.backend.install.env(self.backend.env),
                                         start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.app} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                await self.client.wait_ready(timeout=1.0)
                break
            except SpdkError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.app} did not answer in {timeout}s:\n{self.tail()}") from None
        await self.rpc.framework_wait_init()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    async def kill9(self) -> None:
        """Kill the target with SIGKILL (no cleanup at all) and reap it."""
        await self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait, 30)

    async def stop(self) -> None:
        await self.client.close()
        p = self.proc
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(p.wait, 15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            await asyncio.to_thread(p.wait, 15)

    def cleanup(self) -> None:
        shutil.rmtree(self.sockdir, ignore_errors=True)


def free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


class TargetFactory:
    def __init__(self, backend: Backend, workdir: Path):
        self.backend = backend
        self.workdir = workdir
        self.targets: list[SpdkTarget] = []

    async def __call__(self, name: str, **kw) -> SpdkTarget:
        t = SpdkTarget(self.backend, self.workdir, name, **kw)
        self.targets.append(t)
        await t.start()
        return t

    async def close(self) -> None:
        for t in reversed(self.targets):
            await t.stop()
            t.cleanup()


@pytest.fixture
async def spdk_targets(backend, tmp_path):
    """Start more targets of the same backend (they share the fake's registry)."""
    f = TargetFactory(backend, tmp_path)
    try:
        yield f
    finally:
        await f.close()


@pytest.fixture
async def spdk_target(spdk_targets) -> SpdkTarget:
    """An ``nvmf_tgt`` in interrupt mode: the fake one, or the real one when SPDK is found."""
    return await spdk_targets("tgt")


@pytest.fixture
def listen_addr() -> str:
    """A loopback address no other test of this run uses."""
    return loopback_address()


@pytest.fixture
def aio_file(tmp_path):
    """Make sparse backing files: ``aio_file("pool", 256 * MiB)``."""

    def make(name: str = "pool", size: int = 256 * MiB) -> str:
        p = tmp_path / f"{name}.img"
        with open(p, "wb") as f:
            f.truncate(size)
        return str(p)

    return make
