"""Key lifecycle: rotate a tenant's keys, shred them (crypto-shredding), recorded and audited.

Rotation adds a version: new writes use it, older versions still decrypt and still match
pseudonyms. Shredding destroys key material: the tenant's ciphertext can never be decrypted again.
It is irreversible, so it must be confirmed by naming the tenant again.
"""

from __future__ import annotations

import datetime as _dt

from ccpipe.controlplane import audit, tenants_repo
from ccpipe.controlplane.access import require_tenant_admin_or_operator
from ccpipe.controlplane.db import ControlPlane
from ccpipe.errors import CcpipeError, ConfigError
from ccpipe.keystore import TENANT_PURPOSES, SqliteKeyStore


class ShreddedError(CcpipeError):
    """The tenant's keys were destroyed; nothing can bring them back."""


def _record(cp: ControlPlane, tenant_id: str, purpose: str, version: int, event: str, actor: audit.Actor) -> None:
    cp.execute(
        "INSERT INTO key_events (tenant_id, purpose, version, event, at, actor) VALUES (?, ?, ?, ?, ?, ?)",
        (tenant_id, purpose, version, event, _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), actor.name),
    )


def is_shredded(keys: SqliteKeyStore, tenant_id: str) -> bool:
    """True when every version of the tenant's content key is destroyed."""
    states = keys.states(tenant_id, "content")
    return bool(states) and all(s == "destroyed" for s in states.values())


def rotate(cp: ControlPlane, keys: SqliteKeyStore, tenant_id: str, actor: audit.Actor) -> dict[str, int]:
    """New versions of the tenant's content and pseudonym keys; returns purpose -> new version."""
    require_tenant_admin_or_operator(cp, actor, tenant_id, "keys_rotate")
    if is_shredded(keys, tenant_id):
        raise ShreddedError(f"tenant {tenant_id!r} is shredded: its keys were destroyed and cannot be rotated")
    out = {}
    with cp.transaction():
        for purpose in TENANT_PURPOSES:
            key = keys.create_key(tenant_id, purpose)
            _record(cp, tenant_id, purpose, key.version, "rotated", actor)
            out[purpose] = key.version
        audit.append(cp, actor, "keys_rotate", tenant_id=tenant_id, details=out)
    return out


def shred(
    cp: ControlPlane, keys: SqliteKeyStore, tenant_id: str, actor: audit.Actor, confirm: str,
    before: str | None = None, reason: str = "",
) -> dict[str, list[int]]:
    """Destroy the tenant's content key versions (all, or created before ``before``); irreversible.

    The pseudonym key is destroyed with a full shred too, so pseudonyms can no longer be linked to
    anyone; with ``before`` only older content versions go (e.g. after a rotation).
    """
    tenants_repo.get(cp, tenant_id)
    if confirm != tenant_id:
        raise ConfigError(f"shredding is irreversible: confirm by naming the tenant ({tenant_id!r}), got {confirm!r}")
    require_tenant_admin_or_operator(cp, actor, tenant_id, "keys_shred")
    if before:
        try:
            _dt.datetime.fromisoformat(before)
        except ValueError:
            raise ConfigError(f"before {before!r} must be an ISO date or time") from None
    purposes = ("content",) if before else TENANT_PURPOSES
    destroyed: dict[str, list[int]] = {}
    with cp.transaction():
        for purpose in purposes:
            destroyed[purpose] = keys.destroy(tenant_id, purpose, before)
            for version in destroyed[purpose]:
                _record(cp, tenant_id, purpose, version, "destroyed", actor)
        audit.append(cp, actor, "keys_shred", tenant_id=tenant_id, reason=reason or None,
                     details={"before": before, "destroyed": destroyed})
    return destroyed
