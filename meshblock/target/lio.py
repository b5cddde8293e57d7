"""iSCSI gateway: re-export a block device this host has attached as an iSCSI target of the kernel's LIO.

For initiators that only speak iSCSI: a meshblock volume attached here over
NVMe/TCP (``/dev/nvmeXnY``, or better its ``/dev/disk/by-id`` link) becomes LUN 0
of an iSCSI target, behind an ACL of initiator IQNs and optional (mutual) CHAP.

    export(device, iqn, initiators, chap=..., mutual_chap=..., portals=...)
    unexport(iqn)
    list_exports()

All three are idempotent.  An export with the same parameters changes nothing; one
with other initiators, credentials or portals is reconciled in place (ACLs added
and removed); another device under an exported IQN is refused.  Nothing is kept
outside configfs: the backstore's name is derived from the IQN, so a retry after a
crash finds what the interrupted call created.

Driven through rtslib-fb, the distribution's package (``python3-rtslib-fb`` on
Debian and Ubuntu), imported only when a call needs it; see docs/dependencies.md.
Every call does blocking configfs I/O: asyncio code uses the ``*_async`` variants,
which run it in a worker thread.  Needs root.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from types import ModuleType
from typing import Any

from .lio_model import (
    LUN_ID,
    TPG_TAG,
    AclAuth,
    AclState,
    BackstoreState,
    Chap,
    DeviceBusy,
    DeviceMissing,
    ExportConflict,
    ExportInfo,
    ExportPlan,
    ExportResult,
    ExportSpec,
    LioError,
    LioUnavailable,
    Observed,
    Portal,
    TargetState,
    backstore_name,
    normalize_iscsi_name,
    plan_export,
)

__all__ = [
    "Chap",
    "DeviceBusy",
    "DeviceMissing",
    "ExportConflict",
    "ExportInfo",
    "ExportResult",
    "LioError",
    "LioUnavailable",
    "Portal",
    "export",
    "export_async",
    "list_exports",
    "list_exports_async",
    "unexport",
    "unexport_async",
]

log = logging.getLogger(__name__)

CONFIGFS = "/sys/kernel/config"
SYSFS = "/sys"
RTSLIB_DBROOT = "/etc/rtslib-fb-target"   # rtslib-fb refuses to start when this directory is missing
DISTRO_SITE = "/usr/lib/python3/dist-packages"
LOCK_FILE = "/run/meshblock/lio.lock"
# Kernel modules, in load order, with the kernel option that builds each.
MODULES: tuple[tuple[str, str], ...] = (
    ("target_core_mod", "CONFIG_TARGET_CORE"),
    ("target_core_iblock", "CONFIG_TCM_IBLOCK"),
    ("iscsi_target_mod", "CONFIG_ISCSI_TARGET"),
)


# -- the public API -------------------------------------------------------------------------------------

def export(device: str, iqn: str, initiators: Iterable[str], *, chap: Chap | tuple[str, str] | None = None,
           mutual_chap: Chap | tuple[str, str] | None = None,
           portals: Sequence[Portal] | Portal | None = None) -> ExportResult:
    """Export ``device`` as LUN 0 of target ``iqn`` to ``initiators`` only; idempotent.

    ``chap`` (user, secret) makes the target demand CHAP from every initiator;
    ``mutual_chap`` makes it also prove itself to them.  ``portals`` default to
    0.0.0.0:3260.  Returns the export as it is afterwards and the changes made
    (none when it already matched).
    """
    spec = ExportSpec.build(iqn=iqn, device=device, initiators=initiators, chap=chap, mutual_chap=mutual_chap,
                            portals=portals)
    number = device_number(spec.device)
    rts, root = _prepare()
    with _locked():
        obs = _observe(rts, root, spec.iqn)
        plan = plan_export(obs, spec, number)
        if plan.empty:
            return ExportResult(ExportInfo.from_observed(obs))
        if plan.create_backstore:
            _check_not_busy(spec.device)
        _apply(rts, root, spec, plan)
        after = _observe(rts, root, spec.iqn)
    changes = tuple(plan.describe())
    log.info("iscsi export iqn=%s device=%s changes=%s", spec.iqn, spec.device, "; ".join(changes))
    return ExportResult(ExportInfo.from_observed(after), changes)


def unexport(iqn: str) -> bool:
    """Remove the export of ``iqn`` (target, its ACLs and portals, then the backstore); True if there was one.

    Initiators logged in lose their sessions.  A target of that name which
    meshblock did not create is left alone (:class:`ExportConflict`).
    """
    iqn = normalize_iscsi_name(iqn, "iqn")
    rts, root = _prepare()
    with _locked():
        obs = _observe(rts, root, iqn)
        if obs.target is not None and not _is_ours(obs):
            raise ExportConflict(f"{iqn} was not exported by meshblock (its LUN {LUN_ID} is on backstore "
                                 f"{obs.target.lun_backstore!r}); not removing it")
        if obs.target is None and obs.backstore is None:
            return False
        with _rtslib_errors(rts, f"unexport {iqn}"):
            if obs.target is not None:
                rts.Target(rts.FabricModule("iscsi"), iqn, mode="lookup").delete()
            so = _backstore_object(root, backstore_name(iqn))
            if so is not None:
                so.delete()
    log.info("iscsi unexport iqn=%s device=%s", iqn, obs.backstore.device if obs.backstore else "")
    return True


def list_exports() -> list[ExportInfo]:
    """The exports meshblock made on this host, by IQN (other LIO targets are not shown)."""
    rts, root = _prepare()
    found = []
    with _rtslib_errors(rts, "list iSCSI targets"):
        wwns = sorted(t.wwn for t in rts.FabricModule("iscsi").targets)
    for wwn in wwns:
        obs = _observe(rts, root, wwn)
        if _is_ours(obs):
            found.append(ExportInfo.from_observed(obs))
    return found


async def export_async(device: str, iqn: str, initiators: Iterable[str], **kw: Any) -> ExportResult:
    """:func:`export` off the event loop."""
    return await asyncio.to_thread(export, device, iqn, list(initiators), **kw)


async def unexport_async(iqn: str) -> bool:
    """:func:`unexport` off the event loop."""
    return await asyncio.to_thread(unexport, iqn)


async def list_exports_async() -> list[ExportInfo]:
    """:func:`list_exports` off the event loop."""
    return await asyncio.to_thread(list_exports)


# -- devices --------------------------------------------------------------------------------------------

def device_number(path: str) -> tuple[int, int]:
    """(major, minor) of block device ``path`` (links followed); :class:`DeviceMissing` otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DeviceMissing(f"device {path} does not exist (is the volume attached on this host?)") from None
    except OSError as e:
        raise DeviceMissing(f"device {path}: {e.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise DeviceMissing(f"{path} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _check_not_busy(path: str) -> None:
    """LIO opens the device exclusively: say so clearly when someone else holds it (mounted, in a RAID...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_EXCL | os.O_NONBLOCK)
    except OSError as e:
        holders = ""
        with contextlib.suppress(OSError):
            name = os.path.basename(os.path.realpath(path))
            held = sorted(os.listdir(f"{SYSFS}/class/block/{name}/holders"))
            holders = f"; held by {', '.join(held)}" if held else ""
        raise DeviceBusy(f"device {path} is in use ({e.strerror}): mounted, or open exclusively by another "
                         f"program or LIO backstore{holders}") from None
    os.close(fd)


# -- preconditions --------------------------------------------------------------------------------------

def import_rtslib() -> ModuleType:
    """rtslib_fb; from the distribution's site directory when this interpreter (a virtualenv) lacks it."""
    try:
        return importlib.import_module("rtslib_fb")
    except ImportError:
        pass
    if os.path.isdir(os.path.join(DISTRO_SITE, "rtslib_fb")) and DISTRO_SITE not in sys.path:
        sys.path.append(DISTRO_SITE)  # last, so this environment's own packages still win
        importlib.invalidate_caches()
        try:
            return importlib.import_module("rtslib_fb")
        except ImportError as e:
            raise LioUnavailable(f"rtslib-fb is installed in {DISTRO_SITE} but does not import here: {e}") from None
    raise LioUnavailable("rtslib-fb is not installed: install the distribution's package (python3-rtslib-fb on "
                         "Debian and Ubuntu, python3-rtslib on Fedora and RHEL)")


def ensure_modules(sysfs: str = SYSFS, configfs: str = CONFIGFS, modprobe: str = "modprobe",
                   mount: str = "mount") -> None:
    """configfs mounted and the LIO modules loaded, or :class:`LioUnavailable` naming what is missing."""
    if not os.path.ismount(configfs):
        _load("configfs", "CONFIG_CONFIGFS_FS", sysfs, modprobe)
        r = _run([mount, "-t", "configfs", "configfs", configfs])
        if r.returncode != 0 and not os.path.ismount(configfs):
            raise LioUnavailable(f"configfs is not mounted at {configfs} and mounting it failed "
                                 f"({r.stderr.strip() or r.returncode}); load the configfs module "
                                 f"(modprobe configfs) and mount it there", module="configfs")
    for module, option in MODULES:
        _load(module, option, sysfs, modprobe)


def _load(module: str, option: str, sysfs: str, modprobe: str) -> None:
    if os.path.isdir(f"{sysfs}/module/{module}"):
        return
    r = _run([modprobe, module])
    if r.returncode != 0:
        raise LioUnavailable(f"kernel module {module} is not loaded and `modprobe {module}` failed "
                             f"({r.stderr.strip() or 'exit ' + str(r.returncode)}); load {module} "
                             f"(the kernel needs {option})", module=module)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: command not found")


def _prepare() -> tuple[ModuleType, Any]:
    if os.geteuid() != 0:
        raise LioUnavailable("configuring LIO needs root")
    rts = import_rtslib()
    ensure_modules()
    os.makedirs(RTSLIB_DBROOT, exist_ok=True)
    try:
        return rts, rts.RTSRoot()
    except rts.RTSLibError as e:
        raise LioUnavailable(f"LIO is not usable: {e}") from None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One change at a time on this host (two exports racing would both see 'absent' and both create)."""
    os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _rtslib_errors(rts: ModuleType, doing: str) -> Iterator[None]:
    try:
        yield
    except rts.RTSLibError as e:
        raise LioError(f"{doing}: {e}") from e
    except OSError as e:
        raise LioError(f"{doing}: {e}") from e


# -- reading configfs -----------------------------------------------------------------------------------

def _backstore_object(root: Any, name: str) -> Any | None:
    for so in root.storage_objects:
        if so.plugin == "block" and so.name == name:
            return so
    return None


def _observe(rts: ModuleType, root: Any, iqn: str) -> Observed:
    with _rtslib_errors(rts, f"read the configuration of {iqn}"):
        so = _backstore_object(root, backstore_name(iqn))
        bs = None
        if so is not None:
            number = None
            with contextlib.suppress(Exception):
                number = (int(so.major), int(so.minor))
            bs = BackstoreState(name=so.name, device=so.udev_path, device_number=number)
        return Observed(iqn=iqn, backstore=bs, target=_read_target(rts, iqn))


def _read_target(rts: ModuleType, iqn: str) -> TargetState | None:
    try:
        target = rts.Target(rts.FabricModule("iscsi"), iqn, mode="lookup")
    except rts.RTSLibNotInCFS:
        return None
    try:
        tpg = rts.TPG(target, TPG_TAG, mode="lookup")
    except rts.RTSLibNotInCFS:
        return TargetState(has_tpg=False)
    lun_backstore = None
    for lun in tpg.luns:
        if lun.lun == LUN_ID:
            lun_backstore = lun.storage_object.name
    acls = []
    for acl in tpg.node_acls:
        auth = AclAuth(userid=acl.chap_userid or "", password=acl.chap_password or "",
                       mutual_userid=acl.chap_mutual_userid or "", mutual_password=acl.chap_mutual_password or "")
        session = acl.session
        acls.append(AclState(initiator=acl.node_wwn, auth=auth,
                             mapped=any(m.mapped_lun == LUN_ID for m in acl.mapped_luns),
                             logged_in=bool(session and session.get("state") == "LOGGED_IN")))
    return TargetState(
        has_tpg=True, lun_backstore=lun_backstore,
        portals=tuple(sorted(Portal(_from_rtslib_address(p.ip_address), p.port) for p in tpg.network_portals)),
        acls=tuple(sorted(acls, key=lambda a: a.initiator)),
        authentication=tpg.get_attribute("authentication").strip() == "1",
        generate_node_acls=tpg.get_attribute("generate_node_acls").strip() == "1",
        enabled=tpg.enable)


def _is_ours(obs: Observed) -> bool:
    if obs.target is None:
        return False
    lun = obs.target.lun_backstore
    return lun == backstore_name(obs.iqn) or (lun is None and obs.backstore is not None)


def _to_rtslib_address(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _from_rtslib_address(address: str) -> str:
    return address[1:-1] if address.startswith("[") and address.endswith("]") else address


# -- changing configfs ----------------------------------------------------------------------------------

def _apply(rts: ModuleType, root: Any, spec: ExportSpec, plan: ExportPlan) -> None:
    """Carry out ``plan``: storage first, access rules before the portal group is enabled."""
    name = backstore_name(spec.iqn)
    with _rtslib_errors(rts, f"export {spec.device} as {spec.iqn}"):
        if plan.delete_backstore:
            old = _backstore_object(root, name)
            if old is not None:
                old.delete()
        if plan.create_backstore:
            so = rts.BlockStorageObject(name, dev=spec.device)
        else:
            so = _backstore_object(root, name)
        target = rts.Target(rts.FabricModule("iscsi"), spec.iqn, mode="any")
        tpg = rts.TPG(target, TPG_TAG, mode="any")
        if plan.set_generate_node_acls_off:
            tpg.set_attribute("generate_node_acls", "0")   # only initiators with an ACL get in
        lun = rts.LUN(tpg, LUN_ID, so) if plan.create_lun else rts.LUN(tpg, LUN_ID)
        for initiator in plan.add_acls:
            rts.NodeACL(tpg, initiator, mode="any")
        want = spec.acl_auth()
        for initiator in plan.set_auth:
            acl = rts.NodeACL(tpg, initiator, mode="lookup")
            acl.chap_userid = want.userid
            acl.chap_password = want.password
            acl.chap_mutual_userid = want.mutual_userid
            acl.chap_mutual_password = want.mutual_password
        for initiator in plan.map_lun:
            acl = rts.NodeACL(tpg, initiator, mode="lookup")
            if not any(m.mapped_lun == LUN_ID for m in acl.mapped_luns):
                rts.MappedLUN(acl, LUN_ID, lun)
        if plan.set_authentication is not None:
            tpg.set_attribute("authentication", "1" if plan.set_authentication else "0")
        for initiator in plan.remove_acls:
            rts.NodeACL(tpg, initiator, mode="lookup").delete()
        for p in plan.remove_portals:
            rts.NetworkPortal(tpg, _to_rtslib_address(p.address), p.port, mode="lookup").delete()
        for p in plan.add_portals:
            try:
                rts.NetworkPortal(tpg, _to_rtslib_address(p.address), p.port, mode="any")
            except rts.RTSLibError as e:
                raise LioError(f"cannot listen on {p} ({e}): is {p.address} an address of this host, and is "
                               f"port {p.port} free?") from e
        if plan.enable:
            tpg.enable = True
