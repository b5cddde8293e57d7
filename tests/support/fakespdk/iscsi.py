"""A minimal iSCSI target (lib/iscsi/iscsi_rpc.c): portal groups, initiator groups, target nodes.

Only ``spdk_tgt`` and ``iscsi_tgt`` have it; ``nvmf_tgt`` answers ``Method not found``, as the
real one does.  Errors are SPDK's: ``-32602 Invalid parameters`` for nearly everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .app import DECODE_INVALID, INVALID_PARAMS, E, F, RpcError, decode, errno_error, rpc
from .bdev import Desc

if TYPE_CHECKING:
    from .target import Target

APPS = ("spdk_tgt", "iscsi_tgt")
NODEBASE = "iqn.2016-06.io.spdk"
MAX_QUEUE_DEPTH = 128


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

    def full_name(self, name: str) -> str:
        if name.lower().startswith(("iqn.", "eui.", "naa.")):
            return name
        return f"{NODEBASE}:{name}"

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
    t.iscsi.portal_groups[p["tag"]] = p["portals"]
    return True


@rpc("iscsi_delete_portal_group", apps=APPS)
def iscsi_delete_portal_group(t: Target, params: Any) -> bool:
    p = decode(params, {"tag": F("int32", True)}, DECODE_INVALID)
    if t.iscsi.portal_groups.pop(p["tag"], None) is None:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    return True


@rpc("iscsi_create_initiator_group", apps=APPS)
def iscsi_create_initiator_group(t: Target, params: Any) -> bool:
    spec = {"tag": F("int32", True), "initiators": F(("array", "string", 256), True),
            "netmasks": F(("array", "string", 256), True)}
    p = decode(params, spec, DECODE_INVALID)
    if p["tag"] <= 0 or p["tag"] in t.iscsi.initiator_groups or not p["initiators"] or not p["netmasks"]:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    t.iscsi.initiator_groups[p["tag"]] = (p["initiators"], p["netmasks"])
    return True


@rpc("iscsi_delete_initiator_group", apps=APPS)
def iscsi_delete_initiator_group(t: Target, params: Any) -> bool:
    p = decode(params, {"tag": F("int32", True)}, DECODE_INVALID)
    if t.iscsi.initiator_groups.pop(p["tag"], None) is None:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
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
    if name in t.iscsi.nodes or not p["luns"] or not (0 < p["queue_depth"] <= MAX_QUEUE_DEPTH):
        raise invalid
    if p.get("disable_chap") and (p.get("require_chap") or p.get("mutual_chap")):
        raise invalid
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
                      luns, p["queue_depth"], p.get("disable_chap", False), p.get("require_chap", False),
                      p.get("mutual_chap", False), p.get("chap_group", 0), p.get("header_digest", False),
                      p.get("data_digest", False))
    for lun in luns:
        node.descs.append(t.bdev.open(lun["bdev_name"], False, "iscsi", t.iscsi._lun_removed))
    t.iscsi.nodes[name] = node
    return True


@rpc("iscsi_delete_target_node", apps=APPS)
def iscsi_delete_target_node(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_INVALID)
    node = t.iscsi.nodes.pop(t.iscsi.full_name(p["name"]), None)
    if node is None:
        raise errno_error(E.ENOENT)
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


