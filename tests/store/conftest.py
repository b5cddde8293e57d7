"""Fixtures for the state store tests: a real etcd on loopback, and store URLs for both engines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from meshblock.store import open_store
from tests.support.etcd import EtcdServer, _etcd_or_skip, _free_port, find_etcd  # noqa: F401

HERE = Path(__file__).resolve().parent
PROC = HERE / "_proc.py"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "etcd: needs a real etcd server (the etcd binary from Debian's etcd-server package); "
        "skipped with the reason where absent")


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
