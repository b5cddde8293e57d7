"""RAID bdevs (module/bdev/raid): create/delete, base bdev add/remove, degrade and rebuild.

As in SPDK: a raid whose base bdevs do not all exist yet stays "configuring" (and is finished
when they appear); base bdevs are opened for writing and claimed, so a claimed bdev cannot be a
base (``-EPERM``); removing a base bdev degrades a raid1/raid5f and takes a raid0/concat
offline; adding one to a degraded online raid1 starts a rebuild that writes the whole new
member.  The rebuild runs at :data:`REBUILD_BYTES_PER_SEC` so it can be watched.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .app import (
    DECODE_FAILED,
    DECODE_FAILED_PARSE,
    E,
    F,
    RpcError,
    decode,
    errno_error,
    new_uuid,
    rpc,
    strerror,
)
from .bdev import Bdev, Desc

if TYPE_CHECKING:
    from .target import Target

NULL_UUID = "00000000-0000-0000-0000-000000000000"
RAID_SB_NAME_SIZE = 64
MIN_DATA_OFFSET_SIZE = 1 << 20
REBUILD_BYTES_PER_SEC = 2 << 30

LEVELS = {"raid0": "raid0", "0": "raid0", "raid1": "raid1", "1": "raid1", "raid5f": "raid5f", "5f": "raid5f",
          "concat": "concat"}
# level: (base_bdevs_min, constraint kind, constraint value)
MODULES = {"raid0": (1, None, 0), "concat": (1, None, 0), "raid1": (2, "min_operational", 1),
           "raid5f": (3, "max_removed", 1)}


@dataclass(eq=False)
class Base:
    name: str | None
    uuid: str = NULL_UUID
    is_configured: bool = False
    data_offset: int = 0
    data_size: int = 0
    desc: Desc | None = None
    is_process_target: bool = False


@dataclass(eq=False)
class Process:
    target: Base
    total_blocks: int
    started: float
    duration: float
    task: asyncio.Task | None = None

    def offset(self) -> int:
        frac = min(1.0, (time.monotonic() - self.started) / self.duration) if self.duration else 1.0
        return min(self.total_blocks, int(frac * self.total_blocks))


@dataclass(eq=False)
class Raid:
    name: str
    level: str
    strip_size_kb: int
    superblock: bool
    uuid: str
    bases: list[Base]
    min_operational: int
    state: str = "configuring"
    num_discovered: int = 0
    num_operational: int = 0
    block_size: int = 0
    bdev: Bdev | None = None
    process: Process | None = None
    sb: dict[str, Any] | None = None  # the superblock as last written to the members

    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "uuid": self.bdev.uuid if self.bdev else self.uuid,
            "strip_size_kb": self.strip_size_kb, "state": self.state, "raid_level": self.level,
            "superblock": self.superblock, "num_base_bdevs": len(self.bases),
            "num_base_bdevs_discovered": self.num_discovered,
            "num_base_bdevs_operational": self.num_operational,
        }
        if self.process is not None:
            off = self.process.offset()
            total = self.bdev.num_blocks if self.bdev else self.process.total_blocks
            d["process"] = {"type": "rebuild", "target": self.process.target.name,
                            "progress": {"blocks": off, "percent": int(off * 100.0 / total) if total else 0}}
        d["base_bdevs_list"] = [{"name": b.name, "uuid": b.uuid, "is_configured": b.is_configured,
                                 "data_offset": b.data_offset, "data_size": b.data_size} for b in self.bases]
        return d


class RaidModule:
    def __init__(self, t: Target):
        self.t = t
        self.raids: list[Raid] = []

    def find(self, name: str) -> Raid | None:
        return next((r for r in self.raids if r.name == name), None)

    def base_of(self, bdev: Bdev) -> tuple[Raid, Base] | None:
        for r in self.raids:
            for b in r.bases:
                if b.desc is not None and b.desc.bdev is bdev:
                    return r, b
        return None

    # --- configure ---
    def configure_base(self, r: Raid, base: Base, existing: bool = False) -> None:
        """``raid_bdev_configure_base_bdev``: raises RpcError(-errno) on failure.

        A new member (not ``existing``, i.e. not found by examine) is first checked for a raid
        superblock: one of another raid makes it ``-EEXIST``; one of this raid re-adds it through
        the examine path (a member coming back).
        """
        assert base.name is not None
        bdev = self.t.bdev.get(base.name)
        if bdev is None:
            raise errno_error(E.ENODEV)
        if base.uuid != NULL_UUID and base.uuid != bdev.uuid:
            raise errno_error(E.EINVAL)
        desc = self.t.bdev.open_bdev(bdev, True, "raid", self._base_removed)
        try:
            self.t.bdev.claim(bdev, "raid")
        except RpcError:
            self.t.bdev.close(desc)
            raise
        base.desc = desc
        base.uuid = bdev.uuid
        if r.superblock and base.data_offset == 0:
            off = MIN_DATA_OFFSET_SIZE // bdev.block_size
            if bdev.optimal_io_boundary:
                b = bdev.optimal_io_boundary
                off = -(-off // b) * b
            base.data_offset = off
        if base.data_offset >= bdev.num_blocks:
            self._free_base(r, base)
            raise errno_error(E.EINVAL)
        if base.data_size == 0:
            base.data_size = bdev.num_blocks - base.data_offset
        if r.block_size == 0:
            r.block_size = bdev.block_size
        elif r.block_size != bdev.block_size:
            self._free_base(r, base)
            raise errno_error(E.EINVAL)
        if not existing and bdev.raid_sb is not None:
            sb = bdev.raid_sb
            self._free_base(r, base)
            if sb.get("uuid") == r.uuid and r.uuid != NULL_UUID:
                self.examine_sb(bdev, sb)  # a former member: re-added through examine
                return
            raise errno_error(E.EEXIST)  # "Superblock of a different raid bdev found"
        if r.state == "online" and r.num_discovered == r.num_operational:
            base.is_process_target = True
        base.is_configured = True
        r.num_discovered += 1
        if r.num_discovered == r.num_operational and r.state == "configuring":
            if existing and self.t.bdev.examine_depth:
                self.t.bdev.deferred.append(lambda: self._configure_quietly(r))
            else:
                self.configure(r)
        elif base.is_process_target:
            r.num_operational += 1
            self.start_rebuild(r, base)

    # --- superblock ---
    def write_sb(self, r: Raid) -> None:
        """``raid_bdev_write_superblock``: a new sequence number, written to every member."""
        if r.sb is None:
            return
        r.sb["seq"] += 1
        for b in r.bases:
            if b.is_configured and b.desc is not None:
                self.t.bdev.put_raid_sb(b.desc.bdev, json.loads(json.dumps(r.sb)))

    def sb_set_slot(self, r: Raid, base: Base, state: str) -> None:
        if r.sb is None:
            return
        slot = r.bases.index(base)
        for e in r.sb["base_bdevs"]:
            if e["slot"] == slot:
                e["state"] = state
                if state == "configured":
                    e.update(uuid=base.uuid, data_offset=base.data_offset, data_size=base.data_size)
                return
        if state == "configured":
            r.sb["base_bdevs"].append({"slot": slot, "uuid": base.uuid, "state": state,
                                       "data_offset": base.data_offset, "data_size": base.data_size})

    def examine_sb(self, bdev: Bdev, sb: dict[str, Any]) -> None:
        """``raid_bdev_examine_sb``."""
        if sb.get("block_size") != bdev.block_size or not sb.get("uuid"):
            return
        r = next((x for x in self.raids if x.uuid == sb["uuid"]), None)
        if r is not None:
            if r.sb is None:
                return
            if sb["seq"] > r.sb["seq"]:
                if r.state != "configuring":
                    return
                self.delete(r)
                r = None
            elif sb["seq"] < r.sb["seq"]:
                sb = r.sb
        entry = next((e for e in sb["base_bdevs"] if e["uuid"] == bdev.uuid), None)
        if entry is None:
            return
        created = False
        if r is None:
            if self.find(sb["name"]) is not None:
                return
            n = sb["num_base_bdevs"]
            _, kind, val = MODULES[sb["level"]]
            min_op = n - val if kind == "max_removed" else (val if kind == "min_operational" else n)
            r = Raid(sb["name"], sb["level"], sb["strip_size_kb"], True, sb["uuid"], [Base(None) for _ in range(n)],
                     min_op, sb=json.loads(json.dumps(sb)))
            for e in sb["base_bdevs"]:
                b = r.bases[e["slot"]]
                if e["state"] == "configured":
                    b.uuid = e["uuid"]
                    r.num_operational += 1
                b.data_offset, b.data_size = e["data_offset"], e["data_size"]
            self.raids.append(r)
            created = True
        base = r.bases[entry["slot"]]
        if r.state == "online":
            if entry["state"] == "configured" or base.is_configured:
                return
            base.uuid = bdev.uuid  # "Re-adding bdev ... to raid bdev": it is rebuilt
        elif entry["state"] != "configured":
            return  # "not an active member of raid bdev ... Ignoring."
        base.name = bdev.name
        try:
            self.configure_base(r, base, existing=True)
        except RpcError:
            base.name = None
            return
        if created:  # raid_bdev_examine_others: members that appeared before this one
            for e in sb["base_bdevs"]:
                other = self.t.bdev.get(e["uuid"])
                ob = r.bases[e["slot"]]
                if other is not None and other is not bdev and ob.desc is None and other.raid_sb is not None \
                        and other.claim_type is None and r.state == "configuring":
                    self.examine_sb(other, other.raid_sb)

    def _configure_quietly(self, r: Raid) -> None:
        if r in self.raids and r.state == "configuring" and r.num_discovered == r.num_operational:
            try:
                self.configure(r)
            except RpcError:
                pass

    def configure(self, r: Raid) -> None:
        """``raid_bdev_configure``: size the volume and register its bdev."""
        strip = r.strip_size_kb * 1024 // r.block_size
        if strip == 0 and r.level != "raid1":
            raise errno_error(E.EINVAL)
        conf = [b for b in r.bases if b.is_configured]
        min_size = min(b.data_size for b in conf)
        n = len(r.bases)
        if r.level == "raid1":
            blocks = min_size
            for b in conf:
                b.data_size = min_size
        elif r.level == "raid0":
            blocks = (min_size // strip) * strip * n
        elif r.level == "raid5f":
            blocks = strip * (n - 1) * (min_size // strip)
        else:  # concat
            blocks = sum((b.data_size // strip) * strip for b in conf)
        # _raid_bdev_io_type_supported: flush/unmap need the module's null-payload path (not raid5f),
        # flush/reset/unmap need every member to support them
        io = {"read", "write"}
        for kind in ("flush", "reset", "unmap"):
            if kind != "reset" and r.level == "raid5f":
                continue
            if all(b.desc.bdev.supported(kind) for b in conf if b.desc is not None):
                io.add(kind)
        bdev = Bdev(r.name, r.block_size, blocks, "Raid Volume", "raid",
                    uuid="" if r.uuid == NULL_UUID else r.uuid, io_types=frozenset(io),
                    optimal_io_boundary=strip if r.level != "raid1" else 0, ctx=r)
        self.t.bdev.register(bdev, examine=False)
        r.bdev = bdev
        r.uuid = bdev.uuid
        r.state = "online"
        if r.superblock:
            if r.sb is None:  # raid_bdev_init_superblock
                r.sb = {"uuid": r.uuid, "name": r.name, "level": r.level, "strip_size_kb": r.strip_size_kb,
                        "block_size": r.block_size, "num_base_bdevs": n, "seq": 0,
                        "base_bdevs": [{"slot": i, "uuid": b.uuid, "state": "configured",
                                        "data_offset": b.data_offset, "data_size": b.data_size}
                                       for i, b in enumerate(r.bases) if b.is_configured]}
            for b in conf:
                assert b.desc is not None
                self.t.bdev.write(b.desc.bdev, 0, 4096)  # the raid superblock
            self.write_sb(r)
        self.t.bdev.examine(bdev)

    def start_rebuild(self, r: Raid, base: Base) -> None:
        assert r.bdev is not None
        size = r.bdev.size
        p = Process(base, r.bdev.num_blocks, time.monotonic(), size / REBUILD_BYTES_PER_SEC)
        r.process = p
        p.task = asyncio.get_running_loop().create_task(self._rebuild(r, p))

    async def _rebuild(self, r: Raid, p: Process) -> None:
        await asyncio.sleep(p.duration)
        if r.process is not p:
            return
        r.process = None
        p.target.is_process_target = False
        if p.target.desc is not None:  # the rebuild wrote the whole member
            bs = p.target.desc.bdev.block_size
            self.t.bdev.write(p.target.desc.bdev, p.target.data_offset * bs, p.target.data_size * bs)
            self.sb_set_slot(r, p.target, "configured")
            self.write_sb(r)

    def stop_process(self, r: Raid) -> None:
        if r.process is not None:
            if r.process.task is not None:
                r.process.task.cancel()
            r.process.target.is_process_target = False
            r.process = None

    # --- removal ---
    def _free_base(self, r: Raid, base: Base) -> None:
        """``raid_bdev_free_base_bdev_resource``."""
        base.name = None
        if r.state != "configuring":
            base.uuid = NULL_UUID
        base.data_offset = 0
        if base.desc is None:
            return
        bdev = base.desc.bdev
        self.t.bdev.release(bdev)
        self.t.bdev.close(base.desc)
        base.desc = None
        if base.is_configured:
            base.is_configured = False
            base.is_process_target = False
            r.num_discovered -= 1

    def remove_base(self, r: Raid, base: Base) -> None:
        """``_raid_bdev_remove_base_bdev``."""
        if not base.is_configured:
            raise errno_error(E.ENODEV)
        if r.state != "online":
            self._free_base(r, base)
            if r.num_discovered == 0 and r.state == "offline":
                self.raids.remove(r)
            return
        if r.min_operational == len(r.bases):
            r.num_operational -= 1
            self.deconfigure(r, removed=[base])
            return
        if r.process is not None and (r.process.target is base or
                                      sum(1 for b in r.bases if b.is_configured) - 1 <= r.min_operational):
            self.stop_process(r)
        if not base.is_process_target:
            self.sb_set_slot(r, base, "missing")
        self._free_base(r, base)
        self.write_sb(r)
        r.num_operational -= 1
        if r.num_operational < r.min_operational:
            self.deconfigure(r)

    def deconfigure(self, r: Raid, removed: list[Base] = ()) -> None:  # type: ignore[assignment]
        if r.state != "online":
            return
        r.state = "offline"
        self.stop_process(r)
        if r.bdev is not None:
            b, r.bdev = r.bdev, None
            self.t.bdev.unregister(b)
        for base in removed:
            self._free_base(r, base)
        if r.num_discovered == 0 and r in self.raids:
            self.raids.remove(r)  # raid_bdev_io_device_unregister_cb frees a raid with no base bdev left

    def delete(self, r: Raid, clear_sb: bool = False) -> None:
        self.stop_process(r)
        if clear_sb and r.sb is not None:
            for b in r.bases:
                if b.desc is not None:
                    self.t.bdev.put_raid_sb(b.desc.bdev, None)
        if r.bdev is not None:
            b, r.bdev = r.bdev, None
            r.state = "offline"
            self.t.bdev.unregister(b)
        for base in r.bases:
            self._free_base(r, base)
        if r in self.raids:
            self.raids.remove(r)

    def _base_removed(self, desc: Desc) -> None:
        found = self.base_of(desc.bdev)
        if found is not None:
            try:
                self.remove_base(*found)
            except RpcError:
                pass

    def write(self, bdev: Bdev, offset: int, length: int) -> None:
        """Pass a write to the members it lands on."""
        r: Raid = bdev.ctx
        bs = r.block_size
        conf = [b for b in r.bases if b.is_configured and b.desc is not None]
        if r.level == "raid1" or r.level == "raid5f":
            for b in conf:
                self.t.bdev.write(b.desc.bdev, b.data_offset * bs + offset, length)  # type: ignore[union-attr]
            return
        strip = r.strip_size_kb * 1024
        n = len(r.bases)
        pos, end = offset, offset + length
        while pos < end:
            chunk = min(end, (pos // strip + 1) * strip) - pos
            if r.level == "raid0":
                stripe = pos // strip
                base = r.bases[stripe % n]
                boff = (stripe // n) * strip + pos % strip
            else:  # concat: members one after the other
                boff, base = pos, r.bases[-1]
                for b in r.bases:
                    size = (b.data_size * bs // strip) * strip
                    if boff < size:
                        base = b
                        break
                    boff -= size
            if base.desc is not None:
                self.t.bdev.write(base.desc.bdev, base.data_offset * bs + boff, chunk)
            pos += chunk

    def _raid_destruct(self, bdev: Bdev) -> None:
        r: Raid = bdev.ctx
        if r.bdev is bdev:  # the raid bdev was hot-removed from above (cannot happen) or deleted
            r.bdev = None

    def examine(self, bdev: Bdev) -> None:
        """``raid_bdev_examine``: a raid superblock on the new bdev, or a base a raid waits for."""
        if bdev.raid_sb is not None:
            if bdev.claim_type is None:
                self.examine_sb(bdev, bdev.raid_sb)
            return
        for r in list(self.raids):
            if r.state != "configuring" or r.sb is not None:
                continue
            for base in r.bases:
                if base.desc is None and (base.name == bdev.name or base.uuid == bdev.uuid):
                    base.name = bdev.name
                    try:
                        self.configure_base(r, base, existing=True)
                    except RpcError:
                        pass
                    return


# --- RPCs ----------------------------------------------------------------------------------------

RAID_CREATE = {"name": F("string", True), "strip_size_kb": F("uint32"),
               "raid_level": F(("enum", list(LEVELS)), True),
               "base_bdevs": F(("array", "string", 255), True), "uuid": F("uuid"), "superblock": F("bool")}


@rpc("bdev_raid_create")
def bdev_raid_create(t: Target, params: Any) -> bool:
    p = decode(params, RAID_CREATE, DECODE_FAILED_PARSE)
    name = p["name"]
    names = p["base_bdevs"]
    for n in names:
        if n == "":
            raise RpcError(-E.EINVAL, f"The base bdev name cannot be empty: {strerror(E.EINVAL)}")
    level = LEVELS[p["raid_level"]]
    strip = p.get("strip_size_kb", 0)

    def fail(err: int) -> RpcError:
        return RpcError(-err, f"Failed to create RAID bdev {name}: {strerror(err)}")

    if len(name.encode()) >= RAID_SB_NAME_SIZE:
        raise fail(E.EINVAL)
    if t.raid.find(name) is not None:
        raise fail(E.EEXIST)
    if level == "raid1":
        if strip != 0:
            raise fail(E.EINVAL)
    elif strip == 0 or strip & (strip - 1):
        raise fail(E.EINVAL)
    if level == "raid5f" and not t.raid5f:
        raise fail(E.EINVAL)  # "Unsupported raid level": SPDK built without --with-raid5f
    bmin, kind, val = MODULES[level]
    n = len(names)
    if n < bmin:
        raise fail(E.EINVAL)
    min_op = n - val if kind == "max_removed" else (val if kind == "min_operational" else n)
    if min_op == 0 or min_op > n:
        raise fail(E.EINVAL)
    uuid = p.get("uuid") or NULL_UUID
    if p.get("superblock") and uuid == NULL_UUID:
        uuid = new_uuid()
    r = Raid(name, level, strip, bool(p.get("superblock")), uuid, [Base(x) for x in names], min_op)
    r.num_operational = n
    t.raid.raids.append(r)
    for base in r.bases:
        try:
            t.raid.configure_base(r, base)
        except RpcError as e:
            if e.code == -E.ENODEV:
                continue
            t.raid.delete(r)
            raise fail(-e.code) from None
    return True


@rpc("bdev_raid_delete")
def bdev_raid_delete(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True), "clear_sb": F("bool")}, DECODE_FAILED_PARSE)
    r = t.raid.find(p["name"])
    if r is None:
        raise RpcError(-E.ENODEV, f"raid bdev {p['name']} not found")
    t.raid.delete(r, bool(p.get("clear_sb")))
    return True


@rpc("bdev_raid_add_base_bdev")
def bdev_raid_add_base_bdev(t: Target, params: Any) -> bool:
    p = decode(params, {"raid_bdev": F("string", True), "base_bdev": F("string", True)}, DECODE_FAILED)
    r = t.raid.find(p["raid_bdev"])
    if r is None:
        raise RpcError(-E.ENODEV, f"raid bdev {p['raid_bdev']} is not found in config")

    def fail(err: int) -> RpcError:
        return RpcError(-err, f"Failed to add base bdev {p['base_bdev']} to RAID bdev {r.name}: {strerror(err)}")

    if r.process is not None:
        raise fail(E.EPERM)
    slot = None
    if r.state == "configuring":
        b = t.bdev.get(p["base_bdev"])
        if b is not None:
            slot = next((x for x in r.bases if x.name is None and x.uuid == b.uuid), None)
    if slot is None or r.state == "online":
        slot = next((x for x in r.bases if x.name is None and x.uuid == NULL_UUID), None)
    if slot is None:
        raise fail(E.EINVAL)
    slot.name = p["base_bdev"]
    try:
        t.raid.configure_base(r, slot)
    except RpcError as e:
        if not (e.code == -E.ENODEV and r.state == "configuring"):
            slot.name = None  # on -ENODEV while configuring SPDK keeps the name and waits for the bdev
        raise fail(-e.code) from None
    return True


@rpc("bdev_raid_remove_base_bdev")
def bdev_raid_remove_base_bdev(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_FAILED_PARSE)
    b = t.bdev.get(p["name"])
    found = t.raid.base_of(b) if b is not None else None
    if b is None:
        raise RpcError(-E.ENODEV, "Failed to remove base bdev from raid bdev")
    if found is None:
        raise RpcError(-E.ENODEV, "Failed to remove base bdev from raid bdev")
    try:
        t.raid.remove_base(*found)
    except RpcError as e:
        raise RpcError(e.code, "Failed to remove base bdev from raid bdev") from None
    return True


@rpc("bdev_raid_get_bdevs")
def bdev_raid_get_bdevs(t: Target, params: Any) -> list[dict[str, Any]]:
    spec = {"category": F(("enum", ["online", "configuring", "offline", "all"]), True)}
    p = decode(params, spec, DECODE_FAILED_PARSE)
    cat = p["category"]
    return [{"name": r.name, **r.info()} for r in t.raid.raids if cat in ("all", r.state)]


@rpc("bdev_raid_set_options")
def bdev_raid_set_options(t: Target, params: Any) -> bool:
    spec = {"process_window_size_kb": F("uint32"), "process_max_bandwidth_mb_sec": F("uint32")}
    if params is not None:
        decode(params, spec, DECODE_FAILED_PARSE)
    return True


def _raid_domains(t: Target, b: Bdev) -> list[str]:
    """``raid_bdev_get_memory_domains``: the configured members' domains (raid5f: none)."""
    r: Raid = b.ctx
    if r.level == "raid5f":
        return []
    return [x for base in r.bases if base.is_configured and base.desc is not None
            for x in t.bdev.memory_domains(base.desc.bdev)]


def _raid_info(b: Bdev) -> dict[str, Any]:
    return {"raid": b.ctx.info()}


def setup(t: Target) -> None:
    t.bdev.examine_hooks.append(t.raid.examine)
    t.bdev.info_hooks["raid"] = _raid_info
    t.bdev.destruct_hooks["raid"] = t.raid._raid_destruct
    t.bdev.write_hooks["raid"] = t.raid.write
    t.bdev.domain_hooks["raid"] = lambda b: _raid_domains(t, b)
