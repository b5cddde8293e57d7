"""Fixtures for the admin CLI tests: a fake controller on a Unix socket and a runner."""

from __future__ import annotations

from typing import Callable

import click
import pytest
from click.testing import CliRunner, Result

from meshblock.cli import admin
from tests.cli.fake_controller import FakeController, Server

ENV_VARS = ("MESHBLOCK_ENDPOINT", "MESHBLOCK_HOME", "MESHBLOCK_CA", "MESHBLOCK_CERT", "MESHBLOCK_KEY",
            "MESHBLOCK_TOKEN")


@click.group()
def root() -> None:
    """The admin command groups as `meshblock` registers them."""


for _group in admin.COMMANDS:
    root.add_command(_group)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    s = Server().start()
    yield s
    s.stop()


@pytest.fixture
def fc(server: Server) -> FakeController:
    return server.fc


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(root, list(args), env=env, input=input, prog_name="meshblock",
                              catch_exceptions=False)


@pytest.fixture
def mb(server: Server) -> Callable[..., Result]:
    """Run `meshblock ARGS --endpoint <the fake controller>`."""

    def run(*args: str, input: str | None = None) -> Result:
        return invoke(*args, "--endpoint", server.endpoint, input=input)

    return run
