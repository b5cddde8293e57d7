"""The iSCSI gateway's records, validation and change plan: pure functions, no configfs, no rtslib.

:mod:`meshblock.target.lio` reads what LIO has (an :class:`Observed`), asks
:func:`plan_export` what to change to reach an :class:`ExportSpec`, and applies
the resulting :class:`ExportPlan`.  Keeping the decision here lets it be tested
without a kernel.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, MeshblockError, NotFound

DEFAULT_PORT = 3260
LUN_ID = 0           # every export is one LUN: the device
TPG_TAG = 1          # and one target portal group
BACKSTORE_PREFIX = "meshblock-"
MAX_NAME_BYTES = 223           # RFC 3720 3.2.6.1: an iSCSI name is at most 223 bytes
MAX_CHAP_LEN = 255             # the longest value LIO's auth attributes take
MIN_CHAP_SECRET_LEN = 12       # 96 bits, what RFC 3720 8.2.1 asks of a CHAP secret (and Windows requires)


# -- errors ---------------------------------------------------------------------------------------------

class LioError(MeshblockError):
    """Something the iSCSI gateway could not do; the subclasses say what."""


class InvalidExport(LioError, InvalidArgument):
    """A parameter of an export is malformed; ``field`` names it."""


class DeviceMissing(LioError, NotFound):
    """The device to export does not exist or is not a block device."""


class DeviceBusy(LioError, FailedPrecondition):
    """The device is open exclusively elsewhere (mounted, in use by another backstore, ...)."""


class ExportConflict(LioError, AlreadyExists):
    """The IQN is exported already with something that cannot be reconciled (another device, a foreign LUN)."""


class LioUnavailable(LioError, FailedPrecondition):
    """LIO cannot be driven here: rtslib-fb, configfs or a kernel module is missing, or not root."""

    def __init__(self, message: str, module: str = ""):
        super().__init__(message)
        self.module = module


# -- names ----------------------------------------------------------------------------------------------

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_IQN_RE = re.compile(rf"^iqn\.(\d{{4}})-(\d{{2}})\.{_LABEL}(?:\.{_LABEL})*(?::[a-z0-9.:-]*)?$")
_EUI_RE = re.compile(r"^eui\.[0-9a-f]{16}$")
_NAA_RE = re.compile(r"^naa\.(?:[0-9a-f]{16}|[0-9a-f]{32})$")


def normalize_iscsi_name(name: str, field_name: str = "iqn") -> str:
    """``name`` as LIO stores it (lower case), or :class:`InvalidExport` saying what is wrong.

    Accepts the three formats of RFC 3720 3.2.6.3 (``iqn.YYYY-MM.reversed.domain[:anything]``,
    ``eui.`` + 16 hex digits, ``naa.`` + 16 or 32 hex digits).  iSCSI names compare
    case-insensitively (RFC 3722 maps them to lower case), and only letters, digits,
    ``-``, ``.`` and ``:`` are allowed in their ASCII form.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidExport(field_name, "an iSCSI name is required")
    n = name.strip().lower()
    if len(n.encode()) > MAX_NAME_BYTES:
        raise InvalidExport(field_name, f"{name!r} is longer than {MAX_NAME_BYTES} bytes")
    bad = sorted({c for c in n if not (c.isascii() and (c.isalnum() or c in "-.:"))})
    if bad:
        raise InvalidExport(field_name, f"{name!r} contains {''.join(bad)!r}; iSCSI names allow letters, "
                                        "digits, '-', '.' and ':'")
    if n.startswith("iqn."):
        m = _IQN_RE.match(n)
        if not m:
            raise InvalidExport(field_name, f"{name!r} is not iqn.YYYY-MM.reversed.domain[:identifier] "
                                            "(example: iqn.2026-11.io.meshblock:gw1)")
        if not 1 <= int(m.group(2)) <= 12:
            raise InvalidExport(field_name, f"{name!r}: month {m.group(2)} is not 01-12")
        return n
    if n.startswith("eui."):
        if not _EUI_RE.match(n):
            raise InvalidExport(field_name, f"{name!r}: an eui. name is 16 hex digits")
        return n
    if n.startswith("naa."):
        if not _NAA_RE.match(n):
            raise InvalidExport(field_name, f"{name!r}: a naa. name is 16 or 32 hex digits")
        return n
    raise InvalidExport(field_name, f"{name!r} does not start with iqn., eui. or naa.")


