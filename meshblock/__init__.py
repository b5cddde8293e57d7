"""meshblock: software-defined block storage on SPDK."""

__version__ = "0.1.0"

NQN_PREFIX = "nqn.2026-11.io.meshblock"


def nqn(kind: str, ident: str) -> str:
    """The NVMe qualified name meshblock uses for an object of ``kind`` with id ``ident``."""
    return f"{NQN_PREFIX}:{kind}:{ident}"


IQN_PREFIX = "iqn.2026-11.io.meshblock"


def iqn(kind: str, ident: str) -> str:
    """The iSCSI qualified name meshblock uses for an object of ``kind`` with id ``ident``."""
    return f"{IQN_PREFIX}:{kind}:{ident}"
