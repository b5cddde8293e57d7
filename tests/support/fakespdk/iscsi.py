"""A minimal iSCSI target (lib/iscsi/iscsi_rpc.c): portal groups, initiator groups, auth groups,
target nodes and their LUNs, and the start-up options.

Only ``spdk_tgt`` and ``iscsi_tgt`` have it; ``nvmf_tgt`` answers ``Method not found``, as the
real one does.  Errors are SPDK's: ``-32602 Invalid parameters`` for nearly everything, with
SPDK's own texts where it has one.  No initiator ever connects (``iscsi_get_connections`` is
empty).  Real SPDK crashes when a second portal group asks for a host:port another group
already has; the fake refuses it instead (meshblock never asks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .app import (
    DECODE_INVALID,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    STARTUP,
    E,
    F,
    RpcError,
    decode,
    errno_error,
    rpc,
    strerror,
)
from .bdev import Desc

if TYPE_CHECKING:
    from .target import Target

APPS = ("spdk_tgt", "iscsi_tgt")
NODEBASE = "iqn.2016-06.io.spdk"
CHAP_MAX_LEN = 255

# iscsi_opts_init (lib/iscsi/iscsi_subsystem.c); iscsi_set_options may change them before init
DEFAULT_OPTIONS: dict[str, Any] = {
    "node_base": NODEBASE, "max_sessions": 128, "max_connections_per_session": 2, "max_queue_depth": 64,
    "default_time2wait": 2, "default_time2retain": 20, "first_burst_length": 8192, "immediate_data": True,
    "allow_duplicated_isid": False, "error_recovery_level": 0, "nop_timeout": 60, "nop_in_interval": 30,
    "disable_chap": False, "require_chap": False, "mutual_chap": False, "chap_group": 0,
    "max_large_datain_per_connection": 64, "max_r2t_per_connection": 4, "pdu_pool_size": 36864,
    "immediate_data_pool_size": 16384, "data_out_pool_size": 2048}


@dataclass(eq=False)
class TargetNode:
    name: str
    alias: str
    pg_ig_maps: list[dict[str, int]]
    luns: list[dict[str, Any]]
    queue_depth: int
    disable_chap: bool
    require_chap: bool
    mutual_chap: bool
    chap_group: int
    header_digest: bool
    data_digest: bool
    descs: list[Desc] = field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        return {"name": self.name, "alias_name": self.alias,
                "pg_ig_maps": [dict(m) for m in self.pg_ig_maps],
                "luns": [{"bdev_name": lun["bdev_name"], "lun_id": lun["lun_id"]} for lun in self.luns],
                "queue_depth": self.queue_depth, "disable_chap": self.disable_chap,
                "require_chap": self.require_chap, "mutual_chap": self.mutual_chap,
                "chap_group": self.chap_group, "header_digest": self.header_digest,
                "data_digest": self.data_digest}


class IscsiModule:
    def __init__(self, t: Target):
        self.t = t
        self.portal_groups: dict[int, list[dict[str, str]]] = {}
        self.initiator_groups: dict[int, tuple[list[str], list[str]]] = {}
        self.nodes: dict[str, TargetNode] = {}
        self.auth_groups: dict[int, list[dict[str, str]]] = {}
        self.options = dict(DEFAULT_OPTIONS)
        self.options_set = False

    def full_name(self, name: str) -> str:
        if name.lower().startswith(("iqn.", "eui.", "naa.")):
            return name
        return f"{self.options['node_base']}:{name}"

    def node(self, name: str) -> TargetNode | None:
        full = self.full_name(name).lower()
        return next((n for n in self.nodes.values() if n.name.lower() == full), None)

    def drop_maps(self, pg_tag: int | None = None, ig_tag: int | None = None) -> None:
        """iscsi_tgt_node_delete_map: a deleted group leaves every target node's map list."""
        for n in self.nodes.values():
            n.pg_ig_maps = [m for m in n.pg_ig_maps
                            if not ((pg_tag is None or m["pg_tag"] == pg_tag)
                                    and (ig_tag is None or m["ig_tag"] == ig_tag))]

    def _lun_removed(self, desc: Desc) -> None:
        for node in self.nodes.values():
            if desc in node.descs:
                node.descs.remove(desc)
                node.luns = [lun for lun in node.luns if lun["bdev_name"] != desc.bdev.name]


PORTAL = ("object", {"host": F("string", True), "port": F("string", True)})


