"""meshblock.proto."""
