"""`meshblock tenant ...`, `meshblock identity ...` and `meshblock audit list`: tenants and their
quotas, the identities callers authenticate as, and the audit log (docs/security.md)."""

from __future__ import annotations

import re
import time
from datetime import datetime

import click

from ..proto.meshblock.v1 import admin_pb2 as pb
from . import output as out
from .admin import DURATION, Invocation, admin_options, paginate, report_deleted
from .types import SIZE, parse_labels

ROLES = ("admin", "tenant-admin", "viewer")


def _quota(n: int, fmt=str) -> str:
    return fmt(n) if n else "-"


def _tenants_table(tenants: list[pb.Tenant]):
    t = out.table("NAME", "VOLUMES", "CAPACITY", "IOPS", "AGE")
    for x in tenants:
        q, u = x.quota, x.usage
        t.add_row(out.esc(x.name), f"{u.volumes} / {_quota(q.max_volumes)}",
                  f"{out.size(u.bytes)} / {_quota(q.max_bytes, out.size)}",
                  f"{u.iops} / {_quota(q.max_iops)}" + (f" (+{u.unlimited_iops_volumes} unlimited)"
                                                        if u.unlimited_iops_volumes else ""),
                  out.age(x.created_at) if x.created_at else "-")
    return t


def _show_tenant(inv: Invocation, t: pb.Tenant) -> None:
    if inv.json:
        out.print_json(out.message_to_dict(t))
    else:
        out.console().print(_tenants_table([t]))


def quota_options(fn):
    fn = click.option("--max-iops", type=click.IntRange(min=0), default=None, metavar="N",
                      help="Sum of the volumes' IOPS limits (0: no quota). Under an IOPS quota every volume "
                           "needs an IOPS limit.")(fn)
    fn = click.option("--max-volumes", type=click.IntRange(min=0), default=None, metavar="N",
                      help="Volumes (0: no quota).")(fn)
    fn = click.option("--max-bytes", type=SIZE, default=None, metavar="SIZE",
                      help="Sum of the volumes' sizes: 100GiB, ... (0: no quota).")(fn)
    return fn


@click.group()
def tenant() -> None:
    """Tenants: who owns volumes, snapshots and hosts, and their quotas (admins)."""


@tenant.command("create")
@click.argument("name")
@quota_options
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=parse_labels, help="A label.")
@admin_options
def tenant_create(inv: Invocation, name: str, max_bytes: int | None, max_volumes: int | None, max_iops: int | None,
                  labels: dict[str, str]) -> None:
    """Create tenant NAME, with quotas."""
    q = pb.TenantQuota(max_bytes=max_bytes or 0, max_volumes=max_volumes or 0, max_iops=max_iops or 0)
    with inv.client() as c:
        _show_tenant(inv, c.tenants.CreateTenant(pb.CreateTenantRequest(name=name, quota=q, labels=labels)))


@tenant.command("list")
@admin_options
def tenant_list(inv: Invocation) -> None:
    """List tenants with their use and quotas (others see their own tenant)."""
    with inv.client() as c:
        tenants = list(c.tenants.ListTenants(pb.ListTenantsRequest()).tenants)
    if inv.json:
        out.print_json([out.message_to_dict(t) for t in tenants])
    else:
        out.console().print(_tenants_table(tenants))


@tenant.command("get")
@click.argument("name", required=False, default="")
@admin_options
def tenant_get(inv: Invocation, name: str) -> None:
    """Show tenant NAME (default: your own)."""
    with inv.client() as c:
        _show_tenant(inv, c.tenants.GetTenant(pb.GetTenantRequest(name=name)))


@tenant.command("set-quota")
@click.argument("name")
@quota_options
@admin_options
def tenant_set_quota(inv: Invocation, name: str, max_bytes: int | None, max_volumes: int | None,
                     max_iops: int | None) -> None:
    """Change tenant NAME's quotas (those not given stay; 0 lifts one)."""
    given = {k: v for k, v in (("max_bytes", max_bytes), ("max_volumes", max_volumes), ("max_iops", max_iops))
             if v is not None}
    if not given:
        raise click.UsageError("give at least one of --max-bytes, --max-volumes, --max-iops")
    with inv.client() as c:
        _show_tenant(inv, c.tenants.SetTenantQuota(pb.SetTenantQuotaRequest(name=name, **given)))


@tenant.command("delete")
@click.argument("name")
@admin_options
def tenant_delete(inv: Invocation, name: str) -> None:
    """Delete tenant NAME (it must own nothing and have no identities)."""
    with inv.client() as c:
        reply = c.tenants.DeleteTenant(pb.DeleteTenantRequest(name=name))
    report_deleted(inv, "tenant", name, reply.existed)


