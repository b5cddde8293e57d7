"""Phase timings of the image smoke test, reported at the end of the run."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

_timings: list[tuple[str, float]] = []


class Timings:
    def __init__(self):
        self.started = time.monotonic()

    @contextmanager
    def phase(self, name: str):
        t = time.monotonic()
        try:
            yield
        finally:
            _timings.append((name, time.monotonic() - t))


@pytest.fixture
def timings() -> Timings:
    return Timings()


def pytest_terminal_summary(terminalreporter):
    if not _timings:
        return
    tr = terminalreporter
    tr.section("image smoke test")
    tr.write_line("  ".join(f"{name} {seconds:.1f}s" for name, seconds in _timings)
                  + f"  (total {sum(s for _, s in _timings):.1f}s)")
