"""The simulated data plane: every node's pool, subsystems, attachments and raids, in memory.

One ``Fabric`` holds the nodes of a simulation. Per node there are two layers, as on a real
node:

- ``SimDisk``: what SPDK persists on the pool device (the lvstore and its lvols). It survives a
  node restart.
- ``SimTarget``: what the SPDK target holds in memory (NVMe-oF subsystems with their host
  allowlists and ANA states, NVMe/TCP attachments, raid bdevs). It survives an agent restart
  (the target outlives the agent) and is lost with the node.

A raid member is reachable only while the replica's node is up, its export exists and admits the
head node's host NQN, and the lvol behind it exists; a member that stops being reachable leaves
its raid at once (SPDK fails the base bdev), and comes back only when the agent adds it again,
which rebuilds it. A rebuild takes ``size / rebuild_rate`` seconds of the fabric's clock.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from meshblock.agent.replicas import LvolInfo
from meshblock.errors import Unavailable

log = logging.getLogger(__name__)

MiB = 1 << 20


@dataclass
class SimLvol:
    name: str                      # replica-<id> or snap-<id>
    uuid: str
    size_bytes: int
    allocated_bytes: int
    thin: bool
    snapshot: bool = False
    base_snapshot: str | None = None   # the snapshot lvol this one is a clone of
    clones: list[str] = field(default_factory=list)
    disk: SimDisk | None = field(default=None, repr=False, compare=False)   # the lvstore holding it

    def __setattr__(self, name: str, value) -> None:
        # the lvstore keeps its allocation as a running total: heartbeats read it every few seconds
        # on every node, and summing a few hundred lvols each time cost a large simulation a core
        if name == "allocated_bytes" and self.__dict__.get("disk") is not None:
            self.disk._allocated += value - self.allocated_bytes
        object.__setattr__(self, name, value)


class SimDisk:
    """A node's lvstore as persisted on its pool device."""

    def __init__(self, total_bytes: int, cluster_size: int = 4 * MiB, block_size: int = 512,
                 lvs_name: str = "meshblock"):
        self.cluster_size = cluster_size
        self.total_bytes = total_bytes // cluster_size * cluster_size
        self.block_size = block_size
        self.lvs_name = lvs_name
        self.uuid = str(uuid.uuid4())
        self.lvols: dict[str, SimLvol] = {}
        self._by_uuid: dict[str, SimLvol] = {}
        self._allocated = 0

    def add(self, lv: SimLvol) -> SimLvol:
        self.remove(lv.name)
        self.lvols[lv.name] = lv
        self._by_uuid[lv.uuid] = lv
        self._allocated += lv.allocated_bytes
        lv.disk = self
        return lv

    def remove(self, name: str) -> SimLvol | None:
        lv = self.lvols.pop(name, None)
        if lv is not None:
            self._by_uuid.pop(lv.uuid, None)
            lv.disk = None
            self._allocated -= lv.allocated_bytes
        return lv

    @property
    def allocated_bytes(self) -> int:
        return self._allocated

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.allocated_bytes

    def round(self, size: int) -> int:
        return -(-size // self.cluster_size) * self.cluster_size

    def by_uuid(self, lvol_uuid: str) -> SimLvol | None:
        return self._by_uuid.get(lvol_uuid)

    def info(self, lv: SimLvol) -> LvolInfo:
        return LvolInfo(name=lv.name, alias=f"{self.lvs_name}/{lv.name}", uuid=lv.uuid, size_bytes=lv.size_bytes,
                        allocated_bytes=lv.allocated_bytes, thin=lv.thin, snapshot=lv.snapshot,
                        base_snapshot=lv.base_snapshot, clones=list(lv.clones))


@dataclass
class Subsystem:
    """An NVMe-oF subsystem (or, with ``iscsi``, an iSCSI target node) with one namespace."""
    nqn: str
    bdev: str                      # an lvol UUID or a raid name
    namespace_uuid: str
    address: str
    port: int
    hosts: frozenset[str]
    ana_reporting: bool = False
    ana_state: str = "optimized"
    iscsi: bool = False


@dataclass
class Member:
    replica_id: str
    size_bytes: int
    state: str = "in_sync"         # in_sync | rebuilding
    started: float = 0.0
    ends: float = 0.0


@dataclass
class Raid:
    volume_id: str
    level: str                     # raid1 | raid5f
    slots: list[Member | None]
    strip_size_kb: int = 0
    offline: bool = False          # lost too many members; SPDK does not bring it back by itself
    # a standby head's raid serves no I/O: a member whose path fails stays in it (SPDK keeps the
    # failed controller's bdev and reconnects it), where an active raid's I/O fails the member out
    standby: bool = False

    def members(self) -> list[Member]:
        return [m for m in self.slots if m is not None]

    def member(self, replica_id: str) -> Member | None:
        for m in self.slots:
            if m is not None and m.replica_id == replica_id:
                return m
        return None

    def settle(self, now: float) -> None:
        for m in self.members():
            if m.state == "rebuilding" and now >= m.ends:
                m.state = "in_sync"
                log.info("raid rebuild done volume_id=%s replica_id=%s", self.volume_id, m.replica_id)

    def in_sync(self) -> int:
        return sum(1 for m in self.members() if m.state == "in_sync")

    def rebuilding(self) -> Member | None:
        return next((m for m in self.members() if m.state == "rebuilding"), None)

    def healthy(self) -> bool:
        need = len(self.slots) - 1 if self.level == "raid5f" else 1
        return self.in_sync() >= need

    @property
    def state(self) -> str:
        return "offline" if self.offline else "online"

    def size_bytes(self) -> int:
        sizes = [m.size_bytes for m in self.members()]
        if not sizes or self.offline:
            return 0
        return min(sizes) * (len(self.slots) - 1 if self.level == "raid5f" else 1)


@dataclass
class Attachment:
    """A connection of this node's NVMe/TCP initiator to a subsystem (a raid leg or AttachRemote)."""
    name: str                      # the controller name: att-<attachment id>
    subnqn: str
    address: str
    port: int
    host_nqn: str


class SimTarget:
    """The in-memory state of one node's SPDK target(s)."""

    def __init__(self, fabric: Fabric, node_id: str, host_nqn: str, disk: SimDisk):
        self.fabric = fabric
        self.node_id = node_id
        self.host_nqn = host_nqn
        self.disk = disk
        self.instance = str(uuid.uuid4())
        self.running = True
        self.subsystems: dict[str, Subsystem] = {}
        self.raids: dict[str, Raid] = {}
        self.attachments: dict[str, Attachment] = {}

    # --- subsystems -------------------------------------------------------------------------
    def ensure_subsystem(self, sub: Subsystem) -> Subsystem:
        """Create the subsystem or make an existing one match (hosts, namespace, listener); the ANA
        state of an existing one stays, as SPDK keeps a listener's state."""
        cur = self.subsystems.get(sub.nqn)
        if cur is None:
            self.subsystems[sub.nqn] = cur = sub
        else:
            cur.bdev, cur.namespace_uuid = sub.bdev, sub.namespace_uuid
            cur.address, cur.port = sub.address, sub.port
            if cur.hosts != sub.hosts:
                cur.hosts = sub.hosts
        self.fabric.subsystem_changed(self, cur.nqn)
        return cur

    def remove_subsystem(self, nqn: str) -> bool:
        gone = self.subsystems.pop(nqn, None)
        if gone is not None:
            self.fabric.subsystem_changed(self, nqn)
        return gone is not None

    def set_hosts(self, nqn: str, hosts: frozenset[str]) -> None:
        sub = self.subsystems[nqn]
        sub.hosts = hosts
        self.fabric.subsystem_changed(self, nqn)

    # --- attachments ------------------------------------------------------------------------
    def attach(self, att: Attachment) -> SimLvol:
        """Connect (or find connected) ``att``; raises Unavailable as a failed connect does."""
        lv = self.fabric.reach(att.subnqn, att.address, att.port, att.host_nqn)
        cur = self.attachments.get(att.name)
        if cur is None or (cur.subnqn, cur.address, cur.port) != (att.subnqn, att.address, att.port):
            self.attachments[att.name] = att
        self.fabric.watch(self.node_id, att)
        return lv

    def detach(self, name: str) -> bool:
        att = self.attachments.pop(name, None)
        if att is None:
            return False
        self.fabric.unwatch(self.node_id, att)
        return True

    def connected(self, name: str) -> bool:
        att = self.attachments.get(name)
        if att is None:
            return False
        try:
            self.fabric.reach(att.subnqn, att.address, att.port, att.host_nqn)
            return True
        except Unavailable:
            return False

    def lost_path(self, name: str) -> None:
        """The remote end of attachment ``name`` went away or fenced this node: a member of an active
        raid on it fails (the attachment stays, as SPDK keeps reconnecting)."""
        if not name.startswith("att-leg-"):
            return
        rid = name[len("att-leg-"):]
        for raid in self.raids.values():
            if not raid.standby and raid.member(rid) is not None:
                self.drop_member(raid, rid, "its path failed")

    def fail_unreachable(self, raid: Raid) -> None:
        """An active raid's I/O fails the members it cannot reach (a standby raid just turned active)."""
        for m in raid.members():
            if not self.connected(f"att-leg-{m.replica_id}"):
                self.drop_member(raid, m.replica_id, "its path failed")

    # --- raids ------------------------------------------------------------------------------
    def raid(self, volume_id: str) -> Raid | None:
        r = self.raids.get(volume_id)
        if r is not None:
            r.settle(self.fabric.clock())
        return r

    def drop_member(self, raid: Raid, replica_id: str, why: str) -> None:
        for i, m in enumerate(raid.slots):
            if m is not None and m.replica_id == replica_id:
                raid.slots[i] = None
                log.info("raid member removed volume_id=%s replica_id=%s node_id=%s: %s", raid.volume_id,
                         replica_id, self.node_id, why)
        raid.settle(self.fabric.clock())
        if not raid.offline and not raid.healthy():
            raid.offline = True
            for i, m in enumerate(raid.slots):
                if m is not None and m.state == "rebuilding":
                    raid.slots[i] = None      # its rebuild had no source left
            log.info("raid offline volume_id=%s node_id=%s", raid.volume_id, self.node_id)

    def add_member(self, raid: Raid, replica_id: str, lv: SimLvol, remote: SimTarget) -> bool:
        """bdev_raid_add_base_bdev: the member takes a free slot and is rebuilt from the others."""
        if raid.offline or raid.member(replica_id) is not None:
            return False
        try:
            free = raid.slots.index(None)
        except ValueError:
            log.warning("raid of volume %s has no free slot for replica %s", raid.volume_id, replica_id)
            return False
        # a rebuild writes the whole member: a thin lvol then owns all its clusters
        need = lv.size_bytes - lv.allocated_bytes
        if need > remote.disk.free_bytes:
            log.warning("rebuild of replica %s failed on node %s: no space left in its pool", replica_id,
                        remote.node_id)
            return False
        lv.allocated_bytes = lv.size_bytes
        now = self.fabric.clock()
        raid.slots[free] = Member(replica_id, lv.size_bytes, "rebuilding", now,
                                  now + lv.size_bytes / self.fabric.rebuild_rate)
        log.info("raid rebuild started volume_id=%s replica_id=%s node_id=%s", raid.volume_id, replica_id,
                 self.node_id)
        return True

    def delete_raid(self, volume_id: str) -> bool:
        return self.raids.pop(volume_id, None) is not None

    def stop(self) -> None:
        """The target is gone (its node died): everything it held in memory is lost."""
        self.running = False
        for att in list(self.attachments.values()):
            self.fabric.unwatch(self.node_id, att)
        self.subsystems.clear()
        self.raids.clear()
        self.attachments.clear()


class Fabric:
    """The nodes of a simulation and the NVMe/TCP paths between them."""

    def __init__(self, rebuild_rate: float = 2 * 1024 * MiB, clock: Callable[[], float] = time.monotonic):
        self.rebuild_rate = rebuild_rate      # bytes per second of one raid member's rebuild
        self.clock = clock
        self.targets: dict[str, SimTarget] = {}           # node id -> its running target
        self.addresses: dict[tuple[str, int], str] = {}   # listen address -> node id
        # (node id, subsystem nqn) -> names of the attachments other nodes hold to it, per node
        self._watchers: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))

    def claim(self, node_id: str, *addresses: tuple[str, int]) -> None:
        for a in addresses:
            owner = self.addresses.setdefault(a, node_id)
            if owner != node_id:
                raise ValueError(f"{a[0]}:{a[1]} belongs to node {owner}")

    def start_target(self, node_id: str, host_nqn: str, disk: SimDisk) -> SimTarget:
        old = self.targets.get(node_id)
        if old is not None and old.running:
            return old
        t = self.targets[node_id] = SimTarget(self, node_id, host_nqn, disk)
        return t

    def stop_target(self, node_id: str) -> None:
        t = self.targets.pop(node_id, None)
        if t is None:
            return
        names = list(t.subsystems)
        t.stop()
        for nqn in names:
            self.subsystem_changed(t, nqn)

    def reach(self, subnqn: str, address: str, port: int, host_nqn: str) -> SimLvol:
        """What connecting to ``subnqn`` at ``address:port`` as ``host_nqn`` finds: the lvol behind it."""
        node_id = self.addresses.get((address, port))
        t = self.targets.get(node_id) if node_id else None
        why = ""
        sub = t.subsystems.get(subnqn) if t is not None else None
        if t is None:
            why = "no target listens there"
        elif sub is None or (sub.address, sub.port) != (address, port):
            why = "no such subsystem"
        elif host_nqn not in sub.hosts:
            why = "host not allowed"
        else:
            lv = t.disk.by_uuid(sub.bdev)
            if lv is not None:
                return lv
            why = "subsystem has no namespace"
        raise Unavailable(f"cannot attach {subnqn} at {address}:{port} as {host_nqn}: Input/output error ({why})")

    def watch(self, node_id: str, att: Attachment) -> None:
        remote = self.addresses.get((att.address, att.port))
        if remote is not None:
            self._watchers[(remote, att.subnqn)][node_id].add(att.name)

    def unwatch(self, node_id: str, att: Attachment) -> None:
        remote = self.addresses.get((att.address, att.port))
        w = self._watchers.get((remote, att.subnqn)) if remote else None
        if w is not None and node_id in w:
            w[node_id].discard(att.name)
            if not w[node_id]:
                del w[node_id]
            if not w:
                del self._watchers[(remote, att.subnqn)]

    def subsystem_changed(self, target: SimTarget, nqn: str) -> None:
        """Paths to ``nqn`` on ``target``'s node that no longer reach it fail."""
        w = self._watchers.get((target.node_id, nqn))
        if not w:
            return
        for node_id, names in list(w.items()):
            t = self.targets.get(node_id)
            if t is None:
                continue
            for name in list(names):
                if not t.connected(name):
                    t.lost_path(name)

    def lvol_gone(self, target: SimTarget, lvol_uuid: str) -> None:
        for sub in list(target.subsystems.values()):
            if sub.bdev == lvol_uuid:
                self.subsystem_changed(target, sub.nqn)
