"""The CSI plugin's way to the controller's admin API."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import grpc

from ..errors import MeshblockError
from ..grpcutil import rpc_method
from ..proto.meshblock.v1 import admin_pb2_grpc as admin_grpc

ADMIN_TIMEOUT = 60.0


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
            try:
                return await fn(self, request, context)
            except grpc.aio.AioRpcError as e:
                raise AdminError(e.code(), f"controller: {e.details()}") from e

        return rpc_method(service)(inner)

    return wrap


def is_code(exc: BaseException, *codes: grpc.StatusCode) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in codes


@dataclass
class AdminClient:
    """Stubs of the admin API on one channel. ``endpoint`` is unix:/path (plain) or host:port (mutual TLS
    with ``ca``/``cert``/``key`` files)."""

    endpoint: str
    ca: str = ""
    cert: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        target = self.endpoint
        if target.startswith("unix://"):
            target = "unix:" + target[len("unix://"):]
        if target.startswith("/"):
            target = "unix:" + target
        if target.startswith("unix:"):
            self.channel = grpc.aio.insecure_channel(target)
        else:
            if not self.ca:
                raise ValueError(f"admin endpoint {target}: a network endpoint needs TLS (give the CA file)")
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(self.ca).read_bytes(),
                private_key=Path(self.key).read_bytes() if self.key else None,
                certificate_chain=Path(self.cert).read_bytes() if self.cert else None)
            self.channel = grpc.aio.secure_channel(target, creds)
        self.volumes = admin_grpc.VolumeServiceStub(self.channel)
        self.nodes = admin_grpc.NodeServiceStub(self.channel)
        self.cluster = admin_grpc.ClusterServiceStub(self.channel)
        self.hosts = admin_grpc.HostServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
