from __future__ import annotations

import stat

import pytest

from meshblock.spdk import discovery
from meshblock.spdk.discovery import ENV_VAR, SpdkNotFoundError, find_spdk
from meshblock.units import format_size, parse_size


@pytest.fixture(autouse=True)
def no_provisioned_build(tmp_path, monkeypatch):
    """These cases are about the other places; the provisioned build has its own test."""
    monkeypatch.setattr(discovery, "provisioned_dirs", lambda: [tmp_path / "not-provisioned"])


def _exe(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_source_tree_with_shared_libs(tmp_path):
    root = tmp_path / "spdk"
    tgt = _exe(root / "build" / "bin" / "nvmf_tgt")
    perf = _exe(root / "build" / "examples" / "bdevperf")
    (root / "build" / "lib").mkdir(parents=True)
    found = find_spdk({ENV_VAR: str(root), "PATH": ""})
    assert found.program("nvmf_tgt") == tgt and found.program("bdevperf") == perf
    env = found.env({"LD_LIBRARY_PATH": "/x"})
    assert env["LD_LIBRARY_PATH"] == f"{root / 'build' / 'lib'}:/x"


def test_path_lookup(tmp_path):
    _exe(tmp_path / "bin" / "nvmf_tgt")
    found = find_spdk({"PATH": str(tmp_path / "bin")})
    assert found.root is None and found.has("nvmf_tgt") and not found.has("spdk_dd")


def test_a_wrong_setting_is_reported_not_replaced(tmp_path):
    _exe(tmp_path / "bin" / "nvmf_tgt")
    with pytest.raises(SpdkNotFoundError) as ei:
        find_spdk({ENV_VAR: str(tmp_path / "nowhere"), "PATH": str(tmp_path / "bin")})
    msg = str(ei.value)
    assert f"{ENV_VAR}={tmp_path / 'nowhere'}" in msg and "nvmf_tgt" in msg and "PATH" in msg


def test_absent_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(discovery, "CONVENTIONAL_DIRS", (tmp_path / "opt-spdk",))
    with pytest.raises(SpdkNotFoundError) as ei:
        find_spdk({"PATH": str(tmp_path)})
    msg = str(ei.value)
    assert f"{ENV_VAR} (not set)" in msg and "PATH (no nvmf_tgt" in msg and str(tmp_path / "opt-spdk") in msg


def test_conventional_dir(tmp_path, monkeypatch):
    tgt = _exe(tmp_path / "opt-spdk" / "build" / "bin" / "nvmf_tgt")
    monkeypatch.setattr(discovery, "CONVENTIONAL_DIRS", (tmp_path / "opt-spdk",))
    assert find_spdk({"PATH": ""}).program("nvmf_tgt") == tgt


def test_program_missing_is_clear(tmp_path):
    _exe(tmp_path / "bin" / "nvmf_tgt")
    with pytest.raises(SpdkNotFoundError, match="spdk_dd"):
        find_spdk({"PATH": str(tmp_path / "bin")}).program("spdk_dd")


@pytest.mark.parametrize("text,n", [("4096", 4096), ("1GiB", 1 << 30), ("512MiB", 512 << 20), ("1.5GiB", 3 << 29),
                                    ("10G", 10 * 1000**3), ("2 TiB", 2 << 40), ("1k", 1000)])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["", "-1GiB", "1XB", "GiB", "0.3B"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_format_size():
    assert format_size(1 << 30) == "1 GiB" and format_size(1536 << 20) == "1.5 GiB" and format_size(10) == "10 B"