@click.group()
def identity() -> None:
    """Identities: a token or a client certificate, mapped to a tenant and a role (admins)."""


@identity.command("create")
@click.argument("name")
@click.option("--tenant", "tenant_name", default="default", show_default=True, help="The identity's tenant.")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="admin: everything, every tenant; tenant-admin: everything in its tenant; viewer: reads.")
@click.option("--subject", default="", metavar="DN",
              help="A client certificate's subject (RFC 4514, e.g. CN=ci,O=acme) instead of a token.")
@admin_options
def identity_create(inv: Invocation, name: str, tenant_name: str, role: str, subject: str) -> None:
    """Create identity NAME. A token identity's token is printed once: keep it (the controller
    stores only its hash). The first identity must be an admin; from then on every call must
    authenticate."""
    with inv.client() as c:
        reply = c.tenants.CreateIdentity(pb.CreateIdentityRequest(name=name, tenant=tenant_name, role=role,
                                                                  subject=subject))
    if inv.json:
        out.print_json(out.message_to_dict(reply))
    elif reply.token:
        click.echo(f"identity {name} ({role} of tenant {reply.identity.tenant}) created; its token, shown "
                   f"only now:\n{reply.token}")
    else:
        click.echo(f"identity {name} ({role} of tenant {reply.identity.tenant}) created for certificate "
                   f"{reply.identity.subject}")


@identity.command("list")
@click.option("--tenant", "tenant_name", default="", help="Only this tenant's identities.")
@admin_options
def identity_list(inv: Invocation, tenant_name: str) -> None:
    """List identities (never their tokens)."""
    with inv.client() as c:
        idents = list(c.tenants.ListIdentities(pb.ListIdentitiesRequest(tenant=tenant_name)).identities)
    if inv.json:
        out.print_json([out.message_to_dict(i) for i in idents])
        return
    t = out.table("NAME", "TENANT", "ROLE", "KIND", "TOKEN / SUBJECT", "AGE")
    for i in idents:
        t.add_row(out.esc(i.name), out.esc(i.tenant), i.role, i.kind,
                  out.esc(f"{i.token_prefix}..." if i.kind == "token" else i.subject), out.age(i.created_at))
    out.console().print(t)


@identity.command("delete")
@click.argument("name")
@admin_options
def identity_delete(inv: Invocation, name: str) -> None:
    """Delete identity NAME: its token or certificate is refused from then on."""
    with inv.client() as c:
        reply = c.tenants.DeleteIdentity(pb.DeleteIdentityRequest(name=name))
    report_deleted(inv, "identity", name, reply.existed)


def parse_since(value: str) -> float:
    """``--since``: a duration back from now (30m, 2h, 7d) or a time (2026-12-01, 2026-12-01T10:00)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*d\s*", value)
    if m:
        return time.time() - float(m.group(1)) * 86400
    try:
        return time.time() - DURATION.convert(value, None, None)
    except click.BadParameter:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (30m, 2h, 7d) nor a time "
                                 "(2026-12-01T10:00)", param_hint="--since") from None


@click.group()
def audit() -> None:
    """The audit log of mutating admin calls."""


@audit.command("list")
@click.option("--since", default=None, metavar="DURATION|TIME", help="From this long ago (30m, 2h, 7d) or this "
                                                                     "time (2026-12-01T10:00, local time).")
@click.option("--tenant", "tenant_name", default="", help="Only calls by this tenant's identities (admins).")
@admin_options
def audit_list(inv: Invocation, since: str | None, tenant_name: str) -> None:
    """List audit events, oldest first."""
    req = pb.ListAuditEventsRequest(since=parse_since(since) if since else 0.0, tenant=tenant_name)
    with inv.client() as c:
        events = list(paginate(c.audit.ListAuditEvents, req, "events"))
    if inv.json:
        out.print_json([out.message_to_dict(e) for e in events])
        return
    if not events:
        click.echo("No audit events.")
        return
    t = out.table("TIME", "IDENTITY", "TENANT", "CALL", "TARGET", "RESULT", "PEER")
    for e in events:
        result = e.code if not e.message else f"{e.code}: {e.message}"
        t.add_row(out.timestamp(e.time), out.esc(e.identity or "-"), out.esc(e.tenant), e.method, out.esc(e.target),
                  out.esc(result), out.esc(e.peer))
    out.console().print(t)
