"""Erasure-coding layouts, the StorageClass parameter and the file system options they lead to."""

from __future__ import annotations

import pytest

from meshblock.csi import caps
from meshblock.csi.host import fs
from meshblock.errors import InvalidArgument
from meshblock.replication import erasure

MiB = 1 << 20


def test_geometry_makes_one_host_block_a_stripe():
    for text, strip, shards in (("2+1", 2, 3), ("4+1", 1, 5), (" 4 + 1 ", 1, 5)):
        ec = erasure.parse(text)
        assert (ec.strip_size_kb, ec.shards) == (strip, shards)
        assert ec.strip_size_kb * 1024 * ec.data == erasure.STRIPE_BYTES
    ec = erasure.parse("2+1")
    # sizes round up to whole 4 MiB clusters on every data shard; shards split the volume evenly
    assert ec.volume_bytes(1) == 8 * MiB and ec.volume_bytes(8 * MiB) == 8 * MiB
    assert ec.volume_bytes(10 * MiB) == 16 * MiB and ec.shard_bytes(16 * MiB) == 8 * MiB
    assert erasure.parse("4+1").volume_bytes(10 * MiB) == 16 * MiB
    assert (erasure.parse("2+1").efficiency, erasure.parse("4+1").efficiency) == (2 / 3, 0.8)


@pytest.mark.parametrize("text,words", [("4+2", "one"), ("8+2", "one"), ("3+1", "not a supported layout"),
                                        ("8+1", "not a supported layout"), ("2", "is not K+M"),
                                        ("a+b", "is not K+M"), ("", "is not K+M")])
def test_unsupported_layouts_are_refused_with_the_reason(text, words):
    with pytest.raises(InvalidArgument) as ei:
        erasure.parse(text, "erasure")
    assert ei.value.field == "erasure" and words in str(ei.value)


def test_storage_class_parameter():
    p = caps.parse_parameters({"erasure": "4+1", "spread": "zone"})
    assert (p.erasure, p.replicas, p.data_shards, p.spread) == (erasure.Layout(4, 1), 5, 4, "zone")
    assert caps.parse_parameters({"replicas": "3"}).erasure is None
    for params, words in (({"erasure": "2+1", "replicas": "3"}, "not both"),
                          ({"erasure": "2+1", "protocol": "iscsi"}, "NVMe/TCP"),
                          ({"erasure": "5+1"}, "not a supported layout")):
        with pytest.raises(InvalidArgument) as ei:
            caps.parse_parameters(params)
        assert words in str(ei.value)


async def test_mkfs_keeps_writes_whole_4k_on_erasure_coded_volumes(monkeypatch):
    ran = []

    async def run(argv, timeout):
        ran.append(argv)
    monkeypatch.setattr(fs, "run", run)
    await fs.mkfs("/dev/x", "xfs", sector=4096)
    await fs.mkfs("/dev/x", "ext4", sector=4096)
    await fs.mkfs("/dev/x", "ext4")
    assert ran[0][-3:] == ["-s", "size=4096", "/dev/x"]
    assert ran[1][-3:] == ["-b", "4096", "/dev/x"]
    assert "-b" not in ran[2] and ran[2][-1] == "/dev/x"
