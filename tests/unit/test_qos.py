"""QoS limits: SPDK's rules, the conversions to and from SPDK's names, and what decides that a head
enforces a volume's limits."""

from __future__ import annotations

import pytest

from meshblock.agent.model import Head, HeadLeg, HeadView
from meshblock.agent.registration import heads_digest
from meshblock.agent.service import head_from_pb
from meshblock.control.adopt import head_matches, qos_matches
from meshblock.csi import caps
from meshblock.errors import InvalidArgument
from meshblock.model import Volume, VolumeState
from meshblock.proto.meshblock.v1 import agent_pb2 as apb
from meshblock.qos import MAX_IOPS, MAX_MBPS, QosLimits, problems

VID = "6a0f3b1c-2d4e-4f60-8a9b-0c1d2e3f4a5b"


@pytest.mark.parametrize("limits, rule", [
    (QosLimits(max_iops=1500), "max_iops: 1500 is not a multiple of 1000"),
    (QosLimits(max_iops=999), "max_iops: 999 is not a multiple of 1000"),
    (QosLimits(max_mbps=-1), "max_mbps: -1 is negative"),
    (QosLimits(max_read_mbps=MAX_MBPS + 1), f"max_read_mbps: {MAX_MBPS + 1} MiB/s is more than SPDK can enforce"),
    (QosLimits(max_iops=MAX_IOPS + 1000), f"max_iops: {MAX_IOPS + 1000} is more than SPDK can enforce"),
])
def test_spdk_rules(limits, rule):
    (name, problem), = problems(limits)
    assert f"{name}: {problem}".startswith(rule)


def test_what_spdk_takes():
    assert problems(QosLimits()) == []
    assert problems(QosLimits(max_iops=MAX_IOPS, max_mbps=MAX_MBPS, max_read_mbps=1, max_write_mbps=1)) == []
    # a limit's share of SPDK's 1 ms timeslice must fit in 32 bits
    assert MAX_MBPS * (1 << 20) // 1000 <= 2**32 - 1 < (MAX_MBPS + 1) * (1 << 20) // 1000


def test_spdk_names_both_ways():
    q = QosLimits(max_iops=3000, max_mbps=10, max_read_mbps=0, max_write_mbps=7)
    assert q.spdk() == {"rw_ios_per_sec": 3000, "rw_mbytes_per_sec": 10, "r_mbytes_per_sec": 0,
                        "w_mbytes_per_sec": 7}
    assert QosLimits.from_spdk(q.spdk()) == q
    assert QosLimits.from_spdk(None) == QosLimits() and not QosLimits()
    assert q.describe() == "3000 IOPS, 10 MiB/s, write 7 MiB/s"


def test_agent_refuses_limits_spdk_would_round():
    spec = apb.HeadSpec(volume_id=VID, nqn="nqn.2026-11.io.meshblock:volume:" + VID, namespace_uuid=VID,
                        legs=[apb.HeadLeg(replica_id=VID, node_id="n1")], qos=apb.RateLimits(rw_ios_per_sec=2000))
    assert head_from_pb(spec).qos == QosLimits(max_iops=2000)
    spec.qos.rw_ios_per_sec = 2500
    with pytest.raises(InvalidArgument, match="^qos.rw_ios_per_sec: 2500 is not a multiple of 1000"):
        head_from_pb(spec)


def _status(qos: apb.RateLimits, standby: bool = False, raid_state: str = "online") -> apb.HeadStatus:
    return apb.HeadStatus(volume_id=VID, nqn="nqn.2026-11.io.meshblock:volume:" + VID, size_bytes=1 << 30,
                          ana_state="inaccessible" if standby else "optimized", standby=standby,
                          raid_state=raid_state, legs=[apb.LegStatus(replica_id="r1", state="in_sync")], qos=qos)


