"""`meshblock volume create --max-...`, `volume set-qos` and how `volume get` shows the limits."""

from __future__ import annotations

import json

import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb


def test_create_with_limits(mb, fc):
    fc.initial_state = "available"
    r = mb("volume", "create", "db", "--size", "1GiB", "--max-iops", "20000", "--max-write-mbps", "50", "-o", "json")
    assert r.exit_code == 0, r.output
    assert fc.requests("CreateVolume")[0].qos == pb.QosLimits(max_iops=20000, max_write_mbps=50)
    assert json.loads(r.stdout)["qos"] == {"max_iops": 20000, "max_mbps": 0, "max_read_mbps": 0,
                                           "max_write_mbps": 50}


def test_clone_with_limits(mb, fc):
    fc.add_volume("db")
    r = mb("volume", "clone", "db-copy", "--from-volume", "db", "--max-read-mbps", "30", "--no-wait")
    assert r.exit_code == 0, r.output
    assert fc.requests("CloneVolume")[0].qos == pb.QosLimits(max_read_mbps=30)


def test_get_shows_limits(mb, fc):
    fc.add_volume("db", qos=pb.QosLimits(max_iops=5000, max_read_mbps=80))
    fc.add_volume("free")
    line = next(ln for ln in mb("volume", "get", "db").stdout.splitlines() if ln.startswith("QoS"))
    assert "5000 IOPS" in line and "read 80 MiB/s" in line
    line = next(ln for ln in mb("volume", "get", "free").stdout.splitlines() if ln.startswith("QoS"))
    assert "no limits" in line


def test_set_qos_sends_only_the_limits_given(mb, fc):
    fc.add_volume("db", qos=pb.QosLimits(max_iops=5000, max_mbps=100))
    r = mb("volume", "set-qos", "db", "--max-iops", "0", "--max-read-mbps", "40")
    assert r.exit_code == 0, r.output
    req = fc.requests("SetVolumeQos")[0]
    assert req.ref == "db" and (req.HasField("max_iops"), req.HasField("max_mbps")) == (True, False)
    assert (req.max_iops, req.max_read_mbps) == (0, 40)
    assert r.stdout.strip() == "volume db QoS: 100 MiB/s, read 40 MiB/s"
    d = json.loads(mb("volume", "set-qos", "db", "--max-mbps", "200", "-o", "json").stdout)
    assert d["qos"]["max_mbps"] == 200 and d["qos"]["max_read_mbps"] == 40


@pytest.mark.parametrize("command, args, message", [
    ("set-qos", [], "give at least one of --max-iops"),
    ("set-qos", ["--max-iops", "-1000"], "x>=0"),
    ("set-qos", ["--max-iops", "2500"], "--max-iops: 2500 is not a multiple of 1000"),
    ("set-qos", ["--max-mbps", "9999999"], "more than SPDK can enforce"),
    ("create", ["--size", "1GiB", "--max-iops", "999"], "999 is not a multiple of 1000"),
])
def test_limits_checked_before_any_call(mb, fc, command, args, message):
    fc.add_volume("db")
    r = mb("volume", command, "db", *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert fc.count("SetVolumeQos") == fc.count("CreateVolume") == 0
