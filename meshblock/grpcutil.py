"""The gRPC edge: typed errors to status codes, servers with health and reflection."""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram

from .errors import MeshblockError
from .spdk import SpdkConnectionError, SpdkError, SpdkNoSpace, SpdkRpcError, SpdkTimeout

log = logging.getLogger(__name__)

REQUESTS = Counter("meshblock_grpc_requests_total", "gRPC requests served", ["service", "method", "code"])
LATENCY = Histogram("meshblock_grpc_request_seconds", "gRPC request latency", ["service", "method"])


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, MeshblockError):
        return exc.code, str(exc)
    if isinstance(exc, SpdkNoSpace):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, (SpdkConnectionError, SpdkTimeout)):
        return grpc.StatusCode.UNAVAILABLE, f"SPDK target unavailable: {exc}"
    if isinstance(exc, SpdkRpcError):
        return grpc.StatusCode.INTERNAL, f"SPDK call failed: {exc}"
    if isinstance(exc, SpdkError):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def rpc_method(service: str) -> Callable:
    """Decorate an async servicer method: map errors to status codes, count and time it."""

    def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        name = fn.__name__

        @functools.wraps(fn)
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await fn(self, request, context)
            except Exception as exc:  # noqa: BLE001 - the edge turns everything into a status
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                code, detail = status_of(exc)
                if code == grpc.StatusCode.INTERNAL:
                    log.exception("%s.%s failed", service, name)
                else:
                    log.info("%s.%s: %s: %s", service, name, code.name, detail)
                await context.abort(code, detail)
            finally:
                REQUESTS.labels(service, name, code.name).inc()
                LATENCY.labels(service, name).observe(time.perf_counter() - start)

        return handler

    return wrap


async def make_server(listen: str, register: Callable[[grpc.aio.Server], None],
                      service_names: Iterable[str], *,
                      tls: grpc.ServerCredentials | None = None, serving: bool = True,
                      interceptors: Iterable[grpc.aio.ServerInterceptor] = ()) -> tuple[grpc.aio.Server,
                                                                                       health.HealthServicer]:
    """A grpc.aio server with the standard health and reflection services.

    ``listen`` is one address or several, comma-separated: ``unix:/path`` (made owner-only) or
    ``host:port``, which needs ``tls``: there is no unauthenticated TCP listener.
    """
    server = grpc.aio.server(interceptors=list(interceptors) or None)
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(names + [health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    addresses = [a.strip() for a in listen.split(",") if a.strip()]
    for address in addresses:
        if address.startswith("unix:"):
            path = Path(address[len("unix:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.unlink()
            old = os.umask(0o177)
            try:
                server.add_insecure_port(address)
            finally:
                os.umask(old)
        elif tls is not None:
            server.add_secure_port(address, tls)
        else:
            raise ValueError(f"listen address {address!r}: TCP needs TLS with client certificates "
                             "(only unix: sockets are served without TLS)")
    await server.start()
    for address in addresses:
        if address.startswith("unix:"):
            os.chmod(address[len("unix:"):], 0o600)
    set_serving(health_servicer, names, serving)
    return server, health_servicer


def set_serving(health_servicer: health.HealthServicer, names: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for n in list(names) + [""]:
        health_servicer.set(n, status)


def server_tls(cert_file: str, key_file: str, client_ca_file: str) -> grpc.ServerCredentials:
    """TLS that requires client certificates signed by ``client_ca_file``."""
    return grpc.ssl_server_credentials([(Path(key_file).read_bytes(), Path(cert_file).read_bytes())],
                                       root_certificates=Path(client_ca_file).read_bytes(),
                                       require_client_auth=True)


def client_tls(ca_file: str, cert_file: str, key_file: str) -> grpc.ChannelCredentials:
    """Mutual-TLS client credentials from PEM files."""
    return grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes(),
                                        private_key=Path(key_file).read_bytes(),
                                        certificate_chain=Path(cert_file).read_bytes())
