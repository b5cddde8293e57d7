"""Who calls the admin API, and what they may do.

An identity is a bearer token (gRPC metadata ``authorization: Bearer <token>``, on the Unix socket
or over TCP) or the subject of a client certificate (TCP, where the controller requires client
certificates anyway); it names a tenant and a role. Until the first identity is created, nothing
is checked: every caller is an admin of the default tenant, as before tenants existed.

The interceptor authenticates each call of the admin services, checks the role against the
method, makes the caller known to the servicers (:func:`current`) and records every mutating call
in the audit log. Agents' NodeRegistry calls, health and reflection pass untouched.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

import grpc
from google.protobuf.message import Message

from ..model.tenancy import DEFAULT_TENANT, Identity, Role, stored_tenant, tenant_of

log = logging.getLogger(__name__)

TOKEN_PREFIX = "mbt_"
PROTECTED = ("meshblock.v1.VolumeService", "meshblock.v1.NodeService", "meshblock.v1.ClusterService",
             "meshblock.v1.HostService", "meshblock.v1.TenantService", "meshblock.v1.AuditService",
             "meshblock.v1.EventService")
# calls that change nothing but hand out secrets (DH-HMAC-CHAP): not for viewers
SECRET_READS = {"GetConnectInfo"}
# mutating calls only admins make (the others are made by admins and tenant admins)
ADMIN_ONLY = {"CordonNode", "UncordonNode", "DrainNode", "CreateTenant", "SetTenantQuota", "DeleteTenant",
              "CreateIdentity", "DeleteIdentity", "ListIdentities"}
_RANK = {Role.VIEWER.value: 0, Role.TENANT_ADMIN.value: 1, Role.ADMIN.value: 2}


@dataclass(frozen=True)
class Caller:
    identity: str            # "" when no identities are configured
    tenant: str
    role: str
    peer: str = ""

    @property
    def admin(self) -> bool:
        return self.role == Role.ADMIN.value

    def sees(self, record_tenant: str) -> bool:
        """Whether an object of ``record_tenant`` (a record's field) exists for this caller."""
        return self.admin or tenant_of(record_tenant) == self.tenant

    @property
    def stored_tenant(self) -> str:
        """The value of a record's ``tenant`` field for objects this caller creates."""
        return stored_tenant(self.tenant)


NOBODY = Caller(identity="", tenant=DEFAULT_TENANT, role=Role.ADMIN.value)
_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("meshblock_caller", default=NOBODY)


def current() -> Caller:
    """The caller of the admin call being served (an admin of the default tenant outside of one,
    and in a cluster without identities)."""
    return _CALLER.get()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_id(token: str) -> str:
    """The record id of a token identity. Tokens are 256 random bits, so a plain hash is enough to
    keep them out of the store (nothing to guess that a salt would protect)."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()


def cert_id(subject: str) -> str:
    return "cert:" + hashlib.sha256(subject.encode()).hexdigest()


def mutating(method: str) -> bool:
    return not method.startswith(("Get", "List", "Watch"))


def required_role(method: str) -> str:
    if method in ADMIN_ONLY:
        return Role.ADMIN.value
    if mutating(method) or method in SECRET_READS:
        return Role.TENANT_ADMIN.value
    return Role.VIEWER.value


def peer_subject(context: Any) -> str:
    """The subject of the client certificate of a TLS call (RFC 4514), "" without one."""
    try:
        pem = (context.auth_context() or {}).get("x509_pem_cert")
    except Exception:  # noqa: BLE001 - a Unix socket call has no TLS context
        return ""
    if not pem:
        return ""
    from cryptography import x509
    return x509.load_pem_x509_certificate(pem[0]).subject.rfc4514_string()


def bearer(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, tok = str(value).partition(" ")
            return tok.strip() if scheme.lower() == "bearer" else ""
    return None


class AuthError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.details = message


class _Aborted(grpc.aio.AbortError):
    """A servicer's abort, held until the interceptor has recorded the call."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code = code
        self.details = details


class _DeferredAbort:
    """A servicer context whose abort raises :class:`_Aborted` instead of answering the client."""

    def __init__(self, context: Any):
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        raise _Aborted(code, details)


class Authenticator:
    """Maps calls to callers with the identities of ``view`` (a view of tenants and identities)."""

    def __init__(self, view: Any):
        self.view = view

    @property
    def enforced(self) -> bool:
        return self.view.count(Identity) > 0

    def authenticate(self, context: Any) -> Caller:
        peer = context.peer() or ""
        if not self.view.ready.is_set():
            raise AuthError(grpc.StatusCode.UNAVAILABLE, "the controller is still loading its identities")
        if not self.enforced:
            return Caller(identity="", tenant=DEFAULT_TENANT, role=Role.ADMIN.value, peer=peer)
        tok = bearer(context)
        if tok is not None:
            ident = self.view.get(Identity, token_id(tok)) if tok else None
            if ident is None:
                raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not known")
        else:
            subject = peer_subject(context)
            if not subject:
                raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                                "identities are configured: give a token (--token or MESHBLOCK_TOKEN)")
            ident = self.view.get(Identity, cert_id(subject))
            if ident is None:
                raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                                f"the client certificate {subject!r} has no identity; give a token")
        return Caller(identity=ident.name, tenant=ident.tenant, role=ident.role, peer=peer)


