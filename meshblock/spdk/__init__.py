"""The SPDK driver: JSON-RPC client, typed calls, discovery and the target supervisor."""

from .client import SpdkClient
from .discovery import SpdkInstall, SpdkNotFoundError, find_spdk
from .errors import (SpdkBusy, SpdkConnectionError, SpdkError, SpdkExists, SpdkInvalidParams,
                     SpdkMethodNotFound, SpdkNoSpace, SpdkNotFound, SpdkNotPermitted, SpdkRpcError, SpdkTimeout)
from .rpc import SpdkRpc

__all__ = [
    "SpdkClient", "SpdkRpc", "SpdkInstall", "SpdkNotFoundError", "find_spdk",
    "SpdkError", "SpdkConnectionError", "SpdkTimeout", "SpdkRpcError", "SpdkNotFound", "SpdkExists",
    "SpdkNoSpace", "SpdkBusy", "SpdkNotPermitted", "SpdkInvalidParams", "SpdkMethodNotFound",
]
