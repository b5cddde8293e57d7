"""Finding an SPDK build on this machine.

When ``$MESHBLOCK_SPDK_DIR`` is set it is the only place looked at (an SPDK
source tree after ``make``, or an install prefix): a wrong setting is reported,
never silently replaced by another build.  Otherwise the pinned release that
``meshblock spdk install`` provisions (``/opt/meshblock/spdk-<version>`` for root,
``~/.local/share/meshblock/spdk-<version>`` otherwise), then ``PATH``, then the
conventional build location ``/opt/spdk``.  A source tree keeps its apps in
``build/bin`` and ``build/examples`` and, when built with ``--with-shared``,
its libraries in ``build/lib``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

ENV_VAR = "MESHBLOCK_SPDK_DIR"
SUPPORTED = "SPDK 24.09 or newer (tested: the pinned v26.05)"
CONVENTIONAL_DIRS = (Path("/opt/spdk"),)

HOW_TO_PROVIDE = (
    "`meshblock spdk install` (run by ./scripts/setup) builds the pinned release; or set "
    f"{ENV_VAR} to an SPDK source tree after `make` (or an install prefix), or put its nvmf_tgt on PATH. "
    f"Supported: {SUPPORTED}."
)


def provisioned_dirs() -> list[Path]:
    """Where `meshblock spdk install` puts the pinned release, this user's place first."""
    from ..provision.build import prefix_roots
    from ..provision.spdk import VERSION

    return [root / f"spdk-{VERSION}" for root in prefix_roots()]


class SpdkNotFoundError(RuntimeError):
    """No usable SPDK build was found."""


@dataclass(frozen=True)
class SpdkInstall:
    """Where the SPDK programs meshblock runs live."""

    root: Path | None
    programs: dict[str, Path] = field(default_factory=dict)
    lib_dir: Path | None = None

    def program(self, name: str) -> Path:
        try:
            return self.programs[name]
        except KeyError:
            raise SpdkNotFoundError(f"SPDK program {name!r} not found in {self.describe()}") from None

    def has(self, name: str) -> bool:
        return name in self.programs

    def version(self) -> str | None:
        """The release of this build where it says: the install stamp, else a source tree's VERSION."""
        if self.root is None:
            return None
        from ..provision.build import read_stamp

        stamp = read_stamp(self.root)
        if stamp and stamp.get("version"):
            return str(stamp["version"])
        try:
            return (self.root / "VERSION").read_text().strip()
        except OSError:
            return None

    def describe(self) -> str:
        return str(self.root) if self.root else "PATH"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for running SPDK programs (adds build/lib to LD_LIBRARY_PATH when present)."""
        env = dict(os.environ if base is None else base)
        if self.lib_dir is not None:
            parts = [str(self.lib_dir)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
            env["LD_LIBRARY_PATH"] = ":".join(dict.fromkeys(parts))
        return env


PROGRAMS = ("nvmf_tgt", "spdk_tgt", "iscsi_tgt", "spdk_dd", "bdevperf", "spdk_nvme_perf", "perf", "rpc.py")


def _from_dir(root: Path) -> SpdkInstall | None:
    search = [root / "build" / "bin", root / "build" / "examples", root / "bin", root / "scripts", root]
    programs: dict[str, Path] = {}
    for name in PROGRAMS:
        for d in search:
            p = d / name
            if p.is_file() and os.access(p, os.X_OK):
                programs[name] = p
                break
    if "nvmf_tgt" not in programs and "spdk_tgt" not in programs:
        return None
    lib = next((d for d in (root / "build" / "lib", root / "lib") if d.is_dir()), None)
    return SpdkInstall(root=root, programs=programs, lib_dir=lib)


def find_spdk(env: dict[str, str] | None = None) -> SpdkInstall:
    """Return the SPDK build to use, or raise :class:`SpdkNotFoundError` saying where we looked."""
    env = dict(os.environ if env is None else env)
    looked: list[str] = []
    configured = env.get(ENV_VAR)
    if configured:
        root = Path(configured).expanduser()
        found = _from_dir(root)
        if found is not None:
            return found
        raise SpdkNotFoundError(f"SPDK not found; looked in {ENV_VAR}={root} (no executable nvmf_tgt or "
                                f"spdk_tgt under build/bin or bin). " + HOW_TO_PROVIDE)
    looked.append(f"{ENV_VAR} (not set)")
    for root in provisioned_dirs():
        found = _from_dir(root)
        if found is not None:
            return found
        looked.append(f"{root} (not installed)")
    path = env.get("PATH", os.defpath)
    programs: dict[str, Path] = {}
    for name in PROGRAMS:
        p = shutil.which(name, path=path)
        if p:
            programs[name] = Path(p)
    if "nvmf_tgt" in programs or "spdk_tgt" in programs:
        return SpdkInstall(root=None, programs=programs)
    looked.append("PATH (no nvmf_tgt or spdk_tgt)")
    for root in CONVENTIONAL_DIRS:
        found = _from_dir(root)
        if found is not None:
            return found
        looked.append(f"{root} (no build)")
    raise SpdkNotFoundError("SPDK not found; looked in " + "; ".join(looked) + ". " + HOW_TO_PROVIDE)
