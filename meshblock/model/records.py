"""Typed records of the cluster's desired and observed state, and their state machines.

Records are stored as JSON documents (``to_data`` / ``from_data``) by the state
store; the store's revision travels with each record for optimistic concurrency.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ..qos import QosLimits

T = TypeVar("T", bound="Record")


class NodeState(str, enum.Enum):
    UP = "up"
    DOWN = "down"


class VolumeState(str, enum.Enum):
    CREATING = "creating"
    AVAILABLE = "available"      # every replica online
    DEGRADED = "degraded"        # serving with fewer replicas than asked for
    FAULTED = "faulted"          # no replica reachable: not serving
    DELETING = "deleting"


class ReplicaState(str, enum.Enum):
    CREATING = "creating"
    ONLINE = "online"
    OFFLINE = "offline"          # its node is down or the replica is missing there
    REBUILDING = "rebuilding"
    DELETING = "deleting"


class SnapshotState(str, enum.Enum):
    CREATING = "creating"
    READY = "ready"
    DELETING = "deleting"


VOLUME_TRANSITIONS: dict[VolumeState, set[VolumeState]] = {
    VolumeState.CREATING: {VolumeState.AVAILABLE, VolumeState.DEGRADED, VolumeState.FAULTED, VolumeState.DELETING},
    VolumeState.AVAILABLE: {VolumeState.DEGRADED, VolumeState.FAULTED, VolumeState.DELETING},
    VolumeState.DEGRADED: {VolumeState.AVAILABLE, VolumeState.FAULTED, VolumeState.DELETING},
    VolumeState.FAULTED: {VolumeState.AVAILABLE, VolumeState.DEGRADED, VolumeState.DELETING},
    VolumeState.DELETING: set(),
}


class InvalidTransition(ValueError):
    pass


def now() -> float:
    return time.time()


@dataclass
class Record:
    KIND: ClassVar[str] = ""
    id: str
    revision: int = field(default=0, compare=False)

    @property
    def name_key(self) -> str | None:
        return None

    def to_data(self) -> dict[str, Any]:
        # records hold scalars, enums and flat lists/dicts of strings: one level of copying is a deep copy
        d: dict[str, Any] = {}
        for name in _field_names(type(self)):
            v = getattr(self, name)
            if isinstance(v, enum.Enum):
                v = v.value
            elif isinstance(v, (list, dict)):
                v = v.copy()
            d[name] = v
        return d

    @classmethod
    def from_data(cls: type[T], id: str, data: dict[str, Any], revision: int = 0) -> T:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in ("id", "revision") or f.name not in data:
                continue
            v = data[f.name]
            t = f.type if isinstance(f.type, type) else _ENUMS.get(str(f.type))
            if t is not None and isinstance(t, type) and issubclass(t, enum.Enum) and v is not None:
                v = t(v)
            kwargs[f.name] = v
        return cls(id=id, revision=revision, **kwargs)


@dataclass
class Node(Record):
    KIND: ClassVar[str] = "node"
    name: str = ""
    endpoint: str = ""               # agent gRPC address (unix:/path or host:port)
    host_nqn: str = ""
    nvmf_address: str = ""
    nvmf_port: int = 4420
    labels: dict[str, str] = field(default_factory=dict)
    state: NodeState = NodeState.UP
    cordoned: bool = False
    draining: bool = False
    drain_total: int = 0             # replicas on the node when its drain started
    total_bytes: int = 0
    free_bytes: int = 0
    pool_block_size: int = 0         # bytes (0: not reported); raids need one block size in all members
    metrics_url: str = ""            # where the agent serves Prometheus metrics ("": nowhere)
    last_seen: float = 0.0
    registered_at: float = 0.0
    # distinct per node: picks the NVMe controller ids the node's volume exports hand out, so a
    # volume exported by several nodes (active and standby heads) never repeats one
    slot: int = -1

    @property
    def name_key(self) -> str | None:
        return self.name

    @property
    def cntlid_range(self) -> tuple[int, int]:
        first = 1 + (max(self.slot, 0) % CNTLID_SLOTS) * CNTLID_SLOT_SIZE
        return first, first + CNTLID_SLOT_SIZE - 1


CNTLID_SLOT_SIZE = 1000
CNTLID_SLOTS = 65        # SPDK's controller ids run from 1 to 65519


@dataclass
class Volume(Record):
    KIND: ClassVar[str] = "volume"
    name: str = ""
    size_bytes: int = 0
    replicas: int = 1
    spread: str = ""                 # node label whose values replicas must not share ("" = node)
    labels: dict[str, str] = field(default_factory=dict)
    state: VolumeState = VolumeState.CREATING
    stage: str = ""                  # the persisted step of a long operation under way
    head_node_id: str = ""
    export_address: str = ""         # where the head exports the volume
    export_port: int = 0
    # standby heads (replicated NVMe/TCP volumes): node id -> "address:port" of its ANA-inaccessible export
    standby_paths: dict[str, str] = field(default_factory=dict)
    nqn: str = ""
    namespace_uuid: str = ""
    hosts: list[str] = field(default_factory=list)      # host NQNs (iSCSI: initiator IQNs) allowed to connect
    read_only_hosts: list[str] = field(default_factory=list)  # those of them published read-only
    protocol: str = "nvmf"           # nvmf | iscsi
    target_iqn: str = ""             # iscsi: the target node's name
    iscsi_netmasks: list[str] = field(default_factory=list)
    chap_user: str = ""              # iscsi: CHAP user ("" = no CHAP)
    chap_secret: str = ""            # iscsi: CHAP secret; kept here, never returned by the API
    source_snapshot_id: str = ""
    source_volume_id: str = ""
    created_at: float = 0.0
    message: str = ""
    generation: int = 1              # bumped on every change of what the volume should be
    # erasure coding (0: replicated): ec_data + ec_parity shards, and ``replicas`` counts them all
    ec_data: int = 0
    ec_parity: int = 0
    # replicated and erasure-coded volumes: the replicas (shards) that hold every acknowledged write,
    # as the head last reported them; kept while their nodes are down (replication/layout.in_sync_after)
    in_sync: list[str] = field(default_factory=list)
    # QoS limits enforced on the head (meshblock/qos.py), 0 = no limit: I/O per second and MiB/s
    max_iops: int = 0
    max_mbps: int = 0
    max_read_mbps: int = 0
    max_write_mbps: int = 0
    # NVMe/TCP hosts that authenticate with DH-HMAC-CHAP: host NQN -> the fingerprints of its secrets
    # (meshblock/dhchap.py HostKeys.fingerprints), and host NQN -> the secrets, sealed with the
    # controller's secrets key (meshblock/secretbox.py) for the context "<volume id>/<host NQN>"
    host_auth: dict[str, str] = field(default_factory=dict)
    host_secrets: dict[str, str] = field(default_factory=dict)
    tenant: str = ""                 # the owning tenant ("": the default tenant)
    # NVMe/TCP over TLS only: host NQN -> the fingerprint of its PSK, and host NQN -> the PSK sealed
    # like the DH-HMAC-CHAP secrets, for the context "<volume id>/<host NQN>/tls"
    tls: bool = False
    host_tls: dict[str, str] = field(default_factory=dict)
    host_psks: dict[str, str] = field(default_factory=dict)

    @property
    def name_key(self) -> str | None:
        return self.name

    @property
    def qos(self) -> QosLimits:
        """The volume's QoS limits."""
        return QosLimits(self.max_iops, self.max_mbps, self.max_read_mbps, self.max_write_mbps)

    def set_qos(self, limits: QosLimits) -> None:
        self.max_iops, self.max_mbps, self.max_read_mbps, self.max_write_mbps = limits.astuple()

    @property
    def erasure(self):
        """The volume's erasure-coding layout, or None for a replicated volume."""
        from ..replication.erasure import Layout
        return Layout(self.ec_data, self.ec_parity) if self.ec_data else None

    @property
    def replica_bytes(self) -> int:
        """What each replica (or shard) holds."""
        return self.size_bytes // self.ec_data if self.ec_data else self.size_bytes

    def move_to(self, new: VolumeState) -> None:
        if new == self.state:
            return
        if new not in VOLUME_TRANSITIONS[self.state]:
            raise InvalidTransition(f"volume {self.name}: {self.state.value} -> {new.value} is not allowed")
        self.state = new


