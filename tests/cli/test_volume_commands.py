"""`meshblock volume ...` against a fake controller."""

from __future__ import annotations

import json

import pytest

from meshblock.cli import admin
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.cli.fake_controller import GiB

MiB = 1 << 20
HOST = "nqn.2014-08.org.nvmexpress:uuid:5f2b6a2e-1111-2222-3333-444455556666"


# -- create -------------------------------------------------------------------------------------------------

def test_create_waits_until_available(mb, fc):
    fc.volume_script["db"] = [{"stage": "allocating replicas"}, {"stage": "exporting"},
                              {"state": "available", "stage": ""}]
    r = mb("volume", "create", "db", "--size", "10GiB", "--replicas", "3", "--spread", "zone",
           "--label", "app=postgres", "--label", "tier=gold", "-o", "json")
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)
    assert v["name"] == "db"
    assert v["state"] == "available"
    assert v["size_bytes"] == 10 * GiB and isinstance(v["size_bytes"], int)
    assert v["labels"] == {"app": "postgres", "tier": "gold"}
    req = fc.requests("CreateVolume")[0]
    assert (req.size_bytes, req.replicas, req.spread) == (10 * GiB, 3, "zone")
    assert dict(req.labels) == {"app": "postgres", "tier": "gold"}
    assert fc.count("GetVolume") == 3


def test_create_table_shows_name_and_human_size(mb, fc):
    fc.initial_state = "available"
    r = mb("volume", "create", "logs", "--size", "512MiB")
    assert r.exit_code == 0, r.output
    assert "logs" in r.stdout
    assert "512 MiB" in r.stdout
    assert "available" in r.stdout
    assert fc.count("GetVolume") == 0  # already available: nothing to wait for


def test_create_fails_when_the_volume_faults(mb, fc):
    fc.volume_script["db"] = [{}, {"state": "faulted", "message": "no space left on node-2"}]
    r = mb("volume", "create", "db", "--size", "10GiB")
    assert r.exit_code == 1
    assert "volume db is faulted: no space left on node-2" in r.stderr
    assert r.stdout == ""


def test_create_times_out(mb, fc):
    r = mb("volume", "create", "db", "--size", "1GiB", "--timeout", "300ms")
    assert r.exit_code == 1
    assert "timed out after 0.3s waiting for volume db" in r.stderr
    assert "creating" in r.stderr