def backstore_name(iqn: str) -> str:
    """The block backstore an export of ``iqn`` uses: derived from the IQN, so a retry finds it again."""
    return BACKSTORE_PREFIX + hashlib.sha256(iqn.encode()).hexdigest()[:16]


# -- the desired state ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chap:
    """A CHAP name and secret."""

    user: str
    secret: str = field(repr=False)

    def validate(self, field_name: str) -> None:
        if not self.user or len(self.user) > MAX_CHAP_LEN or not _printable(self.user):
            raise InvalidExport(f"{field_name}.user",
                                f"1 to {MAX_CHAP_LEN} printable characters without spaces")
        if not MIN_CHAP_SECRET_LEN <= len(self.secret) <= MAX_CHAP_LEN or not _printable(self.secret):
            raise InvalidExport(f"{field_name}.secret",
                                f"{MIN_CHAP_SECRET_LEN} to {MAX_CHAP_LEN} printable characters without spaces "
                                f"(got {len(self.secret)})")


def _printable(s: str) -> bool:
    return s.isascii() and s.isprintable() and not any(c.isspace() for c in s) and s != "NULL"


@dataclass(frozen=True, order=True)
class Portal:
    """An address and TCP port the target listens on (``0.0.0.0`` is every IPv4 address)."""

    address: str = "0.0.0.0"
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Portal:
        """``ADDR``, ``ADDR:PORT``, ``[V6]`` or ``[V6]:PORT``."""
        t = text.strip()
        port = DEFAULT_PORT
        if t.startswith("["):
            addr, sep, rest = t[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise InvalidExport("portal", f"{text!r} is not [IPv6]:PORT")
            if rest:
                port = _port(rest[1:], text)
        elif t.count(":") == 1:
            addr, _, p = t.partition(":")
            port = _port(p, text)
        elif ":" in t:
            addr = t  # a bare IPv6 address
        else:
            addr = t
        if not addr:
            raise InvalidExport("portal", f"{text!r} has no address")
        return cls(addr, port)

    def validate(self) -> None:
        import ipaddress

        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            raise InvalidExport("portal.address", f"{self.address!r} is not an IP address") from None
        if not 1 <= self.port <= 65535:
            raise InvalidExport("portal.port", f"{self.port} is not 1-65535")


def _port(p: str, text: str) -> int:
    if not p.isdigit():
        raise InvalidExport("portal", f"{text!r}: port {p!r} is not a number")
    return int(p)


@dataclass(frozen=True)
class ExportSpec:
    """What an export should be: one device as LUN 0 of ``iqn``, reachable by ``initiators`` only."""

    iqn: str
    device: str
    initiators: tuple[str, ...]
    chap: Chap | None = None
    mutual_chap: Chap | None = None
    portals: tuple[Portal, ...] = (Portal(),)

    @classmethod
    def build(cls, *, iqn: str, device: str, initiators: Iterable[str], chap: Chap | tuple[str, str] | None = None,
              mutual_chap: Chap | tuple[str, str] | None = None,
              portals: Sequence[Portal] | Portal | None = None) -> ExportSpec:
        """Validate and normalise (names lower case, initiators and portals sorted and unique)."""
        if isinstance(chap, tuple):
            chap = Chap(*chap)
        if isinstance(mutual_chap, tuple):
            mutual_chap = Chap(*mutual_chap)
        if isinstance(portals, Portal):
            portals = (portals,)
        spec = cls(iqn=normalize_iscsi_name(iqn, "iqn"), device=device,
                   initiators=tuple(sorted({normalize_iscsi_name(i, "initiators") for i in initiators})),
                   chap=chap, mutual_chap=mutual_chap, portals=tuple(sorted(set(portals or (Portal(),)))))
        spec.validate()
        return spec

    def validate(self) -> None:
        if not self.device or not self.device.startswith("/"):
            raise InvalidExport("device", f"{self.device!r} is not an absolute path to a block device")
        if not self.initiators:
            raise InvalidExport("initiators", "at least one initiator IQN is required (the ACL is the allowlist)")
        if self.chap is not None:
            self.chap.validate("chap")
        if self.mutual_chap is not None:
            if self.chap is None:
                raise InvalidExport("mutual_chap", "mutual CHAP needs CHAP (the target answers the initiator's "
                                                   "challenge only after the initiator has answered its own)")
            self.mutual_chap.validate("mutual_chap")
            if self.mutual_chap.secret == self.chap.secret:
                raise InvalidExport("mutual_chap.secret", "must differ from the CHAP secret (RFC 3720 8.2.1: a "
                                                          "secret that authenticates initiators must not "
                                                          "authenticate targets)")
        if not self.portals:
            raise InvalidExport("portals", "at least one portal is required")
        for p in self.portals:
            p.validate()

    def acl_auth(self) -> AclAuth:
        """The credentials every ACL of this export carries."""
        return AclAuth(userid=self.chap.user if self.chap else "", password=self.chap.secret if self.chap else "",
                       mutual_userid=self.mutual_chap.user if self.mutual_chap else "",
                       mutual_password=self.mutual_chap.secret if self.mutual_chap else "")


# -- what LIO has ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AclAuth:
    """The CHAP attributes of one node ACL (empty strings when unset)."""

    userid: str = ""
    password: str = field(default="", repr=False)
    mutual_userid: str = ""
    mutual_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class AclState:
    initiator: str
    auth: AclAuth = AclAuth()
    mapped: bool = True            # mapped LUN 0 -> TPG LUN 0 exists
    logged_in: bool = False        # a session of this initiator is up


@dataclass(frozen=True)
class BackstoreState:
    name: str
    device: str                                 # the path the backstore was configured with
    device_number: tuple[int, int] | None      # (major, minor) of the device LIO has open


@dataclass(frozen=True)
class TargetState:
    has_tpg: bool = True
    lun_backstore: str | None = None           # the backstore behind TPG LUN 0, if any
    portals: tuple[Portal, ...] = ()
    acls: tuple[AclState, ...] = ()
    authentication: bool = False               # the TPG demands CHAP
    generate_node_acls: bool = False           # the TPG lets any initiator in (demo mode)
    enabled: bool = False


@dataclass(frozen=True)
class Observed:
    """What configfs holds for one IQN: our backstore for it, and the target."""

    iqn: str
    backstore: BackstoreState | None = None
    target: TargetState | None = None


# -- the plan -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportPlan:
    """The changes that turn an :class:`Observed` into an :class:`ExportSpec`, in the order they apply."""

    delete_backstore: bool = False             # ours, unused, but on another device: recreate it
    create_backstore: bool = False
    create_target: bool = False
    create_lun: bool = False
    set_generate_node_acls_off: bool = False
    add_acls: tuple[str, ...] = ()
    set_auth: tuple[str, ...] = ()             # ACLs whose CHAP attributes are written (new ones too)
    map_lun: tuple[str, ...] = ()              # ACLs that get mapped LUN 0 (new ones too)
    set_authentication: bool | None = None     # the TPG's new "authentication" attribute
    remove_acls: tuple[str, ...] = ()
    add_portals: tuple[Portal, ...] = ()
    remove_portals: tuple[Portal, ...] = ()
    enable: bool = False

    @property
    def empty(self) -> bool:
        return not self.describe()

    def describe(self) -> list[str]:
        """One line per change, for people (secrets never appear)."""
        lines = []
        if self.delete_backstore:
            lines.append("delete stale backstore")
        if self.create_backstore:
            lines.append("create block backstore")
        if self.create_target:
            lines.append("create target")
        if self.create_lun:
            lines.append("map the device as LUN 0")
        if self.set_generate_node_acls_off:
            lines.append("enforce ACLs")
        lines += [f"add ACL {i}" for i in self.add_acls]
        lines += [f"set CHAP of {i}" for i in self.set_auth if i not in self.add_acls]
        lines += [f"map LUN 0 for {i}" for i in self.map_lun if i not in self.add_acls]
        if self.set_authentication is not None:
            lines.append("require CHAP" if self.set_authentication else "stop requiring CHAP")
        lines += [f"remove ACL {i}" for i in self.remove_acls]
        lines += [f"add portal {p}" for p in self.add_portals]
        lines += [f"remove portal {p}" for p in self.remove_portals]
        if self.enable:
            lines.append("enable the portal group")
        return lines


def plan_export(current: Observed, spec: ExportSpec, device_number: tuple[int, int] | None) -> ExportPlan:
    """What to change so that ``current`` exports ``spec``; :class:`ExportConflict` where it cannot be.

    ``device_number`` is (major, minor) of ``spec.device`` as it is now; devices are
    compared by number, so ``/dev/nvme0n1`` and a ``/dev/disk/by-id`` link to it are the same.
    """
    ours = backstore_name(spec.iqn)
    bs, tgt = current.backstore, current.target
    if tgt is not None and tgt.lun_backstore not in (None, ours):
        raise ExportConflict(f"{spec.iqn} exists with LUN {LUN_ID} on backstore {tgt.lun_backstore!r}, "
                             "which meshblock did not create; remove it with targetcli or choose another IQN")
    same_device = bs is not None and _same_device(bs, spec.device, device_number)
    in_use = tgt is not None and tgt.lun_backstore == ours
    if bs is not None and not same_device and in_use:
        raise ExportConflict(f"{spec.iqn} already exports {bs.device}; unexport it before exporting "
                             f"{spec.device} under the same IQN")
    delete_bs = bs is not None and not same_device
    create_bs = bs is None or delete_bs

    want_auth = spec.acl_auth()
    have = {a.initiator: a for a in tgt.acls} if tgt else {}
    add = tuple(i for i in spec.initiators if i not in have)
    remove = tuple(sorted(i for i in have if i not in spec.initiators))
    kept = [have[i] for i in spec.initiators if i in have]
    create_lun = tgt is None or not tgt.has_tpg or tgt.lun_backstore is None
    set_auth = add + tuple(a.initiator for a in kept if a.auth != want_auth)
    map_lun = add + tuple(a.initiator for a in kept if create_lun or not a.mapped)
    have_portals = set(tgt.portals) if tgt else set()
    want_chap = spec.chap is not None
    return ExportPlan(
        delete_backstore=delete_bs,
        create_backstore=create_bs,
        create_target=tgt is None,
        create_lun=create_lun,
        set_generate_node_acls_off=tgt is None or tgt.generate_node_acls or not tgt.has_tpg,
        add_acls=add,
        set_auth=set_auth,
        map_lun=map_lun,
        set_authentication=want_chap if tgt is None or not tgt.has_tpg or tgt.authentication != want_chap else None,
        remove_acls=remove,
        add_portals=tuple(sorted(set(spec.portals) - have_portals)),
        remove_portals=tuple(sorted(have_portals - set(spec.portals))),
        enable=tgt is None or not tgt.enabled or not tgt.has_tpg,
    )


def _same_device(bs: BackstoreState, device: str, number: tuple[int, int] | None) -> bool:
    if bs.device_number is not None and number is not None:
        return bs.device_number == number
    return bs.device == device


# -- what list_exports shows ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportInfo:
    """One export as the gateway sees it (no secrets)."""

    iqn: str
    device: str
    backstore: str
    portals: tuple[Portal, ...]
    initiators: tuple[str, ...]
    chap_user: str
    mutual_chap_user: str
    sessions: tuple[str, ...]       # initiators logged in now
    enabled: bool

    @classmethod
    def from_observed(cls, obs: Observed) -> ExportInfo:
        tgt = obs.target or TargetState(has_tpg=False)
        users = sorted({a.auth.userid for a in tgt.acls if a.auth.userid})
        mutual = sorted({a.auth.mutual_userid for a in tgt.acls if a.auth.mutual_userid})
        return cls(iqn=obs.iqn, device=obs.backstore.device if obs.backstore else "",
                   backstore=obs.backstore.name if obs.backstore else "", portals=tgt.portals,
                   initiators=tuple(sorted(a.initiator for a in tgt.acls)),
                   chap_user=",".join(users) if tgt.authentication else "", mutual_chap_user=",".join(mutual),
                   sessions=tuple(sorted(a.initiator for a in tgt.acls if a.logged_in)), enabled=tgt.enabled)

    def to_dict(self) -> dict:
        return {"iqn": self.iqn, "device": self.device, "backstore": self.backstore,
                "portals": [str(p) for p in self.portals], "initiators": list(self.initiators),
                "chap_user": self.chap_user, "mutual_chap_user": self.mutual_chap_user,
                "sessions": list(self.sessions), "enabled": self.enabled}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`meshblock.target.lio.export` did: the export as it is now and the changes it made."""

    export: ExportInfo
    changes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)
