from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReplicaStatus(_message.Message):
    __slots__ = ("replica_id", "node_id", "node_name", "state", "rebuild_progress", "rebuild_eta_seconds", "shard")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REBUILD_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REBUILD_ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    node_id: str
    node_name: str
    state: str
    rebuild_progress: float
    rebuild_eta_seconds: int
    shard: int
    def __init__(self, replica_id: _Optional[str] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., state: _Optional[str] = ..., rebuild_progress: _Optional[float] = ..., rebuild_eta_seconds: _Optional[int] = ..., shard: _Optional[int] = ...) -> None: ...

class Volume(_message.Message):
    __slots__ = ("id", "name", "size_bytes", "replicas", "spread", "labels", "state", "stage", "nqn", "namespace_uuid", "head_node_id", "hosts", "replica_status", "source_snapshot_id", "source_volume_id", "created_at", "message", "read_only_hosts", "protocol", "target_iqn", "iscsi_netmasks", "chap_user", "erasure", "qos", "host_auth", "tenant", "tls")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class HostAuthEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    NQN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_UUID_FIELD_NUMBER: _ClassVar[int]
    HEAD_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_HOSTS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_IQN_FIELD_NUMBER: _ClassVar[int]
    ISCSI_NETMASKS_FIELD_NUMBER: _ClassVar[int]
    CHAP_USER_FIELD_NUMBER: _ClassVar[int]
    ERASURE_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    HOST_AUTH_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    size_bytes: int
    replicas: int
    spread: str
    labels: _containers.ScalarMap[str, str]
    state: str
    stage: str
    nqn: str
    namespace_uuid: str
    head_node_id: str
    hosts: _containers.RepeatedScalarFieldContainer[str]
    replica_status: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    source_snapshot_id: str
    source_volume_id: str
    created_at: float
    message: str
    read_only_hosts: _containers.RepeatedScalarFieldContainer[str]
    protocol: str
    target_iqn: str
    iscsi_netmasks: _containers.RepeatedScalarFieldContainer[str]
    chap_user: str
    erasure: ErasureCoding
    qos: QosLimits
    host_auth: _containers.ScalarMap[str, str]
    tenant: str
    tls: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., replicas: _Optional[int] = ..., spread: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., state: _Optional[str] = ..., stage: _Optional[str] = ..., nqn: _Optional[str] = ..., namespace_uuid: _Optional[str] = ..., head_node_id: _Optional[str] = ..., hosts: _Optional[_Iterable[str]] = ..., replica_status: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ..., source_snapshot_id: _Optional[str] = ..., source_volume_id: _Optional[str] = ..., created_at: _Optional[float] = ..., message: _Optional[str] = ..., read_only_hosts: _Optional[_Iterable[str]] = ..., protocol: _Optional[str] = ..., target_iqn: _Optional[str] = ..., iscsi_netmasks: _Optional[_Iterable[str]] = ..., chap_user: _Optional[str] = ..., erasure: _Optional[_Union[ErasureCoding, _Mapping]] = ..., qos: _Optional[_Union[QosLimits, _Mapping]] = ..., host_auth: _Optional[_Mapping[str, str]] = ..., tenant: _Optional[str] = ..., tls: _Optional[bool] = ...) -> None: ...

class QosLimits(_message.Message):
    __slots__ = ("max_iops", "max_mbps", "max_read_mbps", "max_write_mbps")
    MAX_IOPS_FIELD_NUMBER: _ClassVar[int]
    MAX_MBPS_FIELD_NUMBER: _ClassVar[int]
    MAX_READ_MBPS_FIELD_NUMBER: _ClassVar[int]
    MAX_WRITE_MBPS_FIELD_NUMBER: _ClassVar[int]
    max_iops: int
    max_mbps: int
    max_read_mbps: int
    max_write_mbps: int
    def __init__(self, max_iops: _Optional[int] = ..., max_mbps: _Optional[int] = ..., max_read_mbps: _Optional[int] = ..., max_write_mbps: _Optional[int] = ...) -> None: ...

