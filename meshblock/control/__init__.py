"""meshblock.control."""
