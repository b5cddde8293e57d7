"""What the driver accepts: volume capabilities, StorageClass parameters, capacity ranges."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable

from ..replication import erasure
from ..replication.erasure import Layout
from ..errors import InvalidArgument, OutOfRange
from ..proto.csi.v1 import csi_pb2 as csi
from ..qos import QosLimits, problems

Mode = csi.VolumeCapability.AccessMode.Mode
GiB = 1 << 30
GRANULARITY = 4 << 20           # volumes are sized in whole pool clusters
DEFAULT_SIZE = 1 * GiB
FS_TYPES = ("ext4", "xfs")
DEFAULT_FS = "ext4"

SINGLE_NODE_MODES = {Mode.SINGLE_NODE_WRITER, Mode.SINGLE_NODE_READER_ONLY, Mode.SINGLE_NODE_SINGLE_WRITER,
                     Mode.SINGLE_NODE_MULTI_WRITER}
READ_ONLY_MODES = {Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY}
# several nodes writing one file system would corrupt it: multi-node writers only for raw block
BLOCK_ONLY_MODES = {Mode.MULTI_NODE_SINGLE_WRITER, Mode.MULTI_NODE_MULTI_WRITER}

# StorageClass parameters the driver understands; keys under csi.storage.k8s.io/ belong to the
# Kubernetes sidecars and are ignored.
# QoS limits (meshblock/qos.py) by parameter name: StorageClass parameters, or mutable parameters of a
# VolumeAttributesClass, which ControllerModifyVolume changes online
QOS_PARAMETERS = {"maxIops": "max_iops", "maxMbps": "max_mbps", "maxReadMbps": "max_read_mbps",
                  "maxWriteMbps": "max_write_mbps"}
PARAMETERS = {"replicas", "spread", "protocol", "iscsiNetworks", "erasure", "dhchap", *QOS_PARAMETERS}
# dhchap: hosts of the class's volumes authenticate with DH-HMAC-CHAP ("true"), and the target to them
# too ("bidirectional"); the controller makes the secrets, the node plugin fetches them when it stages
DHCHAP_VALUES = {"": "", "false": "", "true": "dhchap", "bidirectional": "dhchap-bidirectional"}
MUTABLE_PARAMETERS = {"replicas", *QOS_PARAMETERS}
SIDECAR_PREFIX = "csi.storage.k8s.io/"

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def object_name(csi_name: str, max_len: int = 128) -> str:
    """The admin-API name of a CSI object name: itself when it is a valid meshblock name, else a digest
    (CSI names are free-form up to 128 characters; the mapping is stable, so retries find the object)."""
    if _NAME_OK.match(csi_name) and len(csi_name) <= max_len:
        return csi_name
    return "csi-" + hashlib.sha256(csi_name.encode()).hexdigest()[:48]


def check_capability(cap: csi.VolumeCapability, field: str = "volume_capabilities") -> str | None:
    """Raise InvalidArgument for a capability this driver cannot serve; return a reason string for one
    that is well-formed but unsupported when ``field`` is empty (ValidateVolumeCapabilities)."""
    kind = cap.WhichOneof("access_type")
    if kind is None:
        raise InvalidArgument(field, "access_type (block or mount) is required")
    if not cap.HasField("access_mode") or cap.access_mode.mode == Mode.UNKNOWN:
        raise InvalidArgument(field, "access_mode is required")
    mode = cap.access_mode.mode
    if mode not in Mode.values():
        raise InvalidArgument(field, f"unknown access mode {mode}")
    if kind == "mount":
        fs = cap.mount.fs_type
        if fs and fs not in FS_TYPES:
            return f"file system {fs!r} is not supported (supported: {', '.join(FS_TYPES)})"
        if mode in BLOCK_ONLY_MODES:
            return f"access mode {Mode.Name(mode)} needs volumeMode Block: one file system cannot be written " \
                   "from several nodes"
    return None


def require_capabilities(caps: Iterable[csi.VolumeCapability], field: str = "volume_capabilities") -> None:
    caps = list(caps)
    if not caps:
        raise InvalidArgument(field, "at least one volume capability is required")
    for cap in caps:
        problem = check_capability(cap, field)
        if problem:
            raise InvalidArgument(field, problem)


def is_block(caps: Iterable[csi.VolumeCapability]) -> bool:
    return any(c.WhichOneof("access_type") == "block" for c in caps)


def single_node(caps: Iterable[csi.VolumeCapability]) -> bool:
    return all(c.access_mode.mode in SINGLE_NODE_MODES for c in caps)


def size_for(cr: csi.CapacityRange | None) -> int:
    """The size a CreateVolume request gets: at least required_bytes, rounded up to the pool's
    granularity, never above limit_bytes."""
    required = cr.required_bytes if cr else 0
    limit = cr.limit_bytes if cr else 0
    if required < 0 or limit < 0:
        raise InvalidArgument("capacity_range", "sizes cannot be negative")
    if limit and required > limit:
        raise OutOfRange(f"capacity_range: required_bytes {required} is larger than limit_bytes {limit}")
    size = required or (min(DEFAULT_SIZE, limit) if limit else DEFAULT_SIZE)
    size = -(-size // GRANULARITY) * GRANULARITY
    if limit and size > limit:
        raise OutOfRange(f"capacity_range: volumes are sized in multiples of {GRANULARITY >> 20} MiB; no such "
                         f"size lies between {required} and {limit} bytes")
    return size


def fits(size: int, cr: csi.CapacityRange | None) -> bool:
    if cr is None:
        return True
    return size >= cr.required_bytes and (not cr.limit_bytes or size <= cr.limit_bytes)


PROTOCOLS = ("nvmf", "iscsi")
# CHAP credentials of iSCSI volumes come from secrets (provisioner secret at creation, node-stage
# secret at attach), never from parameters, which Kubernetes shows to anyone who can read the class
CHAP_USER_KEY, CHAP_SECRET_KEY = "chapUser", "chapSecret"


@dataclass(frozen=True)
class VolumeParams:
    replicas: int = 1                 # erasure-coded: its k+m shards
    spread: str = ""
    protocol: str = "nvmf"
    iscsi_networks: tuple[str, ...] = ()
    erasure: Layout | None = None     # parameter erasure: "K+M"
    qos: QosLimits = QosLimits()
    dhchap: str = ""                  # "" | dhchap | dhchap-bidirectional

    @property
    def data_shards(self) -> int:
        """How many nodes' worth of capacity the volume's data takes (1 for a replicated volume)."""
        return self.erasure.data if self.erasure else 1


def parse_parameters(params: dict[str, str], mutable: dict[str, str] | None = None,
                     field: str = "parameters") -> VolumeParams:
    replicas, spread, protocol, networks, ec, dhchap = 1, "", "nvmf", (), None, ""
    merged = {**params, **(mutable or {})}
    qos = parse_qos(merged, field)
    for key, value in merged.items():
        if key.startswith(SIDECAR_PREFIX):
            continue
        if key not in PARAMETERS:
            raise InvalidArgument(field, f"unknown parameter {key!r} (known: {', '.join(sorted(PARAMETERS))})")
        if key == "replicas":
            replicas = parse_replicas(value, field)
        elif key == "spread":
            spread = value
        elif key == "protocol":
            protocol = value.strip().lower() or "nvmf"
            if protocol not in PROTOCOLS:
                raise InvalidArgument(field, f"protocol: {value!r} is not nvmf or iscsi")
        elif key == "iscsiNetworks":
            networks = tuple(n.strip() for n in value.split(",") if n.strip())
        elif key == "erasure":
            ec = erasure.parse(value, field)
        elif key == "dhchap":
            if value.strip().lower() not in DHCHAP_VALUES:
                raise InvalidArgument(field, f"dhchap: {value!r} is not true, bidirectional or false")
            dhchap = DHCHAP_VALUES[value.strip().lower()]
    if networks and protocol != "iscsi":
        raise InvalidArgument(field, "iscsiNetworks needs protocol iscsi")
    if dhchap and protocol != "nvmf":
        raise InvalidArgument(field, "dhchap is for NVMe/TCP volumes (iSCSI volumes use CHAP from secrets)")
    if ec is not None:
        if "replicas" in merged:
            raise InvalidArgument(field, "give replicas or erasure, not both: an erasure-coded volume has k+m "
                                         "shards instead of replicas")
        if protocol != "nvmf":
            raise InvalidArgument(field, "erasure-coded volumes are exported over NVMe/TCP only")
        replicas = ec.shards
    return VolumeParams(replicas=replicas, spread=spread, protocol=protocol, iscsi_networks=networks, erasure=ec,
                        qos=QosLimits(**qos), dhchap=dhchap)


def parse_qos(params: dict[str, str], field: str) -> dict[str, int]:
    """The QoS limits among ``params`` (by QosLimits field name), checked against SPDK's rules."""
    out: dict[str, int] = {}
    for key, name in QOS_PARAMETERS.items():
        if key not in params:
            continue
        try:
            out[name] = int(params[key].strip() or "0")
        except ValueError:
            raise InvalidArgument(field, f"{key}: {params[key]!r} is not a whole number") from None
    csi_name = {v: k for k, v in QOS_PARAMETERS.items()}
    for name, problem in problems(QosLimits(**out)):
        raise InvalidArgument(field, f"{csi_name[name]}: {problem}")
    return out


def chap_from_secrets(secrets: dict[str, str], field: str = "secrets") -> tuple[str, str]:
    """(user, secret) of one-way CHAP from a request's secrets; both or neither."""
    user, secret = secrets.get(CHAP_USER_KEY, ""), secrets.get(CHAP_SECRET_KEY, "")
    if bool(user) != bool(secret):
        raise InvalidArgument(field, f"give both {CHAP_USER_KEY} and {CHAP_SECRET_KEY} for CHAP, or neither")
    return user, secret


def parse_replicas(value: str, field: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(field, f"replicas: {value!r} is not a number") from None
    if not 1 <= n <= 5:
        raise InvalidArgument(field, f"replicas: {n} is not between 1 and 5")
    return n
