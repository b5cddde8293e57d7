"""Shared fixtures: the SPDK backend (fake or real) and a summary of the real-SPDK tier.

Under CI=true or MESHBLOCK_REQUIRE_REAL=1 a test that would be skipped fails instead: a
missing peer (SPDK, csi-sanity, etcd, a test-bed guest) is then a missing install step, and
the failure names what is missing and how to provide it.
"""

from __future__ import annotations

import os
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


REQUIRE_ENV = "MESHBLOCK_REQUIRE_REAL"
HOW_TO_PROVIDE = ("./scripts/setup provisions SPDK (`meshblock spdk install`), csi-sanity (`meshblock csi-sanity "
                  "install`), etcd and the test bed's packages")


def require_real() -> bool:
    return (os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")
            or os.environ.get("CI", "").strip().lower() == "true")


def _skip_reason(report) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_instead_of_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and require_real():
        report.outcome = "failed"
        report.longrepr = (f"would be skipped, but this run requires every real peer (CI=true or {REQUIRE_ENV}=1): "
                           f"{_skip_reason(report)}. {HOW_TO_PROVIDE}.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_instead_of_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_instead_of_skip(outcome.get_result())


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
        reason = _skip_reason(report)
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
    if not os.environ.get("MESHBLOCK_KEEP_TMP"):
        shutil.rmtree(d, ignore_errors=True)
