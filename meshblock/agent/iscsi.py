"""iSCSI exports: one target node per volume on the node's iSCSI portal, with an exact initiator list.

SPDK's iSCSI target is configured with numbered groups: one portal group (this node's portal,
tag 1) shared by every target node, and per volume an initiator group (the allowed IQNs and
netmasks) and, when CHAP is asked for, an auth group holding the volume's one CHAP secret. A
volume's initiator and auth groups share one tag, found again after an agent restart from the
target node's portal-initiator map, so the agent keeps no state of its own. Groups no target
node refers to are leftovers of an interrupted call and are removed.

Every step is safe to repeat. An initiator taken off the list cannot log in again, and SPDK is
asked to log out every session of the target node, so that only the initiators still allowed
come back. A volume with no initiator allowed has no target node at all.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from ..errors import FailedPrecondition
from ..spdk import SpdkInvalidParams, SpdkMethodNotFound, SpdkNotFound, SpdkRpc

log = logging.getLogger(__name__)

PORTAL_TAG = 1
QUEUE_DEPTH = 64          # SPDK's default maximum per target node
LUN_ID = 0

# Start-up options of a target that runs SPDK's iSCSI target. Its default pools are sized for
# 128 sessions and do not fit a 512 MiB memory pool; 32 sessions of queue depth 64 do, with room
# left for NVMe/TCP and raid (pool sizes follow lib/iscsi/iscsi_subsystem.c's formulas).
MAX_SESSIONS = 32


def iscsi_options(max_sessions: int = MAX_SESSIONS) -> dict:
    pdus_per_connection = 2 * (64 + 64 + 2 * 4 + 8)
    return {"method": "iscsi_set_options", "params": {
        "max_sessions": max_sessions, "pdu_pool_size": max_sessions * pdus_per_connection,
        "immediate_data_pool_size": max_sessions * 128, "data_out_pool_size": max_sessions * 16}}


@dataclass(frozen=True)
class IscsiExportSpec:
    target_iqn: str
    bdev_name: str
    address: str
    port: int
    initiators: frozenset[str] = field(default_factory=frozenset)
    netmasks: tuple[str, ...] = ("ANY",)
    chap_user: str = ""
    chap_secret: str = ""
    alias: str = ""

    @property
    def chap(self) -> bool:
        return bool(self.chap_user)


@dataclass(frozen=True)
class IscsiTarget:
    """What a head is told about its volume's iSCSI target node."""

    target_iqn: str
    initiators: frozenset[str] = field(default_factory=frozenset)
    netmasks: tuple[str, ...] = ("ANY",)
    chap_user: str = ""
    chap_secret: str = ""

    def spec(self, bdev_name: str, address: str, port: int, alias: str = "") -> IscsiExportSpec:
        return IscsiExportSpec(target_iqn=self.target_iqn, bdev_name=bdev_name, address=address, port=port,
                               initiators=self.initiators, netmasks=self.netmasks, chap_user=self.chap_user,
                               chap_secret=self.chap_secret, alias=alias)


@dataclass
class IscsiExportState:
    target_iqn: str
    address: str
    port: int
    initiators: list[str]
    chap: bool
    present: bool            # a target node exists (no initiator allowed: none)


def _find(nodes: list[dict], iqn: str) -> dict | None:
    return next((n for n in nodes if n.get("name", "").lower() == iqn.lower()), None)