@dataclass
class Replica(Record):
    KIND: ClassVar[str] = "replica"
    volume_id: str = ""
    node_id: str = ""
    size_bytes: int = 0
    state: ReplicaState = ReplicaState.CREATING
    source_snapshot_replica: str = ""   # for clones: the snapshot lvol id on the same node
    created_at: float = 0.0
    offline_since: float = 0.0          # when it was last seen leaving the volume (0: it has not)
    shard: int = -1                     # erasure-coded volumes: the position in the stripe

    def went_offline(self) -> None:
        """Offline, since the first time it was seen leaving the volume."""
        self.state = ReplicaState.OFFLINE
        self.offline_since = self.offline_since or time.time()


@dataclass
class Snapshot(Record):
    KIND: ClassVar[str] = "snapshot"
    name: str = ""
    volume_id: str = ""
    size_bytes: int = 0
    state: SnapshotState = SnapshotState.CREATING
    # per node: the agent-level snapshot id taken of that node's replica
    parts: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    group_id: str = ""               # a member of this group snapshot (taken with it, deleted with it)
    tenant: str = ""                 # its volume's tenant ("": the default tenant)

    @property
    def name_key(self) -> str | None:
        return self.name


class GroupSnapshotState(str, enum.Enum):
    CREATING = "creating"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"


@dataclass
class GroupSnapshot(Record):
    """Snapshots of several volumes taken at one instant: their writes are held while they are taken."""
    KIND: ClassVar[str] = "group_snapshot"
    name: str = ""
    volume_ids: list[str] = field(default_factory=list)
    snapshot_ids: list[str] = field(default_factory=list)    # the member snapshots, in volume order
    state: GroupSnapshotState = GroupSnapshotState.CREATING
    created_at: float = 0.0
    attempts: int = 0                # tries started (a controller may die during one)
    hold_ms: int = 0                 # how long the volumes' writes were held
    message: str = ""                # why the last try failed
    tenant: str = ""                 # its volumes' tenant ("": the default tenant)

    @property
    def name_key(self) -> str | None:
        return self.name


@dataclass
class Host(Record):
    """A host that attaches volumes, known by a stable id (a Kubernetes node name, say)."""
    KIND: ClassVar[str] = "host"
    host_nqn: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    registered_at: float = 0.0
    max_volumes: int = 0             # 0: no limit
    initiator_iqn: str = ""          # iSCSI initiator name ("": none)
    tenant: str = ""                 # the tenant that registered it ("": the default tenant)


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("id", "revision"))
    return names


_ENUMS = {"NodeState": NodeState, "VolumeState": VolumeState, "ReplicaState": ReplicaState,
          "SnapshotState": SnapshotState, "GroupSnapshotState": GroupSnapshotState}
