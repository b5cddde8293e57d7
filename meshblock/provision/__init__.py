"""Provisioning the programs meshblock needs that no package registry has (SPDK, csi-sanity):
pinned releases built from source into versioned prefixes that discovery finds."""
