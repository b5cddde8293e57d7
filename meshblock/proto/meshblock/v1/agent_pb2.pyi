from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetNodeInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "name", "host_nqn", "nvmf_address", "nvmf_port", "labels", "spdk_version", "agent_version", "iscsi_address", "iscsi_port", "tls_port")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    NVMF_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NVMF_PORT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SPDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ISCSI_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ISCSI_PORT_FIELD_NUMBER: _ClassVar[int]
    TLS_PORT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    host_nqn: str
    nvmf_address: str
    nvmf_port: int
    labels: _containers.ScalarMap[str, str]
    spdk_version: str
    agent_version: str
    iscsi_address: str
    iscsi_port: int
    tls_port: int
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., host_nqn: _Optional[str] = ..., nvmf_address: _Optional[str] = ..., nvmf_port: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., spdk_version: _Optional[str] = ..., agent_version: _Optional[str] = ..., iscsi_address: _Optional[str] = ..., iscsi_port: _Optional[int] = ..., tls_port: _Optional[int] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("healthy", "target_state", "target_restarts", "target_pid", "spdk_version", "pool_ready", "message")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    TARGET_STATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_PID_FIELD_NUMBER: _ClassVar[int]
    SPDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    POOL_READY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    target_state: str
    target_restarts: int
    target_pid: int
    spdk_version: str
    pool_ready: bool
    message: str
    def __init__(self, healthy: _Optional[bool] = ..., target_state: _Optional[str] = ..., target_restarts: _Optional[int] = ..., target_pid: _Optional[int] = ..., spdk_version: _Optional[str] = ..., pool_ready: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class GetPoolRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Pool(_message.Message):
    __slots__ = ("name", "uuid", "total_bytes", "free_bytes", "provisioned_bytes", "cluster_size", "replica_count", "snapshot_count", "devices")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROVISIONED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SIZE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    name: str
    uuid: str
    total_bytes: int
    free_bytes: int
    provisioned_bytes: int
    cluster_size: int
    replica_count: int
    snapshot_count: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., uuid: _Optional[str] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., provisioned_bytes: _Optional[int] = ..., cluster_size: _Optional[int] = ..., replica_count: _Optional[int] = ..., snapshot_count: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateReplicaRequest(_message.Message):
    __slots__ = ("replica_id", "size_bytes", "thick")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    THICK_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    size_bytes: int
    thick: bool
    def __init__(self, replica_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., thick: _Optional[bool] = ...) -> None: ...

class Replica(_message.Message):
    __slots__ = ("replica_id", "size_bytes", "allocated_bytes", "thin", "read_only", "bdev_name", "lvol_uuid", "origin_snapshot_id", "export")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    THIN_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    BDEV_NAME_FIELD_NUMBER: _ClassVar[int]
    LVOL_UUID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    size_bytes: int
    allocated_bytes: int
    thin: bool
    read_only: bool
    bdev_name: str
    lvol_uuid: str
    origin_snapshot_id: str
    export: Export
    def __init__(self, replica_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., allocated_bytes: _Optional[int] = ..., thin: _Optional[bool] = ..., read_only: _Optional[bool] = ..., bdev_name: _Optional[str] = ..., lvol_uuid: _Optional[str] = ..., origin_snapshot_id: _Optional[str] = ..., export: _Optional[_Union[Export, _Mapping]] = ...) -> None: ...

class DeleteReplicaRequest(_message.Message):
    __slots__ = ("replica_id",)
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    def __init__(self, replica_id: _Optional[str] = ...) -> None: ...

class DeleteReplicaReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class ResizeReplicaRequest(_message.Message):
    __slots__ = ("replica_id", "size_bytes")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    size_bytes: int
    def __init__(self, replica_id: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class GetReplicaRequest(_message.Message):
    __slots__ = ("replica_id",)
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    def __init__(self, replica_id: _Optional[str] = ...) -> None: ...

class ListReplicasRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReplicasReply(_message.Message):
    __slots__ = ("replicas",)
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    def __init__(self, replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ...) -> None: ...

class ExportReplicaRequest(_message.Message):
    __slots__ = ("replica_id", "allowed_host_nqns", "host_keys")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_HOST_NQNS_FIELD_NUMBER: _ClassVar[int]
    HOST_KEYS_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    allowed_host_nqns: _containers.RepeatedScalarFieldContainer[str]
    host_keys: _containers.RepeatedCompositeFieldContainer[HostKey]
    def __init__(self, replica_id: _Optional[str] = ..., allowed_host_nqns: _Optional[_Iterable[str]] = ..., host_keys: _Optional[_Iterable[_Union[HostKey, _Mapping]]] = ...) -> None: ...

class Export(_message.Message):
    __slots__ = ("nqn", "transport", "address", "port", "allowed_host_nqns", "namespace_uuid", "host_keys")
    class HostKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NQN_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_HOST_NQNS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_UUID_FIELD_NUMBER: _ClassVar[int]
    HOST_KEYS_FIELD_NUMBER: _ClassVar[int]
    nqn: str
    transport: str
    address: str
    port: int
    allowed_host_nqns: _containers.RepeatedScalarFieldContainer[str]
    namespace_uuid: str
    host_keys: _containers.ScalarMap[str, str]
    def __init__(self, nqn: _Optional[str] = ..., transport: _Optional[str] = ..., address: _Optional[str] = ..., port: _Optional[int] = ..., allowed_host_nqns: _Optional[_Iterable[str]] = ..., namespace_uuid: _Optional[str] = ..., host_keys: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UnexportReplicaRequest(_message.Message):
    __slots__ = ("replica_id",)
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    def __init__(self, replica_id: _Optional[str] = ...) -> None: ...

class UnexportReplicaReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class CreateReplicaSnapshotRequest(_message.Message):
    __slots__ = ("replica_id", "snapshot_id")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    snapshot_id: str
    def __init__(self, replica_id: _Optional[str] = ..., snapshot_id: _Optional[str] = ...) -> None: ...

class ReplicaSnapshot(_message.Message):
    __slots__ = ("snapshot_id", "replica_id", "size_bytes", "lvol_uuid")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LVOL_UUID_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    replica_id: str
    size_bytes: int
    lvol_uuid: str
    def __init__(self, snapshot_id: _Optional[str] = ..., replica_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., lvol_uuid: _Optional[str] = ...) -> None: ...

class DeleteReplicaSnapshotRequest(_message.Message):
    __slots__ = ("snapshot_id",)
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    def __init__(self, snapshot_id: _Optional[str] = ...) -> None: ...

class DeleteReplicaSnapshotReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class ListReplicaSnapshotsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReplicaSnapshotsReply(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[ReplicaSnapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[ReplicaSnapshot, _Mapping]]] = ...) -> None: ...

class CloneSnapshotRequest(_message.Message):
    __slots__ = ("snapshot_id", "replica_id")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    replica_id: str
    def __init__(self, snapshot_id: _Optional[str] = ..., replica_id: _Optional[str] = ...) -> None: ...

class AttachRemoteRequest(_message.Message):
    __slots__ = ("attachment_id", "subsystem_nqn", "address", "port", "transport")
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSYSTEM_NQN_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    attachment_id: str
    subsystem_nqn: str
    address: str
    port: int
    transport: str
    def __init__(self, attachment_id: _Optional[str] = ..., subsystem_nqn: _Optional[str] = ..., address: _Optional[str] = ..., port: _Optional[int] = ..., transport: _Optional[str] = ...) -> None: ...

class Attachment(_message.Message):
    __slots__ = ("attachment_id", "subsystem_nqn", "address", "port", "bdev_names", "size_bytes", "connected")
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSYSTEM_NQN_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    BDEV_NAMES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    attachment_id: str
    subsystem_nqn: str
    address: str
    port: int
    bdev_names: _containers.RepeatedScalarFieldContainer[str]
    size_bytes: int
    connected: bool
    def __init__(self, attachment_id: _Optional[str] = ..., subsystem_nqn: _Optional[str] = ..., address: _Optional[str] = ..., port: _Optional[int] = ..., bdev_names: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ..., connected: _Optional[bool] = ...) -> None: ...

class DetachRemoteRequest(_message.Message):
    __slots__ = ("attachment_id",)
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    attachment_id: str
    def __init__(self, attachment_id: _Optional[str] = ...) -> None: ...

class DetachRemoteReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class ListAttachmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAttachmentsReply(_message.Message):
    __slots__ = ("attachments",)
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    def __init__(self, attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ...) -> None: ...

class HeadLeg(_message.Message):
    __slots__ = ("replica_id", "node_id", "subsystem_nqn", "address", "port", "slot")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSYSTEM_NQN_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    node_id: str
    subsystem_nqn: str
    address: str
    port: int
    slot: int
    def __init__(self, replica_id: _Optional[str] = ..., node_id: _Optional[str] = ..., subsystem_nqn: _Optional[str] = ..., address: _Optional[str] = ..., port: _Optional[int] = ..., slot: _Optional[int] = ...) -> None: ...

class HeadSpec(_message.Message):
    __slots__ = ("volume_id", "nqn", "namespace_uuid", "legs", "allowed_host_nqns", "ana_state", "in_sync_replica_ids", "replica_count", "protocol", "iscsi", "standby", "cntlid_min", "cntlid_max", "raid_level", "strip_size_kb", "qos", "host_keys", "link_dhchap_key", "tls", "volume_name")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    NQN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_UUID_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_HOST_NQNS_FIELD_NUMBER: _ClassVar[int]
    ANA_STATE_FIELD_NUMBER: _ClassVar[int]
    IN_SYNC_REPLICA_IDS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ISCSI_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    CNTLID_MIN_FIELD_NUMBER: _ClassVar[int]
    CNTLID_MAX_FIELD_NUMBER: _ClassVar[int]
    RAID_LEVEL_FIELD_NUMBER: _ClassVar[int]
    STRIP_SIZE_KB_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    HOST_KEYS_FIELD_NUMBER: _ClassVar[int]
    LINK_DHCHAP_KEY_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_NAME_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    nqn: str
    namespace_uuid: str
    legs: _containers.RepeatedCompositeFieldContainer[HeadLeg]
    allowed_host_nqns: _containers.RepeatedScalarFieldContainer[str]
    ana_state: str
    in_sync_replica_ids: _containers.RepeatedScalarFieldContainer[str]
    replica_count: int
    protocol: str
    iscsi: IscsiExport
    standby: bool
    cntlid_min: int
    cntlid_max: int
    raid_level: str
    strip_size_kb: int
    qos: RateLimits
    host_keys: _containers.RepeatedCompositeFieldContainer[HostKey]
    link_dhchap_key: str
    tls: bool
    volume_name: str
    def __init__(self, volume_id: _Optional[str] = ..., nqn: _Optional[str] = ..., namespace_uuid: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[HeadLeg, _Mapping]]] = ..., allowed_host_nqns: _Optional[_Iterable[str]] = ..., ana_state: _Optional[str] = ..., in_sync_replica_ids: _Optional[_Iterable[str]] = ..., replica_count: _Optional[int] = ..., protocol: _Optional[str] = ..., iscsi: _Optional[_Union[IscsiExport, _Mapping]] = ..., standby: _Optional[bool] = ..., cntlid_min: _Optional[int] = ..., cntlid_max: _Optional[int] = ..., raid_level: _Optional[str] = ..., strip_size_kb: _Optional[int] = ..., qos: _Optional[_Union[RateLimits, _Mapping]] = ..., host_keys: _Optional[_Iterable[_Union[HostKey, _Mapping]]] = ..., link_dhchap_key: _Optional[str] = ..., tls: _Optional[bool] = ..., volume_name: _Optional[str] = ...) -> None: ...

