"""The head lease: how long it is, and when it runs out."""

from __future__ import annotations

import pytest

from meshblock.agent.registration import Lease
from meshblock.control.server import ControllerConfig


@pytest.mark.parametrize("node_timeout,heartbeat_ms,lease_ms", [
    (3.0, 1000, 2000),     # the default: one heartbeat shorter than the node timeout
    (5.0, 1000, 4000),
    (2.0, 1000, 1500),     # never shorter than one and a half heartbeats
    (1.0, 1000, 0),        # no lease fits below the node timeout
    (1.5, 1000, 0),
    (10.0, 3000, 9000),    # long heartbeats (large clusters): a second short, not a heartbeat
    (2.0, 500, 1500),
])
def test_lease_is_shorter_than_the_node_timeout(node_timeout, heartbeat_ms, lease_ms):
    cfg = ControllerConfig(store_url="sqlite:///x", listen="unix:x", node_timeout=node_timeout,
                           heartbeat_ms=heartbeat_ms)
    assert cfg.head_lease_ms() == lease_ms
    assert ControllerConfig(store_url="", listen="", node_timeout=node_timeout, heartbeat_ms=heartbeat_ms,
                            head_lease=False).head_lease_ms() == 0


def test_lease_runs_from_the_sending_of_the_last_answered_heartbeat():
    lease = Lease()
    assert not lease.expired(1e9)                      # none granted yet
    lease.renew(lease.instance, sent_at=100.0, lease_ms=2000)
    assert not lease.expired(101.9) and lease.expired(102.1)
    lease.renew(lease.instance, sent_at=101.0, lease_ms=2000)
    assert not lease.expired(102.9)
    old = lease.instance
    lease.lost()
    assert lease.instance != old and not lease.expired(1e9)
    lease.renew(old, sent_at=103.0, lease_ms=2000)     # a late answer to the old instance renews nothing
    assert lease.until is None
    lease.renew(lease.instance, sent_at=104.0, lease_ms=0)   # the controller grants no lease
    assert not lease.expired(1e9)
