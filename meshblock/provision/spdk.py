"""The pinned SPDK release, built from source into a versioned prefix.

Source: the official repository at the pinned tag with the submodules the build
uses, or ``$MESHBLOCK_SPDK_SOURCE`` (an archive or a directory holding the same
tree, for hosts without internet access).  The prefix holds ``bin/`` (the
applications and the examples meshblock runs: nvmf_tgt, spdk_tgt, iscsi_tgt,
spdk_dd, bdevperf, spdk_nvme_perf, ...) and ``lib/`` (SPDK's and DPDK's shared
libraries); every binary finds its libraries through ``$ORIGIN``, so the prefix
can be copied elsewhere (into an image, say) as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .build import (Progress, ProvisionError, cache_dir, clean_env, ensure_debian_packages, fetch_source,
                    install_atomically, prefix_root, read_stamp)

VERSION = "v26.05"
REPOSITORY = "https://github.com/spdk/spdk"
SUBMODULES = ("dpdk", "isa-l", "isa-l-crypto", "intel-ipsec-mb")
SOURCE_ENV = "MESHBLOCK_SPDK_SOURCE"
SKIP_ENV = "MESHBLOCK_SKIP_SPDK_BUILD"

# What meshblock uses: NVMe-oF and iSCSI targets, raid5f for erasure coding, shared libraries.
# x86-64-v2 keeps the binaries off instructions newer than the hosts they may be copied to.
CONFIGURE = (
    "--target-arch=x86-64-v2", "--with-shared", "--with-raid5f", "--disable-tests", "--disable-unit-tests",
    "--without-nvme-cuse", "--without-vfio-user", "--without-xnvme", "--without-ocf", "--without-rdma",
    "--without-iscsi-initiator", "--without-uring", "--without-usdt", "--without-fio",
)
CRYPTO = ("--with-crypto",)
NO_CRYPTO = ("--without-crypto",)

# Of SPDK's examples, the ones meshblock's benches and tests run (the rest have generic names).
EXAMPLES = ("bdevperf",)

# Debian packages the build needs (checked on a clean Debian 12).
BUILD_PACKAGES = [
    "build-essential", "git", "xz-utils", "meson", "ninja-build", "nasm", "autoconf", "automake", "libtool",
    "pkg-config", "patchelf", "libnuma-dev", "libaio-dev", "libssl-dev", "uuid-dev", "libjson-c-dev",
    "libkeyutils-dev", "libncurses-dev", "libcunit1-dev", "python3", "python3-pyelftools", "python3-tabulate",
    "python3-yaml", "python3-jinja2",
]


@dataclass(frozen=True)
class SpdkBuild:
    prefix: Path
    crypto: bool = False
    jobs: int = os.cpu_count() or 2

    @property
    def configure(self) -> list[str]:
        return [f"--prefix={self.prefix}", *CONFIGURE, *(CRYPTO if self.crypto else NO_CRYPTO)]

    def stamp(self) -> dict:
        return {"name": "spdk", "version": VERSION, "configure": self.configure}

    def installed(self) -> bool:
        have = read_stamp(self.prefix)
        return have is not None and all(have.get(k) == v for k, v in self.stamp().items())


def default_prefix() -> Path:
    return prefix_root() / f"spdk-{VERSION}"


def describe_source(source: str | None) -> str:
    return source or f"{REPOSITORY} at {VERSION}"


def install(build: SpdkBuild, source: str | None, keep_build: bool = False, force: bool = False) -> Path:
    """Build and install unless the same version and options are installed already (or force)."""
    if build.installed() and not force:
        print(f"spdk: SPDK {VERSION} is installed at {build.prefix} with these options; nothing to do",
              flush=True)
        return build.prefix
    work = cache_dir() / "build" / f"spdk-{VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    log = cache_dir() / "logs" / f"spdk-{VERSION}.log"
    src = work / "src"
    started = time.monotonic()
    with Progress("spdk", log, total=5) as p:
        p.say(f"building SPDK {VERSION} from {describe_source(source)} into {build.prefix} "
              f"(about 4 minutes on 2 cores, longer with crypto; log: {log})")
        p.step("build packages", lambda: ensure_debian_packages(BUILD_PACKAGES, p))
        p.step("source", lambda: _fetch(source, src, work, p))
        p.step("configure", lambda: _configure(build, src, p))
        p.step(f"compile (make -j{build.jobs})", lambda: p.run(["make", f"-j{build.jobs}"], src))
        p.step("install and check", lambda: install_atomically(
            build.prefix, lambda stage: _populate(src, stage),
            {**build.stamp(), "source": describe_source(source), "build_seconds": round(time.monotonic() - started),
             "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        p.say(f"SPDK {VERSION} installed at {build.prefix} in {p.elapsed()}")
    if not keep_build:
        shutil.rmtree(work, ignore_errors=True)
    return build.prefix


def _source_id(source: str | None) -> str:
    if source and Path(source).exists():
        st = Path(source).stat()
        return f"{Path(source).resolve()}:{st.st_size}:{int(st.st_mtime)}"
    return describe_source(source)


def _fetch(source: str | None, src: Path, work: Path, p: Progress) -> None:
    marker = work / "source.id"
    if src.is_dir() and marker.exists() and marker.read_text() == _source_id(source):
        p.log("source already unpacked (resuming an earlier build)")
        return
    marker.unlink(missing_ok=True)
    (work / "configured").unlink(missing_ok=True)

    def clone(dest: Path) -> None:
        p.run(["git", "clone", "--depth", "1", "--branch", VERSION, source or REPOSITORY, str(dest)], work)
        p.run(["git", "submodule", "update", "--init", "--depth", "1", *SUBMODULES], dest)

    fetch_source(source, src, SOURCE_ENV, clone)
    _check_source(src)
    marker.write_text(_source_id(source))


def _check_source(src: Path) -> None:
    version = (src / "VERSION").read_text().strip() if (src / "VERSION").exists() else ""
    if not version.startswith(VERSION.lstrip("v")):
        raise ProvisionError(f"the source at {src} is SPDK {version or '(no VERSION file)'}, not {VERSION}")
    for sub, probe in (("dpdk", "meson.build"), ("isa-l", "Makefile.am")):
        if not (src / sub / probe).exists():
            raise ProvisionError(f"the source has no {sub}/ tree (a checkout without its submodules?)")


def _configure(build: SpdkBuild, src: Path, p: Progress) -> None:
    marker = src.parent / "configured"
    args = "\n".join(build.configure)
    if marker.exists() and marker.read_text() == args:
        p.log("configured with the same options already")
        return
    p.run(["./configure", *build.configure], src)
    marker.write_text(args)


def _populate(src: Path, stage: Path) -> None:
    """Copy the programs and shared libraries into the staging prefix; point them at $ORIGIN."""
    (stage / "bin").mkdir()
    (stage / "lib").mkdir()
    programs = [f for f in sorted((src / "build" / "bin").iterdir()) if f.is_file() and os.access(f, os.X_OK)]
    for f in [*programs, *(src / "build" / "examples" / name for name in EXAMPLES)]:
        shutil.copy2(f, stage / "bin" / f.name)
    for d in (src / "build" / "lib", src / "dpdk" / "build" / "lib", src / "isa-l" / ".libs",
              src / "isa-l-crypto" / ".libs", src / "intel-ipsec-mb" / "lib"):
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.so*")):
            # version links stay links; DPDK's links into its driver directory become the files
            local_link = f.is_symlink() and "/" not in os.readlink(f)
            shutil.copy2(f, stage / "lib" / f.name, follow_symlinks=not local_link)
    for f in (stage / "lib").iterdir():
        if f.is_file() and not f.is_symlink():
            _set_rpath(f, "$ORIGIN")
    for f in (stage / "bin").iterdir():
        _set_rpath(f, "$ORIGIN/../lib")
    shutil.copytree(src / "python", stage / "python", ignore=shutil.ignore_patterns("__pycache__"))
    # rpc.py finds its package at ../python, as in the source tree
    shutil.copy2(src / "scripts" / "rpc.py", stage / "bin" / "rpc.py")
    check_prefix(stage)


def _set_rpath(path: Path, rpath: str) -> None:
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return
    subprocess.run(["patchelf", "--set-rpath", rpath, str(path)], check=True, env=clean_env(),
                   capture_output=True)


def check_prefix(prefix: Path) -> None:
    """Every program's libraries resolve without any environment set."""
    env = {k: v for k, v in clean_env().items() if k != "LD_LIBRARY_PATH"}
    for name in ("nvmf_tgt", "spdk_tgt", "iscsi_tgt", "spdk_dd", "bdevperf", "spdk_nvme_perf"):
        exe = prefix / "bin" / name
        if not exe.exists():
            raise ProvisionError(f"{exe} is missing from the build")
        out = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, env=env).stdout
        missing = [ln.strip() for ln in out.splitlines() if "not found" in ln]
        if missing:
            raise ProvisionError(f"{exe} cannot load: {'; '.join(missing)}")