class HostKey(_message.Message):
    __slots__ = ("host_nqn", "dhchap_key", "dhchap_ctrl_key", "tls_psk")
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    DHCHAP_KEY_FIELD_NUMBER: _ClassVar[int]
    DHCHAP_CTRL_KEY_FIELD_NUMBER: _ClassVar[int]
    TLS_PSK_FIELD_NUMBER: _ClassVar[int]
    host_nqn: str
    dhchap_key: str
    dhchap_ctrl_key: str
    tls_psk: str
    def __init__(self, host_nqn: _Optional[str] = ..., dhchap_key: _Optional[str] = ..., dhchap_ctrl_key: _Optional[str] = ..., tls_psk: _Optional[str] = ...) -> None: ...

class RateLimits(_message.Message):
    __slots__ = ("rw_ios_per_sec", "rw_mbytes_per_sec", "r_mbytes_per_sec", "w_mbytes_per_sec")
    RW_IOS_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    RW_MBYTES_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    R_MBYTES_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    W_MBYTES_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    rw_ios_per_sec: int
    rw_mbytes_per_sec: int
    r_mbytes_per_sec: int
    w_mbytes_per_sec: int
    def __init__(self, rw_ios_per_sec: _Optional[int] = ..., rw_mbytes_per_sec: _Optional[int] = ..., r_mbytes_per_sec: _Optional[int] = ..., w_mbytes_per_sec: _Optional[int] = ...) -> None: ...

