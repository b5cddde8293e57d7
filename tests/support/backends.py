"""Where tests get an SPDK from: the fake target in tests/support/fakespdk, or a real build."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from meshblock.spdk.discovery import ENV_VAR, SpdkInstall, SpdkNotFoundError, find_spdk, provisioned_dirs

REPO = Path(__file__).resolve().parents[2]
FAKE_DIR = REPO / "tests" / "support" / "fakespdk"

_real: tuple[SpdkInstall | None, str] | None = None


def real_spdk() -> tuple[SpdkInstall | None, str]:
    """The real SPDK build, or None and the reason it is absent."""
    global _real
    if _real is None:
        try:
            found = find_spdk()
            if found.root is not None and Path(found.root).resolve() == FAKE_DIR.resolve():
                _real = (None, f"{ENV_VAR} points at the fake target")
            else:
                _real = (found, "")
        except SpdkNotFoundError as e:
            _real = (None, str(e))
    return _real


@dataclass
class Backend:
    kind: str                       # "fake" or "real"
    install: SpdkInstall
    env: dict[str, str] = field(default_factory=dict)

    @property
    def real(self) -> bool:
        return self.kind == "real"


def fake_backend(registry: Path) -> Backend:
    install = find_spdk({ENV_VAR: str(FAKE_DIR), "PATH": ""})
    env = dict(os.environ, **{ENV_VAR: str(FAKE_DIR), "FAKESPDK_REGISTRY": str(registry)})
    return Backend("fake", install, env)


def real_backend() -> Backend | None:
    install, _ = real_spdk()
    if install is None:
        return None
    env = dict(os.environ)
    # the provisioned build is found with no variable, as on a user's machine after setup
    if install.root is not None and install.root not in provisioned_dirs():
        env[ENV_VAR] = str(install.root)
    return Backend("real", install, env)


_addresses = itertools.count()


def loopback_address() -> str:
    """A loopback address no other test of this run uses (all of 127/8 reaches lo on Linux)."""
    n = next(_addresses)
    return f"127.{100 + os.getpid() % 100}.{n // 250}.{n % 250 + 2}"
