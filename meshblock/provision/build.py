"""Building a pinned third-party program from source into a versioned prefix.

The pieces every recipe shares: where prefixes and build trees live, steps that
print their progress on the terminal while the full output goes to a log file,
getting the source (a git repository, an archive or a directory), and the
install itself, which is staged next to the final prefix and renamed into place
only when complete, so discovery never sees a half-installed prefix.  A stamp in
the prefix records what was built; a second install with the same stamp does
nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

STAMP = "meshblock-install.json"


class ProvisionError(RuntimeError):
    """A build or install step failed; the message names the step and the log."""


def prefix_root(euid: int | None = None, home: Path | None = None) -> Path:
    """Where provisioned programs live: /opt/meshblock as root, else ~/.local/share/meshblock."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return Path("/opt/meshblock")
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data) if data else (home or Path.home()) / ".local" / "share"
    return base / "meshblock"


def prefix_roots() -> list[Path]:
    """Every place a provisioned prefix may be found, the one of this user first."""
    roots = [prefix_root()]
    for r in (Path("/opt/meshblock"), prefix_root(euid=1)):
        if r not in roots:
            roots.append(r)
    return roots


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "meshblock"


def read_stamp(prefix: Path) -> dict | None:
    try:
        return json.loads((prefix / STAMP).read_text())
    except (OSError, ValueError):
        return None


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of build commands: the system's tools first (SPDK's build scripts need
    Debian's python3 with its packages, not a virtual environment's)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYENV_VERSION", "MAKEFLAGS", "MFLAGS")}
    parts = ["/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    venv = sys.prefix if sys.prefix != sys.base_prefix else None
    rest = [p for p in env.get("PATH", "").split(":") if p and p not in parts and ".pyenv" not in p
            and not (venv and p.startswith(venv))]
    env["PATH"] = ":".join(parts + rest)
    env["LC_ALL"] = "C"
    env.update(extra or {})
    return env


@dataclass
class Progress:
    """Numbered steps on the terminal with their elapsed times; command output to the log file."""

    what: str
    log_path: Path
    total: int
    out: TextIO = field(default_factory=lambda: sys.stderr)
    heartbeat: float = 30.0
    started: float = field(default_factory=time.monotonic)
    _n: int = 0
    _log: TextIO | None = None

    def __enter__(self) -> "Progress":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", buffering=1)
        return self

    def __exit__(self, *exc) -> None:
        if self._log:
            self._log.close()

    def say(self, text: str) -> None:
        print(f"{self.what}: {text}", file=self.out, flush=True)
        self.log(text)

    def log(self, text: str) -> None:
        if self._log:
            self._log.write(f"== {text}\n")

    def elapsed(self) -> str:
        return _fmt(time.monotonic() - self.started)

    def step(self, name: str, fn: Callable[[], object]) -> object:
        self._n += 1
        label = f"[{self._n}/{self.total}] {name}"
        print(f"{self.what}: {label} ...", file=self.out, flush=True)
        self.log(label)
        t0 = time.monotonic()
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported with its step and log
            where = "" if isinstance(e, ProvisionError) else f"\nfull log: {self.log_path}"
            raise ProvisionError(f"step '{name}' failed after {_fmt(time.monotonic() - t0)}: {e}{where}") from e
        print(f"{self.what}: {label} done in {_fmt(time.monotonic() - t0)} (total {self.elapsed()})",
              file=self.out, flush=True)
        return result

    def run(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        """Run a command with its output in the log; a line on the terminal every heartbeat."""
        assert self._log is not None
        self._log.write(f"$ {' '.join(argv)}  (in {cwd})\n")
        self._log.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env or clean_env(), stdin=subprocess.DEVNULL,
                                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=self.heartbeat)
                    break
                except subprocess.TimeoutExpired:
                    print(f"{self.what}:     ... {argv[0]} running for {_fmt(time.monotonic() - t0)} "
                          f"(total {self.elapsed()}): {_last_line(self.log_path)}", file=self.out, flush=True)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)   # make and every compiler it started
            proc.wait()
            raise
        if rc != 0:
            tail = "\n".join(_tail(self.log_path, 15))
            raise ProvisionError(f"`{' '.join(argv[:3])}` exited with {rc}; last lines of the log:\n{tail}\n"
                                 f"full log: {self.log_path}")


def _fmt(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{seconds:.1f}s"


def _tail(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            return f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _last_line(path: Path) -> str:
    lines = [ln for ln in _tail(path, 5) if ln.strip() and not ln.startswith(("$ ", "== "))]
    return (lines[-1].strip() if lines else "")[:100]


def unpack_source(source: Path, dest: Path) -> None:
    """Put a source tree at dest from an archive (its single top directory stripped) or a directory."""
    if dest.exists():
        shutil.rmtree(dest)
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True)
        return
    if not source.is_file():
        raise ProvisionError(f"source {source} is neither an archive nor a directory")
    tmp = dest.with_name(dest.name + ".unpack")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(source) as tar:
            tar.extractall(tmp, filter="tar")
    except (tarfile.TarError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ProvisionError(f"cannot unpack {source}: {e}") from e
    entries = list(tmp.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    top.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)


def fetch_source(source: str | None, dest: Path, env_name: str, clone: Callable[[Path], None]) -> None:
    """Put the source tree at dest: the archive or directory named by source, else clone(dest)
    (source is then a repository URL, or None for the official repository)."""
    if source and Path(source).exists():
        unpack_source(Path(source), dest)
        return
    if source and not source.startswith(("https://", "http://", "git@", "git://", "file://")):
        raise ProvisionError(f"{env_name}={source}: no such archive or directory")
    if dest.exists():
        shutil.rmtree(dest)
    clone(dest)


def install_atomically(prefix: Path, populate: Callable[[Path], None], stamp: dict) -> None:
    """Fill a staging directory beside prefix, write the stamp last, then rename it into place.

    An existing prefix (another version of the options) is moved aside first and removed only
    after the new one is in place."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = prefix.with_name(f".{prefix.name}.staging-{os.getpid()}")
    old = prefix.with_name(f".{prefix.name}.old-{os.getpid()}")
    for leftover in prefix.parent.glob(f".{prefix.name}.staging-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir()
    try:
        populate(staging)
        (staging / STAMP).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
        if prefix.exists():
            prefix.rename(old)
        staging.rename(prefix)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not prefix.exists():
            old.rename(prefix)
        raise
    shutil.rmtree(old, ignore_errors=True)


def missing_debian_packages(packages: list[str]) -> list[str]:
    if not shutil.which("dpkg-query"):
        return []
    missing = []
    for p in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    return missing


def ensure_debian_packages(packages: list[str], progress: Progress) -> None:
    """Install the packages that are missing (as root with apt-get), else say which are needed."""
    missing = missing_debian_packages(packages)
    if not missing:
        progress.log("build packages present")
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ProvisionError("these Debian packages are needed to build and are missing: " + " ".join(missing)
                             + " (install them as root, or run ./scripts/setup as root)")
    env = clean_env({"DEBIAN_FRONTEND": "noninteractive"})
    progress.run(["apt-get", "update", "-qq"], Path("/"), env)
    progress.run(["apt-get", "install", "-y", "-qq", *missing], Path("/"), env)