@rpc("iscsi_create_portal_group", apps=APPS)
def iscsi_create_portal_group(t: Target, params: Any) -> bool:
    spec = {"tag": F("int32", True), "portals": F(("array", PORTAL, 1024), True), "private": F("bool"),
            "wait": F("bool")}
    p = decode(params, spec, DECODE_INVALID)
    if p["tag"] <= 0 or p["tag"] in t.iscsi.portal_groups or not p["portals"]:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    taken = {(x["host"], x["port"]) for pg in t.iscsi.portal_groups.values() for x in pg}
    if any((x["host"], x["port"]) in taken for x in p["portals"]):
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    t.iscsi.portal_groups[p["tag"]] = p["portals"]
    return True


@rpc("iscsi_delete_portal_group", apps=APPS)
def iscsi_delete_portal_group(t: Target, params: Any) -> bool:
    p = decode(params, {"tag": F("int32", True)}, DECODE_INVALID)
    if t.iscsi.portal_groups.pop(p["tag"], None) is None:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    t.iscsi.drop_maps(pg_tag=p["tag"])
    return True


@rpc("iscsi_create_initiator_group", apps=APPS)
def iscsi_create_initiator_group(t: Target, params: Any) -> bool:
    spec = {"tag": F("int32", True), "initiators": F(("array", "string", 256), True),
            "netmasks": F(("array", "string", 256), True)}
    p = decode(params, spec, DECODE_INVALID)
    if p["tag"] <= 0 or p["tag"] in t.iscsi.initiator_groups or not p["initiators"] or not p["netmasks"]:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    t.iscsi.initiator_groups[p["tag"]] = (list(p["initiators"]), list(p["netmasks"]))
    return True


IG_CHANGE = {"tag": F("int32", True), "initiators": F(("array", "string", 256)),
             "netmasks": F(("array", "string", 256))}


@rpc("iscsi_initiator_group_add_initiators", apps=APPS)
def iscsi_initiator_group_add_initiators(t: Target, params: Any) -> bool:
    p = decode(params, IG_CHANGE, DECODE_INVALID)
    ig = t.iscsi.initiator_groups.get(p["tag"])
    names, masks = p.get("initiators", []), p.get("netmasks", [])
    if ig is None or any(n in ig[0] for n in names) or any(m in ig[1] for m in masks) \
            or len(set(names)) != len(names) or len(set(masks)) != len(masks):
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    ig[0].extend(names)
    ig[1].extend(masks)
    return True


@rpc("iscsi_initiator_group_remove_initiators", apps=APPS)
def iscsi_initiator_group_remove_initiators(t: Target, params: Any) -> bool:
    p = decode(params, IG_CHANGE, DECODE_INVALID)
    ig = t.iscsi.initiator_groups.get(p["tag"])
    names, masks = p.get("initiators", []), p.get("netmasks", [])
    if ig is None or any(n not in ig[0] for n in names) or any(m not in ig[1] for m in masks):
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    for n in names:
        ig[0].remove(n)
    for m in masks:
        ig[1].remove(m)
    return True


@rpc("iscsi_delete_initiator_group", apps=APPS)
def iscsi_delete_initiator_group(t: Target, params: Any) -> bool:
    p = decode(params, {"tag": F("int32", True)}, DECODE_INVALID)
    if t.iscsi.initiator_groups.pop(p["tag"], None) is None:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    t.iscsi.drop_maps(ig_tag=p["tag"])
    return True


PG_IG = ("object", {"ig_tag": F("int32", True), "pg_tag": F("int32", True)})
LUN = ("object", {"lun_id": F("int32"), "bdev_name": F("string")})


