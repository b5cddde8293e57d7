"""The CSI plugin's way to the controller's admin API."""

from __future__ import annotations

import contextvars
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import grpc

from ..errors import MeshblockError
from ..grpcutil import rpc_method
from ..proto.meshblock.v1 import admin_pb2_grpc as admin_grpc

ADMIN_TIMEOUT = 60.0
# the key of a CSI request's secrets (a StorageClass's provisioner, controller-publish, -expand and
# node-stage secrets, a VolumeSnapshotClass's snapshotter secret) that holds the meshblock token
# the call is made with: one tenant per StorageClass (docs/kubernetes.md)
TOKEN_KEY = "tenantToken"
_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("meshblock_csi_token", default="")


class AdminError(MeshblockError):
    """An admin API call failed: its status code is passed on unless a CSI call maps it."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code = code


def csi_method(service: str) -> Callable:
    """rpc_method for CSI servicers: admin API failures keep their status code."""

    def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def inner(self: Any, request: Any, context: Any) -> Any:
            secrets = getattr(request, "secrets", None)
            token = _TOKEN.set(secrets.get(TOKEN_KEY, "") if secrets else "")
            try:
                return await fn(self, request, context)
            except grpc.aio.AioRpcError as e:
                raise AdminError(e.code(), f"controller: {e.details()}") from e
            finally:
                _TOKEN.reset(token)

        return rpc_method(service)(inner)

    return wrap


def is_code(exc: BaseException, *codes: grpc.StatusCode) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in codes


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):
    """Sends the token of the CSI call being served (from its secrets), else the plugin's own."""

    def __init__(self, default: str):
        self.default = default

    async def intercept_unary_unary(self, continuation, details, request):
        token = _TOKEN.get() or self.default
        if token:
            md = grpc.aio.Metadata(*tuple(details.metadata or ()))
            md.add("authorization", f"Bearer {token}")
            details = details._replace(metadata=md)
        return await continuation(details, request)


@dataclass
class AdminClient:
    """Stubs of the admin API on one channel. ``endpoint`` is unix:/path (plain) or host:port (mutual TLS
    with ``ca``/``cert``/``key`` files); ``token``: the plugin's own bearer token, for calls whose
    request carries none in its secrets."""

    endpoint: str
    ca: str = ""
    cert: str = ""
    key: str = ""
    token: str = ""

    def __post_init__(self) -> None:
        target = self.endpoint
        if target.startswith("unix://"):
            target = "unix:" + target[len("unix://"):]
        if target.startswith("/"):
            target = "unix:" + target
        if target.startswith("unix:"):
            self.channel = grpc.aio.insecure_channel(target, interceptors=[_Bearer(self.token)])
        else:
            if not self.ca:
                raise ValueError(f"admin endpoint {target}: a network endpoint needs TLS (give the CA file)")
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(self.ca).read_bytes(),
                private_key=Path(self.key).read_bytes() if self.key else None,
                certificate_chain=Path(self.cert).read_bytes() if self.cert else None)
            self.channel = grpc.aio.secure_channel(target, creds, interceptors=[_Bearer(self.token)])
        self.volumes = admin_grpc.VolumeServiceStub(self.channel)
        self.nodes = admin_grpc.NodeServiceStub(self.channel)
        self.cluster = admin_grpc.ClusterServiceStub(self.channel)
        self.hosts = admin_grpc.HostServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