class IscsiExporter:
    """Makes the target's iSCSI configuration match export specs. One per SPDK target: the lock
    keeps tag allocation and leftover clean-up from racing another export of the same target."""

    def __init__(self, rpc: SpdkRpc):
        self.rpc = rpc
        self.lock = asyncio.Lock()

    async def available(self) -> bool:
        try:
            await self.rpc.iscsi_get_portal_groups()
        except SpdkMethodNotFound:
            return False
        return True

    async def _portal(self, address: str, port: int) -> None:
        want = {"host": address, "port": str(port)}
        try:
            groups = await self.rpc.iscsi_get_portal_groups()
        except SpdkMethodNotFound:
            raise FailedPrecondition("this node's SPDK target has no iSCSI target (it runs nvmf_tgt); "
                                     "iSCSI exports need spdk_tgt") from None
        ours = next((g for g in groups if g.get("tag") == PORTAL_TAG), None)
        if ours is not None and ours.get("portals") == [want]:
            return
        # a second group on a host:port another group has brings SPDK down: never ask for one
        if any(p == want for g in groups if g is not ours for p in g.get("portals", [])):
            raise FailedPrecondition(f"iSCSI portal {address}:{port} belongs to another portal group")
        if ours is not None:   # the portal moved (agent configuration changed): target nodes lose their maps
            await self.rpc.iscsi_delete_portal_group(PORTAL_TAG)
        await self.rpc.iscsi_create_portal_group(PORTAL_TAG, [want])
        log.info("iscsi portal created address=%s port=%d", address, port)

    async def _collect_leftovers(self, nodes: list[dict], groups: dict[int, dict],
                                 auth: dict[int, dict]) -> None:
        used_ig = {m.get("ig_tag") for n in nodes for m in n.get("pg_ig_maps", [])}
        used_ag = {n.get("chap_group") for n in nodes}
        for tag in sorted(set(groups) - used_ig):
            await self.rpc.iscsi_delete_initiator_group(tag)
            groups.pop(tag)
            log.info("iscsi initiator group %d removed (no target node uses it)", tag)
        for tag in sorted(set(auth) - used_ag):
            await self.rpc.iscsi_delete_auth_group(tag)
            auth.pop(tag)

    @staticmethod
    def _tag_of(node: dict | None) -> int | None:
        if node is None:
            return None
        return next((m["ig_tag"] for m in node.get("pg_ig_maps", []) if m.get("pg_tag") == PORTAL_TAG), None)

    @staticmethod
    def _free_tag(nodes: list[dict], groups: dict[int, dict], auth: dict[int, dict]) -> int:
        used = set(groups) | set(auth) | {n.get("chap_group") for n in nodes} | {
            m.get("ig_tag") for n in nodes for m in n.get("pg_ig_maps", [])}
        tag = 1
        while tag in used:
            tag += 1
        return tag

    async def _initiators(self, tag: int, spec: IscsiExportSpec, group: dict | None) -> bool:
        """Make initiator group ``tag`` hold exactly the spec's initiators and netmasks; True when
        something was taken away."""
        names, masks = sorted(spec.initiators), list(spec.netmasks) or ["ANY"]
        if group is None:
            await self.rpc.iscsi_create_initiator_group(tag, names, masks)
            return False
        have_n, have_m = list(group.get("initiators", [])), list(group.get("netmasks", []))
        add_n = [n for n in names if n not in have_n]
        add_m = [m for m in masks if m not in have_m]
        if add_n or add_m:
            await self.rpc.iscsi_initiator_group_add_initiators(tag, add_n, add_m)
        drop_n = [n for n in have_n if n not in names]
        drop_m = [m for m in have_m if m not in masks]
        if drop_n or drop_m:
            await self.rpc.iscsi_initiator_group_remove_initiators(tag, drop_n, drop_m)
            log.info("iscsi initiators removed target=%s initiators=%s netmasks=%s", spec.target_iqn,
                     ",".join(drop_n) or "-", ",".join(drop_m) or "-")
        return bool(drop_n or drop_m)

    async def _auth(self, tag: int, spec: IscsiExportSpec, group: dict | None) -> bool:
        want = [{"user": spec.chap_user, "secret": spec.chap_secret}] if spec.chap else None
        have = group.get("secrets") if group is not None else None
        if have == want:
            return False
        if group is not None:
            await self.rpc.iscsi_delete_auth_group(tag)
        if want is not None:
            await self.rpc.iscsi_create_auth_group(tag, want)
        return True

    async def ensure(self, spec: IscsiExportSpec) -> IscsiExportState:
        async with self.lock:
            await self._portal(spec.address, spec.port)
            if not spec.initiators:
                await self._remove(spec.target_iqn)
                return self._state(spec, present=False)
            nodes = await self.rpc.iscsi_get_target_nodes()
            groups = {g["tag"]: g for g in await self.rpc.iscsi_get_initiator_groups()}
            auth = {g["tag"]: g for g in await self.rpc.iscsi_get_auth_groups()}
            node = _find(nodes, spec.target_iqn)
            tag = self._tag_of(node)
            if node is not None and tag is None:
                # its map is gone (its group was deleted): start this target node again
                await self._delete_node(node["name"])
                nodes.remove(node)
                node = None
            await self._collect_leftovers(nodes, groups, auth)
            if tag is None:
                tag = self._free_tag(nodes, groups, auth)
            narrowed = await self._initiators(tag, spec, groups.get(tag))
            narrowed = await self._auth(tag, spec, auth.get(tag)) or narrowed
            luns = node.get("luns", []) if node is not None else []
            if node is not None and any(lun.get("bdev_name") != spec.bdev_name for lun in luns):
                await self._delete_node(node["name"])   # another bdev behind our name: replace it
                node, luns = None, []
            if node is None:
                await self.rpc.iscsi_create_target_node(
                    spec.target_iqn, spec.alias or spec.target_iqn.rsplit(":", 1)[-1],
                    [{"bdev_name": spec.bdev_name, "lun_id": LUN_ID}], [{"pg_tag": PORTAL_TAG, "ig_tag": tag}],
                    QUEUE_DEPTH, disable_chap=not spec.chap, require_chap=spec.chap,
                    chap_group=tag if spec.chap else None)
                log.info("iscsi target node created target=%s bdev=%s tag=%d chap=%s", spec.target_iqn,
                         spec.bdev_name, tag, spec.chap)
                return self._state(spec, present=True)
            if not luns:    # its bdev went away and came back (a raid started again)
                await self.rpc.iscsi_target_node_add_lun(node["name"], spec.bdev_name, lun_id=LUN_ID)
            want_auth = (not spec.chap, spec.chap, False, tag if spec.chap else 0)
            have_auth = (node.get("disable_chap"), node.get("require_chap"), node.get("mutual_chap"),
                         node.get("chap_group"))
            if have_auth != want_auth:
                await self.rpc.iscsi_target_node_set_auth(node["name"], chap_group=want_auth[3] or None,
                                                          disable_chap=want_auth[0], require_chap=want_auth[1])
            if narrowed:
                # sessions of initiators no longer allowed end; the allowed ones log in again
                await self.rpc.iscsi_target_node_request_logout(node["name"])
            return self._state(spec, present=True)

    @staticmethod
    def _state(spec: IscsiExportSpec, present: bool) -> IscsiExportState:
        return IscsiExportState(target_iqn=spec.target_iqn, address=spec.address, port=spec.port,
                                initiators=sorted(spec.initiators), chap=spec.chap, present=present)

    async def _delete_node(self, name: str) -> bool:
        try:
            await self.rpc.iscsi_delete_target_node(name)
        except SpdkNotFound:
            return False
        log.info("iscsi target node deleted target=%s", name)
        return True

    async def _remove(self, target_iqn: str) -> bool:
        try:
            nodes = await self.rpc.iscsi_get_target_nodes()
        except SpdkMethodNotFound:
            return False
        node = _find(nodes, target_iqn)
        if node is None:
            return False
        tag = self._tag_of(node)
        removed = await self._delete_node(node["name"])
        if tag is not None and not any(self._tag_of(n) == tag for n in nodes if n is not node):
            for call in (self.rpc.iscsi_delete_initiator_group, self.rpc.iscsi_delete_auth_group):
                try:
                    await call(tag)
                except (SpdkNotFound, SpdkInvalidParams):
                    pass
        return removed

    async def remove(self, target_iqn: str) -> bool:
        async with self.lock:
            return await self._remove(target_iqn)

    async def target_names(self) -> set[str]:
        try:
            return {n["name"] for n in await self.rpc.iscsi_get_target_nodes()}
        except SpdkMethodNotFound:
            return set()
