"""meshblock.cli."""
