"""meshblock.store."""
