"""Access control: who may act on a tenant, operator grants, and audited decryption.

Roles: ``customer_admin`` (scoped to one tenant) may access, export, rectify and delete its tenant's
data; an ``operator`` runs the service and may decrypt customer content only under an active grant
that the tenant's admin recorded. Every decrypt, and every refusal, is in the audit log.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from pathlib import Path

import pyarrow.compute as pc

from ccpipe import crypto, store
from ccpipe.controlplane import audit, tenants_repo
from ccpipe.controlplane.db import ControlPlane
from ccpipe.errors import CcpipeError, ConfigError
from ccpipe.keystore import SqliteKeyStore


class AccessDeniedError(CcpipeError):
    """The actor may not do this; the refusal is audited."""


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def require_tenant_admin_or_operator(cp: ControlPlane, actor: audit.Actor, tenant_id: str, action: str) -> None:
    """Customer admins act only on their own tenant; operators on any. Refusals are audited."""
    tenants_repo.get(cp, tenant_id)
    if actor.role == "customer_admin" and actor.tenant_id != tenant_id:
        audit.append(cp, actor, action, tenant_id=tenant_id, outcome="refused",
                     reason="customer_admin of another tenant")
        raise AccessDeniedError(f"{actor.name} is customer_admin of {actor.tenant_id!r}, not of {tenant_id!r}")


def add_grant(cp: ControlPlane, actor: audit.Actor, tenant_id: str, grantee: str, days: int, reason: str) -> str:
    """A tenant admin lets an operator decrypt its customer content for ``days`` days."""
    tenants_repo.get(cp, tenant_id)
    if actor.role != "customer_admin" or actor.tenant_id != tenant_id:
        audit.append(cp, actor, "grant_add", tenant_id=tenant_id, target=grantee, outcome="refused",
                     reason="only the tenant's customer_admin grants access")
        raise AccessDeniedError("only the tenant's customer_admin can grant access to its customer content")
    if not 1 <= days <= 90:
        raise ConfigError(f"days {days!r} must be between 1 and 90")
    if not reason.strip():
        raise ConfigError("a grant needs a reason")
    grant_id = uuid.uuid4().hex
    now = _now()
    with cp.transaction():
        cp.execute(
            "INSERT INTO grants (grant_id, tenant_id, grantee, granted_by, scope, reason, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, 'decrypt', ?, ?, ?)",
            (grant_id, tenant_id, grantee, actor.name, reason, now.isoformat(),
             (now + _dt.timedelta(days=days)).isoformat()),
        )
        audit.append(cp, actor, "grant_add", tenant_id=tenant_id, target=grantee, reason=reason,
                     details={"grant_id": grant_id, "days": days})
    return grant_id


def revoke_grant(cp: ControlPlane, actor: audit.Actor, grant_id: str) -> None:
    """End a grant before it expires."""
    row = cp.one("SELECT tenant_id, revoked_at FROM grants WHERE grant_id = ?", (grant_id,))
    if row is None:
        raise tenants_repo.NotFoundError(f"unknown grant {grant_id!r}")
    if actor.role != "customer_admin" or actor.tenant_id != row[0]:
        raise AccessDeniedError("only the tenant's customer_admin can revoke its grants")
    with cp.transaction():
        cp.execute("UPDATE grants SET revoked_at = ? WHERE grant_id = ?", (_now().isoformat(), grant_id))
        audit.append(cp, actor, "grant_revoke", tenant_id=row[0], details={"grant_id": grant_id})


def authorize_decrypt(cp: ControlPlane, actor: audit.Actor, tenant_id: str, reason: str) -> None:
    """Raise AccessDeniedError (audited) unless the actor may decrypt the tenant's content."""
    require_tenant_admin_or_operator(cp, actor, tenant_id, "decrypt")
    if actor.role == "customer_admin":
        return
    if actor.role == "operator":
        row = cp.one(
            "SELECT grant_id FROM grants WHERE tenant_id = ? AND grantee = ? AND revoked_at IS NULL "
            "AND expires_at > ? ORDER BY expires_at DESC LIMIT 1",
            (tenant_id, actor.name, _now().isoformat()),
        )
        if row is not None:
            return
    audit.append(cp, actor, "decrypt", tenant_id=tenant_id, reason=reason, outcome="refused",
                 details={"why": "no active grant from the tenant's customer_admin"})
    raise AccessDeniedError(
        f"{actor.role} {actor.name!r} has no active grant to decrypt customer content of {tenant_id!r}"
    )


def decrypt_field(
    cp: ControlPlane, keys: SqliteKeyStore, root: str | Path, actor: audit.Actor, tenant_id: str, dataset: str,
    record_id: str, field: str, reason: str, seq: int | None = None,
) -> str:
    """Decrypt one ciphertext column of one row, after the access check; audited."""
    if not reason.strip():
        raise ConfigError("decrypting needs a reason")
    tenant = tenants_repo.get(cp, tenant_id)
    authorize_decrypt(cp, actor, tenant_id, reason)
    column = f"{field}_ciphertext"
    for file in store.partition_files(root, dataset=dataset, region=tenant.region):
        table = store.read(file)
        if column not in table.column_names:
            raise ConfigError(f"dataset {dataset!r} has no encrypted field {field!r}")
        mask = pc.and_(pc.equal(table["record_id"], record_id), pc.equal(table["tenant_id"], tenant_id))
        if seq is not None:
            mask = pc.and_(mask, pc.equal(table["seq"], seq))
        rows = table.filter(mask).to_pylist()
        if not rows:
            continue
        row = rows[0]
        aad_field = f"text:{row['seq']}" if dataset == "chat_messages" else field
        key = keys.get(tenant_id, "content", row["key_version"])
        blob = row[column]
        if blob is None:
            return ""
        plain = crypto.decrypt(key, blob, crypto.field_aad(tenant_id, file.region, dataset, record_id, aad_field))
        audit.append(cp, actor, "decrypt", tenant_id=tenant_id, target=f"{dataset}/{record_id}/{field}",
                     reason=reason)
        return plain.decode()
    raise tenants_repo.NotFoundError(f"no {dataset} row {record_id!r} of tenant {tenant_id!r}")
