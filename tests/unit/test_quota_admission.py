"""Admission against tenants' quotas: a tenant with a quota admits one change at a time (the check
and the commit together), a tenant without one admits changes at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from meshblock.control.tenants import Quotas
from meshblock.errors import ResourceExhausted
from meshblock.model import Volume
from meshblock.model.tenancy import Tenant

MiB = 1 << 20


def _quotas(tenants: dict[str, Tenant]) -> Quotas:
    view = SimpleNamespace(listeners=[])
    tenancy = SimpleNamespace(get=lambda kind, id: tenants.get(id))
    return Quotas(view, tenancy)


async def _overlap(q: Quotas, tenant: str) -> int:
    """How many of three admissions of ``tenant`` were held at the same time at most."""
    held = most = 0

    async def one(i: int) -> None:
        nonlocal held, most
        async with q.admit(Volume(id=f"v{i}", name=f"v{i}", tenant=tenant, size_bytes=MiB)):
            held += 1
            most = max(most, held)
            await asyncio.sleep(0.05)       # the commit
            held -= 1

    await asyncio.gather(*(one(i) for i in range(3)))
    return most


async def test_a_tenant_without_quotas_admits_at_once_one_with_a_quota_in_turn():
    q = _quotas({"acme": Tenant(id="acme", max_volumes=10)})
    assert await _overlap(q, "globex") == 3
    assert await _overlap(q, "acme") == 1


async def test_a_quota_still_refuses():
    q = _quotas({"acme": Tenant(id="acme", max_bytes=MiB)})
    with pytest.raises(ResourceExhausted, match="max_bytes"):
        async with q.admit(Volume(id="v1", name="v1", tenant="acme", size_bytes=2 * MiB)):
            pass
