"""Per-volume QoS limits and SPDK's rules for them.

A volume's limits are enforced on its head, by SPDK's bdev QoS on the bdev the head exports (the
raid of a replicated or erasure-coded volume, the lvol of a single-replica one). SPDK counts
bandwidth in MiB/s ("megabytes" in its RPCs) and I/O per second in steps of 1000; 0 means no
limit. The rules below are those of lib/bdev/bdev.c in SPDK v26.05 (spdk_bdev_set_qos_rate_limits
and the 1 ms timeslice quota), checked here so that a request SPDK would round or overflow is
refused with the rule instead.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# SPDK_BDEV_QOS_MIN_IOS_PER_SEC: an IOPS limit below 1000, or not a multiple of it, is rounded up
IOPS_STEP = 1000
# a limit's share of one 1 ms timeslice is kept in 32 bits (max_per_timeslice): above these SPDK
# would enforce a limit that wrapped around
MAX_IOPS = (2**32 - 1) * IOPS_STEP
MAX_MBPS = (2**32 - 1) * 1000 // (1 << 20)

# the SPDK parameter (bdev_set_qos_limit, bdev_get_bdevs assigned_rate_limits) of each limit
SPDK_NAMES = {"max_iops": "rw_ios_per_sec", "max_mbps": "rw_mbytes_per_sec",
              "max_read_mbps": "r_mbytes_per_sec", "max_write_mbps": "w_mbytes_per_sec"}


@dataclass(frozen=True)
class QosLimits:
    max_iops: int = 0           # reads + writes per second
    max_mbps: int = 0           # reads + writes, MiB/s
    max_read_mbps: int = 0
    max_write_mbps: int = 0

    def __bool__(self) -> bool:
        return any(self.astuple())

    def astuple(self) -> tuple[int, int, int, int]:
        return (self.max_iops, self.max_mbps, self.max_read_mbps, self.max_write_mbps)

    def spdk(self) -> dict[str, int]:
        """bdev_set_qos_limit's parameters: every limit, 0 for none (so limits dropped are lifted)."""
        return {SPDK_NAMES[f.name]: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_spdk(cls, assigned: dict[str, Any] | None) -> QosLimits:
        """From bdev_get_bdevs' ``assigned_rate_limits`` (absent: none)."""
        assigned = assigned or {}
        return cls(**{f.name: int(assigned.get(SPDK_NAMES[f.name], 0) or 0) for f in fields(cls)})

    def describe(self) -> str:
        parts = [f"{self.max_iops} IOPS" if self.max_iops else "",
                 f"{self.max_mbps} MiB/s" if self.max_mbps else "",
                 f"read {self.max_read_mbps} MiB/s" if self.max_read_mbps else "",
                 f"write {self.max_write_mbps} MiB/s" if self.max_write_mbps else ""]
        return ", ".join(p for p in parts if p) or "no limits"


def problems(limits: QosLimits) -> list[tuple[str, str]]:
    """What SPDK would not take as given: (limit name, the rule), empty when all is well."""
    out = []
    for f in fields(limits):
        value = getattr(limits, f.name)
        if not isinstance(value, int) or isinstance(value, bool):
            out.append((f.name, f"{value!r} is not a whole number"))
        elif value < 0:
            out.append((f.name, f"{value} is negative; 0 means no limit"))
        elif f.name == "max_iops" and value % IOPS_STEP:
            out.append((f.name, f"{value} is not a multiple of {IOPS_STEP}: SPDK limits I/O per second in "
                                f"steps of {IOPS_STEP} (at least {IOPS_STEP}; 0 means no limit)"))
        elif f.name == "max_iops" and value > MAX_IOPS:
            out.append((f.name, f"{value} is more than SPDK can enforce ({MAX_IOPS})"))
        elif f.name != "max_iops" and value > MAX_MBPS:
            out.append((f.name, f"{value} MiB/s is more than SPDK can enforce ({MAX_MBPS} MiB/s)"))
    return out
