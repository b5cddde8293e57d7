"""meshblock.target."""
