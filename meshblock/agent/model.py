"""What the agent is told to hold and what it reports: heads (a volume's raid over its legs and
its export), their legs, and the views of heads and replicas the API answers with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..dhchap import HostKeys
from ..errors import FailedPrecondition, NotFound
from ..qos import QosLimits
from .exports import ExportState
from .heads import LegState
from .iscsi import IscsiTarget
from .replicas import LvolInfo


@dataclass
class ReplicaView:
    lvol: LvolInfo
    export: ExportState | None


@dataclass(frozen=True)
class HeadLeg:
    replica_id: str
    node_id: str
    subsystem_nqn: str = ""
    address: str = ""
    port: int = 0
    slot: int = 0                      # raid5f: the shard's position


@dataclass(frozen=True)
class Head:
    volume_id: str
    nqn: str
    namespace_uuid: str
    legs: tuple[HeadLeg, ...]
    hosts: frozenset[str]
    ana_state: str = "optimized"
    in_sync: frozenset[str] = frozenset()
    replica_count: int = 0
    protocol: str = "nvmf"
    iscsi: IscsiTarget | None = None
    standby: bool = False              # exported ANA inaccessible; serves once promoted
    cntlid_range: tuple[int, int] | None = None
    raid_level: str = "raid1"
    strip_size_kb: int = 0
    qos: QosLimits = QosLimits()       # set on the exported bdev (standbys too: a promotion keeps them)
    host_keys: tuple[tuple[str, HostKeys], ...] = ()   # hosts that authenticate with DH-HMAC-CHAP
    link_key: str = field(default="", repr=False)      # what this node proves to the replicas' exports
    tls: bool = False                  # exported over TLS only, on the node's TLS port
    host_psks: tuple[tuple[str, str], ...] = field(default=(), repr=False)   # TLS: each host's PSK
    volume_name: str = ""              # for the per-volume metrics (the id where not given)

    @property
    def direct(self) -> bool:
        """One replica on a node's own pool, over NVMe/TCP: exported straight from the data target.
        (iSCSI heads always live in the polling head target: SPDK's iSCSI target cannot sleep; so do
        TLS heads, see docs/security.md.)"""
        return (self.protocol == "nvmf" and len(self.legs) == 1 and not self.legs[0].subsystem_nqn
                and self.replica_count <= 1 and not self.tls)


@dataclass
class HeadView:
    head: Head
    address: str
    port: int
    size_bytes: int
    legs: list[LegState] = field(default_factory=list)
    raid_state: str = ""
    qos: QosLimits | None = None       # the limits SPDK enforces on the head's bdev (None: not read)

    @property
    def enforced(self) -> QosLimits:
        """The QoS limits on the head's bdev (those it asks for where SPDK was not read)."""
        return self.qos if self.qos is not None else self.head.qos


def holdable_head(heads: Mapping[str, Head], volume_id: str) -> Head:
    """The head whose writes SetHeadAccess may hold or release: one this node heads, exported
    over NVMe-oF (iSCSI has no ANA states) and not a standby."""
    head = heads.get(volume_id)
    if head is None:
        raise NotFound(f"this node does not head volume {volume_id}")
    if head.iscsi is not None:
        raise FailedPrecondition(f"volume {volume_id} is exported over iSCSI, which has no ANA states "
                                 "to hold its writes with")
    if head.standby:
        raise FailedPrecondition(f"this node is a standby head of volume {volume_id}; its access "
                                 "changes when it is promoted")
    return head
