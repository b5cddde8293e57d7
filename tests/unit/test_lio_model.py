"""The iSCSI gateway's pure parts: names, validation, and the plan that reconciles an export."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshblock.target import lio
from meshblock.target.lio_model import (
    AclAuth,
    AclState,
    BackstoreState,
    Chap,
    DeviceMissing,
    ExportConflict,
    ExportInfo,
    ExportPlan,
    ExportSpec,
    InvalidExport,
    LioUnavailable,
    Observed,
    Portal,
    TargetState,
    backstore_name,
    normalize_iscsi_name,
    plan_export,
)

IQN = "iqn.2026-11.io.meshblock:gw:vol1"
INI_A = "iqn.1993-08.org.debian:01:6a3b2c4d5e6f"
INI_B = "iqn.2026-11.io.meshblock:host-b"
INI_C = "iqn.2026-11.io.meshblock:host-c"
DEV = "/dev/nvme0n1"
NUM = (259, 0)
CHAP = Chap("gwuser", "s3cret-s3cret")
MUTUAL = Chap("gwtarget", "an0ther-s3cret")


# -- names ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    IQN, INI_A, "iqn.2026-11.io.meshblock", "iqn.2004-01.com.example:storage.disk2.sys1.xyz",
    "eui.02004567a425678d", "naa.52004567ba64678d", "naa.62004567ba64678d0123456789abcdef",
])
def test_valid_iscsi_names_are_accepted_unchanged(name):
    assert normalize_iscsi_name(name) == name


def test_iscsi_names_are_compared_in_lower_case():
    assert normalize_iscsi_name(" IQN.2026-11.IO.Meshblock:GW1 ") == "iqn.2026-11.io.meshblock:gw1"
    assert normalize_iscsi_name("EUI.02004567A425678D") == "eui.02004567a425678d"


@pytest.mark.parametrize("name, says", [
    ("", "required"),
    ("nqn.2026-11.io.meshblock:x", "does not start with iqn., eui. or naa."),
    ("iqn.2026-13.io.meshblock:x", "month 13"),
    ("iqn.26-11.io.meshblock:x", "iqn.YYYY-MM.reversed.domain"),
    ("iqn.2026-11:x", "iqn.YYYY-MM.reversed.domain"),
    ("iqn.2026-11.io..meshblock", "iqn.YYYY-MM.reversed.domain"),
    ("iqn.2026-11.io.meshblock:my_disk", "'_'"),
    ("iqn.2026-11.io.meshblock:my disk", "' '"),
    ("eui.0200", "16 hex digits"),
    ("naa.xyz", "16 or 32 hex digits"),
    ("iqn.2026-11.io.meshblock:" + "x" * 200, "longer than 223 bytes"),
])
def test_malformed_iscsi_names_are_refused_with_the_reason(name, says):
    with pytest.raises(InvalidExport) as e:
        normalize_iscsi_name(name, "initiators")
    assert e.value.field == "initiators"
    assert says in str(e.value)


def test_backstore_name_is_stable_per_iqn_and_differs_between_iqns():
    assert backstore_name(IQN) == backstore_name(IQN)
    assert backstore_name(IQN) != backstore_name(IQN + "x")
    assert backstore_name(IQN).startswith("meshblock-")


# -- portals and specs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, portal", [
    ("10.0.0.5", Portal("10.0.0.5", 3260)),
    ("10.0.0.5:3261", Portal("10.0.0.5", 3261)),
    ("[fd00::5]:3262", Portal("fd00::5", 3262)),
    ("[fd00::5]", Portal("fd00::5", 3260)),
    ("fd00::5", Portal("fd00::5", 3260)),
])
def test_portal_parse(text, portal):
    assert Portal.parse(text) == portal
    Portal.parse(text).validate()


@pytest.mark.parametrize("text, field", [("host.example:3260", "portal.address"), ("10.0.0.5:0", "portal.port"),
                                         ("10.0.0.5:x", "portal"), ("[fd00::5", "portal")])
def test_bad_portals_are_refused(text, field):
    with pytest.raises(InvalidExport) as e:
        Portal.parse(text).validate()
    assert e.value.field == field


def spec(**kw) -> ExportSpec:
    args = {"iqn": IQN, "device": DEV, "initiators": [INI_A], "chap": CHAP}
    args.update(kw)
    return ExportSpec.build(**args)


def test_spec_normalises_initiators_and_portals():
    s = spec(initiators=[INI_B, INI_A.upper(), INI_B], portals=[Portal("10.0.0.2"), Portal("10.0.0.1")])
    assert s.initiators == (INI_A, INI_B)
    assert s.portals == (Portal("10.0.0.1"), Portal("10.0.0.2"))
    assert spec().portals == spec(portals=[]).portals == (Portal("0.0.0.0", 3260),)
    assert spec(chap=("u", "123456789012")).chap == Chap("u", "123456789012")


@pytest.mark.parametrize("kw, field", [
    ({"initiators": []}, "initiators"),
    ({"initiators": ["host-b"]}, "initiators"),
    ({"device": "nvme0n1"}, "device"),
    ({"chap": Chap("u", "short")}, "chap.secret"),
    ({"chap": Chap("", "long-enough-secret")}, "chap.user"),
    ({"chap": Chap("u s", "long-enough-secret")}, "chap.user"),
    ({"chap": Chap("u", "long enough secret")}, "chap.secret"),
    ({"chap": Chap("u", "x" * 256)}, "chap.secret"),
    ({"chap": None, "mutual_chap": MUTUAL}, "mutual_chap"),
    ({"mutual_chap": Chap("t", CHAP.secret)}, "mutual_chap.secret"),
])
def test_invalid_specs_name_the_field(kw, field):
    with pytest.raises(InvalidExport) as e:
        spec(**kw)
    assert e.value.field == field


def test_secrets_are_not_in_reprs():
    s = spec(mutual_chap=MUTUAL)
    assert CHAP.secret not in repr(s) and MUTUAL.secret not in repr(s)
    assert CHAP.secret not in repr(s.acl_auth())


# -- plans ----------------------------------------------------------------------------------------------

def applied(s: ExportSpec, number=NUM) -> Observed:
    """What configfs holds after ``s`` was exported."""
    return Observed(iqn=s.iqn, backstore=BackstoreState(backstore_name(s.iqn), s.device, number),
                    target=TargetState(lun_backstore=backstore_name(s.iqn), portals=s.portals,
                                       acls=tuple(AclState(i, s.acl_auth()) for i in s.initiators),
                                       authentication=s.chap is not None, enabled=True))


def test_a_fresh_export_creates_everything_and_locks_it_down_before_enabling():
    s = spec(initiators=[INI_A, INI_B])
    p = plan_export(Observed(IQN), s, NUM)
    assert p.create_backstore and p.create_target and p.create_lun and p.enable
    assert p.set_generate_node_acls_off
    assert p.add_acls == p.set_auth == p.map_lun == (INI_A, INI_B)
    assert p.set_authentication is True
    assert p.add_portals == (Portal(),) and not p.remove_portals and not p.remove_acls
    assert not p.delete_backstore


def test_exporting_again_with_the_same_parameters_changes_nothing():
    s = spec(initiators=[INI_A, INI_B], mutual_chap=MUTUAL, portals=[Portal("10.0.0.1", 3261)])
    p = plan_export(applied(s), s, NUM)
    assert p.empty and p == ExportPlan() and p.describe() == []


def test_the_same_device_under_another_path_is_the_same_export():
    s = spec()
    p = plan_export(applied(dataclasses.replace(s, device="/dev/disk/by-id/nvme-uuid.1")), s, NUM)
    assert p.empty


def test_other_initiators_are_reconciled_not_duplicated():
    before = spec(initiators=[INI_A, INI_B])
    after = spec(initiators=[INI_B, INI_C])
    p = plan_export(applied(before), after, NUM)
    assert p.add_acls == (INI_C,) and p.remove_acls == (INI_A,)
    assert p.set_auth == (INI_C,) and p.map_lun == (INI_C,)
    assert not (p.create_backstore or p.create_target or p.create_lun or p.enable or p.delete_backstore)
    assert p.set_authentication is None
    assert p.describe() == [f"add ACL {INI_C}", f"remove ACL {INI_A}"]


def test_new_credentials_are_written_to_every_acl():
    before = spec(initiators=[INI_A, INI_B])
    p = plan_export(applied(before), spec(initiators=[INI_A, INI_B], chap=Chap("gwuser", "rotated-secret!")), NUM)
    assert p.set_auth == (INI_A, INI_B) and not p.add_acls and not p.remove_acls
    assert p.set_authentication is None
    assert all("rotated" not in line for line in p.describe())


def test_dropping_chap_clears_credentials_and_stops_requiring_it():
    p = plan_export(applied(spec()), spec(chap=None), NUM)
    assert p.set_authentication is False and p.set_auth == (INI_A,)
    p = plan_export(applied(spec(chap=None)), spec(), NUM)
    assert p.set_authentication is True and p.set_auth == (INI_A,)


def test_portals_are_reconciled():
    p = plan_export(applied(spec()), spec(portals=[Portal("10.0.0.1"), Portal("10.0.0.2")]), NUM)
    assert p.add_portals == (Portal("10.0.0.1"), Portal("10.0.0.2")) and p.remove_portals == (Portal(),)


def test_another_device_under_an_exported_iqn_is_a_conflict():
    with pytest.raises(ExportConflict, match="unexport it before"):
        plan_export(applied(spec()), spec(device="/dev/nvme1n1"), (259, 1))


def test_a_target_meshblock_did_not_make_is_not_taken_over():
    obs = dataclasses.replace(applied(spec()), target=TargetState(lun_backstore="someone-elses"))
    with pytest.raises(ExportConflict, match="did not create"):
        plan_export(obs, spec(), NUM)


def test_after_a_crash_between_backstore_and_target_the_backstore_is_reused():
    obs = Observed(IQN, backstore=BackstoreState(backstore_name(IQN), DEV, NUM))
    p = plan_export(obs, spec(), NUM)
    assert not p.create_backstore and p.create_target and p.create_lun and p.enable


def test_an_unused_backstore_on_another_device_is_replaced():
    obs = Observed(IQN, backstore=BackstoreState(backstore_name(IQN), "/dev/old", (8, 0)),
                   target=TargetState(lun_backstore=None, acls=(AclState(INI_A, spec().acl_auth(), mapped=False),)))
    p = plan_export(obs, spec(), NUM)
    assert p.delete_backstore and p.create_backstore and p.create_lun and p.map_lun == (INI_A,)


def test_acls_of_a_target_without_its_lun_get_the_lun_mapped_again():
    s = spec(initiators=[INI_A, INI_B])
    obs = applied(s)
    obs = dataclasses.replace(obs, target=dataclasses.replace(obs.target, lun_backstore=None))
    p = plan_export(obs, s, NUM)
    assert p.create_lun and p.map_lun == (INI_A, INI_B) and not p.add_acls


def test_demo_mode_is_turned_off():
    obs = applied(spec())
    obs = dataclasses.replace(obs, target=dataclasses.replace(obs.target, generate_node_acls=True))
    assert plan_export(obs, spec(), NUM).set_generate_node_acls_off


# Property: whatever configfs holds for an IQN meshblock manages, one plan reaches the spec and a second
# plan has nothing left to do.

def simulate(obs: Observed, s: ExportSpec, p: ExportPlan, number) -> Observed:
    """Apply ``p`` to ``obs`` the way meshblock.target.lio does, on the records."""
    bs = obs.backstore
    if p.create_backstore:
        bs = BackstoreState(backstore_name(s.iqn), s.device, number)
    tgt = obs.target or TargetState(has_tpg=False)
    if not tgt.has_tpg:
        tgt = TargetState()
    acls = {a.initiator: a for a in tgt.acls}
    for i in p.add_acls:
        acls[i] = AclState(i, mapped=False)
    for i in p.set_auth:
        acls[i] = dataclasses.replace(acls[i], auth=s.acl_auth())
    if p.create_lun:
        acls = {i: dataclasses.replace(a, mapped=False) for i, a in acls.items()}
    for i in p.map_lun:
        acls[i] = dataclasses.replace(acls[i], mapped=True)
    for i in p.remove_acls:
        del acls[i]
    portals = (set(tgt.portals) | set(p.add_portals)) - set(p.remove_portals)
    tgt = TargetState(
        lun_backstore=backstore_name(s.iqn) if p.create_lun else tgt.lun_backstore,
        portals=tuple(sorted(portals)), acls=tuple(sorted(acls.values(), key=lambda a: a.initiator)),
        authentication=tgt.authentication if p.set_authentication is None else p.set_authentication,
        generate_node_acls=False if p.set_generate_node_acls_off else tgt.generate_node_acls,
        enabled=True if p.enable else tgt.enabled)
    return Observed(s.iqn, bs, tgt)


initiators = st.lists(st.sampled_from([INI_A, INI_B, INI_C]), unique=True)
chaps = st.sampled_from([None, CHAP, Chap("other", "other-secret-1")])
portal_sets = st.lists(st.sampled_from([Portal(), Portal("10.0.0.1"), Portal("10.0.0.1", 3261)]), unique=True)
auths = st.sampled_from([AclAuth(), spec().acl_auth(), AclAuth("x", "y")])


@st.composite
def observed(draw) -> Observed:
    bs = draw(st.sampled_from([None, BackstoreState(backstore_name(IQN), DEV, NUM)]))
    if draw(st.booleans()):
        return Observed(IQN, bs, None)
    acls = tuple(AclState(i, draw(auths), draw(st.booleans())) for i in draw(initiators))
    lun = backstore_name(IQN) if bs is not None and draw(st.booleans()) else None
    tgt = TargetState(has_tpg=draw(st.booleans()), lun_backstore=lun, portals=tuple(sorted(draw(portal_sets))),
                      acls=acls, authentication=draw(st.booleans()), generate_node_acls=draw(st.booleans()),
                      enabled=draw(st.booleans()))
    if not tgt.has_tpg:
        tgt = TargetState(has_tpg=False)
    return Observed(IQN, bs, tgt)


@settings(max_examples=300, deadline=None)
@given(obs=observed(), ini=initiators.filter(bool), chap=chaps, mutual=st.booleans(), portals=portal_sets)
def test_one_plan_converges(obs, ini, chap, mutual, portals):
    s = spec(initiators=ini, chap=chap, mutual_chap=MUTUAL if chap and mutual else None, portals=portals)
    after = simulate(obs, s, plan_export(obs, s, NUM), NUM)
    assert plan_export(after, s, NUM).empty
    info = ExportInfo.from_observed(after)
    assert info.initiators == s.initiators and info.portals == s.portals and info.enabled
    assert info.chap_user == (s.chap.user if s.chap else "")


# -- preconditions (no kernel needed to check the messages) ----------------------------------------------

def test_a_missing_kernel_module_is_named(tmp_path: Path):
    (tmp_path / "module").mkdir()
    with pytest.raises(LioUnavailable) as e:
        lio.ensure_modules(sysfs=str(tmp_path), configfs="/", modprobe="false")
    assert e.value.module == "target_core_mod"
    assert "load target_core_mod" in str(e.value) and "CONFIG_TARGET_CORE" in str(e.value)
    for loaded in ("target_core_mod", "target_core_iblock"):
        (tmp_path / "module" / loaded).mkdir()
    with pytest.raises(LioUnavailable) as e:
        lio.ensure_modules(sysfs=str(tmp_path), configfs="/", modprobe="false")
    assert e.value.module == "iscsi_target_mod"
    (tmp_path / "module" / "iscsi_target_mod").mkdir()
    lio.ensure_modules(sysfs=str(tmp_path), configfs="/", modprobe="false")


def test_configfs_not_mounted_is_named(tmp_path: Path):
    for m in ("configfs", "target_core_mod", "target_core_iblock", "iscsi_target_mod"):
        (tmp_path / "module" / m).mkdir(parents=True)
    (tmp_path / "config").mkdir()
    with pytest.raises(LioUnavailable) as e:
        lio.ensure_modules(sysfs=str(tmp_path), configfs=str(tmp_path / "config"), modprobe="false", mount="false")
    assert e.value.module == "configfs" and "modprobe configfs" in str(e.value)


def test_devices_that_are_missing_or_not_block_devices_are_refused(tmp_path: Path):
    with pytest.raises(DeviceMissing, match="does not exist"):
        lio.device_number(str(tmp_path / "nvme9n9"))
    with pytest.raises(DeviceMissing, match="not a block device"):
        lio.device_number("/dev/null")


def test_without_rtslib_the_error_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch):
    try:
        import rtslib_fb  # noqa: F401
        pytest.skip("rtslib-fb is importable here")
    except ImportError:
        pass
    monkeypatch.setattr(lio, "DISTRO_SITE", "/nonexistent")
    with pytest.raises(LioUnavailable, match="python3-rtslib-fb"):
        lio.import_rtslib()


async def test_async_calls_do_their_configfs_io_off_the_event_loop(monkeypatch: pytest.MonkeyPatch):
    loop_thread = threading.current_thread()
    seen = []

    def record(name):
        def call(*args, **kw):
            seen.append((name, threading.current_thread() is not loop_thread, args, kw))
            return name
        return call

    for name in ("export", "unexport", "list_exports"):
        monkeypatch.setattr(lio, name, record(name))
    assert await lio.export_async(DEV, IQN, iter([INI_A]), chap=CHAP) == "export"
    assert await lio.unexport_async(IQN) == "unexport"
    assert await lio.list_exports_async() == "list_exports"
    assert seen == [("export", True, (DEV, IQN, [INI_A]), {"chap": CHAP}), ("unexport", True, (IQN,), {}),
                    ("list_exports", True, (), {})]
