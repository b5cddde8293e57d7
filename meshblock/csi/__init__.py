"""The CSI driver: Identity, Controller and GroupController services (over the admin API) and the
Node service (host attach over NVMe/TCP: nvme-cli, udev, mkfs, mount)."""

DRIVER_NAME = "csi.meshblock.io"
TOPOLOGY_NODE_KEY = "topology.meshblock.io/node"
