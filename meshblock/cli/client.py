"""Reaching the controller's admin API from the CLI.

The endpoint is ``--endpoint``, else ``$MESHBLOCK_ENDPOINT``, else the local
controller's socket ``unix:$MESHBLOCK_HOME/controller.sock``.  A Unix socket is
spoken in plain text (it is protected by file permissions); a ``host:port``
endpoint always uses TLS, built from ``--ca`` / ``--cert`` / ``--key``.
gRPC failures become a :class:`click.ClickException` with one clear line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click

if TYPE_CHECKING:
    import grpc

DEFAULT_RPC_TIMEOUT = 30.0
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.%\w]+\]|[^\s:/\[\]]+):(\d{1,5})$")
_CONNECT_FAILURE = ("failed to connect", "connection refused", "no such file", "connect failed",
                    "name resolution", "dns resolution", "handshake", "unreachable", "socket closed")


def _grpc() -> Any:
    """The grpc module, imported on first use so that gRPC's own transport logging (TLS handshake
    failures, ...) does not duplicate the one line the CLI prints; GRPC_VERBOSITY still overrides."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import grpc

    return grpc


def meshblock_home() -> Path:
    return Path(os.environ.get("MESHBLOCK_HOME") or "~/.meshblock").expanduser()


def resolve_endpoint(explicit: str | None = None) -> str:
    """``explicit`` > ``$MESHBLOCK_ENDPOINT`` > ``unix:$MESHBLOCK_HOME/controller.sock``."""
    value = (explicit or "").strip() or os.environ.get("MESHBLOCK_ENDPOINT", "").strip()
    if not value:
        return f"unix:{meshblock_home() / 'controller.sock'}"
    if value.startswith("/"):
        return f"unix:{value}"
    return value


def is_unix(endpoint: str) -> bool:
    return endpoint.startswith(("unix:", "unix-abstract:"))


def unix_path(endpoint: str) -> str | None:
    """The file system path of a ``unix:`` endpoint (None for abstract or network endpoints)."""
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://"):]
    if endpoint.startswith("unix:"):
        return endpoint[len("unix:"):]
    return None


def check_network_endpoint(endpoint: str) -> None:
    """Raise a usage error unless ``endpoint`` looks like host:port (or a gRPC dns:/ipv4:/ipv6: target)."""
    if endpoint.startswith(("dns:", "ipv4:", "ipv6:")):
        return
    m = _HOST_PORT.match(endpoint)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise click.UsageError(f"endpoint {endpoint!r} is neither unix:/path nor host:port")


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the controller, as given on the command line."""

    endpoint: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    token: str | None = None       # a bearer token, sent with every call

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {self.token}"),) if self.token else None

    @property
    def target(self) -> str:
        return resolve_endpoint(self.endpoint)

    def credentials(self) -> grpc.ChannelCredentials:
        target = self.target
        if not (self.ca or self.cert or self.key):
            raise click.UsageError(
                f"refusing to connect to {target} without TLS: give --ca FILE (and --cert FILE --key FILE "
                f"for client authentication) or set MESHBLOCK_CA / MESHBLOCK_CERT / MESHBLOCK_KEY; "
                f"a controller on this machine is reached through unix:/path")
        if bool(self.cert) != bool(self.key):
            raise click.UsageError("--cert and --key must be given together")

        def read(p: Path | None, what: str) -> bytes | None:
            if p is None:
                return None
            try:
                return Path(p).read_bytes()
            except OSError as e:
                raise click.ClickException(f"cannot read the {what} {p}: {e.strerror or e}") from None

        return _grpc().ssl_channel_credentials(root_certificates=read(self.ca, "CA certificate"),
                                            private_key=read(self.key, "client key"),
                                            certificate_chain=read(self.cert, "client certificate"))

    @property
    def tls(self) -> bool:
        return not is_unix(self.target)

    def open_channel(self) -> grpc.Channel:
        target = self.target
        if is_unix(target):
            return _grpc().insecure_channel(target)
        check_network_endpoint(target)
        return _grpc().secure_channel(target, self.credentials())


def _looks_unreachable(details: str) -> bool:
    d = details.lower()
    return any(s in d for s in _CONNECT_FAILURE)


def _reason(details: str) -> str:
    """The last error of a connection failure, without gRPC's status prefix."""
    last = details.rsplit("last error:", 1)[-1].strip()
    last = re.sub(r"^[A-Z_]+: ", "", last)
    return re.sub(r": OK$", "", last)


