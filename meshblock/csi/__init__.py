"""meshblock.csi."""