def test_a_head_is_confirmed_only_with_the_volumes_limits():
    v = Volume(id=VID, nqn="nqn.2026-11.io.meshblock:volume:" + VID, size_bytes=1 << 30,
               state=VolumeState.AVAILABLE, max_iops=4000)
    assert head_matches(v, _status(apb.RateLimits(rw_ios_per_sec=4000)), {"r1"}, standby=False)
    assert not head_matches(v, _status(apb.RateLimits()), {"r1"}, standby=False)
    assert not head_matches(v, _status(apb.RateLimits(rw_ios_per_sec=4000, r_mbytes_per_sec=1)), {"r1"}, False)
    assert head_matches(v, _status(apb.RateLimits(rw_ios_per_sec=4000), standby=True), {"r1"}, standby=True)
    # a standby that reaches no replica has no raid to limit yet
    assert qos_matches(v, _status(apb.RateLimits(), standby=True, raid_state="missing"))


def test_heads_digest_follows_the_limits_spdk_enforces():
    head = Head(volume_id=VID, nqn="nqn.2026-11.io.meshblock:volume:" + VID, namespace_uuid=VID,
                legs=(HeadLeg(replica_id="r1", node_id="n1"),), hosts=frozenset(), qos=QosLimits(max_iops=1000))
    asked = heads_digest([HeadView(head, "127.0.0.1", 4420, 1 << 30)])
    assert asked == heads_digest([HeadView(head, "127.0.0.1", 4420, 1 << 30, qos=QosLimits(max_iops=1000))])
    assert asked != heads_digest([HeadView(head, "127.0.0.1", 4420, 1 << 30, qos=QosLimits())])


def test_storage_class_parameters():
    p = caps.parse_parameters({"replicas": "2", "maxIops": "10000"}, {"maxWriteMbps": "30"})
    assert p.qos == QosLimits(max_iops=10000, max_write_mbps=30)
    assert caps.parse_parameters({}).qos == QosLimits()
    assert {"maxIops", "maxMbps", "maxReadMbps", "maxWriteMbps"} <= caps.MUTABLE_PARAMETERS
    for params, message in (({"maxIops": "1200"}, "parameters: maxIops: 1200 is not a multiple of 1000"),
                            ({"maxMbps": "-5"}, "parameters: maxMbps: -5 is negative"),
                            ({"maxReadMbps": "fast"}, "parameters: maxReadMbps: 'fast' is not a whole number")):
        with pytest.raises(InvalidArgument) as e:
            caps.parse_parameters(params)
        assert str(e.value).startswith(message)


class _Rpc:
    """bdev_get_bdevs and bdev_set_qos_limit over one bdev's limits, counting the sets."""

    def __init__(self, limits: dict[str, int]):
        self.limits, self.sets = dict(limits), 0

    async def bdev_get_bdevs(self, name):
        return [{"name": name, "assigned_rate_limits": dict(self.limits)}]

    async def bdev_set_qos_limit(self, name, **limits):
        self.sets += 1
        self.limits.update(limits)
        return True


async def test_spdk_is_called_only_when_the_limits_differ():
    from meshblock.agent.heads import set_rate_limits

    want = QosLimits(max_iops=2000, max_write_mbps=10)
    rpc = _Rpc(want.spdk())
    assert await set_rate_limits(rpc, "vol-x", want, want, VID) == want and rpc.sets == 0
    rpc = _Rpc(QosLimits(max_mbps=50).spdk())
    assert await set_rate_limits(rpc, "vol-x", want, QosLimits(max_mbps=50), VID) == want
    assert rpc.sets == 1 and rpc.limits["rw_mbytes_per_sec"] == 0      # every limit is sent: old ones go


async def test_a_refused_change_does_not_fail_the_head():
    from meshblock.agent.heads import set_rate_limits
    from meshblock.spdk import SpdkInvalidParams

    class Refusing(_Rpc):
        async def bdev_set_qos_limit(self, name, **limits):
            raise SpdkInvalidParams("bdev_set_qos_limit", -32602,
                                    "Failed to configure rate limit: Resource temporarily unavailable")

    kept = QosLimits(max_iops=1000)
    rpc = Refusing(kept.spdk())
    assert await set_rate_limits(rpc, "vol-x", QosLimits(max_iops=5000), kept, VID) == kept