def error_for(exc: grpc.RpcError, endpoint: str, hint: str = "") -> click.ClickException:
    """One line for the user: ``<STATUS>: <details>``, or which endpoint could not be reached."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or ""
    if code == _grpc().StatusCode.UNAVAILABLE and _looks_unreachable(details):
        path = unix_path(endpoint)
        if path is not None:
            reason = "no such socket" if not os.path.exists(path) else "nothing is listening on it"
            return click.ClickException(
                f"cannot reach the controller at {endpoint} ({reason}). Is the local cluster running? "
                f"Start it with `meshblock up`, or point --endpoint / MESHBLOCK_ENDPOINT at a controller.")
        if not any(k in details.lower() for k in ("handshake", "socket closed", "certificate")):
            hint = ""  # not a TLS problem
        return click.ClickException(f"cannot reach the controller at {endpoint}: {_reason(details)}{hint}")
    name = code.name if code is not None else "UNKNOWN"
    return click.ClickException(f"{name}: {details}" if details else name)


class _Stub:
    """A service stub whose calls carry a deadline and raise ClickException on failure."""

    def __init__(self, stub: Any, endpoint: str, timeout: float, hint: str = "",
                 metadata: tuple[tuple[str, str], ...] | None = None) -> None:
        self._stub = stub
        self._endpoint = endpoint
        self._timeout = timeout
        self._hint = hint
        self._metadata = metadata

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, timeout: float | None = None) -> Any:
            try:
                return method(request, timeout=timeout or self._timeout, metadata=self._metadata)
            except _grpc().RpcError as e:
                raise error_for(e, self._endpoint, self._hint) from None

        return call


class AdminClient:
    """The controller's VolumeService, NodeService and ClusterService over one channel."""

    def __init__(self, conn: Connection, timeout: float = DEFAULT_RPC_TIMEOUT) -> None:
        _grpc()
        from ..proto.meshblock.v1 import admin_pb2_grpc

        self.endpoint = conn.target
        self._channel = conn.open_channel()
        hint = ""
        if conn.tls and not conn.cert:
            hint = " (if the controller requires client certificates, give --cert and --key)"
        md = conn.metadata
        self.volumes = _Stub(admin_pb2_grpc.VolumeServiceStub(self._channel), self.endpoint, timeout, hint, md)
        self.nodes = _Stub(admin_pb2_grpc.NodeServiceStub(self._channel), self.endpoint, timeout, hint, md)
        self.cluster = _Stub(admin_pb2_grpc.ClusterServiceStub(self._channel), self.endpoint, timeout, hint, md)
        self.tenants = _Stub(admin_pb2_grpc.TenantServiceStub(self._channel), self.endpoint, timeout, hint, md)
        self.audit = _Stub(admin_pb2_grpc.AuditServiceStub(self._channel), self.endpoint, timeout, hint, md)
        self.events = _Stub(admin_pb2_grpc.EventServiceStub(self._channel), self.endpoint, timeout, hint, md)
        self.hint = hint
        self.metadata = md
        self._event_stream = admin_pb2_grpc.EventServiceStub(self._channel).WatchEvents

    def watch_events(self, request: Any) -> Iterator[Any]:
        """WatchEvents with no deadline (it runs until the caller stops); failures as ClickException."""
        try:
            yield from self._event_stream(request, metadata=self.metadata)
        except _grpc().RpcError as e:
            raise error_for(e, self.endpoint, self.hint) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
