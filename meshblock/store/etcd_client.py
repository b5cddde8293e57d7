"""The etcd engine's connection: its URL, the aetcd client on a gRPC target, error mapping, and
builders for the raw v3 requests (ranges, puts, deletes, compares) that :mod:`.etcd` (the store)
and :mod:`.etcd_leadership` (the leader election) send."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions
import aetcd.utils
import grpc
from aetcd import rpc

from meshblock.store.base import StoreError, StoreUnavailable

DEFAULT_PORT = 2379
DEFAULT_PREFIX = "/meshblock"

_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,        # etcd allows pings every 5 s (--grpc-keepalive-min-time)
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2_000,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.lb_policy_name": "pick_first",
}


@dataclass(frozen=True)
class EtcdConfig:
    endpoints: tuple[tuple[str, int], ...]
    prefix: str = DEFAULT_PREFIX
    timeout: float = 5.0                # per request


def parse_etcd_url(url: str) -> EtcdConfig:
    """``etcd://host:port[,host:port...]?prefix=/meshblock&timeout=5``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "etcd":
        raise ValueError(f"not an etcd URL: {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(f"etcd URL {url!r}: put the key prefix in ?prefix=, not in the path")
    endpoints = []
    for ep in parts.netloc.split(","):
        ep = ep.strip()
        if not ep:
            continue
        if ep.startswith("["):                      # [::1]:2379
            host, _, rest = ep[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = ep.partition(":")
        try:
            endpoints.append((host, int(port) if port else DEFAULT_PORT))
        except ValueError:
            raise ValueError(f"etcd URL {url!r}: bad endpoint {ep!r}") from None
    if not endpoints:
        raise ValueError(f"etcd URL {url!r} names no endpoint")
    query = urllib.parse.parse_qs(parts.query)
    prefix = query.get("prefix", [DEFAULT_PREFIX])[-1].rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    timeout = float(query.get("timeout", ["5"])[-1])
    return EtcdConfig(endpoints=tuple(endpoints), prefix=prefix, timeout=timeout)


def prefix_end(prefix: bytes) -> bytes:
    return aetcd.utils.prefix_range_end(prefix)


def _map_error(e: BaseException) -> StoreError:
    if isinstance(e, StoreError):
        return e
    if isinstance(e, grpc.aio.AioRpcError):
        code, details = e.code(), e.details() or str(e.code())
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED):
            return StoreUnavailable(f"etcd: {details}")
        if "too many operations in txn request" in details:
            return StoreError(f"etcd: {details} (the commit is larger than etcd's --max-txn-ops)")
        return StoreError(f"etcd: {details}")
    if isinstance(e, (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError)):
        return StoreUnavailable(f"etcd: {e}")
    if isinstance(e, asyncio.TimeoutError):
        return StoreUnavailable("etcd: request timed out")
    return StoreError(f"etcd: {e}")


class _Client(aetcd.Client):
    """An aetcd client on a gRPC target of our choosing (several endpoints fail over in order)."""

    def __init__(self, target: str, timeout: float):
        host, _, port = target.rpartition(":")
        super().__init__(host=host, port=port, timeout=timeout, options=dict(_GRPC_OPTIONS))


def _ip_literal(host: str) -> ipaddress._BaseAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _grpc_target(endpoints: tuple[tuple[str, int], ...]) -> str:
    if len(endpoints) == 1:
        host, port = endpoints[0]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    addrs: list[tuple[int, str, int]] = []
    loop = asyncio.get_running_loop()
    for host, port in endpoints:
        ip = _ip_literal(host)
        if ip is not None:
            addrs.append((ip.version, str(ip), port))
            continue
        for family, _, _, _, sockaddr in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            addrs.append((6 if family == socket.AF_INET6 else 4, sockaddr[0], port))
    if all(v == 4 for v, _, _ in addrs):
        return "ipv4:" + ",".join(f"{a}:{p}" for _, a, p in addrs)
    if all(v == 6 for v, _, _ in addrs):
        return "ipv6:" + ",".join(f"[{a}]:{p}" for _, a, p in addrs)
    raise ValueError("etcd endpoints mix IPv4 and IPv6 addresses; list one family")


class Connection:
    """The lazily opened aetcd client shared by one store or one leadership."""

    def __init__(self, cfg: EtcdConfig):
        self.cfg = cfg
        self._client: _Client | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def client(self) -> _Client:
        if self._closed:
            raise StoreError("the etcd connection is closed")
        if self._client is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    client = _Client(await _grpc_target(self.cfg.endpoints), self.cfg.timeout)
                    await client.connect()
                    self._client = client
        return self._client

    async def kv(self, method: str, request: Any) -> Any:
        client = await self.client()
        try:
            return await getattr(client.kvstub, method)(request, timeout=self.cfg.timeout,
                                                         metadata=client.metadata)
        except (grpc.aio.AioRpcError, aetcd.exceptions.ClientError) as e:
            raise _map_error(e) from e

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def range_op(key: bytes, revision: int = 0) -> rpc.RequestOp:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key, revision=revision))


def put_op(key: bytes, value: bytes, lease: int = 0) -> rpc.RequestOp:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def delete_op(key: bytes) -> rpc.RequestOp:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def mod_equals(key: bytes, revision: int) -> rpc.Compare:
    return rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision)
