"""`meshblock gateway iscsi ...`: what reaches the LIO module, and what the user sees (no kernel needed).

The end-to-end behaviour against a real kernel is in tests/vm/test_iscsi_gateway.py.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from meshblock.cli.main import cli
from meshblock.target import lio
from meshblock.target.lio_model import (
    AclState,
    BackstoreState,
    Chap,
    ExportConflict,
    ExportInfo,
    ExportResult,
    ExportSpec,
    LioUnavailable,
    Observed,
    Portal,
    TargetState,
    backstore_name,
)

IQN = "iqn.2026-11.io.meshblock:gw:vol1"
INI = "iqn.1993-08.org.debian:01:6a3b2c4d5e6f"
SECRET = "secret-from-env-1"


@pytest.fixture(autouse=True)
def no_secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MESHBLOCK_CHAP_SECRET", "MESHBLOCK_MUTUAL_CHAP_SECRET"):
        monkeypatch.delenv(name, raising=False)


def info(spec: ExportSpec, logged_in: bool = False) -> ExportInfo:
    return ExportInfo.from_observed(Observed(
        iqn=spec.iqn, backstore=BackstoreState(backstore_name(spec.iqn), spec.device, (259, 0)),
        target=TargetState(lun_backstore=backstore_name(spec.iqn), portals=spec.portals,
                           acls=tuple(AclState(i, spec.acl_auth(), logged_in=logged_in) for i in spec.initiators),
                           authentication=spec.chap is not None, enabled=True)))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[ExportSpec]:
    """Stand in for the kernel side: record what the command asks for and answer as LIO would."""
    seen: list[ExportSpec] = []

    def export(device, iqn, initiators, *, chap=None, mutual_chap=None, portals=None):
        spec = ExportSpec.build(iqn=iqn, device=device, initiators=initiators, chap=chap, mutual_chap=mutual_chap,
                                portals=portals)
        seen.append(spec)
        return ExportResult(info(spec), ("create target", f"add ACL {spec.initiators[0]}"))

    monkeypatch.setattr(lio, "export", export)
    return seen


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["gateway", "iscsi", *args], env=env, prog_name="meshblock")


def test_export_passes_the_secret_from_the_environment_and_parses_portals(calls):
    r = run("export", "--device", "/dev/nvme0n1", "--iqn", IQN, "--initiator", INI, "--chap-user", "gw",
            "--portal", "10.0.0.1:3261", "--portal", "[fd00::1]", "-o", "json",
            env={"MESHBLOCK_CHAP_SECRET": SECRET})
    assert r.exit_code == 0, r.output
    (spec,) = calls
    assert spec.chap == Chap("gw", SECRET) and spec.mutual_chap is None
    assert spec.portals == (Portal("10.0.0.1", 3261), Portal("fd00::1", 3260))
    shown = json.loads(r.output)
    assert shown["changed"] and shown["changes"] == ["create target", f"add ACL {INI}"]
    assert shown["export"]["chap_user"] == "gw" and SECRET not in r.output
    assert shown["export"]["portals"] == ["10.0.0.1:3261", "[fd00::1]:3260"]


def test_export_table_lists_the_changes_without_secrets(calls):
    r = run("export", "--device", "/dev/nvme0n1", "--iqn", IQN, "--initiator", INI, "--chap-user", "gw",
            "--chap-secret", SECRET)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("create target\nadd ACL ")
    assert IQN in r.output and SECRET not in r.output


@pytest.mark.parametrize("args, says", [
    (["--iqn", "iqn.2026-11.io.meshblock:no_underscores", "--initiator", INI], "Invalid value for --iqn"),
    (["--iqn", IQN, "--initiator", "host-b"], "Invalid value for --initiator"),
    (["--iqn", IQN, "--initiator", INI, "--chap-user", "gw"], "--chap-user and --chap-secret go together"),
    (["--iqn", IQN, "--initiator", INI, "--chap-user", "gw", "--chap-secret", "short"],
     "Invalid value for --chap-secret"),
    (["--iqn", IQN, "--initiator", INI, "--chap-user", "gw", "--chap-secret", SECRET, "--mutual-chap-user", "t",
      "--mutual-chap-secret", SECRET], "must differ from the CHAP secret"),
    (["--iqn", IQN, "--initiator", INI, "--portal", "gateway.example"], "is not an IP address"),
    (["--iqn", IQN], "Missing option '--initiator'"),
])
def test_bad_input_is_a_usage_error_naming_the_option(calls, args, says):
    r = run("export", "--device", "/dev/nvme0n1", *args)
    assert r.exit_code == 2, r.output
    assert says in r.output
    assert calls == []


def test_lio_errors_are_one_line_with_exit_code_1(monkeypatch: pytest.MonkeyPatch):
    def unavailable(*a, **kw):
        raise LioUnavailable("kernel module iscsi_target_mod is not loaded ...; load iscsi_target_mod",
                             module="iscsi_target_mod")

    def conflict(iqn):
        raise ExportConflict(f"{iqn} was not exported by meshblock")

    monkeypatch.setattr(lio, "export", unavailable)
    monkeypatch.setattr(lio, "unexport", conflict)
    r = run("export", "--device", "/dev/nvme0n1", "--iqn", IQN, "--initiator", INI)
    assert r.exit_code == 1 and r.output.strip().endswith("load iscsi_target_mod")
    r = run("unexport", IQN)
    assert r.exit_code == 1 and "not exported by meshblock" in r.output


def test_unexport_says_whether_there_was_anything(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(lio, "unexport", lambda iqn: iqn == IQN)
    assert run("unexport", IQN).output == f"{IQN}: removed\n"
    r = run("unexport", IQN + "x", "-o", "json")
    assert json.loads(r.output) == {"iqn": IQN + "x", "removed": False}


def test_list_shows_who_is_logged_in(monkeypatch: pytest.MonkeyPatch):
    spec = ExportSpec.build(iqn=IQN, device="/dev/nvme0n1", initiators=[INI], chap=("gw", SECRET),
                            mutual_chap=("tgt", "other-secret-2"))
    monkeypatch.setattr(lio, "list_exports", lambda: [info(spec, logged_in=True)])
    rows = json.loads(run("list", "-o", "json").output)
    assert rows == [{"iqn": IQN, "device": "/dev/nvme0n1", "backstore": backstore_name(IQN),
                     "portals": ["0.0.0.0:3260"], "initiators": [INI], "chap_user": "gw", "mutual_chap_user": "tgt",
                     "sessions": [INI], "enabled": True}]
    table = run("list").output
    assert IQN in table and "gw (mutual tgt)" in table and SECRET not in table

