"""meshblock.model."""
