"""Shared fixtures: the SPDK backend (fake or real) and a summary of the real-SPDK tier."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.backends import Backend, fake_backend, real_backend, real_spdk


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.spdk)])
def backend(request, tmp_path_factory) -> Backend:
    if request.param == "fake":
        return fake_backend(tmp_path_factory.mktemp("fakespdk-registry"))
    b = real_backend()
    if b is None:
        pytest.skip(f"real SPDK not found: {real_spdk()[1]}")
    return b


@pytest.fixture
def real_only() -> Backend:
    b = real_backend()
    if b is None:
        pytest.skip(f"real SPDK not found: {real_spdk()[1]}")
    return b


_outcomes: Counter[str] = Counter()
_skip_reasons: Counter[str] = Counter()


def _is_real(item_or_report) -> bool:
    keywords = getattr(item_or_report, "keywords", {})
    return "spdk" in keywords


def pytest_runtest_logreport(report):
    if not _is_real(report):
        return
    if report.when == "call":
        _outcomes[report.outcome] += 1
    elif report.when == "setup" and report.skipped:
        _outcomes["skipped"] += 1
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skip_reasons[reason.split(". ")[0]] += 1
    elif report.when == "setup" and report.failed:
        _outcomes["error"] += 1


def pytest_terminal_summary(terminalreporter):
    ran = _outcomes["passed"] + _outcomes["failed"]
    tr = terminalreporter
    tr.section("real SPDK tier")
    tr.write_line(f"ran against real SPDK: {ran} ({_outcomes['passed']} passed, {_outcomes['failed']} failed, "
                  f"{_outcomes['error']} errors); skipped: {_outcomes['skipped']}")
    for reason, n in _skip_reasons.most_common():
        tr.write_line(f"  {n} skipped: {reason}")


@pytest.fixture
def short_tmp():
    """A short temporary directory: Unix socket paths must stay under 108 bytes."""
    import shutil
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="mb-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)
