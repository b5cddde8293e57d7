"""Typed exceptions for SPDK JSON-RPC failures.

SPDK answers errors in two styles: a negated errno as the code with
``spdk_strerror()`` as the message (``-17`` / ``File exists``), or a JSON-RPC
code (``-32602`` invalid params, ``-32603`` internal error) with free text such
as ``Unable to find subsystem with NQN ...``.  :func:`error_from_response`
folds both into one hierarchy so callers can tell "does not exist",
"already exists" and "no space" apart without parsing text.
"""

from __future__ import annotations

import errno
import re
from typing import Any


class SpdkError(Exception):
    """Base class of every error raised by the SPDK driver."""


class SpdkConnectionError(SpdkError):
    """The target's RPC socket cannot be reached, or the connection dropped mid-call.

    A mutating call that fails this way may or may not have been applied; callers
    retry idempotently.
    """


class SpdkTimeout(SpdkError):
    """The target did not answer a call within its timeout."""


class SpdkRpcError(SpdkError):
    """The target answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str, params: Any = None):
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.params = params


class SpdkNotFound(SpdkRpcError):
    """The object named in the call does not exist."""


class SpdkExists(SpdkRpcError):
    """An object with that name or id already exists."""


class SpdkNoSpace(SpdkRpcError):
    """The pool or target has no room for the request."""


class SpdkBusy(SpdkRpcError):
    """The object is in use (open, claimed, or an operation is under way)."""


class SpdkNotPermitted(SpdkRpcError):
    """The operation is refused in the object's present state (e.g. deleting a snapshot with clones)."""


class SpdkInvalidParams(SpdkRpcError):
    """The parameters were rejected."""


class SpdkMethodNotFound(SpdkRpcError):
    """The target does not know the method (older SPDK, or an app without that subsystem)."""


JSONRPC_INVALID_PARAMS = -32602
JSONRPC_METHOD_NOT_FOUND = -32601
JSONRPC_INTERNAL_ERROR = -32603

_BY_ERRNO: dict[int, type[SpdkRpcError]] = {
    -errno.ENOENT: SpdkNotFound,
    -errno.ENODEV: SpdkNotFound,
    -errno.ENXIO: SpdkNotFound,
    -errno.ENOKEY: SpdkNotFound,     # keyring: "Required key not available"
    -errno.EEXIST: SpdkExists,
    -errno.EALREADY: SpdkExists,
    -errno.ENOSPC: SpdkNoSpace,
    -errno.EBUSY: SpdkBusy,
    -errno.EPERM: SpdkNotPermitted,
    -errno.EINVAL: SpdkInvalidParams,
    JSONRPC_METHOD_NOT_FOUND: SpdkMethodNotFound,
}

# Free-text messages SPDK sends with generic codes, most specific first.
_BY_MESSAGE: list[tuple[re.Pattern[str], type[SpdkRpcError]]] = [
    (re.compile(r"already (exists|in use|claimed|added|attached)|File exists|duplicate", re.I), SpdkExists),
    (re.compile(r"no space|not enough (free )?(space|clusters)|No space left", re.I), SpdkNoSpace),
    (re.compile(r"does not exist|not found|No such|Unable to find|Could not find|cannot find|"
                r"unknown (bdev|subsystem|controller)", re.I), SpdkNotFound),
    (re.compile(r"busy|in use", re.I), SpdkBusy),
    (re.compile(r"Operation not permitted", re.I), SpdkNotPermitted),
]


def error_from_response(method: str, error: dict[str, Any], params: Any = None) -> SpdkRpcError:
    """Build the typed exception for a JSON-RPC ``error`` object returned by SPDK."""
    code = int(error.get("code", JSONRPC_INTERNAL_ERROR))
    message = str(error.get("message", ""))
    cls = _BY_ERRNO.get(code)
    if cls is None or cls is SpdkInvalidParams:
        for pattern, candidate in _BY_MESSAGE:
            if pattern.search(message):
                cls = candidate
                break
    if cls is None:
        cls = SpdkInvalidParams if code == JSONRPC_INVALID_PARAMS else SpdkRpcError
    return cls(method, code, message, params)
