"""One QEMU guest and the host side of its command channel."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import itertools
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AgentTimeout, CommandFailed, GuestError
from .image import DEFAULT_KERNEL

CHUNK = 4 << 20


@dataclass
class CommandResult:
    """What a command run in a guest did."""

    command: str
    rc: int
    stdout_bytes: bytes
    stderr_bytes: bytes
    timed_out: bool = False
    duration: float = 0.0
    guest: str = ""

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def describe(self) -> str:
        what = "timed out" if self.timed_out else f"exited {self.rc}"
        out = self.stdout.strip()[-2000:]
        err = self.stderr.strip()[-2000:]
        return (f"[{self.guest}] {self.command!r} {what} after {self.duration:.1f}s"
                + (f"\n--- stdout ---\n{out}" if out else "") + (f"\n--- stderr ---\n{err}" if err else ""))

    def check(self) -> CommandResult:
        if not self.ok:
            raise CommandFailed(self)
        return self


class AgentClient:
    """Newline-delimited JSON over the guest's virtio-serial port (a Unix socket on this side).

    One request is in flight at a time (calls are serialised by a lock).  Replies
    carry the request's id; anything else read while waiting (a late reply to a
    call that timed out, a reply from before a reconnect) is dropped.  After a
    timeout or a broken frame the next call first re-synchronises with a ``hello``.
    """

    def __init__(self, socket_path: Path, name: str = "guest"):
        self.socket_path = str(socket_path)
        self.name = name
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._ids = itertools.count(random.randrange(1 << 40))
        self._lock = threading.RLock()
        self._synced = False

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.close()
                except OSError:
                    pass
            self._sock = None
            self._buf = bytearray()
            self._synced = False

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.socket_path)
            except OSError:
                s.close()
                raise
            self._sock = s
            self._buf = bytearray()
            self._synced = False
        return self._sock

    def _send(self, obj: dict) -> None:
        self._send_raw(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def _send_raw(self, data: bytes, timeout: float = 120.0) -> None:
        try:
            sock = self._connect()
            sock.settimeout(timeout)
            sock.sendall(data)
        except OSError as e:
            self.close()
            raise GuestError(f"{self.name}: agent channel broken: {e}") from e

    def _recv(self, want_id: int, deadline: float) -> dict:
        sock = self._connect()
        scanned = 0
        while True:
            while True:
                nl = self._buf.find(b"\n", scanned)
                if nl < 0:
                    scanned = len(self._buf)
                    break
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                scanned = 0
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("id") == want_id:
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._synced = False
                raise AgentTimeout(f"{self.name}: no answer from the agent in time")
            sock.settimeout(min(remaining, 1.0))
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError as e:
                self.close()
                raise GuestError(f"{self.name}: agent channel broken: {e}") from e
            if not chunk:
                self.close()
                raise GuestError(f"{self.name}: agent channel closed (did QEMU exit?)")
            self._buf += chunk

    def _hello(self, timeout: float) -> dict:
        rid = next(self._ids)
        self._send({"id": rid, "op": "hello"})
        return self._recv(rid, time.monotonic() + timeout)

    def call(self, op: str, wait: float, **params: Any) -> dict:
        """Send one request and wait up to ``wait`` seconds for its reply."""
        with self._lock:
            if not self._synced:
                self._send_raw(b"\n")  # ends any partial line the agent may hold
                self._hello(min(wait, 30.0))
                self._synced = True
            rid = next(self._ids)
            self._send({"id": rid, "op": op, **params})
            reply = self._recv(rid, time.monotonic() + wait)
        if not reply.get("ok"):
            raise GuestError(f"{self.name}: agent {op} failed: {reply.get('error')}")
        return reply

    def wait_ready(self, timeout: float, alive=lambda: True) -> dict:
        """Say hello until the agent answers (it starts once the guest's boot script is done)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        with self._lock:
            while time.monotonic() < deadline:
                if not alive():
                    raise GuestError(f"{self.name}: QEMU exited during boot")
                try:
                    self._connect()
                    reply = self._hello(min(5.0, max(0.1, deadline - time.monotonic())))
                    self._synced = True
                    return reply
                except (OSError, GuestError) as e:
                    last = e
                    if not isinstance(e, AgentTimeout):
                        self.close()
                        time.sleep(0.2)
        raise AgentTimeout(f"{self.name}: agent did not come up within {timeout:.0f}s ({last})")


def _pdeathsig() -> None:
    """In the child before exec: die with the process that started us (no orphaned QEMUs)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class GuestSpec:
    name: str
    index: int
    address: str              # e.g. 10.99.0.11
    prefix: int = 24
    memory_mb: int = 1024
    cpus: int = 1
    disks: Sequence[int] = ()  # sizes in bytes of extra empty virtio disks (serial mbtb-<name>-<n>)
    mac: str = field(default="")
    kernel: str = DEFAULT_KERNEL  # which of the image's kernels it boots (image.KERNELS)

    def __post_init__(self) -> None:
        if not self.mac:
            h = hashlib.sha256(self.name.encode()).digest()
            self.mac = f"52:54:00:{h[0]:02x}:{h[1]:02x}:{self.index & 0xFF:02x}"


class Guest:
    """A running guest: run commands, copy files in and out, read its console."""

    def __init__(self, spec: GuestSpec, proc: subprocess.Popen, run_dir: Path, tap: str):
        self.spec = spec
        self.name = spec.name
        self.address = spec.address
        self.kernel = spec.kernel
        self.proc = proc
        self.pid = proc.pid
        self.run_dir = run_dir
        self.tap = tap
        self.console_log = run_dir / f"{spec.name}.console.log"
        self.qemu_log = run_dir / f"{spec.name}.qemu.log"
        self.agent = AgentClient(run_dir / f"{spec.name}.agent", spec.name)
        self.hostnqn = ""
        self.hostid = ""
        self.iqn = ""
        self.boot_seconds = 0.0

    # --- life cycle --------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 180.0, started: float | None = None) -> None:
        started = started or time.monotonic()
        try:
            self.agent.wait_ready(timeout, alive=lambda: self.alive)
        except GuestError as e:
            raise GuestError(f"{e}\n--- console tail ---\n{self.console_tail()}") from e
        self.boot_seconds = time.monotonic() - started
        self.hostnqn = self.read_file("/etc/nvme/hostnqn").decode().strip()
        self.hostid = self.read_file("/etc/nvme/hostid").decode().strip()
        iqn = self.read_file("/etc/iscsi/initiatorname.iscsi").decode().strip()
        self.iqn = iqn.split("=", 1)[-1]

    def kill(self, timeout: float = 5.0) -> None:
        self.agent.close()
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout)
            except ProcessLookupError:
                pass

    def _call(self, op: str, wait: float, **params: Any) -> dict:
        try:
            return self.agent.call(op, wait, **params)
        except GuestError as e:
            if self.alive:
                raise
            raise GuestError(f"{e}; QEMU exited with status {self.proc.returncode}\n"
                             f"--- console tail ---\n{self.console_tail()}") from e

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- commands ----------------------------------------------------------------------------

    def run(self, cmd: str | Sequence[str], *, timeout: float = 120.0, input: bytes | str | None = None,
            env: dict[str, str] | None = None, cwd: str | None = None, check: bool = False) -> CommandResult:
        """Run ``cmd`` (a shell string for /bin/sh -c, or an argv list) and return what it did."""
        params: dict[str, Any] = {"timeout": timeout}
        if isinstance(cmd, str):
            params["shell"] = cmd
            shown = cmd
        else:
            params["argv"] = [str(a) for a in cmd]
            shown = shlex.join(params["argv"])
        if input is not None:
            data = input.encode() if isinstance(input, str) else input
            params["stdin"] = base64.b64encode(data).decode()
        if env:
            params["env"] = env
        if cwd:
            params["cwd"] = cwd
        reply = self._call("run", timeout + 30.0, **params)
        result = CommandResult(command=shown, rc=reply["rc"], stdout_bytes=base64.b64decode(reply["stdout"]),
                               stderr_bytes=base64.b64decode(reply["stderr"]), timed_out=reply["timed_out"],
                               duration=reply["duration"], guest=self.name)
        return result.check() if check else result

    def check(self, cmd: str | Sequence[str], **kw: Any) -> str:
        """Run ``cmd``, raise :class:`CommandFailed` unless it succeeds, return its stdout."""
        return self.run(cmd, check=True, **kw).stdout

    def python(self, code: str, *, pythonpath: str = "/meshblock", **kw: Any) -> CommandResult:
        """Run Python code with the guest's python3, the project's checkout on PYTHONPATH."""
        env = {"PYTHONPATH": pythonpath, **(kw.pop("env", None) or {})}
        return self.run(["python3", "-c", code], env=env, **kw)

    # --- files -------------------------------------------------------------------------------

    def write_file(self, path: str, data: bytes | str, mode: int | None = None, parents: bool = True) -> None:
        data = data.encode() if isinstance(data, str) else data
        offset = 0
        while True:
            chunk = data[offset:offset + CHUNK]
            self._call("write", 120.0, path=path, data=base64.b64encode(chunk).decode(), offset=offset,
                            truncate=offset == 0, mode=mode, parents=parents and offset == 0)
            offset += len(chunk)
            if offset >= len(data):
                return

    def read_file(self, path: str) -> bytes:
        out = bytearray()
        while True:
            reply = self._call("read", 120.0, path=path, offset=len(out), length=CHUNK)
            out += base64.b64decode(reply["data"])
            if reply["eof"]:
                return bytes(out)

    def copy_in(self, local: str | os.PathLike, remote: str, mode: int | None = None) -> None:
        local = Path(local)
        self.write_file(remote, local.read_bytes(), mode if mode is not None else local.stat().st_mode & 0o7777)

    def copy_out(self, remote: str, local: str | os.PathLike) -> None:
        Path(local).write_bytes(self.read_file(remote))

    def __repr__(self) -> str:
        return f"<Guest {self.name} {self.address} pid={self.pid}>"


def qemu_argv(spec: GuestSpec, *, kernel: Path, initrd: Path, overlay: Path, disks: Sequence[Path],
              run_dir: Path, tap: str, share: tuple[str, Path, str] | None, gateway: str | None) -> list[str]:
    append = [
        "console=ttyS0", "panic=-1", "net.ifnames=0", "biosdevname=0", "loglevel=5",
        f"mbtb.hostname={spec.name}", f"mbtb.ip={spec.address}/{spec.prefix}",
    ]
    if gateway:
        append.append(f"mbtb.gw={gateway}")
    argv = [
        "qemu-system-x86_64", "-name", f"mbtb-{spec.name}",
        "-accel", "tcg", "-cpu", "max", "-smp", str(spec.cpus), "-m", str(spec.memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-uuid", str(uuid.uuid4()),
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-serial", f"file:{run_dir / (spec.name + '.console.log')}",
        "-drive", f"file={overlay},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
        "-device", "virtio-blk-pci,drive=root,serial=mbtb-root",
        "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={spec.mac},romfile=",  # no PXE ROM: faster firmware
        "-device", "virtio-rng-pci",
        "-device", "virtio-serial-pci,id=vser0",
        "-chardev", f"socket,id=agent,path={run_dir / (spec.name + '.agent')},server=on,wait=off",
        "-device", "virtserialport,bus=vser0.0,chardev=agent,name=mbtb.agent",
    ]
    for i, d in enumerate(disks, 1):
        argv += ["-drive", f"file={d},if=none,id=disk{i},format=qcow2,cache=unsafe,discard=unmap",
                 "-device", f"virtio-blk-pci,drive=disk{i},serial=mbtb-{spec.name}-{i}"]
    if share is not None:
        tag, path, mountpoint = share
        argv += ["-virtfs", f"local,path={path},mount_tag={tag},security_model=none,readonly=on,id={tag}"]
        append.append(f"mbtb.share={tag}:{mountpoint}:ro")
    argv += ["-append", " ".join(append)]
    return argv


def start_qemu(argv: list[str], netns_prefix: list[str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(netns_prefix + argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=_pdeathsig, close_fds=True)
    finally:
        log.close()
