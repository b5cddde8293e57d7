"""Agent configuration: who the node is, where its pool lives, how its SPDK target runs."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import nqn
from ..util import atomic_write


@dataclass
class AgentConfig:
    name: str
    data_dir: Path
    node_id: str = ""
    # pool: one device (a block device or a file); files are created sparse at pool_size_bytes
    pool_device: str = ""
    pool_size_bytes: int = 8 << 30
    # 512: erasure-coded shards need it (a raid5f strip of 1-2 KiB is whole blocks); 4 KiB-sector
    # devices need 4096 and then hold replicas only
    pool_block_size: int = 512
    pool_cluster_size: int = 4 << 20
    lvs_name: str = "meshblock"
    # NVMe/TCP exports
    nvmf_address: str = "127.0.0.1"
    nvmf_port: int = 4420
    head_port: int = 0             # replicated heads listen here (default nvmf_port + 1)
    # NVMe/TCP over TLS: the head target's secure listener (default head_port + 1). SPDK has one
    # listening socket per address and port for all subsystems, opened clear or TLS by the first
    # listener: TLS heads cannot share the clear-text port
    tls_port: int = 0
    # iSCSI exports (served by the head target)
    iscsi_address: str = ""        # default: nvmf_address
    iscsi_port: int = 3260
    # gRPC: "unix:/path" or "host:port"
    listen: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # SPDK target for replicas and exports
    spdk_app: str = "nvmf_tgt"
    spdk_socket: str = ""          # set to adopt an externally managed target (sidecar)
    spdk_external: bool = False
    cpumask: str = "0x1"
    mem_size_mb: int = 1024
    interrupt_mode: bool = True
    no_huge: bool = True
    # SPDK target for attachments (bdev_nvme over TCP cannot run in interrupt mode) and iSCSI
    # exports; "" = spdk_tgt (NVMe-oF and iSCSI in one process) where the SPDK build has it
    head_app: str = ""
    head_cpumask: str = "0x1"
    head_mem_size_mb: int = 1024
    keep_target_on_exit: bool = False
    # controllers to register with (comma-separated endpoints; the leader answers)
    controller: str = ""
    # mutual TLS for TCP: this node's certificate serves its API and identifies it to the controller;
    # the CA checks the other side (the controller as client of the API, and as server of registration)
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    advertise: str = ""            # the endpoint the controller dials (default: the TCP listen address)
    # where the DH-HMAC-CHAP secrets SPDK's keyring reads live, one file each, owner-only (default:
    # a directory in /dev/shm, so they stay in memory, else keys/ in the data directory)
    key_dir: str = ""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.pool_device:
            self.pool_device = str(self.data_dir / "pool.img")
        if not self.listen:
            self.listen = f"unix:{self.data_dir / 'agent.sock'}"
        if not self.spdk_socket:
            self.spdk_socket = str(self.data_dir / "spdk.sock")
        if not self.advertise:
            tcp = [a.strip() for a in self.listen.split(",") if a.strip() and not a.strip().startswith("unix:")]
            self.advertise = tcp[0] if tcp else self.listen.split(",")[0].strip()
        if not self.head_port:
            self.head_port = self.nvmf_port + 1
        if not self.tls_port:
            self.tls_port = self.head_port + 1
        if not self.iscsi_address:
            self.iscsi_address = self.nvmf_address

    @property
    def host_nqn(self) -> str:
        return nqn("node", self.node_id)

    @property
    def key_path(self) -> Path:
        if self.key_dir:
            return Path(self.key_dir)
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            tag = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
            return shm / f"meshblock-keys-{tag}"
        return self.data_dir / "keys"

    @property
    def head_socket(self) -> Path:
        return self.data_dir / "spdk-head.sock"

    def ensure_node_id(self) -> str:
        """The node id is chosen once and kept in the data directory."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        id_file = self.data_dir / "node-id"
        if not self.node_id:
            if id_file.exists():
                self.node_id = id_file.read_text().strip()
            else:
                self.node_id = str(uuid.uuid4())
        if not id_file.exists() or id_file.read_text().strip() != self.node_id:
            atomic_write(id_file, self.node_id + "\n")
        return self.node_id

    def to_json(self) -> str:
        d = asdict(self)
        d["data_dir"] = str(self.data_dir)
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> "AgentConfig":
        return cls(**json.loads(Path(path).read_text()))
