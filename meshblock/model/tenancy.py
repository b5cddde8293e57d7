"""Records of tenancy and accountability: tenants with their quotas, the identities callers
authenticate as, and the audit log's events (docs/security.md)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from .records import Record

DEFAULT_TENANT = "default"


class Role(str, enum.Enum):
    ADMIN = "admin"                  # every tenant; manages tenants, identities and nodes
    TENANT_ADMIN = "tenant-admin"    # everything within its tenant
    VIEWER = "viewer"                # reads within its tenant


def tenant_of(record_tenant: str) -> str:
    """The tenant a record's ``tenant`` field names ("" is the default tenant)."""
    return record_tenant or DEFAULT_TENANT


def stored_tenant(tenant: str) -> str:
    """What a record stores for ``tenant``: "" for the default, so records written before tenants
    existed belong to it."""
    return "" if tenant == DEFAULT_TENANT else tenant


@dataclass
class Tenant(Record):
    """A tenant; its id is its name. The default tenant needs no record (it has no quota unless
    one is set, which writes one)."""
    KIND: ClassVar[str] = "tenant"
    max_bytes: int = 0               # quotas, 0 = none
    max_volumes: int = 0
    max_iops: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0

    @property
    def name(self) -> str:
        return self.id


@dataclass
class Identity(Record):
    """Who a caller is: a bearer token (its id is ``token:<sha256 of the token>``; the token itself
    is never stored) or a client certificate's subject (``cert:<sha256 of the subject>``)."""
    KIND: ClassVar[str] = "identity"
    name: str = ""
    tenant: str = DEFAULT_TENANT
    role: str = Role.VIEWER.value
    kind: str = "token"              # token | certificate
    subject: str = ""                # certificate identities
    token_prefix: str = ""           # token identities: the token's first characters
    created_at: float = 0.0

    @property
    def name_key(self) -> str | None:
        return self.name


@dataclass
class AuditEvent(Record):
    """One mutating admin call. Ids sort in the order events were recorded."""
    KIND: ClassVar[str] = "audit"
    time: float = 0.0
    identity: str = ""
    role: str = ""
    tenant: str = ""
    method: str = ""
    target: str = ""
    code: str = ""
    peer: str = ""
    message: str = ""
