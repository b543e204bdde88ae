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


def set_subprocessor(cp: ControlPlane, actor: audit.Actor, tenant_id: str, name: str, on: bool, reason: str) -> None:
    """Opt a tenant in to (or out of) a sub-processor; who changed it and why are audited.

    Operators or the tenant's own customer admin; the next run (or, streaming, within the opt-in
    refresh bound) honours it.
    """
    from ccpipe.controlplane.access import require_tenant_admin_or_operator
    from ccpipe.errors import ConfigError
    from ccpipe.flows import check_subprocessor_name

    check_subprocessor_name(name, "name")
    if not reason.strip():
        raise ConfigError("changing a sub-processor opt-in needs a reason")
    get(cp, tenant_id)
    require_tenant_admin_or_operator(cp, actor, tenant_id, "subprocessor_opt_in")
    with cp.transaction():
        current = json.loads(cp.one("SELECT subprocessors FROM tenants WHERE tenant_id = ?", (tenant_id,))[0])
        current[name] = bool(on)
        cp.execute("UPDATE tenants SET subprocessors = ?, updated_at = ? WHERE tenant_id = ?",
                   (json.dumps(current, sort_keys=True), _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                    tenant_id))
        audit.append(cp, actor, "subprocessor_opt_in" if on else "subprocessor_opt_out", tenant_id=tenant_id,
                     target=name, reason=reason)
