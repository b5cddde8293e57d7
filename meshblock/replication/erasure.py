"""Erasure-coded layouts: k data shards and m parity shards under one SPDK raid5f.

SPDK's raid5f writes only whole stripes (its bdev's write unit is the stripe). meshblock
makes the stripe exactly one 4 KiB host block: the shards' lvols have 512-byte blocks and each
shard holds 4 KiB / k of every stripe, so every 4 KiB-aligned write is a full-stripe write and
needs no read-modify-write. raid5f strips are a power of two KiB, at least 1 KiB, which leaves
k = 2 (2 KiB strips) and k = 4 (1 KiB strips); raid5f has one parity strip, so m = 1.
docs/erasure-coding.md has the design and its limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgument

STRIPE_BYTES = 4096              # one host block per stripe
SHARD_BLOCK_BYTES = 512          # the shards' block size (a strip is whole blocks)
SUPPORTED = ((2, 1), (4, 1))
# every shard is a whole number of 4 MiB pool clusters, so the raid is exactly the volume's size
SHARD_GRANULARITY = 4 << 20


@dataclass(frozen=True)
class Layout:
    data: int
    parity: int

    def __str__(self) -> str:
        return f"{self.data}+{self.parity}"

    @property
    def shards(self) -> int:
        return self.data + self.parity

    @property
    def strip_size_kb(self) -> int:
        return STRIPE_BYTES // 1024 // self.data

    def volume_bytes(self, size_bytes: int) -> int:
        """The size a volume of at least ``size_bytes`` gets: whole clusters on every data shard."""
        unit = self.data * SHARD_GRANULARITY
        return -(-size_bytes // unit) * unit

    def shard_bytes(self, volume_bytes: int) -> int:
        return volume_bytes // self.data

    @property
    def efficiency(self) -> float:
        """Usable bytes per byte of pool capacity."""
        return self.data / self.shards


def parse(text: str, field: str = "erasure") -> Layout:
    """``"2+1"`` → Layout(2, 1); INVALID_ARGUMENT naming ``field`` otherwise."""
    k, sep, m = text.strip().partition("+")
    if not sep or not k.strip().isdigit() or not m.strip().isdigit():
        raise InvalidArgument(field, f"{text!r} is not K+M (data shards + parity shards, e.g. 2+1)")
    return check(int(k), int(m), field)


def check(k: int, m: int, field: str = "erasure") -> Layout:
    if (k, m) in SUPPORTED:
        return Layout(k, m)
    if m >= 2:
        raise InvalidArgument(field, f"{k}+{m} needs {m} parity shards; SPDK's raid5f, which meshblock "
                              f"builds erasure coding on, has one (supported: "
                              f"{', '.join(f'{a}+{b}' for a, b in SUPPORTED)}; docs/erasure-coding.md)")
    raise InvalidArgument(field, f"{k}+{m} is not a supported layout (supported: "
                          f"{', '.join(f'{a}+{b}' for a, b in SUPPORTED)}): a stripe is one 4 KiB block, "
                          f"split into k strips of a power of two KiB, at least 1 KiB")