@rpc("iscsi_create_target_node", apps=APPS)
def iscsi_create_target_node(t: Target, params: Any) -> bool:
    spec = {"name": F("string", True), "alias_name": F("string", True),
            "pg_ig_maps": F(("array", PG_IG, 256), True), "luns": F(("array", LUN, 64), True),
            "queue_depth": F("int32", True), "disable_chap": F("bool"), "require_chap": F("bool"),
            "mutual_chap": F("bool"), "chap_group": F("int32"), "header_digest": F("bool"),
            "data_digest": F("bool")}
    p = decode(params, spec, DECODE_INVALID)
    invalid = RpcError(INVALID_PARAMS, "Invalid parameters")
    name = t.iscsi.full_name(p["name"])
    if t.iscsi.node(name) is not None or not p["luns"] or not p["pg_ig_maps"]:
        raise invalid
    if not chap_ok(p.get("disable_chap", False), p.get("require_chap", False), p.get("mutual_chap", False),
                   p.get("chap_group", 0)):
        raise invalid
    max_qd = t.iscsi.options["max_queue_depth"]
    queue_depth = p["queue_depth"] if 0 < p["queue_depth"] <= max_qd else max_qd
    for m in p["pg_ig_maps"]:
        if m["pg_tag"] not in t.iscsi.portal_groups or m["ig_tag"] not in t.iscsi.initiator_groups:
            raise invalid
    luns = []
    for i, lun in enumerate(p["luns"]):
        b = t.bdev.get(lun.get("bdev_name") or "")
        if b is None:
            raise invalid
        luns.append({"bdev_name": b.name, "lun_id": lun.get("lun_id", i)})
    node = TargetNode(name, p["alias_name"], [{"pg_tag": m["pg_tag"], "ig_tag": m["ig_tag"]}
                                              for m in p["pg_ig_maps"]],
                      luns, queue_depth, p.get("disable_chap", False), p.get("require_chap", False),
                      p.get("mutual_chap", False), p.get("chap_group", 0), p.get("header_digest", False),
                      p.get("data_digest", False))
    for lun in luns:
        node.descs.append(t.bdev.open(lun["bdev_name"], False, "iscsi", t.iscsi._lun_removed))
    t.iscsi.nodes[name] = node
    return True


@rpc("iscsi_delete_target_node", apps=APPS)
def iscsi_delete_target_node(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_INVALID)
    node = t.iscsi.node(p["name"])
    if node is None:
        raise errno_error(E.ENOENT)
    del t.iscsi.nodes[node.name]
    for d in node.descs:
        t.bdev.close(d)
    return True


@rpc("iscsi_get_target_nodes", apps=APPS)
def iscsi_get_target_nodes(t: Target, params: Any) -> list[dict[str, Any]]:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "iscsi_get_target_nodes requires no parameters")
    return [n.dump() for n in t.iscsi.nodes.values()]


@rpc("iscsi_get_portal_groups", apps=APPS)
def iscsi_get_portal_groups(t: Target, params: Any) -> list[dict[str, Any]]:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "iscsi_get_portal_groups requires no parameters")
    return [{"tag": tag, "portals": [dict(x) for x in portals], "private": False}
            for tag, portals in t.iscsi.portal_groups.items()]


@rpc("iscsi_get_initiator_groups", apps=APPS)
def iscsi_get_initiator_groups(t: Target, params: Any) -> list[dict[str, Any]]:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "iscsi_get_initiator_groups requires no parameters")
    return [{"tag": tag, "initiators": list(i), "netmasks": list(n)}
            for tag, (i, n) in t.iscsi.initiator_groups.items()]




def chap_ok(disable: bool, require: bool, mutual: bool, group: int) -> bool:
    """iscsi_check_chap_params: auto, none, CHAP or mutual CHAP, and a group id >= 0."""
    return group >= 0 and (disable, require, mutual) in ((False, False, False), (True, False, False),
                                                          (False, True, False), (False, True, True))


@rpc("iscsi_target_node_add_lun", apps=APPS)
def iscsi_target_node_add_lun(t: Target, params: Any) -> bool:
    spec = {"name": F("string", True), "bdev_name": F("string", True), "lun_id": F("int32")}
    p = decode(params, spec, DECODE_INVALID)
    node = t.iscsi.node(p["name"])
    b = t.bdev.get(p["bdev_name"])
    lun_id = p.get("lun_id", -1)
    used = {lun["lun_id"] for lun in node.luns} if node else set()
    if lun_id == -1:
        lun_id = next(i for i in range(len(used) + 1) if i not in used)
    if node is None or b is None or lun_id in used or not 0 <= lun_id < 64:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    node.luns.append({"bdev_name": b.name, "lun_id": lun_id})
    node.descs.append(t.bdev.open(b.name, False, "iscsi", t.iscsi._lun_removed))
    return True


@rpc("iscsi_target_node_set_auth", apps=APPS)
def iscsi_target_node_set_auth(t: Target, params: Any) -> bool:
    spec = {"name": F("string", True), "disable_chap": F("bool"), "require_chap": F("bool"),
            "mutual_chap": F("bool"), "chap_group": F("int32")}
    p = decode(params, spec, DECODE_INVALID)
    node = t.iscsi.node(p["name"])
    if node is None:
        raise RpcError(INVALID_PARAMS, f"Could not find target {p['name']}")
    d, r, m, g = (p.get("disable_chap", False), p.get("require_chap", False), p.get("mutual_chap", False),
                  p.get("chap_group", 0))
    if not chap_ok(d, r, m, g):
        raise RpcError(INVALID_PARAMS, "Invalid combination of auth params")
    node.disable_chap, node.require_chap, node.mutual_chap, node.chap_group = d, r, m, g
    return True