class ErasureCoding(_message.Message):
    __slots__ = ("data", "parity")
    DATA_FIELD_NUMBER: _ClassVar[int]
    PARITY_FIELD_NUMBER: _ClassVar[int]
    data: int
    parity: int
    def __init__(self, data: _Optional[int] = ..., parity: _Optional[int] = ...) -> None: ...

class IscsiOptions(_message.Message):
    __slots__ = ("netmasks", "chap_user", "chap_secret")
    NETMASKS_FIELD_NUMBER: _ClassVar[int]
    CHAP_USER_FIELD_NUMBER: _ClassVar[int]
    CHAP_SECRET_FIELD_NUMBER: _ClassVar[int]
    netmasks: _containers.RepeatedScalarFieldContainer[str]
    chap_user: str
    chap_secret: str
    def __init__(self, netmasks: _Optional[_Iterable[str]] = ..., chap_user: _Optional[str] = ..., chap_secret: _Optional[str] = ...) -> None: ...

class CreateVolumeRequest(_message.Message):
    __slots__ = ("name", "size_bytes", "replicas", "spread", "labels", "protocol", "iscsi", "erasure", "qos", "tenant", "tls")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ISCSI_FIELD_NUMBER: _ClassVar[int]
    ERASURE_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    replicas: int
    spread: str
    labels: _containers.ScalarMap[str, str]
    protocol: str
    iscsi: IscsiOptions
    erasure: ErasureCoding
    qos: QosLimits
    tenant: str
    tls: bool
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., replicas: _Optional[int] = ..., spread: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., protocol: _Optional[str] = ..., iscsi: _Optional[_Union[IscsiOptions, _Mapping]] = ..., erasure: _Optional[_Union[ErasureCoding, _Mapping]] = ..., qos: _Optional[_Union[QosLimits, _Mapping]] = ..., tenant: _Optional[str] = ..., tls: _Optional[bool] = ...) -> None: ...

class GetVolumeRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListVolumesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "label_selector", "state", "node_id")
    class LabelSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    label_selector: _containers.ScalarMap[str, str]
    state: str
    node_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., label_selector: _Optional[_Mapping[str, str]] = ..., state: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class ListVolumesReply(_message.Message):
    __slots__ = ("volumes", "next_page_token")
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    volumes: _containers.RepeatedCompositeFieldContainer[Volume]
    next_page_token: str
    def __init__(self, volumes: _Optional[_Iterable[_Union[Volume, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteVolumeRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteVolumeReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class ResizeVolumeRequest(_message.Message):
    __slots__ = ("ref", "size_bytes")
    REF_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ref: str
    size_bytes: int
    def __init__(self, ref: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class PublishVolumeRequest(_message.Message):
    __slots__ = ("ref", "host_nqn", "read_only", "initiator_iqn", "dhchap", "dhchap_bidirectional", "rotate_dhchap")
    REF_FIELD_NUMBER: _ClassVar[int]
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_IQN_FIELD_NUMBER: _ClassVar[int]
    DHCHAP_FIELD_NUMBER: _ClassVar[int]
    DHCHAP_BIDIRECTIONAL_FIELD_NUMBER: _ClassVar[int]
    ROTATE_DHCHAP_FIELD_NUMBER: _ClassVar[int]
    ref: str
    host_nqn: str
    read_only: bool
    initiator_iqn: str
    dhchap: bool
    dhchap_bidirectional: bool
    rotate_dhchap: bool
    def __init__(self, ref: _Optional[str] = ..., host_nqn: _Optional[str] = ..., read_only: _Optional[bool] = ..., initiator_iqn: _Optional[str] = ..., dhchap: _Optional[bool] = ..., dhchap_bidirectional: _Optional[bool] = ..., rotate_dhchap: _Optional[bool] = ...) -> None: ...

class UnpublishVolumeRequest(_message.Message):
    __slots__ = ("ref", "host_nqn", "initiator_iqn")
    REF_FIELD_NUMBER: _ClassVar[int]
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_IQN_FIELD_NUMBER: _ClassVar[int]
    ref: str
    host_nqn: str
    initiator_iqn: str
    def __init__(self, ref: _Optional[str] = ..., host_nqn: _Optional[str] = ..., initiator_iqn: _Optional[str] = ...) -> None: ...

class GetConnectInfoRequest(_message.Message):
    __slots__ = ("ref", "host_nqn", "initiator_iqn")
    REF_FIELD_NUMBER: _ClassVar[int]
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_IQN_FIELD_NUMBER: _ClassVar[int]
    ref: str
    host_nqn: str
    initiator_iqn: str
    def __init__(self, ref: _Optional[str] = ..., host_nqn: _Optional[str] = ..., initiator_iqn: _Optional[str] = ...) -> None: ...

class Path(_message.Message):
    __slots__ = ("transport", "traddr", "trsvcid", "ana_state", "node_id")
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    TRADDR_FIELD_NUMBER: _ClassVar[int]
    TRSVCID_FIELD_NUMBER: _ClassVar[int]
    ANA_STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    transport: str
    traddr: str
    trsvcid: str
    ana_state: str
    node_id: str
    def __init__(self, transport: _Optional[str] = ..., traddr: _Optional[str] = ..., trsvcid: _Optional[str] = ..., ana_state: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class ConnectInfo(_message.Message):
    __slots__ = ("subnqn", "host_nqn", "paths", "namespace_uuid", "size_bytes", "protocol", "target_iqn", "initiator_iqn", "chap_user", "dhchap_secret", "dhchap_ctrl_secret", "tls_psk")
    SUBNQN_FIELD_NUMBER: _ClassVar[int]
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_UUID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_IQN_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_IQN_FIELD_NUMBER: _ClassVar[int]
    CHAP_USER_FIELD_NUMBER: _ClassVar[int]
    DHCHAP_SECRET_FIELD_NUMBER: _ClassVar[int]
    DHCHAP_CTRL_SECRET_FIELD_NUMBER: _ClassVar[int]
    TLS_PSK_FIELD_NUMBER: _ClassVar[int]
    subnqn: str
    host_nqn: str
    paths: _containers.RepeatedCompositeFieldContainer[Path]
    namespace_uuid: str
    size_bytes: int
    protocol: str
    target_iqn: str
    initiator_iqn: str
    chap_user: str
    dhchap_secret: str
    dhchap_ctrl_secret: str
    tls_psk: str
    def __init__(self, subnqn: _Optional[str] = ..., host_nqn: _Optional[str] = ..., paths: _Optional[_Iterable[_Union[Path, _Mapping]]] = ..., namespace_uuid: _Optional[str] = ..., size_bytes: _Optional[int] = ..., protocol: _Optional[str] = ..., target_iqn: _Optional[str] = ..., initiator_iqn: _Optional[str] = ..., chap_user: _Optional[str] = ..., dhchap_secret: _Optional[str] = ..., dhchap_ctrl_secret: _Optional[str] = ..., tls_psk: _Optional[str] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("id", "name", "volume_id", "size_bytes", "state", "created_at", "group_snapshot_id", "tenant")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    GROUP_SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    volume_id: str
    size_bytes: int
    state: str
    created_at: float
    group_snapshot_id: str
    tenant: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., volume_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., state: _Optional[str] = ..., created_at: _Optional[float] = ..., group_snapshot_id: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("volume_ref", "name")
    VOLUME_REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    volume_ref: str
    name: str
    def __init__(self, volume_ref: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetSnapshotRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("volume_ref", "page_size", "page_token")
    VOLUME_REF_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    volume_ref: str
    page_size: int
    page_token: str
    def __init__(self, volume_ref: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSnapshotsReply(_message.Message):
    __slots__ = ("snapshots", "next_page_token")
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    next_page_token: str
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSnapshotRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteSnapshotReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class GroupSnapshot(_message.Message):
    __slots__ = ("id", "name", "volume_ids", "snapshots", "state", "created_at", "hold_ms", "message", "tenant")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOLUME_IDS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HOLD_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    volume_ids: _containers.RepeatedScalarFieldContainer[str]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    state: str
    created_at: float
    hold_ms: int
    message: str
    tenant: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., volume_ids: _Optional[_Iterable[str]] = ..., snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ..., state: _Optional[str] = ..., created_at: _Optional[float] = ..., hold_ms: _Optional[int] = ..., message: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class CreateGroupSnapshotRequest(_message.Message):
    __slots__ = ("name", "volume_refs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOLUME_REFS_FIELD_NUMBER: _ClassVar[int]
    name: str
    volume_refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., volume_refs: _Optional[_Iterable[str]] = ...) -> None: ...

class GetGroupSnapshotRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListGroupSnapshotsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListGroupSnapshotsReply(_message.Message):
    __slots__ = ("group_snapshots", "next_page_token")
    GROUP_SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    group_snapshots: _containers.RepeatedCompositeFieldContainer[GroupSnapshot]
    next_page_token: str
    def __init__(self, group_snapshots: _Optional[_Iterable[_Union[GroupSnapshot, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteGroupSnapshotRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteGroupSnapshotReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class CloneVolumeRequest(_message.Message):
    __slots__ = ("name", "source_snapshot_ref", "source_volume_ref", "size_bytes", "labels", "replicas", "spread", "protocol", "iscsi", "qos")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SNAPSHOT_REF_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VOLUME_REF_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ISCSI_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    name: str
    source_snapshot_ref: str
    source_volume_ref: str
    size_bytes: int
    labels: _containers.ScalarMap[str, str]
    replicas: int
    spread: str
    protocol: str
    iscsi: IscsiOptions
    qos: QosLimits
    def __init__(self, name: _Optional[str] = ..., source_snapshot_ref: _Optional[str] = ..., source_volume_ref: _Optional[str] = ..., size_bytes: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., replicas: _Optional[int] = ..., spread: _Optional[str] = ..., protocol: _Optional[str] = ..., iscsi: _Optional[_Union[IscsiOptions, _Mapping]] = ..., qos: _Optional[_Union[QosLimits, _Mapping]] = ...) -> None: ...

class SetReplicasRequest(_message.Message):
    __slots__ = ("ref", "replicas")
    REF_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    replicas: int
    def __init__(self, ref: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class SetVolumeQosRequest(_message.Message):
    __slots__ = ("ref", "max_iops", "max_mbps", "max_read_mbps", "max_write_mbps")
    REF_FIELD_NUMBER: _ClassVar[int]
    MAX_IOPS_FIELD_NUMBER: _ClassVar[int]
    MAX_MBPS_FIELD_NUMBER: _ClassVar[int]
    MAX_READ_MBPS_FIELD_NUMBER: _ClassVar[int]
    MAX_WRITE_MBPS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    max_iops: int
    max_mbps: int
    max_read_mbps: int
    max_write_mbps: int
    def __init__(self, ref: _Optional[str] = ..., max_iops: _Optional[int] = ..., max_mbps: _Optional[int] = ..., max_read_mbps: _Optional[int] = ..., max_write_mbps: _Optional[int] = ...) -> None: ...

class GetVolumeStatsRequest(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refs: _Optional[_Iterable[str]] = ...) -> None: ...

class VolumeStats(_message.Message):
    __slots__ = ("volume_id", "name", "node_id", "read_ops", "write_ops", "read_bytes", "write_bytes", "read_latency_seconds", "write_latency_seconds", "sampled_at", "tenant")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    READ_OPS_FIELD_NUMBER: _ClassVar[int]
    WRITE_OPS_FIELD_NUMBER: _ClassVar[int]
    READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRITE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WRITE_LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    name: str
    node_id: str
    read_ops: int
    write_ops: int
    read_bytes: int
    write_bytes: int
    read_latency_seconds: float
    write_latency_seconds: float
    sampled_at: float
    tenant: str
    def __init__(self, volume_id: _Optional[str] = ..., name: _Optional[str] = ..., node_id: _Optional[str] = ..., read_ops: _Optional[int] = ..., write_ops: _Optional[int] = ..., read_bytes: _Optional[int] = ..., write_bytes: _Optional[int] = ..., read_latency_seconds: _Optional[float] = ..., write_latency_seconds: _Optional[float] = ..., sampled_at: _Optional[float] = ..., tenant: _Optional[str] = ...) -> None: ...

class GetVolumeStatsReply(_message.Message):
    __slots__ = ("volumes", "unreachable")
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeStats]
    unreachable: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, volumes: _Optional[_Iterable[_Union[VolumeStats, _Mapping]]] = ..., unreachable: _Optional[_Iterable[str]] = ...) -> None: ...

class DrainProgress(_message.Message):
    __slots__ = ("replicas_total", "replicas_moved", "done", "message")
    REPLICAS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_MOVED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    replicas_total: int
    replicas_moved: int
    done: bool
    message: str
    def __init__(self, replicas_total: _Optional[int] = ..., replicas_moved: _Optional[int] = ..., done: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "name", "state", "cordoned", "draining", "labels", "host_nqn", "nvmf_address", "nvmf_port", "endpoint", "total_bytes", "free_bytes", "provisioned_bytes", "replica_count", "last_seen", "drain", "pool_block_size", "readiness")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CORDONED_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    NVMF_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NVMF_PORT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROVISIONED_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    POOL_BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    READINESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    state: str
    cordoned: bool
    draining: bool
    labels: _containers.ScalarMap[str, str]
    host_nqn: str
    nvmf_address: str
    nvmf_port: int
    endpoint: str
    total_bytes: int
    free_bytes: int
    provisioned_bytes: int
    replica_count: int
    last_seen: float
    drain: DrainProgress
    pool_block_size: int
    readiness: NodeReadiness
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., cordoned: _Optional[bool] = ..., draining: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., host_nqn: _Optional[str] = ..., nvmf_address: _Optional[str] = ..., nvmf_port: _Optional[int] = ..., endpoint: _Optional[str] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., provisioned_bytes: _Optional[int] = ..., replica_count: _Optional[int] = ..., last_seen: _Optional[float] = ..., drain: _Optional[_Union[DrainProgress, _Mapping]] = ..., pool_block_size: _Optional[int] = ..., readiness: _Optional[_Union[NodeReadiness, _Mapping]] = ...) -> None: ...

class NodeReadiness(_message.Message):
    __slots__ = ("ready", "reason")
    READY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    reason: str
    def __init__(self, ready: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesReply(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class CordonNodeRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class UncordonNodeRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class Host(_message.Message):
    __slots__ = ("id", "host_nqn", "labels", "registered_at", "max_volumes", "initiator_iqn", "tenant")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_VOLUMES_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_IQN_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    id: str
    host_nqn: str
    labels: _containers.ScalarMap[str, str]
    registered_at: float
    max_volumes: int
    initiator_iqn: str
    tenant: str
    def __init__(self, id: _Optional[str] = ..., host_nqn: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., registered_at: _Optional[float] = ..., max_volumes: _Optional[int] = ..., initiator_iqn: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class RegisterHostRequest(_message.Message):
    __slots__ = ("id", "host_nqn", "labels", "max_volumes", "initiator_iqn")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_VOLUMES_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_IQN_FIELD_NUMBER: _ClassVar[int]
    id: str
    host_nqn: str
    labels: _containers.ScalarMap[str, str]
    max_volumes: int
    initiator_iqn: str
    def __init__(self, id: _Optional[str] = ..., host_nqn: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., max_volumes: _Optional[int] = ..., initiator_iqn: _Optional[str] = ...) -> None: ...

class GetHostRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListHostsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListHostsReply(_message.Message):
    __slots__ = ("hosts",)
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedCompositeFieldContainer[Host]
    def __init__(self, hosts: _Optional[_Iterable[_Union[Host, _Mapping]]] = ...) -> None: ...

class DeleteHostRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteHostReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class GetClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("nodes_up", "nodes_down", "total_bytes", "free_bytes", "provisioned_bytes", "overcommit_ratio", "volumes_by_state", "leader", "metrics_endpoints")
    class VolumesByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODES_UP_FIELD_NUMBER: _ClassVar[int]
    NODES_DOWN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROVISIONED_BYTES_FIELD_NUMBER: _ClassVar[int]
    OVERCOMMIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    METRICS_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    nodes_up: int
    nodes_down: int
    total_bytes: int
    free_bytes: int
    provisioned_bytes: int
    overcommit_ratio: float
    volumes_by_state: _containers.ScalarMap[str, int]
    leader: str
    metrics_endpoints: _containers.RepeatedCompositeFieldContainer[MetricsEndpoint]
    def __init__(self, nodes_up: _Optional[int] = ..., nodes_down: _Optional[int] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., provisioned_bytes: _Optional[int] = ..., overcommit_ratio: _Optional[float] = ..., volumes_by_state: _Optional[_Mapping[str, int]] = ..., leader: _Optional[str] = ..., metrics_endpoints: _Optional[_Iterable[_Union[MetricsEndpoint, _Mapping]]] = ...) -> None: ...

class MetricsEndpoint(_message.Message):
    __slots__ = ("component", "node", "url")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    component: str
    node: str
    url: str
    def __init__(self, component: _Optional[str] = ..., node: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("node_id", "name", "endpoint", "host_nqn", "nvmf_address", "nvmf_port", "labels", "total_bytes", "free_bytes", "instance_id", "pool_block_size", "heads_digest", "replicas_digest", "metrics_url")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HOST_NQN_FIELD_NUMBER: _ClassVar[int]
    NVMF_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NVMF_PORT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    HEADS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    METRICS_URL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    endpoint: str
    host_nqn: str
    nvmf_address: str
    nvmf_port: int
    labels: _containers.ScalarMap[str, str]
    total_bytes: int
    free_bytes: int
    instance_id: str
    pool_block_size: int
    heads_digest: str
    replicas_digest: str
    metrics_url: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., endpoint: _Optional[str] = ..., host_nqn: _Optional[str] = ..., nvmf_address: _Optional[str] = ..., nvmf_port: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., instance_id: _Optional[str] = ..., pool_block_size: _Optional[int] = ..., heads_digest: _Optional[str] = ..., replicas_digest: _Optional[str] = ..., metrics_url: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("heartbeat_interval_ms", "head_lease_ms")
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    HEAD_LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    head_lease_ms: int
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ..., head_lease_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "total_bytes", "free_bytes", "healthy", "instance_id", "heads_digest", "replicas_digest", "want_readiness")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    HEADS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    WANT_READINESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    total_bytes: int
    free_bytes: int
    healthy: bool
    instance_id: str
    heads_digest: str
    replicas_digest: str
    want_readiness: bool
    def __init__(self, node_id: _Optional[str] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., healthy: _Optional[bool] = ..., instance_id: _Optional[str] = ..., heads_digest: _Optional[str] = ..., replicas_digest: _Optional[str] = ..., want_readiness: _Optional[bool] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("known", "readiness")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    READINESS_FIELD_NUMBER: _ClassVar[int]
    known: bool
    readiness: NodeReadiness
    def __init__(self, known: _Optional[bool] = ..., readiness: _Optional[_Union[NodeReadiness, _Mapping]] = ...) -> None: ...

class TenantQuota(_message.Message):
    __slots__ = ("max_bytes", "max_volumes", "max_iops")
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_VOLUMES_FIELD_NUMBER: _ClassVar[int]
    MAX_IOPS_FIELD_NUMBER: _ClassVar[int]
    max_bytes: int
    max_volumes: int
    max_iops: int
    def __init__(self, max_bytes: _Optional[int] = ..., max_volumes: _Optional[int] = ..., max_iops: _Optional[int] = ...) -> None: ...

class TenantUsage(_message.Message):
    __slots__ = ("bytes", "volumes", "iops", "unlimited_iops_volumes")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    IOPS_FIELD_NUMBER: _ClassVar[int]
    UNLIMITED_IOPS_VOLUMES_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    volumes: int
    iops: int
    unlimited_iops_volumes: int
    def __init__(self, bytes: _Optional[int] = ..., volumes: _Optional[int] = ..., iops: _Optional[int] = ..., unlimited_iops_volumes: _Optional[int] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("name", "quota", "usage", "created_at", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    quota: TenantQuota
    usage: TenantUsage
    created_at: float
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., quota: _Optional[_Union[TenantQuota, _Mapping]] = ..., usage: _Optional[_Union[TenantUsage, _Mapping]] = ..., created_at: _Optional[float] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateTenantRequest(_message.Message):
    __slots__ = ("name", "quota", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    quota: TenantQuota
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., quota: _Optional[_Union[TenantQuota, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetTenantRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTenantsReply(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    def __init__(self, tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ...) -> None: ...

class SetTenantQuotaRequest(_message.Message):
    __slots__ = ("name", "max_bytes", "max_volumes", "max_iops")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_VOLUMES_FIELD_NUMBER: _ClassVar[int]
    MAX_IOPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_bytes: int
    max_volumes: int
    max_iops: int
    def __init__(self, name: _Optional[str] = ..., max_bytes: _Optional[int] = ..., max_volumes: _Optional[int] = ..., max_iops: _Optional[int] = ...) -> None: ...

class DeleteTenantRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteTenantReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("name", "tenant", "role", "kind", "subject", "created_at", "token_prefix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    role: str
    kind: str
    subject: str
    created_at: float
    token_prefix: str
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., role: _Optional[str] = ..., kind: _Optional[str] = ..., subject: _Optional[str] = ..., created_at: _Optional[float] = ..., token_prefix: _Optional[str] = ...) -> None: ...

class CreateIdentityRequest(_message.Message):
    __slots__ = ("name", "tenant", "role", "subject")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    role: str
    subject: str
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., role: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class CreatedIdentity(_message.Message):
    __slots__ = ("identity", "token")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    identity: Identity
    token: str
    def __init__(self, identity: _Optional[_Union[Identity, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListIdentitiesRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListIdentitiesReply(_message.Message):
    __slots__ = ("identities",)
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    identities: _containers.RepeatedCompositeFieldContainer[Identity]
    def __init__(self, identities: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ...) -> None: ...

class DeleteIdentityRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteIdentityReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("id", "time", "identity", "role", "tenant", "method", "target", "code", "peer", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    time: float
    identity: str
    role: str
    tenant: str
    method: str
    target: str
    code: str
    peer: str
    message: str
    def __init__(self, id: _Optional[str] = ..., time: _Optional[float] = ..., identity: _Optional[str] = ..., role: _Optional[str] = ..., tenant: _Optional[str] = ..., method: _Optional[str] = ..., target: _Optional[str] = ..., code: _Optional[str] = ..., peer: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("since", "tenant", "page_size", "page_token")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    since: float
    tenant: str
    page_size: int
    page_token: str
    def __init__(self, since: _Optional[float] = ..., tenant: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsReply(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "time", "kind", "object", "object_id", "tenant", "message", "fields", "node_ids")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    time: float
    kind: str
    object: str
    object_id: str
    tenant: str
    message: str
    fields: _containers.ScalarMap[str, str]
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., time: _Optional[float] = ..., kind: _Optional[str] = ..., object: _Optional[str] = ..., object_id: _Optional[str] = ..., tenant: _Optional[str] = ..., message: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., node_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("since", "volume", "node", "kind", "page_size", "page_token")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    since: float
    volume: str
    node: str
    kind: str
    page_size: int
    page_token: str
    def __init__(self, since: _Optional[float] = ..., volume: _Optional[str] = ..., node: _Optional[str] = ..., kind: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEventsReply(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
