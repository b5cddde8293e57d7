"""A fake SPDK target: SPDK's JSON-RPC surface (the part meshblock uses) without SPDK.

Run ``bin/nvmf_tgt`` (or ``bin/spdk_tgt``) like the real application.  See :mod:`.server` for
the command line and wire protocol, and the module docstrings for what each part models.
"""

__all__ = ["main"]


def main() -> None:
    from .server import main as _main

    _main()
