"""Small helpers shared across services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections import defaultdict
from pathlib import Path
from typing import AsyncIterator

from .errors import InvalidArgument

_NQN_RE = re.compile(r"^nqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[\x21-\x7e]+)?$|^nqn\.2014-08\.org\.nvmexpress:uuid:"
                     r"[0-9a-f-]{36}$", re.I)
NQN_MAX = 223
# RFC 3720 3.2.6.3: iqn.yyyy-mm.reversed.domain[:unique] and eui.<16 hex digits>; names are
# compared without regard to case (SPDK does too), so meshblock keeps them in lower case
_IQN_RE = re.compile(r"^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
                     r"(:[a-z0-9.:_-]+)?$|^eui\.[0-9a-f]{16}$")
IQN_MAX = 223


def check_uuid(field: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(field, f"{value!r} is not a UUID") from None


UUID_NQN_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"


def check_nqn(field: str, value: str) -> str:
    if value and value.startswith(UUID_NQN_PREFIX):
        # the NVMe spec's UUID form: targets (SPDK too) take nothing after the prefix but a UUID
        rest = value[len(UUID_NQN_PREFIX):]
        try:
            ok = len(rest) == 36 and str(uuid.UUID(rest)) == rest.lower()
        except ValueError:
            ok = False
        if not ok:
            raise InvalidArgument(field, f"{value!r}: an NQN of the form {UUID_NQN_PREFIX}... ends in a UUID "
                                         "(8-4-4-4-12 hex digits)")
        return value
    if not value or len(value.encode()) > NQN_MAX or not _NQN_RE.match(value):
        raise InvalidArgument(field, f"{value!r} is not an NVMe qualified name (nqn.yyyy-mm.reverse.domain:...)")
    return value


def check_iqn(field: str, value: str) -> str:
    """An iSCSI name (iqn.yyyy-mm.reverse.domain[:id] or eui.<16 hex>), returned in lower case."""
    low = (value or "").strip().lower()
    if not low or len(low.encode()) > IQN_MAX or not _IQN_RE.match(low):
        raise InvalidArgument(field, f"{value!r} is not an iSCSI name (iqn.yyyy-mm.reverse.domain[:id] or "
                                     "eui. and 16 hex digits)")
    return low


def check_netmask(field: str, value: str) -> str:
    """An initiator network in SPDK's form: ANY, a.b.c.d/n, or [v6]/n."""
    import ipaddress

    if (value or "").strip().upper() == "ANY":
        return "ANY"
    try:
        net = ipaddress.ip_network(value.strip().strip("[]").replace("]/", "/"), strict=False)
    except ValueError:
        raise InvalidArgument(field, f"{value!r} is not ANY or a network (10.0.0.0/8, fd00::/8)") from None
    if net.version == 6:
        return f"[{net.network_address}]/{net.prefixlen}"
    return str(net)


class KeyedLock:
    """One asyncio lock per key, so operations on the same object run one at a time."""

    def __init__(self) -> None:
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @contextlib.asynccontextmanager
    async def __call__(self, key: str) -> AsyncIterator[None]:
        lock = self._locks[key]
        async with lock:
            yield
        if not lock.locked() and not getattr(lock, "_waiters", None):
            self._locks.pop(key, None)


def atomic_write(path: Path, data: str, mode: int = 0o644) -> None:
    """Write ``data`` so that a crash leaves either the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


async def all_of(*aws):
    """Run ``aws`` concurrently and wait for every one; return their results in order, or raise
    the first failure (in argument order) once all have ended, so none is left running."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def metrics_url(address: str, port: int, wildcard_host: str = "") -> str:
    """The URL Prometheus scrapes a process serving metrics on ``address``:``port`` at ("" when it
    serves none). A wildcard address (0.0.0.0, ::) is no place to scrape: ``wildcard_host`` (an
    address or name the process is reached at) stands in for it where given."""
    if not port:
        return ""
    host = address.strip().strip("[]")
    if host in ("", "0.0.0.0", "::") and wildcard_host:
        host = wildcard_host.strip("[]")
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"