@rpc("iscsi_target_node_request_logout", apps=APPS)
def iscsi_target_node_request_logout(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True), "pg_tag": F("int32")}, DECODE_INVALID)
    if t.iscsi.node(p["name"]) is None:
        raise RpcError(INVALID_PARAMS, f"Target {p['name']} is not found")
    return True   # no initiator is ever connected to the fake


SECRET = ("object", {"user": F("string", True), "secret": F("string", True), "muser": F("string"),
                     "msecret": F("string")})


def _secret(tag: int, s: dict[str, str], have: list[dict[str, str]]) -> dict[str, str]:
    """iscsi_auth_group_add_secret: user and secret required, muser with msecret, 255 characters at most."""
    bad = (not s.get("user") or not s.get("secret") or bool(s.get("muser")) != bool(s.get("msecret"))
           or any(len(v) > CHAP_MAX_LEN for v in s.values()))
    if bad:
        raise RpcError(INVALID_PARAMS, f"Could not add secret to auth group ({tag}), {strerror(E.EINVAL)}")
    if any(h["user"] == s["user"] for h in have):
        raise RpcError(INVALID_PARAMS, f"Could not add secret to auth group ({tag}), {strerror(E.EEXIST)}")
    return {k: s[k] for k in ("user", "secret", "muser", "msecret") if s.get(k)}


@rpc("iscsi_create_auth_group", apps=APPS)
def iscsi_create_auth_group(t: Target, params: Any) -> bool:
    p = decode(params, {"tag": F("int32", True), "secrets": F(("array", SECRET, 64))}, DECODE_INVALID)
    tag = p["tag"]
    if tag in t.iscsi.auth_groups:
        raise RpcError(INVALID_PARAMS, f"Could not add auth group ({tag}), {strerror(E.EEXIST)}")
    if tag <= 0:
        raise RpcError(INVALID_PARAMS, f"Could not add auth group ({tag}), {strerror(E.EINVAL)}")
    secrets: list[dict[str, str]] = []
    for s in p.get("secrets", []):
        secrets.append(_secret(tag, s, secrets))
    t.iscsi.auth_groups[tag] = secrets
    return True


@rpc("iscsi_delete_auth_group", apps=APPS)
def iscsi_delete_auth_group(t: Target, params: Any) -> bool:
    p = decode(params, {"tag": F("int32", True)}, DECODE_INVALID)
    if t.iscsi.auth_groups.pop(p["tag"], None) is None:
        raise RpcError(INVALID_PARAMS, f"Could not find auth group ({p['tag']})")
    return True   # target nodes keep naming the group, as in SPDK


@rpc("iscsi_get_auth_groups", apps=APPS)
def iscsi_get_auth_groups(t: Target, params: Any) -> list[dict[str, Any]]:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "iscsi_get_auth_groups requires no parameters")
    return [{"tag": tag, "secrets": [dict(s) for s in secrets]} for tag, secrets in t.iscsi.auth_groups.items()]


@rpc("iscsi_get_connections", apps=APPS)
def iscsi_get_connections(t: Target, params: Any) -> list[dict[str, Any]]:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "iscsi_get_connections requires no parameters")
    return []


OPTION_TYPES = {k: ("bool" if isinstance(v, bool) else "string" if isinstance(v, str) else "uint32")
                for k, v in DEFAULT_OPTIONS.items()}


@rpc("iscsi_set_options", state_mask=STARTUP, apps=APPS)
def iscsi_set_options(t: Target, params: Any) -> bool:
    if t.iscsi.options_set:
        raise RpcError(INTERNAL_ERROR, "Must not call more than once")
    spec = {k: F(v) for k, v in OPTION_TYPES.items()}
    p = decode(params, spec, DECODE_INVALID) if params is not None else {}
    t.iscsi.options.update(p)
    t.iscsi.options_set = True
    return True


@rpc("iscsi_get_options", apps=APPS)
def iscsi_get_options(t: Target, params: Any) -> dict[str, Any]:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "iscsi_get_options requires no parameters")
    return dict(t.iscsi.options)
