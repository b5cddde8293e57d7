"""Named crash points for fault-injection tests.

Setting ``MESHBLOCK_CRASH_AT=<point>[,<point>...]`` makes the process kill itself
with SIGKILL the first time it reaches one of those points, exactly as a crash
there would.  Unset (always, outside tests), a crash point costs one dict lookup.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

ENV = "MESHBLOCK_CRASH_AT"
_points = {p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip()}


def crash_point(name: str) -> None:
    if name in _points:
        log.critical("crash point %s reached: killing this process", name)
        for h in logging.getLogger().handlers:
            h.flush()
        os.kill(os.getpid(), signal.SIGKILL)
