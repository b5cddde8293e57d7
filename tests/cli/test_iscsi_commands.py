"""`meshblock volume ...` for iSCSI volumes, against the fake controller."""

from __future__ import annotations

import json

from meshblock.proto.meshblock.v1 import admin_pb2 as pb

from .conftest import invoke

INIT = "iqn.1993-08.org.debian:01:host-a"


def test_create_iscsi_volume_and_get_shows_the_target(mb, fc):
    fc.initial_state = "available"
    r = mb("volume", "create", "db", "--size", "1GiB", "--protocol", "iscsi", "--iscsi-network", "10.0.0.0/8",
           "--chap-user", "alice", "--chap-secret", "0123456789abcdef")
    assert r.exit_code == 0, r.output
    req = fc.requests("CreateVolume")[0]
    assert req.protocol == "iscsi"
    assert (list(req.iscsi.netmasks), req.iscsi.chap_user, req.iscsi.chap_secret) == (
        ["10.0.0.0/8"], "alice", "0123456789abcdef")
    v = fc.volume("db")
    for text in ("Protocol", "iSCSI", "Target IQN", v.target_iqn, "CHAP", "user alice", "10.0.0.0/8"):
        assert text in r.stdout, text
    assert "0123456789abcdef" not in r.stdout
    r = mb("volume", "get", "db", "-o", "json")
    assert json.loads(r.stdout)["protocol"] == "iscsi"
    r = mb("volume", "list")
    assert "PROTOCOL" in r.stdout and "iscsi" in r.stdout


def test_create_takes_the_chap_secret_from_the_environment(server, fc):
    fc.initial_state = "available"
    r = invoke("volume", "create", "db", "--size", "1GiB", "--protocol", "iscsi", "--chap-user", "alice",
               "--endpoint", server.endpoint, env={"MESHBLOCK_CHAP_SECRET": "fedcba9876543210"})
    assert r.exit_code == 0, r.output
    assert fc.requests("CreateVolume")[0].iscsi.chap_secret == "fedcba9876543210"


def test_iscsi_options_need_the_iscsi_protocol(mb, fc):
    r = mb("volume", "create", "db", "--size", "1GiB", "--chap-user", "alice", "--chap-secret", "x" * 12)
    assert r.exit_code == 2 and "need --protocol iscsi" in r.stderr
    r = mb("volume", "create", "db", "--size", "1GiB", "--protocol", "iscsi", "--chap-user", "alice")
    assert r.exit_code == 2 and "both --chap-user and --chap-secret" in r.stderr
    assert fc.requests("CreateVolume") == []


def test_publish_and_unpublish_an_initiator(mb, fc):
    fc.add_volume("db")
    r = mb("volume", "publish", "db", "--initiator", INIT)
    assert r.exit_code == 0, r.output
    assert f"connect with: meshblock volume connect db --initiator {INIT}" in r.stdout
    req = fc.requests("PublishVolume")[0]
    assert (req.initiator_iqn, req.host_nqn) == (INIT, "")
    r = mb("volume", "unpublish", "db", "--initiator", INIT, "-o", "json")
    assert json.loads(r.stdout).get("hosts", []) == []
    assert fc.requests("UnpublishVolume")[0].initiator_iqn == INIT
    r = mb("volume", "publish", "db", "--initiator", INIT, "--host-nqn", "nqn.2014-08.org.example:h")
    assert r.exit_code == 2 and "--host-nqn (NVMe/TCP volumes) or --initiator (iSCSI volumes)" in r.stderr


def _iscsi_volume(fc, chap_user: str = ""):
    v = fc.add_volume("db", hosts=[INIT])
    v.protocol, v.nqn, v.chap_user = "iscsi", "", chap_user
    v.target_iqn = "iqn.2026-11.io.meshblock:volume:" + v.id
    fc.paths["db"] = [pb.Path(transport="iscsi", traddr="127.0.0.11", trsvcid="3260", ana_state="optimized",
                              node_id="id-node-1")]
    return v


def test_connect_prints_iscsiadm_lines(mb, fc):
    v = _iscsi_volume(fc)
    r = mb("volume", "connect", "db", "--initiator", INIT)
    assert r.exit_code == 0, r.output
    t = v.target_iqn
    assert r.stdout.splitlines() == [
        f"# log in as initiator {INIT} (InitiatorName= in /etc/iscsi/initiatorname.iscsi); the volume is LUN 0 of {t}",
        "# path 1 of 1: 127.0.0.11:3260 on node id-node-1, ANA state optimized",
        "iscsiadm -m discovery -t sendtargets -p 127.0.0.11:3260",
        f"iscsiadm -m node -T {t} -p 127.0.0.11:3260 --login",
    ]
    req = fc.requests("GetConnectInfo")[0]
    assert (req.initiator_iqn, req.host_nqn) == (INIT, "")


def test_connect_with_chap_sets_the_credentials_first(mb, fc):
    v = _iscsi_volume(fc, chap_user="alice")
    r = mb("volume", "connect", "db", "--initiator", INIT)
    assert r.exit_code == 0, r.output
    t = v.target_iqn
    node = f"iscsiadm -m node -T {t} -p 127.0.0.11:3260"
    lines = r.stdout.splitlines()
    assert "# CHAP: user alice; put the volume's secret in MESHBLOCK_CHAP_SECRET first" in lines
    assert lines[-4:] == [
        f"{node} --op update -n node.session.auth.authmethod -v CHAP",
        f"{node} --op update -n node.session.auth.username -v alice",
        f'{node} --op update -n node.session.auth.password -v "$MESHBLOCK_CHAP_SECRET"',
        f"{node} --login",
    ]


def test_connect_json_for_iscsi(mb, fc):
    v = _iscsi_volume(fc)
    r = mb("volume", "connect", "db", "--initiator", INIT, "-o", "json")
    assert json.loads(r.stdout) == {
        "protocol": "iscsi", "target_iqn": v.target_iqn, "lun": 0, "initiator_iqn": INIT, "chap_user": "",
        "paths": [{"transport": "iscsi", "traddr": "127.0.0.11", "trsvcid": "3260", "ana_state": "optimized"}]}
