"""Structured logging: one line per event, key=value fields in the message."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO", stream=None, prefix: str = "") -> None:
    fmt = "%(asctime)s %(levelname)s " + (f"{prefix} " if prefix else "") + "%(name)s: %(message)s"
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # gRPC's own debug lines (one per event-loop lookup) drown a DEBUG log
    logging.getLogger("grpc").setLevel(max(logging.INFO, root.level))
