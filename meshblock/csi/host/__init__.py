"""What a host does to use a volume: NVMe/TCP connections (nvme-cli), the block device (udev),
file systems and mounts. Every call is async; commands run as subprocesses."""