class IscsiExport(_message.Message):
    __slots__ = ("target_iqn", "initiators", "netmasks", "chap_user", "chap_secret")
    TARGET_IQN_FIELD_NUMBER: _ClassVar[int]
    INITIATORS_FIELD_NUMBER: _ClassVar[int]
    NETMASKS_FIELD_NUMBER: _ClassVar[int]
    CHAP_USER_FIELD_NUMBER: _ClassVar[int]
    CHAP_SECRET_FIELD_NUMBER: _ClassVar[int]
    target_iqn: str
    initiators: _containers.RepeatedScalarFieldContainer[str]
    netmasks: _containers.RepeatedScalarFieldContainer[str]
    chap_user: str
    chap_secret: str
    def __init__(self, target_iqn: _Optional[str] = ..., initiators: _Optional[_Iterable[str]] = ..., netmasks: _Optional[_Iterable[str]] = ..., chap_user: _Optional[str] = ..., chap_secret: _Optional[str] = ...) -> None: ...

class LegStatus(_message.Message):
    __slots__ = ("replica_id", "state", "rebuild_percent", "rebuild_blocks")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REBUILD_PERCENT_FIELD_NUMBER: _ClassVar[int]
    REBUILD_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    state: str
    rebuild_percent: float
    rebuild_blocks: int
    def __init__(self, replica_id: _Optional[str] = ..., state: _Optional[str] = ..., rebuild_percent: _Optional[float] = ..., rebuild_blocks: _Optional[int] = ...) -> None: ...

