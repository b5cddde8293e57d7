"""`meshblock spdk install` and `meshblock csi-sanity install` on small stand-in source trees: the
steps, the atomic install, the no-op second run, failures that name their step and log, discovery."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from meshblock.provision import build as pb
from meshblock.provision import csi_sanity
from meshblock.provision import spdk as recipe
from meshblock.spdk import discovery
from meshblock.spdk.discovery import ENV_VAR, find_spdk

PROGRAMS = ("nvmf_tgt", "spdk_tgt", "iscsi_tgt", "spdk_dd", "spdk_nvme_perf")


def fake_spdk_tree(root: Path, version: str = "26.05.0", configure_rc: int = 0) -> Path:
    """A tree shaped like SPDK's: its configure records the options, its make 'builds' real ELF programs
    (copies of /bin/true) and a shared library, so patchelf and ldd work on them."""
    root.mkdir(parents=True)
    (root / "VERSION").write_text(version + "\n")
    (root / "dpdk").mkdir()
    (root / "dpdk" / "meson.build").write_text("")
    (root / "isa-l").mkdir()
    (root / "isa-l" / "Makefile.am").write_text("")
    (root / "python" / "spdk").mkdir(parents=True)
    (root / "python" / "spdk" / "__init__.py").write_text("")
    (root / "scripts").mkdir()
    (root / "scripts" / "rpc.py").write_text("#!/usr/bin/env python3\n")
    configure = root / "configure"
    configure.write_text(f"#!/bin/sh\necho configure \"$@\"\necho \"$@\" > configured-with\nexit {configure_rc}\n")
    configure.chmod(0o755)
    true = shutil.which("true")
    lib = next(Path(p) for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                                 "/lib64/libc.so.6") if Path(p).exists())
    rules = [f"\tcp {true} build/bin/{p}" for p in PROGRAMS] + [f"\tcp {true} build/examples/bdevperf",
                                                                f"\tcp {true} build/examples/hello_world",
                                                                f"\tcp {lib} build/lib/libspdk_fake.so.1.0",
                                                                "\tln -sf libspdk_fake.so.1.0 build/lib/libspdk_fake.so"]
    (root / "Makefile").write_text("all:\n\tmkdir -p build/bin build/examples build/lib\n" + "\n".join(rules) + "\n")
    return root


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(recipe, "ensure_debian_packages", lambda packages, progress: None)
    return tmp_path


def _archive(tree: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:xz") as tar:
        tar.add(tree, arcname=f"spdk-{recipe.VERSION}")
    return dest


def test_install_builds_into_the_prefix_and_a_second_run_does_nothing(sandbox, capsys):
    src = _archive(fake_spdk_tree(sandbox / "tree"), sandbox / "spdk.tar.xz")
    prefix = sandbox / "opt" / f"spdk-{recipe.VERSION}"
    b = recipe.SpdkBuild(prefix=prefix, jobs=1)
    recipe.install(b, str(src))
    err = capsys.readouterr().err
    for step in ("[1/5] build packages", "[2/5] source", "[3/5] configure", "[4/5] compile (make -j1)",
                 "[5/5] install and check"):
        assert f"spdk: {step} done in" in err
    assert sorted(p.name for p in (prefix / "bin").iterdir()) == sorted([*PROGRAMS, "bdevperf", "rpc.py"])
    assert (prefix / "lib" / "libspdk_fake.so").is_symlink()
    rpath = subprocess.run(["patchelf", "--print-rpath", str(prefix / "bin" / "nvmf_tgt")], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert rpath == "$ORIGIN/../lib"
    stamp = json.loads((prefix / pb.STAMP).read_text())
    assert stamp["version"] == recipe.VERSION and f"--prefix={prefix}" in stamp["configure"]
    assert "--with-raid5f" in stamp["configure"] and stamp["source"] == str(src)
    assert not (pb.cache_dir() / "build" / f"spdk-{recipe.VERSION}").exists()  # the build tree is removed
    assert (pb.cache_dir() / "logs" / f"spdk-{recipe.VERSION}.log").read_text().count("$ make") == 1

    mtime = (prefix / pb.STAMP).stat().st_mtime_ns
    t0 = time.monotonic()
    recipe.install(b, str(src))
    assert time.monotonic() - t0 < 5
    assert "nothing to do" in capsys.readouterr().out
    assert (prefix / pb.STAMP).stat().st_mtime_ns == mtime

    # other options (crypto) are another build: installed again, atomically replacing the first
    recipe.install(recipe.SpdkBuild(prefix=prefix, jobs=1, crypto=True), str(src))
    assert "--with-crypto" in json.loads((prefix / pb.STAMP).read_text())["configure"]
    assert sorted(p.name for p in prefix.parent.iterdir()) == [prefix.name]


def test_a_failed_step_names_itself_and_the_log_and_installs_nothing(sandbox):
    src = fake_spdk_tree(sandbox / "tree", configure_rc=3)
    prefix = sandbox / "opt" / "spdk"
    with pytest.raises(pb.ProvisionError) as ei:
        recipe.install(recipe.SpdkBuild(prefix=prefix, jobs=1), str(src))
    msg = str(ei.value)
    assert "step 'configure' failed" in msg and "exited with 3" in msg
    assert str(pb.cache_dir() / "logs" / f"spdk-{recipe.VERSION}.log") in msg
    assert "configure --prefix=" in msg  # the log's last lines come with it
    assert not prefix.exists() and not list((sandbox / "opt").glob(".spdk*"))


def test_a_failed_install_leaves_the_previous_prefix(sandbox, monkeypatch):
    src = fake_spdk_tree(sandbox / "tree")
    prefix = sandbox / "opt" / "spdk"
    recipe.install(recipe.SpdkBuild(prefix=prefix, jobs=1), str(src))

    def broken(staging: Path) -> None:
        (staging / "bin").mkdir()
        raise pb.ProvisionError("disk full")

    with pytest.raises(pb.ProvisionError, match="disk full"):
        pb.install_atomically(prefix, broken, {"name": "spdk"})
    assert json.loads((prefix / pb.STAMP).read_text())["version"] == recipe.VERSION
    assert sorted(p.name for p in prefix.parent.iterdir()) == ["spdk"]


@pytest.mark.parametrize("version,layout,expect", [
    ("24.09.0", None, "is SPDK 24.09.0, not v26.05"),
    ("26.05.0", "dpdk", "has no dpdk/ tree"),
])
def test_a_wrong_source_is_refused(sandbox, version, layout, expect):
    tree = fake_spdk_tree(sandbox / "tree", version=version)
    if layout:
        shutil.rmtree(tree / layout)
    with pytest.raises(pb.ProvisionError, match=expect):
        recipe.install(recipe.SpdkBuild(prefix=sandbox / "opt" / "spdk", jobs=1), str(tree))


def test_a_missing_source_path_is_refused(sandbox):
    with pytest.raises(pb.ProvisionError, match="no such archive or directory"):
        recipe.install(recipe.SpdkBuild(prefix=sandbox / "opt" / "spdk", jobs=1), str(sandbox / "nope.tar.xz"))


def test_build_commands_run_with_the_system_python_first(monkeypatch):
    monkeypatch.setenv("PATH", f"{sys.prefix}/bin:/root/.pyenv/shims:/usr/bin:/custom/bin")
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)
    env = pb.clean_env()
    parts = env["PATH"].split(":")
    assert parts.index("/usr/bin") < parts.index("/custom/bin")
    assert not any(p.startswith(sys.prefix) or ".pyenv" in p for p in parts)
    assert "VIRTUAL_ENV" not in env


def test_prefix_roots(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert pb.prefix_root(euid=0) == Path("/opt/meshblock")
    assert pb.prefix_root(euid=1000, home=tmp_path) == tmp_path / ".local" / "share" / "meshblock"


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_discovery_prefers_the_provisioned_build_over_path_but_not_over_the_variable(tmp_path, monkeypatch):
    provisioned = tmp_path / "opt" / "spdk-v26.05"
    tgt = _exe(provisioned / "bin" / "nvmf_tgt")
    (provisioned / "lib").mkdir()
    _exe(tmp_path / "path" / "nvmf_tgt")
    own = _exe(tmp_path / "own" / "build" / "bin" / "nvmf_tgt")
    monkeypatch.setattr(discovery, "provisioned_dirs", lambda: [provisioned])
    found = find_spdk({"PATH": str(tmp_path / "path")})
    assert found.program("nvmf_tgt") == tgt and found.lib_dir == provisioned / "lib"
    assert find_spdk({"PATH": str(tmp_path / "path"), ENV_VAR: str(tmp_path / "own")}).program("nvmf_tgt") == own


def test_cli_skip_and_variable(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop(ENV_VAR, None)

    def run(*args, **extra):
        return subprocess.run([sys.executable, "-m", "meshblock", *args], capture_output=True, text=True,
                              env={**env, **extra}, timeout=60)

    p = run("spdk", "install", MESHBLOCK_SKIP_SPDK_BUILD="1")
    assert p.returncode == 0 and "build skipped" in p.stdout
    p = run("spdk", "install", "--skip")
    assert p.returncode == 0 and "build skipped" in p.stdout
    own = _exe(tmp_path / "own" / "bin" / "nvmf_tgt")
    p = run("spdk", "install", MESHBLOCK_SPDK_DIR=str(own.parent.parent))
    assert p.returncode == 0 and f"uses the build at {own.parent.parent}" in p.stdout
    p = run("spdk", "install", MESHBLOCK_SPDK_DIR=str(tmp_path / "nowhere"))
    assert p.returncode == 1 and "SPDK not found" in p.stderr and str(tmp_path / "nowhere") in p.stderr
    assert not (tmp_path / "cache").exists()


def test_csi_sanity_lookup_order(tmp_path, monkeypatch):
    monkeypatch.setattr(csi_sanity, "prefix_roots", lambda: [tmp_path / "opt"])
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    monkeypatch.delenv(csi_sanity.BINARY_ENV, raising=False)
    monkeypatch.setattr(csi_sanity, "LEGACY", tmp_path / "legacy" / "csi-sanity")
    binary, looked = csi_sanity.find_csi_sanity()
    assert binary is None and "meshblock csi-sanity install" in looked and str(tmp_path / "opt") in looked
    on_path = _exe(tmp_path / "path" / "csi-sanity")
    assert csi_sanity.find_csi_sanity()[0] == str(on_path)
    provisioned = _exe(tmp_path / "opt" / csi_sanity.PREFIX_NAME / "bin" / "csi-sanity")
    assert csi_sanity.find_csi_sanity()[0] == str(provisioned)
    monkeypatch.setenv(csi_sanity.BINARY_ENV, str(tmp_path / "missing"))
    binary, looked = csi_sanity.find_csi_sanity()
    assert binary is None and "not an executable" in looked
