"""Fixtures for tests that run real kernels: Debian guests under QEMU (see meshblock/testbed).

Every test that uses the ``testbed`` fixture is marked ``vm``.  The guests are
shared by the whole session: tests get them through the fixture
(``testbed.guests(2)``, ``testbed.guest("a")``) and must leave them as they found
them (unmount, disconnect, remove exports).  Guests a and b are booted together
when the session starts (MESHBLOCK_TESTBED_PREBOOT=a,b; empty for none).

Where the machine cannot run guests (no QEMU or debootstrap, not root, no route
to the Debian mirror) the tests are skipped with the reason; set
MESHBLOCK_TESTBED_REQUIRE=1 to make that a failure instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from meshblock.testbed import Testbed, TestbedUnavailable, default_cache_dir, host_problems, image_key
from meshblock.testbed.image import ensure_image

HERE = Path(__file__).resolve().parent
REQUIRE_ENV = "MESHBLOCK_TESTBED_REQUIRE"
PREBOOT_ENV = "MESHBLOCK_TESTBED_PREBOOT"  # guests booted when the session starts (default a,b)
VM_TIMEOUT = 1200  # the first test also pays for building the image

_timings: dict[str, float] = {}
_bed: list[Testbed] = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "vm: boots Debian guests under QEMU (meshblock.testbed); skipped with the reason "
                   "where that is not possible")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents and "testbed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vm)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(VM_TIMEOUT))


def _unavailable(reason: str):
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"test bed unavailable ({REQUIRE_ENV} is set): {reason}", pytrace=False)
    pytest.skip(f"test bed unavailable: {reason}")


@pytest.fixture(scope="session")
def testbed():
    """The session's test bed: cached image, private network namespace, guests booted on demand."""
    cached = (default_cache_dir() / image_key() / "meta.json").exists()
    problems = host_problems(build=not cached)
    if problems:
        _unavailable("; ".join(problems))
    t0 = time.monotonic()
    try:
        image = ensure_image()
    except TestbedUnavailable as e:
        _unavailable(str(e))
    _timings["image build" if not cached else "image (cached)"] = time.monotonic() - t0
    tb = Testbed(image)
    t1 = time.monotonic()
    tb.start()
    _timings["network and initramfs"] = time.monotonic() - t1
    _bed.append(tb)
    try:
        # Boot the usual pair together: in parallel they take about as long as one.
        names = [n for n in os.environ.get(PREBOOT_ENV, "a,b").split(",") if n]
        t2 = time.monotonic()
        tb.guests(names)
        _timings[f"parallel boot of {', '.join(names)}"] = time.monotonic() - t2
        yield tb
    finally:
        for g in tb.running():
            _timings[f"guest {g.name} up after"] = g.boot_seconds
        tb.close()


def pytest_terminal_summary(terminalreporter):
    if not _timings and not _bed:
        return
    tr = terminalreporter
    tr.section("real-kernel test bed")
    if _bed:
        tb = _bed[0]
        kernels = ", ".join(f"{k.name} {k.version}" for k in tb.image.kernels.values())
        tr.write_line(f"image {tb.image.dir} (kernels: {kernels}); namespace {tb.netns.name}")
    for what, secs in _timings.items():
        tr.write_line(f"  {what}: {secs:.1f}s")