def test_create_no_wait_returns_at_once(mb, fc):
    r = mb("volume", "create", "db", "--size", "1GiB", "--no-wait", "-o", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["state"] == "creating"
    assert fc.count("GetVolume") == 0


@pytest.mark.parametrize("args, message", [
    (["--size", "ten gigs"], "is not a size"),
    (["--size", "0"], "must be more than 0 bytes"),
    (["--size", "1GiB", "--replicas", "6"], "1<=x<=5"),
    (["--size", "1GiB", "--label", "novalue"], "is not key=value"),
    (["--size", "1GiB", "--timeout", "soon"], "is not a duration"),
])
def test_create_usage_errors(mb, fc, args, message):
    r = mb("volume", "create", "db", *args)
    assert r.exit_code == 2
    assert message in r.stderr
    assert fc.count("CreateVolume") == 0


def test_create_erasure_coded(mb, fc):
    fc.initial_state = "available"
    r = mb("volume", "create", "logs", "--size", "1GiB", "--ec", "4+1", "--spread", "zone", "-o", "json")
    assert r.exit_code == 0, r.output
    req = fc.requests("CreateVolume")[0]
    assert (req.erasure.data, req.erasure.parity, req.replicas, req.spread) == (4, 1, 0, "zone")


@pytest.mark.parametrize("args, message", [
    (["--ec", "2x1"], "is not K+M"),
    (["--ec", "2+1", "--replicas", "3"], "give one of --ec and --replicas"),
])
def test_create_erasure_usage_errors(mb, fc, args, message):
    r = mb("volume", "create", "logs", "--size", "1GiB", *args)
    assert r.exit_code == 2 and message in r.stderr, r.output
    assert fc.count("CreateVolume") == 0


def test_get_shows_the_shards_of_an_erasure_coded_volume(mb, fc):
    v = fc.add_volume("logs", 2 * GiB, replicas=3, erasure=pb.ErasureCoding(data=2, parity=1), state="degraded")
    for i, (node, state) in enumerate((("node-2", "online"), ("node-3", "rebuilding"), ("node-1", "online"))):
        v.replica_status.add(replica_id=f"r{i}", node_id=f"id-{node}", node_name=node, state=state, shard=i,
                             rebuild_progress=0.25 if state == "rebuilding" else 0.0)
    r = mb("volume", "get", "logs")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "erasure-coded 2+1" in out and "1.50x" in out and "2 of 3 online, 1 rebuilding" in out
    rows = [line for line in out.splitlines() if "node-" in line]
    assert "0 (data)" in rows[0] and "node-2" in rows[0]
    assert "1 (data)" in rows[1] and "25%" in rows[1]
    assert "2 (parity)" in rows[2] and "node-1" in rows[2]


def test_create_conflict_is_one_line_error(mb, fc):
    fc.add_volume("db", 5 * GiB)
    r = mb("volume", "create", "db", "--size", "10GiB")
    assert r.exit_code == 1
    assert r.stderr.strip() == 'Error: ALREADY_EXISTS: volume "db" exists with different parameters'


# -- list / get ---------------------------------------------------------------------------------------------

def test_list_follows_pagination(mb, fc):
    for i in range(5):
        fc.add_volume(f"vol-{i}", (i + 1) * 512 * MiB)
    r = mb("volume", "list", "-o", "json")
    assert r.exit_code == 0, r.output
    vols = json.loads(r.stdout)
    assert [v["name"] for v in vols] == [f"vol-{i}" for i in range(5)]
    assert vols[1]["size_bytes"] == GiB
    assert fc.count("ListVolumes") == 3  # pages of 2, 2 and 1
    assert [q.page_token for q in fc.requests("ListVolumes")] == ["", "2", "4"]


def test_list_table(mb, fc):
    fc.add_volume("alpha", 10 * GiB, labels={"app": "web"})
    fc.add_volume("beta", 512 * MiB, state="degraded")
    fc.add_volume("gamma", 3 * GiB // 2)
    r = mb("volume", "list")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert any("alpha" in ln and "10 GiB" in ln and "available" in ln and "app=web" in ln for ln in lines)
    assert any("beta" in ln and "512 MiB" in ln and "degraded" in ln for ln in lines)
    assert any("gamma" in ln and "1.5 GiB" in ln for ln in lines)


def test_list_empty(mb):
    r = mb("volume", "list")
    assert r.exit_code == 0
    assert "No volumes." in r.stdout
    assert json.loads(mb("volume", "list", "-o", "json").stdout) == []


def test_list_filters(mb, fc):
    fc.add_node("node-1")
    fc.add_volume("a", labels={"app": "db"},
                  replica_status=[pb.ReplicaStatus(node_id="id-node-1", state="online")])
    fc.add_volume("b", labels={"app": "db"}, state="degraded")
    fc.add_volume("c", labels={"app": "web"})
    names = lambda r: [v["name"] for v in json.loads(r.stdout)]  # noqa: E731
    assert names(mb("volume", "list", "--label", "app=db", "-o", "json")) == ["a", "b"]
    assert names(mb("volume", "list", "--state", "degraded", "-o", "json")) == ["b"]
    assert names(mb("volume", "list", "--node", "node-1", "-o", "json")) == ["a"]
    assert fc.requests("ListVolumes")[-1].node_id == "id-node-1"
    r = mb("volume", "list", "--node", "node-9")
    assert r.exit_code == 1
    assert 'NOT_FOUND: node "node-9" not found' in r.stderr


def _rebuilding_volume(fc):
    return fc.add_volume(
        "db", 20 * GiB, state="degraded", stage="rebuilding replica on node-3", replicas=3, spread="zone",
        hosts=[HOST], replica_status=[
            pb.ReplicaStatus(replica_id="r-1", node_id="id-node-1", node_name="node-1", state="online"),
            pb.ReplicaStatus(replica_id="r-2", node_id="id-node-2", node_name="node-2", state="online"),
            pb.ReplicaStatus(replica_id="r-3", node_id="id-node-3", node_name="node-3", state="rebuilding",
                             rebuild_progress=0.4, rebuild_eta_seconds=65),
        ], head_node_id="id-node-1")


def test_get_detail_view(mb, fc):
    v = _rebuilding_volume(fc)
    r = mb("volume", "get", "db")
    assert r.exit_code == 0, r.output
    text = r.stdout
    for expected in ("db", v.id, "degraded", "rebuilding replica on node-3", "20 GiB", "2 of 3 online",
                     "1 rebuilding", "zone", v.nqn, HOST, "node-1", "node-2", "node-3", "40%", "ETA 1m05s"):
        assert expected in text, expected
    head_line = next(ln for ln in text.splitlines() if ln.startswith("Head node"))
    assert "node-1" in head_line


def test_get_json(mb, fc):
    _rebuilding_volume(fc)
    d = json.loads(mb("volume", "get", "db", "-o", "json").stdout)
    assert d["size_bytes"] == 20 * GiB
    assert d["hosts"] == [HOST]
    assert d["replica_status"][2] == {"replica_id": "r-3", "node_id": "id-node-3", "node_name": "node-3",
                                      "state": "rebuilding", "rebuild_progress": 0.4,
                                      "rebuild_eta_seconds": 65}
    assert d["source_snapshot_id"] == "" and d["message"] == ""  # every field, always


def test_get_not_found(mb):
    r = mb("volume", "get", "nope")
    assert r.exit_code == 1
    assert r.stderr.strip() == 'Error: NOT_FOUND: volume "nope" not found'


def _healed(v: pb.Volume) -> None:
    v.state, v.stage = "available", ""
    for rs in v.replica_status:
        rs.state, rs.rebuild_progress, rs.rebuild_eta_seconds = "online", 0, 0


def test_get_watch_until_healthy(mb, fc):
    _rebuilding_volume(fc)

    def progress(v: pb.Volume) -> None:
        v.replica_status[2].rebuild_progress = 0.8

    fc.volume_script["db"] = [progress, progress, _healed]
    r = mb("volume", "get", "db", "--watch", "--interval", "20ms")
    assert r.exit_code == 0, r.output
    assert fc.count("GetVolume") == 3
    assert "healthy" in r.stdout
    assert "3 of 3 online" in r.stdout


def test_get_watch_json_lines(mb, fc):
    _rebuilding_volume(fc)
    fc.volume_script["db"] = [lambda v: None, lambda v: None, _healed]
    r = mb("volume", "get", "db", "--watch", "--interval", "10ms", "-o", "json")
    assert r.exit_code == 0, r.output
    frames = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [f["state"] for f in frames] == ["degraded", "degraded", "available"]
    assert fc.count("GetVolume") == 3


# -- delete / resize / publish ------------------------------------------------------------------------------

def test_delete_needs_yes_without_a_terminal(mb, fc):
    fc.add_volume("db")
    r = mb("volume", "delete", "db")
    assert r.exit_code == 2
    assert "--yes" in r.stderr
    assert fc.volume("db") is not None
    assert fc.count("DeleteVolume") == 0

    r = mb("volume", "delete", "db", "--yes")
    assert r.exit_code == 0, r.output
    assert "volume db deleted" in r.stdout
    assert fc.volume("db") is None

    r = mb("volume", "delete", "db", "--yes", "-o", "json")
    assert json.loads(r.stdout) == {"name": "db", "existed": False}


def test_delete_asks_on_a_terminal(mb, fc, monkeypatch):
    monkeypatch.setattr(admin, "_interactive", lambda: True)
    fc.add_volume("db")
    r = mb("volume", "delete", "db", input="n\n")
    assert r.exit_code == 1
    assert "Delete volume db and all its data?" in r.output
    assert fc.volume("db") is not None
    r = mb("volume", "delete", "db", input="y\n")
    assert r.exit_code == 0, r.output
    assert fc.volume("db") is None


def test_resize(mb, fc):
    fc.add_volume("db", 10 * GiB)
    r = mb("volume", "resize", "db", "--size", "20GiB")
    assert r.exit_code == 0, r.output
    assert "volume db is now 20 GiB" in r.stdout
    assert fc.volume("db").size_bytes == 20 * GiB
    r = mb("volume", "resize", "db", "--size", "1GiB")
    assert r.exit_code == 1
    assert r.stderr.strip() == "Error: INVALID_ARGUMENT: volumes only grow"
    assert mb("volume", "resize", "db", "--size", "big").exit_code == 2


def test_publish_and_unpublish(mb, fc):
    fc.add_volume("db")
    r = mb("volume", "publish", "db", "--host-nqn", HOST)
    assert r.exit_code == 0, r.output
    assert HOST in r.stdout
    assert list(fc.volume("db").hosts) == [HOST]
    r = mb("volume", "publish", "db", "--host-nqn", "nqn.2014-08.org.example:h2", "-o", "json")
    assert json.loads(r.stdout)["hosts"] == [HOST, "nqn.2014-08.org.example:h2"]
    r = mb("volume", "unpublish", "db", "--host-nqn", HOST, "-o", "json")
    assert json.loads(r.stdout)["hosts"] == ["nqn.2014-08.org.example:h2"]
    assert mb("volume", "publish", "db").exit_code == 2  # --host-nqn is required


# -- connect ------------------------------------------------------------------------------------------------

def _connectable(fc):
    v = fc.add_volume("db", hosts=[HOST])
    fc.paths["db"] = [
        pb.Path(transport="tcp", traddr="127.0.0.11", trsvcid="4420", ana_state="optimized",
                node_id="id-node-1"),
        pb.Path(transport="tcp", traddr="127.0.0.12", trsvcid="4420", ana_state="non_optimized",
                node_id="id-node-2"),
        pb.Path(transport="tcp", traddr="10.0.0.3", trsvcid="4421", ana_state="inaccessible"),
    ]
    return v


def test_connect_prints_nvme_connect_lines(mb, fc):
    v = _connectable(fc)
    r = mb("volume", "connect", "db", "--host-nqn", HOST)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "# path 1 of 3: 127.0.0.11:4420 on node id-node-1, ANA state optimized",
        f"nvme connect -t tcp -a 127.0.0.11 -s 4420 -n {v.nqn} --hostnqn {HOST}",
        "# path 2 of 3: 127.0.0.12:4420 on node id-node-2, ANA state non_optimized",
        f"nvme connect -t tcp -a 127.0.0.12 -s 4420 -n {v.nqn} --hostnqn {HOST}",
        "# path 3 of 3: 10.0.0.3:4421, ANA state inaccessible",
        f"nvme connect -t tcp -a 10.0.0.3 -s 4421 -n {v.nqn} --hostnqn {HOST}",
    ]
    req = fc.requests("GetConnectInfo")[0]
    assert (req.ref, req.host_nqn) == ("db", HOST)


def test_connect_json_shape(mb, fc):
    v = _connectable(fc)
    r = mb("volume", "connect", "db", "--host-nqn", HOST, "-o", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {
        "protocol": "nvmf",
        "subnqn": v.nqn,
        "host_nqn": HOST,
        "paths": [
            {"transport": "tcp", "traddr": "127.0.0.11", "trsvcid": "4420", "ana_state": "optimized"},
            {"transport": "tcp", "traddr": "127.0.0.12", "trsvcid": "4420", "ana_state": "non_optimized"},
            {"transport": "tcp", "traddr": "10.0.0.3", "trsvcid": "4421", "ana_state": "inaccessible"},
        ],
    }


def test_connect_unpublished_host_is_an_error(mb, fc):
    _connectable(fc)
    r = mb("volume", "connect", "db", "--host-nqn", "nqn.2014-08.org.example:other")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: PERMISSION_DENIED: host nqn.2014-08.org.example:other is not allowed")


# -- snapshots and clones -----------------------------------------------------------------------------------

def test_snapshot_create_list_delete(mb, fc):
    fc.add_volume("db", 4 * GiB)
    fc.add_volume("web", 2 * GiB)
    for vol, snap in (("db", "db-1"), ("db", "db-2"), ("web", "web-1")):
        r = mb("volume", "snapshot", "create", vol, snap)
        assert r.exit_code == 0, r.output

    r = mb("volume", "snapshot", "list", "-o", "json")
    assert [s["name"] for s in json.loads(r.stdout)] == ["db-1", "db-2", "web-1"]  # every page
    r = mb("volume", "snapshot", "list", "db")
    assert r.exit_code == 0, r.output
    assert "db-2" in r.stdout and "web-1" not in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if "db-2" in ln)
    assert "4 GiB" in line and " db " in f" {line} " and "ready" in line

    r = mb("volume", "snapshot", "delete", "web-1")
    assert r.exit_code == 0 and "snapshot web-1 deleted" in r.stdout
    r = mb("volume", "snapshot", "delete", "web-1", "-o", "json")
    assert json.loads(r.stdout) == {"name": "web-1", "existed": False}


def test_clone_from_snapshot_waits(mb, fc):
    fc.add_volume("db", 4 * GiB)
    mb("volume", "snapshot", "create", "db", "nightly")
    fc.volume_script["db-copy"] = [{}, {"state": "available"}]
    r = mb("volume", "clone", "db-copy", "--from-snapshot", "nightly", "--size", "8GiB", "-o", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["state"] == "available" and d["size_bytes"] == 8 * GiB
    assert d["source_snapshot_id"] == fc.snapshot("nightly").id
    req = fc.requests("CloneVolume")[0]
    assert (req.source_snapshot_ref, req.source_volume_ref, req.size_bytes) == ("nightly", "", 8 * GiB)


def test_clone_from_volume_faulted(mb, fc):
    fc.add_volume("db", 4 * GiB)
    fc.volume_script["db-copy"] = [{"state": "faulted"}]
    r = mb("volume", "clone", "db-copy", "--from-volume", "db")
    assert r.exit_code == 1
    assert "volume db-copy is faulted" in r.stderr


@pytest.mark.parametrize("sources", [[], ["--from-snapshot", "s", "--from-volume", "v"]])
def test_clone_needs_exactly_one_source(mb, fc, sources):
    r = mb("volume", "clone", "x", *sources)
    assert r.exit_code == 2
    assert "exactly one of --from-snapshot and --from-volume" in r.stderr
    assert fc.count("CloneVolume") == 0
