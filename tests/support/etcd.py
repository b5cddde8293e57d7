"""A real etcd for tests: a single member on free loopback ports, stopped by its PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ETCD_CANDIDATES = ("etcd", "/usr/bin/etcd")


def find_etcd() -> str | None:
    """$MESHBLOCK_ETCD if set (a path to an etcd binary), else etcd on PATH or /usr/bin/etcd."""
    override = os.environ.get("MESHBLOCK_ETCD")
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    for name in ETCD_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdServer:
    """A single-member etcd on loopback ports, in its own process group; stopped by its PID."""

    def __init__(self, exe: str, base: Path):
        self.exe = exe
        self.base = base
        self.data_dir = base / "data"
        self.client_port, self.peer_port = _free_port(), _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def url(self, prefix: str | None = None) -> str:
        prefix = prefix or f"/test-{uuid.uuid4().hex[:12]}"
        return f"etcd://{self.endpoint}?prefix={prefix}"

    def start(self) -> None:
        """Start (or restart, on the same data directory and ports) and wait until healthy."""
        client_url, peer_url = f"http://{self.endpoint}", f"http://127.0.0.1:{self.peer_port}"
        with open(self.base / "etcd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, "--name", "meshblock-test", "--data-dir", str(self.data_dir),
                 "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                 "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                 "--initial-cluster", f"meshblock-test={peer_url}", "--initial-cluster-state", "new"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}: "
                                   f"{(self.base / 'etcd.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("etcd did not become healthy within 20 s")
            time.sleep(0.1)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """kill -9, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _etcd_or_skip() -> str:
    exe = find_etcd()
    if exe is None:
        pytest.skip("etcd not found ($MESHBLOCK_ETCD, PATH, /usr/bin/etcd): install Debian's etcd-server "
                    "package to run the etcd engine's tests")
    return exe
