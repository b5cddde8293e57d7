"""Fixtures for the state store tests: a real etcd on loopback, and store URLs for both engines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from meshblock.store import open_store

HERE = Path(__file__).resolve().parent
PROC = HERE / "_proc.py"
ETCD_CANDIDATES = ("etcd", "/usr/bin/etcd")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "etcd: needs a real etcd server (the etcd binary from Debian's etcd-server package); "
        "skipped with the reason where absent")


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


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory):
    """The etcd shared by the etcd tests (each test works under its own key prefix)."""
    server = EtcdServer(_etcd_or_skip(), tmp_path_factory.mktemp("etcd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_etcd_server(tmp_path):
    """An etcd for one test alone (one that kills or restarts it)."""
    server = EtcdServer(_etcd_or_skip(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


ENGINES = ["sqlite", "etcd"]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # the etcd variants carry the etcd marker (so that -m "not etcd" deselects them)
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("store_url") == "etcd":
            item.add_marker(pytest.mark.etcd)


@pytest.fixture(params=ENGINES)
def store_url(request, tmp_path) -> str:
    """A fresh, empty store of each engine: a new SQLite file, or a new etcd key prefix."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state.db"
    return request.getfixturevalue("etcd_server").url()


@pytest.fixture
async def store(store_url):
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def store2(store_url):
    """A second, independent connection to the same store."""
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def proc_cmd(*args: str) -> list[str]:
    """Command line of the helper process script (tests/store/_proc.py)."""
    return [sys.executable, str(PROC), *args]


TAKEOVERS: list[tuple[str, float]] = []   # (engine, seconds from kill -9 of the leader to a new leader)


def pytest_terminal_summary(terminalreporter):
    if TAKEOVERS:
        terminalreporter.section("state store leader takeover")
        for engine, seconds in TAKEOVERS:
            terminalreporter.write_line(f"{engine}: a standby led {seconds:.2f} s after kill -9 of the leader")
