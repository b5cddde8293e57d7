"""A three-node cluster (controller and agents as processes) on the fake or the real SPDK."""

from __future__ import annotations

import pytest

from tests.support.cluster import Cluster


@pytest.fixture
async def cluster(backend, short_tmp):
    c = Cluster(backend, short_tmp, nodes=3)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()
