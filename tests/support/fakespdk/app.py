"""Core of the fake target: RPC errors, SPDK-style parameter decoding, the method table.

SPDK decodes every RPC's parameters with ``spdk_json_decode_object`` against a table of
decoders generated from ``schema/schema.yaml``: an unknown key, a missing required key or a
value of the wrong JSON type fails the whole decode (the ``_relaxed`` variant ignores unknown
keys).  What a method answers on a failed decode differs from method to method (``-32602
Invalid parameters``, ``-32603 spdk_json_decode_object failed``, ``-32700 ...``); each
handler here states its own, as read from SPDK's source.
"""

from __future__ import annotations

import errno
import os
import re
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# JSON-RPC codes (include/spdk/jsonrpc.h)
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
INVALID_STATE = -1

# RPC states (include/spdk/rpc.h)
STARTUP = 0x1
RUNTIME = 0x4


class RpcError(Exception):
    """An error answer: ``{"code": code, "message": message}``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def strerror(err: int) -> str:
    """``spdk_strerror(err)``: glibc's text for a positive errno."""
    return os.strerror(abs(err))


def errno_error(err: int) -> RpcError:
    """The common SPDK answer ``spdk_jsonrpc_send_error_response(req, rc, spdk_strerror(-rc))``."""
    err = -abs(err)
    return RpcError(err, strerror(err))


def async_errno_error(code: int, err: int) -> RpcError:
    """Errors reported from an SPDK completion callback: a fixed JSON-RPC code, strerror text."""
    return RpcError(code, strerror(err))


E = errno  # short alias used by the modules


# --- parameter decoding -----------------------------------------------------------------------

class DecodeError(Exception):
    pass


class JObj(dict):
    """A JSON object as parsed off the wire; remembers keys that appeared more than once."""

    dups: frozenset[str] = frozenset()


def object_pairs(pairs: list[tuple[str, Any]]) -> JObj:
    o = JObj(pairs)
    if len(o) != len(pairs):
        seen: set[str] = set()
        o.dups = frozenset(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return o


@dataclass(frozen=True)
class F:
    """One field of a decoder table: JSON type plus whether it is required."""

    type: Any
    required: bool = False


def _int(v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DecodeError
    if isinstance(v, float):
        if not v.is_integer():
            raise DecodeError
        v = int(v)
    if v < lo or v > hi:
        raise DecodeError
    return v


_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def parse_uuid(s: Any) -> str | None:
    """``spdk_uuid_parse``: the 36-character form only; returns the lower-case form."""
    if not isinstance(s, str) or not _UUID_RE.match(s):
        return None
    return str(uuidlib.UUID(s))


def decode_value(t: Any, v: Any) -> Any:
    if t == "any":
        return v
    if t == "string":
        if not isinstance(v, str):
            raise DecodeError
        return v
    if t == "bool":
        if not isinstance(v, bool):
            raise DecodeError
        return v
    if t == "uint8":
        return _int(v, 0, 0xFF)
    if t == "uint16":
        return _int(v, 0, 0xFFFF)
    if t == "uint32":
        return _int(v, 0, 0xFFFFFFFF)
    if t == "uint64":
        return _int(v, 0, 0xFFFFFFFFFFFFFFFF)
    if t == "int32":
        return _int(v, -0x80000000, 0x7FFFFFFF)
    if t == "uuid":
        u = parse_uuid(v)
        if u is None:
            raise DecodeError
        return u
    if isinstance(t, tuple) and t[0] == "enum":
        if not isinstance(v, str) or v not in t[1]:
            raise DecodeError
        return v
    if isinstance(t, tuple) and t[0] == "object":
        return decode_object(v, t[1], relaxed=len(t) > 2 and t[2])
    if isinstance(t, tuple) and t[0] == "array":
        if not isinstance(v, list) or len(v) > t[2]:
            raise DecodeError
        return [decode_value(t[1], x) for x in v]
    raise AssertionError(f"unknown decoder type {t!r}")


def decode_object(params: Any, spec: dict[str, F], relaxed: bool = False) -> dict[str, Any]:
    """``spdk_json_decode_object[_relaxed]``: raises DecodeError where SPDK's returns non-zero."""
    if not isinstance(params, dict):
        raise DecodeError
    out: dict[str, Any] = {}
    bad = any(k in spec or not relaxed for k in getattr(params, "dups", ()))  # "Duplicate key"
    for k, v in params.items():
        f = spec.get(k)
        if f is None:
            if not relaxed:
                bad = True
            continue
        try:
            out[k] = decode_value(f.type, v)
        except DecodeError:
            bad = True
    for k, f in spec.items():
        if f.required and k not in out and k not in params:
            bad = True
    if bad:
        raise DecodeError
    return out


def decode(params: Any, spec: dict[str, F], err: tuple[int, str], *, relaxed: bool = False) -> dict[str, Any]:
    try:
        return decode_object(params, spec, relaxed)
    except DecodeError:
        raise RpcError(*err) from None


DECODE_FAILED = (INTERNAL_ERROR, "spdk_json_decode_object failed")
DECODE_FAILED_PARSE = (PARSE_ERROR, "spdk_json_decode_object failed")
DECODE_INVALID = (INVALID_PARAMS, "Invalid parameters")


# --- method table --------------------------------------------------------------------------

@dataclass
class Method:
    name: str
    func: Callable[..., Any]
    state_mask: int
    apps: frozenset[str] | None  # None: every app
    hidden: bool = False  # the fake's own plumbing: callable, not listed by rpc_get_methods


METHODS: dict[str, Method] = {}


def rpc(name: str, state_mask: int = RUNTIME, apps: tuple[str, ...] | None = None, hidden: bool = False):
    """Register ``func(target, params)`` as the handler of RPC ``name``.

    ``params`` is None when the request had no (or a null) ``params`` member.  A handler
    returns the ``result`` or raises :class:`RpcError`; it may be a coroutine function.
    """

    def deco(func):
        METHODS[name] = Method(name, func, state_mask, frozenset(apps) if apps else None, hidden)
        return func

    return deco


def new_uuid() -> str:
    return str(uuidlib.uuid4())
