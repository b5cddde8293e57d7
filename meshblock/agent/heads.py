"""Replicated and erasure-coded heads: a raid1 over a volume's replicas, or a raid5f over its
shards, exported as the volume.

The head runs in the node's polling target. Every replica, the local one too,
is attached over NVMe/TCP from the replica's export, whose allowlist holds this
node's host NQN only while it is the volume's head (the fence). The raid1 has
no superblock: membership is decided by the controller, which knows which
replicas are in sync. A raid is created from ONE in-sync replica and the others
are added with bdev_raid_add_base_bdev, which makes SPDK copy the data onto
them (a rebuild): after a head crash, in-flight writes may have reached some
replicas and not others, and a rebuild from one source is what makes them
agree again.

A raid5f (erasure coding) has one slot per shard, in the order of the shards' positions, and
needs all but one of them: it is created from the in-sync shards with the missing position held
by a placeholder that is removed at once, and a shard that comes (back) fills the empty slot and
is rebuilt from the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import FailedPrecondition, Unavailable
from ..qos import QosLimits
from ..spdk import SpdkError, SpdkNotFound, SpdkRpc
from ..util import all_of
from .attachments import Attacher, AttachSpec
from .keyring import Keyring
from .exports import Exporter, ExportSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leg:
    replica_id: str
    subsystem_nqn: str
    address: str
    port: int
    slot: int = 0


@dataclass
class LegState:
    replica_id: str
    state: str                 # in_sync | rebuilding | missing
    rebuild_percent: float = 0.0
    rebuild_blocks: int = 0


@dataclass
class RaidView:
    state: str
    size_bytes: int
    legs: list[LegState]
    qos: QosLimits = QosLimits()      # the rate limits SPDK enforces on the raid


def raid_name(volume_id: str) -> str:
    return "vol-" + volume_id


async def set_rate_limits(rpc: SpdkRpc, bdev: str, want: QosLimits, have: QosLimits, volume_id: str) -> QosLimits:
    """Give ``bdev`` the volume's QoS limits unless SPDK enforces them already (``have``); what SPDK
    enforces afterwards.

    A refusal is logged, not raised: nothing else of the head waits for its limits. SPDK v26.05
    refuses every change ("Resource temporarily unavailable") to a bdev whose QoS is on while no I/O
    channel has it open, such as an iSCSI LUN no initiator is logged in to (each open of such a bdev,
    the RPC's own too, restarts QoS and the change meets that restart); the head then reports the
    limits SPDK keeps, and the controller tries again."""
    if have == want:
        return have
    try:
        await rpc.bdev_set_qos_limit(bdev, **want.spdk())
    except SpdkError as e:
        log.warning("volume %s: QoS limits %s not set on %s (SPDK keeps %s): %s", volume_id, want.describe(), bdev,
                    have.describe(), e)
        return have
    got = QosLimits.from_spdk((await rpc.bdev_get_bdevs(bdev))[0].get("assigned_rate_limits"))
    if got != want:
        log.warning("volume %s: SPDK enforces %s on %s, not the %s asked", volume_id, got.describe(), bdev,
                    want.describe())
    else:
        log.info("qos set volume_id=%s bdev=%s limits=%s (was %s)", volume_id, bdev, want.describe(),
                 have.describe())
    return got


def leg_spec(leg: Leg, host_nqn: str, link_key: str = "") -> AttachSpec:
    return AttachSpec(attachment_id="leg-" + leg.replica_id, subnqn=leg.subsystem_nqn, address=leg.address,
                      port=leg.port, host_nqn=host_nqn, dhchap_key=link_key)


class RaidComposer:
    def __init__(self, rpc: SpdkRpc, host_nqn: str, link_key: str = "", keyring: Keyring | None = None):
        """``link_key``: the DH-HMAC-CHAP secret this node proves to the replicas' exports."""
        self.rpc = rpc
        self.host_nqn = host_nqn
        self.link_key = link_key
        self.attacher = Attacher(rpc, keyring)

    async def raid(self, volume_id: str) -> dict | None:
        for r in await self.rpc.bdev_raid_get_bdevs("all"):
            if r.get("name") == raid_name(volume_id):
                return r
        return None

    async def _attach(self, leg: Leg) -> str | None:
        try:
            st = await self.attacher.ensure(leg_spec(leg, self.host_nqn, self.link_key))
        except Unavailable as e:
            log.warning("replica %s not reachable for the head: %s", leg.replica_id, e)
            return None
        return st.bdev_names[0] if st.bdev_names else None

    async def ensure(self, volume_id: str, legs: list[Leg], in_sync: set[str], slots: int = 0,
                     standby: bool = False, level: str = "raid1", strip_size_kb: int = 0) -> RaidView:
        """Make the raid hold every reachable leg; ``in_sync`` says which may seed a new raid.

        A standby raid (a head that serves no I/O until it is promoted) never writes: it is made
        from every reachable leg at once, so nothing is rebuilt, and legs that come later wait for
        the promotion (see ``reseed``)."""
        attached = await all_of(*(self._attach(leg) for leg in legs))   # each over its own connection
        bdevs = {leg.replica_id: b for leg, b in zip(legs, attached) if b is not None}
        raid = await self.raid(volume_id)
        if raid is not None and raid.get("state") != "online":
            # a raid that lost every member cannot come back by itself; start again from a source
            await self.rpc.bdev_raid_delete(raid_name(volume_id))
            raid = None
        if raid is None:
            seeds = sorted(bdevs) if standby else [rid for rid in sorted(bdevs) if rid in in_sync]
            if level == "raid5f" and len(seeds) < slots - 1:
                if standby:
                    return await self.view(volume_id, legs)
                raise Unavailable(f"volume {volume_id} needs {slots - 1} of its {slots} shards in sync and "
                                  f"reachable (reachable: {sorted(bdevs) or 'none'}, in sync: "
                                  f"{sorted(in_sync) or 'none'})")
            if not seeds:
                if standby:
                    return await self.view(volume_id, legs)
                raise Unavailable(f"no in-sync replica of volume {volume_id} is reachable "
                                  f"(reachable: {sorted(bdevs) or 'none'}, in sync: {sorted(in_sync) or 'none'})")
            if level == "raid5f":
                slot_of = {leg.replica_id: leg.slot for leg in legs}
                layout: list[str | None] = [None] * slots
                for rid in seeds:
                    layout[slot_of[rid]] = bdevs[rid]
                await self._check_shards(volume_id, [b for b in layout if b], strip_size_kb)
                await self._create_layout(volume_id, layout, "raid5f", strip_size_kb)
            else:
                await self._create(volume_id, [bdevs[rid] for rid in seeds], max(slots, len(legs)))
            log.info("raid created volume_id=%s from %s replicas %s", volume_id, "reachable" if standby else "in-sync",
                     ",".join(seeds))
            raid = await self.raid(volume_id)
            assert raid is not None
        if not standby:
            await self._add_missing(volume_id, raid, bdevs)
        return await self.view(volume_id, legs)

    async def _add_missing(self, volume_id: str, raid: dict, bdevs: dict[str, str]) -> None:
        members = {b.get("name") for b in raid.get("base_bdevs_list", []) if b.get("name")}
        free = sum(1 for b in raid.get("base_bdevs_list", []) if not b.get("name"))
        for rid, b in sorted(bdevs.items()):
            if raid.get("raid_level") == "raid5f" and b not in members:
                if not free or raid.get("process"):
                    continue   # its position is still held (a shard leaving), or a rebuild runs: later
                await self._check_shards(volume_id, [b], int(raid.get("strip_size_kb", 0)))
                free -= 1
            if b not in members:
                try:
                    await self.rpc.bdev_raid_add_base_bdev(raid_name(volume_id), b)
                    log.info("replica added to raid volume_id=%s replica_id=%s (rebuild starts)", volume_id, rid)
                except SpdkError as e:
                    log.warning("adding replica %s to raid of %s failed: %s", rid, volume_id, e)

    async def reseed(self, volume_id: str, legs: list[Leg], in_sync: set[str]) -> None:
        """A standby raid becomes the volume's head: members the controller does not know to be in
        sync (the old head may have died with writes on some replicas only) leave the raid and come
        back, which rebuilds them from the in-sync ones; the raid bdev, and so the exported
        namespace, stays."""
        raid = await self.raid(volume_id)
        if raid is None:
            return
        configured = {b.get("name") for b in raid.get("base_bdevs_list", []) if b.get("name") and b.get("is_configured")}
        by_bdev = {"att-leg-" + leg.replica_id + "n1": leg.replica_id for leg in legs}
        if not any(by_bdev.get(b) in in_sync for b in configured):
            raise Unavailable(f"the standby raid of volume {volume_id} holds no in-sync replica")
        for b in sorted(configured):
            rid = by_bdev.get(b)
            if rid is not None and rid not in in_sync:
                await self.rpc.bdev_raid_remove_base_bdev(b)
                log.info("replica %s of volume %s leaves the promoted raid to be rebuilt", rid, volume_id)

    async def _check_shards(self, volume_id: str, bdevs: list[str], strip_size_kb: int) -> None:
        """A raid5f strip is whole blocks of its members: refuse shards whose blocks are too big,
        with a reason an operator can act on (SPDK's own error says only EINVAL)."""
        for name in bdevs:
            bs = int((await self.rpc.bdev_get_bdevs(name))[0]["block_size"])
            if strip_size_kb * 1024 % bs:
                raise FailedPrecondition(f"volume {volume_id}: shard {name} has {bs}-byte blocks, which do not "
                                         f"divide its {strip_size_kb} KiB strip; erasure coding needs pools with "
                                         "512-byte blocks (the agent's pool_block_size, fixed when a pool is made)")

    async def _create_layout(self, volume_id: str, layout: list[str | None], level: str,
                             strip_size_kb: int | None) -> None:
        """Create a raid whose members sit at fixed positions; empty positions are held by null
        placeholders removed again before anything is exported (the raid then runs degraded)."""
        src = (await self.rpc.bdev_get_bdevs(next(b for b in layout if b)))[0]
        names: list[str] = []
        placeholders: list[str] = []
        for i, b in enumerate(layout):
            if b is None:
                b = f"placeholder-{i}-{volume_id}"
                await self._null(b, int(src["num_blocks"]), int(src["block_size"]))
                placeholders.append(b)
            names.append(b)
        try:
            await self.rpc.bdev_raid_create(raid_name(volume_id), level, names, strip_size_kb=strip_size_kb)
            for ph in placeholders:
                await self.rpc.bdev_raid_remove_base_bdev(ph)
        finally:
            for ph in placeholders:
                try:
                    await self.rpc.bdev_null_delete(ph)
                except SpdkNotFound:
                    pass

    async def _null(self, name: str, num_blocks: int, block_size: int) -> None:
        try:
            await self.rpc.bdev_null_create(name, num_blocks, block_size)
        except SpdkError as e:
            if "exists" not in str(e).lower():
                raise

    async def _create(self, volume_id: str, members: list[str], slots: int) -> None:
        """Create the raid1 with a slot for every replica, from the in-sync members only: the
        other replicas are added into the empty slots, and rebuilt, as they come."""
        slots = max(slots, len(members), 2)
        await self._create_layout(volume_id, members + [None] * (slots - len(members)), "raid1", None)

    async def view(self, volume_id: str, legs: list[Leg]) -> RaidView:
        raid = await self.raid(volume_id)
        if raid is None:
            return RaidView("missing", 0, [LegState(leg.replica_id, "missing") for leg in legs])
        bdev_of = {"att-leg-" + leg.replica_id + "n1": leg.replica_id for leg in legs}
        configured = {b.get("name"): bool(b.get("is_configured")) for b in raid.get("base_bdevs_list", [])}
        process = raid.get("process") or {}
        target = process.get("target")
        states = []
        for leg in legs:
            name = next((n for n, rid in bdev_of.items() if rid == leg.replica_id), "")
            if name == target:
                prog = process.get("progress") or {}
                states.append(LegState(leg.replica_id, "rebuilding", float(prog.get("percent", 0)),
                                       int(prog.get("blocks", 0))))
            elif configured.get(name):
                states.append(LegState(leg.replica_id, "in_sync"))
            else:
                states.append(LegState(leg.replica_id, "missing"))
        size, qos = 0, QosLimits()
        try:
            b = (await self.rpc.bdev_get_bdevs(raid_name(volume_id)))[0]
            size = int(b["num_blocks"]) * int(b["block_size"])
            qos = QosLimits.from_spdk(b.get("assigned_rate_limits"))
        except (SpdkNotFound, IndexError):
            pass
        return RaidView(raid.get("state", ""), size, states, qos)

    async def drop_leg(self, replica_id: str) -> None:
        """Take a replica out of its raid (if still a member) and detach it."""
        try:
            await self.rpc.bdev_raid_remove_base_bdev("att-leg-" + replica_id + "n1")
        except SpdkError:
            pass   # not a member (any more) or already gone
        await self.attacher.remove("leg-" + replica_id)

    async def remove(self, volume_id: str, legs: list[Leg]) -> None:
        try:
            await self.rpc.bdev_raid_delete(raid_name(volume_id))
        except SpdkNotFound:
            pass
        for leg in legs:
            await self.attacher.remove("leg-" + leg.replica_id)

    async def remove_found(self, volume_id: str) -> bool:
        """Remove a volume's raid and its legs as SPDK shows them (an agent restarted since it made them)."""
        raid = await self.raid(volume_id)
        if raid is None:
            return False
        legs = []
        for b in raid.get("base_bdevs_list", []):
            name = b.get("name") or ""
            if name.startswith("att-leg-") and name.endswith("n1"):
                legs.append(Leg(replica_id=name[len("att-leg-"):-2], subsystem_nqn="", address="", port=0))
        await self.remove(volume_id, legs)
        log.info("raid of volume %s removed with %d leg(s) found in SPDK", volume_id, len(legs))
        return True

    async def export(self, exporter: Exporter, nqn: str, volume_id: str, namespace_uuid: str, address: str,
                     port: int, hosts: frozenset[str], ana_state: str = "optimized",
                     cntlid_range: tuple[int, int] | None = None, host_keys: tuple = (), secure: bool = False,
                     host_psks: tuple = ()) -> bool:
        raid = await self.raid(volume_id)
        if raid is None:
            if ana_state == "inaccessible":
                return False    # a standby that reaches no replica yet exports nothing
            raise Unavailable(f"raid of volume {volume_id} is missing")
        await exporter.ensure(ExportSpec(nqn=nqn, bdev_name=raid_name(volume_id), namespace_uuid=namespace_uuid,
                                         address=address, port=port, hosts=hosts,
                                         serial=volume_id.replace("-", ""), ana_reporting=True, ana_state=ana_state,
                                         cntlid_range=cntlid_range, discard=raid.get("raid_level") != "raid5f",
                                         host_keys=host_keys, secure=secure, host_psks=host_psks))
        return True
