"""Tenants in the control plane: import a registry file, read them back, look one up."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable

from ccpipe.controlplane import audit
from ccpipe.controlplane.db import ControlPlane
from ccpipe.errors import CcpipeError
from ccpipe.types import Tenant


class NotFoundError(CcpipeError):
    """A tenant, subject, request or record does not exist."""


def import_tenants(cp: ControlPlane, tenants: Iterable[Tenant], actor: audit.Actor) -> int:
    """Insert or update tenants from a registry; audited as one entry."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    n = 0
    with cp.transaction():
        for t in tenants:
            cp.execute(
                "INSERT INTO tenants (tenant_id, name, region, status, terminated_at, subprocessors, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET name = excluded.name, "
                "region = excluded.region, status = excluded.status, terminated_at = excluded.terminated_at, "
                "subprocessors = excluded.subprocessors, updated_at = excluded.updated_at",
                (t.tenant_id, t.name, t.region, t.status, t.terminated_at, json.dumps(dict(t.subprocessors)), now),
            )
            n += 1
        audit.append(cp, actor, "tenants_import", details={"tenants": n})
    return n


def load(cp: ControlPlane) -> dict[str, Tenant]:
    """Every tenant, by id."""
    rows = cp.query(
        "SELECT tenant_id, name, region, status, terminated_at, subprocessors FROM tenants ORDER BY tenant_id"
    )
    return {
        r[0]: Tenant(r[0], r[1], r[2], r[3], r[4], tuple(sorted(json.loads(r[5]).items())))
        for r in rows
    }


def get(cp: ControlPlane, tenant_id: str) -> Tenant:
    """One tenant; NotFoundError naming it when unknown."""
    tenant = load(cp).get(tenant_id)
    if tenant is None:
        raise NotFoundError(f"unknown tenant {tenant_id!r}")
    return tenant