# request fields that name what a call acts on, in order of preference
_TARGET_FIELDS = ("ref", "volume_ref", "name", "id")


def target_of(request: Any) -> str:
    fields = {f.name for f in request.DESCRIPTOR.fields}
    for name in _TARGET_FIELDS:
        if name in fields and getattr(request, name):
            target = str(getattr(request, name))
            for extra in ("host_nqn", "initiator_iqn"):
                if extra in fields and getattr(request, extra):
                    target += f" host={getattr(request, extra)}"
            return target
    if "volume_refs" in fields:
        return ",".join(request.volume_refs)
    return ""


def secret_values(request: Any) -> list[str]:
    """String values of a request's fields named like secrets, nested messages included."""
    found: list[str] = []
    for f, value in request.ListFields():
        if isinstance(value, Message):
            found += secret_values(value)
        elif isinstance(value, str) and value and any(w in f.name for w in ("secret", "token", "key")):
            found.append(value)
    return found


def redact(text: str, hidden: list[str]) -> str:
    for value in hidden:
        text = text.replace(value, "[redacted]")
    return text


def allow(caller: Caller, method: str) -> None:
    """AuthError (PERMISSION_DENIED) unless the caller's role may call ``method``."""
    if _RANK.get(caller.role, -1) < _RANK[required_role(method)]:
        raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                        f"{caller.identity!r} ({caller.role} of tenant {caller.tenant}) may not call {method}")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates and authorises admin calls; records mutating ones with ``record``
    (``record(caller, method, request, code, message)``; None: no audit log)."""

    def __init__(self, auth: Authenticator, record: Callable[..., Any] | None = None,
                 active: Callable[[], bool] = lambda: True):
        self.auth = auth
        self.record = record
        self.active = active

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").partition("/")
        if handler is None or service not in PROTECTED:
            return handler
        if handler.unary_stream is not None:
            return self._streaming(handler, method)
        if handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        full = f"{service.rsplit('.', 1)[-1]}.{method}"
        audited = mutating(method)

        async def behavior(request, context):
            caller = Caller("", "", "", context.peer() or "")
            try:
                caller = self.auth.authenticate(context)
                allow(caller, method)
                token = _CALLER.set(caller)
                try:
                    # the servicer's abort is held back until the call is in the audit log: an
                    # abort answers the client at once
                    reply = await inner(request, _DeferredAbort(context))
                finally:
                    _CALLER.reset(token)
            except (AuthError, _Aborted) as e:
                code, message = e.code, e.details
            except Exception as e:
                if audited:
                    await self._record(caller, full, request, grpc.StatusCode.UNKNOWN, type(e).__name__)
                raise
            else:
                if audited:
                    await self._record(caller, full, request, grpc.StatusCode.OK, "")
                return reply
            if audited:
                await self._record(caller, full, request, code, message)
            await context.abort(code, message)

        return grpc.unary_unary_rpc_method_handler(behavior, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)

    def _streaming(self, handler, method: str):
        """A server-streaming call (reads only: WatchEvents): authenticated and authorised as the
        unary calls are, not audited."""
        inner = handler.unary_stream

        async def behavior(request, context):
            try:
                caller = self.auth.authenticate(context)
                allow(caller, method)
            except AuthError as e:
                await context.abort(e.code, e.details)
                return
            token = _CALLER.set(caller)
            try:
                async for reply in inner(request, context):
                    yield reply
            finally:
                try:
                    _CALLER.reset(token)
                except ValueError:   # resumed in another context: nothing of this call's is left in it
                    pass

        return grpc.unary_stream_rpc_method_handler(behavior, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)

    async def _record(self, caller: Caller, method: str, request: Any, code: grpc.StatusCode, message: str) -> None:
        if self.record is None or not self.active():
            return
        hidden = secret_values(request)
        try:
            await self.record(caller=caller, method=method, target=redact(target_of(request), hidden),
                              code=code.name if hasattr(code, "name") else str(code),
                              message=redact(message or "", hidden), at=time.time())
        except Exception:  # noqa: BLE001 - the call has happened; a lost audit event is logged
            log.exception("audit event of %s by %r not recorded", method, caller.identity)
