"""meshblock.replication."""
