"""Waiting in tests for a condition that the system reaches by itself."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest


async def eventually(check, timeout: float, what: str, interval: float = 0.2):
    """Wait until ``check()`` returns a true value (and return it); fail naming ``what`` and the last
    thing ``check`` said (its return value, assertion or gRPC error) otherwise. A bound on waiting,
    not a timing assertion."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            got = await check()
            if got:
                return got
            last = got
        except (AssertionError, grpc.aio.AioRpcError) as e:
            last = e
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {timeout:.0f} s; last: {last}")
        await asyncio.sleep(interval)
