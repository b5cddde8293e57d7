"""`meshblock node ...` and `meshblock cluster status` against a fake controller."""

from __future__ import annotations

import json

import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.cli.fake_controller import GiB


@pytest.fixture
def nodes(fc):
    fc.add_node("node-1", total_bytes=100 * GiB, free_bytes=60 * GiB, provisioned_bytes=150 * GiB,
                replica_count=3, nvmf_address="127.0.0.11", nvmf_port=4420, labels={"zone": "a"},
                host_nqn="nqn.2024-01.io.meshblock:node-1", readiness=pb.NodeReadiness(ready=True))
    fc.add_node("node-2", state="down", total_bytes=100 * GiB, free_bytes=90 * GiB,
                provisioned_bytes=10 * GiB, cordoned=True, nvmf_address="127.0.0.12", nvmf_port=4420,
                readiness=pb.NodeReadiness(ready=False, reason="replica 1a2b3c4d of volume db is rebuilding (40%)"))
    return fc


def test_node_list(mb, nodes):
    r = mb("node", "list")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    one = next(ln for ln in lines if ln.startswith("node-1"))
    two = next(ln for ln in lines if ln.startswith("node-2"))
    for expected in ("up", " ready", "schedulable", "127.0.0.11:4420", "100 GiB", "60 GiB", "150 GiB", "zone=a"):
        assert expected in one, expected
    for expected in ("down", "not ready", "cordoned", "90 GiB", "10 GiB"):
        assert expected in two, expected

    d = json.loads(mb("node", "list", "-o", "json").stdout)
    assert [n["name"] for n in d] == ["node-1", "node-2"]
    assert d[0]["total_bytes"] == 100 * GiB
    assert d[0]["drain"] == {"replicas_total": 0, "replicas_moved": 0, "done": False, "message": ""}
    assert d[0]["readiness"] == {"ready": True, "reason": ""}
    assert d[1]["readiness"] == {"ready": False, "reason": "replica 1a2b3c4d of volume db is rebuilding (40%)"}


def test_node_get(mb, nodes):
    r = mb("node", "get", "node-1")
    assert r.exit_code == 0, r.output
    for expected in ("node-1", "id-node-1", "nqn.2024-01.io.meshblock:node-1", "100 GiB", "zone=a"):
        assert expected in r.stdout, expected
    assert "Ready" in r.stdout and "ready" in r.stdout and "not ready" not in r.stdout
    r = mb("node", "get", "node-2")
    assert "not ready: replica 1a2b3c4d of volume db is rebuilding (40%)" in " ".join(r.stdout.split())
    r = mb("node", "get", "node-7")
    assert r.exit_code == 1
    assert r.stderr.strip() == 'Error: NOT_FOUND: node "node-7" not found'


def test_cordon_and_uncordon(mb, nodes):
    r = mb("node", "cordon", "node-1")
    assert r.exit_code == 0, r.output
    assert "node node-1 cordoned" in r.stdout
    assert nodes.node("node-1").cordoned
    r = mb("node", "uncordon", "node-1", "-o", "json")
    assert json.loads(r.stdout)["cordoned"] is False
    assert not nodes.node("node-1").cordoned


def test_drain_wait_follows_progress(mb, nodes):
    r = mb("node", "drain", "node-1", "--wait", "-o", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["drain"] == {"replicas_total": 3, "replicas_moved": 3, "done": True, "message": ""}
    assert d["cordoned"] and d["draining"]
    assert nodes.count("GetNode") == 3
    assert "3/3" in r.stderr  # the progress bar's last frame


def test_drain_without_wait(mb, nodes):
    r = mb("node", "drain", "node-1")
    assert r.exit_code == 0, r.output
    assert "node node-1 is draining: 0 of 3 replicas moved" in r.stdout
    assert nodes.count("GetNode") == 0


def test_drain_wait_times_out(mb, nodes):
    nodes.node("node-1").replica_count = 1000
    r = mb("node", "drain", "node-1", "--wait", "--timeout", "200ms")
    assert r.exit_code == 1
    assert "timed out after 0.2s waiting for node node-1 to drain" in r.stderr


def test_cluster_status(mb, nodes):
    nodes.add_volume("a")
    nodes.add_volume("b")
    nodes.add_volume("c", state="degraded")
    r = mb("cluster", "status")
    assert r.exit_code == 0, r.output
    text = r.stdout
    for expected in ("controller-0", "1 up, 1 down", "200 GiB total", "150 GiB free", "50 GiB used",
                     "160 GiB", "0.80x of capacity", "overcommit limit 2.00x", "available 2", "degraded 1"):
        assert expected in text, expected
    assert "no process serves metrics" in text

    nodes.metrics_endpoints = [
        pb.MetricsEndpoint(component="controller", url="http://127.0.0.1:9100/metrics"),
        pb.MetricsEndpoint(component="agent", node="node-1", url="http://[fd00::1]:9101/metrics")]
    lines = mb("cluster", "status").stdout.splitlines()
    assert any("controller" in ln and "http://127.0.0.1:9100/metrics" in ln for ln in lines), lines
    assert any("agent node-1" in ln and "http://[fd00::1]:9101/metrics" in ln for ln in lines), lines

    d = json.loads(mb("cluster", "status", "-o", "json").stdout)
    assert d == {"nodes_up": 1, "nodes_down": 1, "total_bytes": 200 * GiB, "free_bytes": 150 * GiB,
                 "provisioned_bytes": 160 * GiB, "overcommit_ratio": 2.0,
                 "volumes_by_state": {"available": 2, "degraded": 1}, "leader": "controller-0",
                 "metrics_endpoints": [
                     {"component": "controller", "node": "", "url": "http://127.0.0.1:9100/metrics"},
                     {"component": "agent", "node": "node-1", "url": "http://[fd00::1]:9101/metrics"}]}
