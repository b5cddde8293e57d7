"""Runs one SPDK target process and keeps it running.

The supervisor either launches the target (``nvmf_tgt``/``spdk_tgt``) with the
flags for the machine it is on, or adopts one that is already running: a target
that outlived the agent that started it (found through its pid file), or a target
someone else runs (the container sidecar case, known only by its socket).  It
notices a crash, restarts the target it owns, and calls the ``on_ready`` hooks
each time a target comes (back) up, so the agent can re-create what SPDK does
not persist (transports, exports, attachments).

Targets run in their own session so that the data path survives the agent being
killed; ``stop()`` ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from .client import SpdkClient
from .discovery import SpdkInstall
from .errors import SpdkError

log = logging.getLogger(__name__)

ReadyHook = Callable[[], Awaitable[None]]


@dataclass
class TargetConfig:
    rpc_socket: Path
    app: str = "nvmf_tgt"
    cpumask: str = "0x1"
    mem_size_mb: int | None = 1024
    no_huge: bool = True
    no_pci: bool = True
    interrupt_mode: bool = False
    disable_cpumask_locks: bool = True
    extra_args: list[str] = field(default_factory=list)
    # SPDK JSON config applied at start-up (for options that only exist before init, e.g. sockets)
    startup_config: dict | None = None
    log_file: Path | None = None
    pid_file: Path | None = None
    start_timeout: float = 30.0
    restart: bool = True
    restart_backoff: float = 0.5
    restart_backoff_max: float = 10.0
    health_interval: float = 0.5

    def argv(self, install: SpdkInstall) -> list[str]:
        args = [str(install.program(self.app)), "-r", str(self.rpc_socket), "-m", self.cpumask]
        if self.mem_size_mb:
            args += ["-s", str(self.mem_size_mb)]
        if self.no_huge:
            args.append("--no-huge")
        if self.no_pci:
            args.append("--no-pci")
        if self.interrupt_mode:
            args.append("--interrupt-mode")
        if self.disable_cpumask_locks:
            args.append("--disable-cpumask-locks")
        if self.startup_config is not None:
            args += ["--json", str(self.startup_config_path)]
        return args + list(self.extra_args)

    @property
    def startup_config_path(self) -> Path:
        return self.rpc_socket.with_suffix(".json")

    def write_startup_config(self) -> None:
        if self.startup_config is not None:
            tmp = self.startup_config_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self.startup_config, indent=2))
            os.replace(tmp, self.startup_config_path)


class TargetState(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"


class TargetStartError(SpdkError):
    """The target process exited or did not answer while starting."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class TargetSupervisor:
    """Owns (or adopts) one SPDK target reachable at ``config.rpc_socket``."""

    def __init__(self, config: TargetConfig, install: SpdkInstall | None, *, external: bool = False):
        if install is None and not external:
            raise ValueError("an SPDK install is needed unless the target is external")
        self.config = config
        self.install = install
        self.external = external
        self.client = SpdkClient(str(config.rpc_socket))
        self.state = TargetState.STOPPED
        self.pid: int | None = None
        self.version: str | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._hooks: list[ReadyHook] = []
        self._stopping = False
        self.ready = asyncio.Event()

    def on_ready(self, hook: ReadyHook) -> None:
        """Run ``hook`` every time the target comes up (first start and every restart)."""
        self._hooks.append(hook)

    async def start(self) -> None:
        self._stopping = False
        self.state = TargetState.STARTING
        if self.external:
            await self._wait_answering(self.config.start_timeout)
        elif not self._adopt():
            await self._launch()
        await self._became_ready()
        self._monitor = asyncio.create_task(self._watch(), name=f"spdk-watch-{self.config.rpc_socket}")

    async def stop(self, *, kill_target: bool = True) -> None:
        """Stop watching; end the target too when we own it and ``kill_target`` is set."""
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._monitor
            self._monitor = None
        await self.client.close()
        if kill_target and not self.external and self.pid is not None:
            await self._terminate(self.pid)
            if self.config.pid_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.config.pid_file.unlink()
        self.ready.clear()
        self.state = TargetState.STOPPED


    # --- internals -----------------------------------------------------------------------------
    def _adopt(self) -> bool:
        pf = self.config.pid_file
        if pf is None or not pf.exists():
            return False
        try:
            pid = int(pf.read_text().strip())
        except ValueError:
            return False
        if not pid_alive(pid) or str(self.config.rpc_socket) not in process_cmdline(pid):
            return False
        log.info("adopting running SPDK target pid=%d socket=%s", pid, self.config.rpc_socket)
        self.pid = pid
        return True

    async def _launch(self) -> None:
        assert self.install is not None
        sock = self.config.rpc_socket
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()  # a stale socket from a crashed target would fool the readiness check
        self.config.write_startup_config()
        argv = self.config.argv(self.install)
        out = open(self.config.log_file, "ab") if self.config.log_file else asyncio.subprocess.DEVNULL
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                env=self.install.env(), start_new_session=True)
        finally:
            if not isinstance(out, int):
                out.close()
        self.pid = self._proc.pid
        if self.config.pid_file is not None:
            tmp = self.config.pid_file.with_suffix(".tmp")
            tmp.write_text(f"{self.pid}\n")
            os.replace(tmp, self.config.pid_file)
        log.info("started SPDK target pid=%d: %s", self.pid, " ".join(argv))
        try:
            await self._wait_answering(self.config.start_timeout)
        except TargetStartError:
            await self._terminate(self.pid)
            raise

    async def _wait_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.returncode is not None:
                raise TargetStartError(
                    f"SPDK target exited with status {self._proc.returncode} while starting"
                    f"{self._log_hint()}")
            try:
                await self.client.call("spdk_get_version", timeout=2.0)
                return
            except SpdkError:
                pass
            if time.monotonic() > deadline:
                raise TargetStartError(f"SPDK target at {self.config.rpc_socket} did not answer within "
                                       f"{timeout:g}s{self._log_hint()}")
            await asyncio.sleep(0.05)

    def _log_hint(self) -> str:
        lf = self.config.log_file
        if lf is None or not lf.exists():
            return ""
        tail = lf.read_text(errors="replace").strip().splitlines()[-5:]
        return f"; see {lf}:\n  " + "\n  ".join(tail) if tail else f"; see {lf}"

    async def _became_ready(self) -> None:
        info = await self.client.call("spdk_get_version", timeout=5.0)
        self.version = info.get("version") if isinstance(info, dict) else str(info)
        with contextlib.suppress(SpdkError):
            await self.client.call("framework_wait_init", timeout=self.config.start_timeout)
        for hook in self._hooks:
            await hook()
        self.state = TargetState.RUNNING
        self.ready.set()

    async def _alive(self) -> bool:
        if self._proc is not None:
            return self._proc.returncode is None
        if self.pid is not None:
            return pid_alive(self.pid)
        # external target: alive while it answers
        try:
            await self.client.call("spdk_get_version", timeout=2.0)
            return True
        except SpdkError:
            return False

    async def _watch(self) -> None:
        backoff = self.config.restart_backoff
        while not self._stopping:
            if self._proc is not None:
                await self._proc.wait()
            else:
                while await self._alive():
                    await asyncio.sleep(self.config.health_interval)
            if self._stopping:
                return
            self.ready.clear()
            code = self._proc.returncode if self._proc is not None else None
            self.last_exit = f"exit status {code}" if code is not None else "gone"
            log.warning("SPDK target %s (pid=%s) died: %s", self.config.rpc_socket, self.pid, self.last_exit)
            await self.client.close()
            self._proc = None
            if not self.config.restart:
                self.state = TargetState.FAILED
                return
            self.state = TargetState.RESTARTING
            while not self._stopping:
                try:
                    if self.external:
                        await self._wait_answering(self.config.start_timeout)
                    else:
                        await self._launch()
                    self.restarts += 1
                    await self._became_ready()
                    backoff = self.config.restart_backoff
                    break
                except SpdkError as e:
                    log.error("restarting SPDK target %s failed: %s; retry in %.1fs",
                              self.config.rpc_socket, e, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.config.restart_backoff_max)

    async def _terminate(self, pid: int, grace: float = 10.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                try:
                    await asyncio.wait_for(self._proc.wait(), 0.1)
                    return
                except asyncio.TimeoutError:
                    continue
            if not pid_alive(pid):
                return
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if self._proc is not None and self._proc.pid == pid:
            await self._proc.wait()