class HeadStatus(_message.Message):
    __slots__ = ("volume_id", "nqn", "address", "port", "size_bytes", "allowed_host_nqns", "ana_state", "legs", "raid_state", "protocol", "target_iqn", "allowed_initiators", "standby", "qos", "host_keys", "tls", "host_psks")
    class HostKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class HostPsksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    NQN_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_HOST_NQNS_FIELD_NUMBER: _ClassVar[int]
    ANA_STATE_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    RAID_STATE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_IQN_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_INITIATORS_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    HOST_KEYS_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    HOST_PSKS_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    nqn: str
    address: str
    port: int
    size_bytes: int
    allowed_host_nqns: _containers.RepeatedScalarFieldContainer[str]
    ana_state: str
    legs: _containers.RepeatedCompositeFieldContainer[LegStatus]
    raid_state: str
    protocol: str
    target_iqn: str
    allowed_initiators: _containers.RepeatedScalarFieldContainer[str]
    standby: bool
    qos: RateLimits
    host_keys: _containers.ScalarMap[str, str]
    tls: bool
    host_psks: _containers.ScalarMap[str, str]
    def __init__(self, volume_id: _Optional[str] = ..., nqn: _Optional[str] = ..., address: _Optional[str] = ..., port: _Optional[int] = ..., size_bytes: _Optional[int] = ..., allowed_host_nqns: _Optional[_Iterable[str]] = ..., ana_state: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[LegStatus, _Mapping]]] = ..., raid_state: _Optional[str] = ..., protocol: _Optional[str] = ..., target_iqn: _Optional[str] = ..., allowed_initiators: _Optional[_Iterable[str]] = ..., standby: _Optional[bool] = ..., qos: _Optional[_Union[RateLimits, _Mapping]] = ..., host_keys: _Optional[_Mapping[str, str]] = ..., tls: _Optional[bool] = ..., host_psks: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SetHeadAccessRequest(_message.Message):
    __slots__ = ("volume_id", "ana_state", "hold_ms")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    ANA_STATE_FIELD_NUMBER: _ClassVar[int]
    HOLD_MS_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    ana_state: str
    hold_ms: int
    def __init__(self, volume_id: _Optional[str] = ..., ana_state: _Optional[str] = ..., hold_ms: _Optional[int] = ...) -> None: ...

class DeleteHeadRequest(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    def __init__(self, volume_id: _Optional[str] = ...) -> None: ...

class DeleteHeadReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class ListHeadsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListHeadsReply(_message.Message):
    __slots__ = ("heads",)
    HEADS_FIELD_NUMBER: _ClassVar[int]
    heads: _containers.RepeatedCompositeFieldContainer[HeadStatus]
    def __init__(self, heads: _Optional[_Iterable[_Union[HeadStatus, _Mapping]]] = ...) -> None: ...

class GetVolumeIostatRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VolumeIostat(_message.Message):
    __slots__ = ("volume_id", "volume_name", "read_ops", "write_ops", "read_bytes", "write_bytes", "read_latency_seconds", "write_latency_seconds", "sampled_at", "target")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_NAME_FIELD_NUMBER: _ClassVar[int]
    READ_OPS_FIELD_NUMBER: _ClassVar[int]
    WRITE_OPS_FIELD_NUMBER: _ClassVar[int]
    READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRITE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WRITE_LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    volume_name: str
    read_ops: int
    write_ops: int
    read_bytes: int
    write_bytes: int
    read_latency_seconds: float
    write_latency_seconds: float
    sampled_at: float
    target: str
    def __init__(self, volume_id: _Optional[str] = ..., volume_name: _Optional[str] = ..., read_ops: _Optional[int] = ..., write_ops: _Optional[int] = ..., read_bytes: _Optional[int] = ..., write_bytes: _Optional[int] = ..., read_latency_seconds: _Optional[float] = ..., write_latency_seconds: _Optional[float] = ..., sampled_at: _Optional[float] = ..., target: _Optional[str] = ...) -> None: ...

class GetVolumeIostatReply(_message.Message):
    __slots__ = ("volumes",)
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeIostat]
    def __init__(self, volumes: _Optional[_Iterable[_Union[VolumeIostat, _Mapping]]] = ...) -> None: ...
