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
from ccpipe.keystore import TENANT_PURPOSES, SqliteKeyStore, check_tenant_owner, parse_cutoff


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
    check_tenant_owner(tenant_id)  # before rotating a KEK: '_audit' is not a tenant
    if is_shredded(keys, tenant_id):
        raise ShreddedError(f"tenant {tenant_id!r} is shredded: its keys were destroyed and cannot be rotated")
    out = {}
    keys.rotate_kek(tenant_id)  # new data keys are wrapped by a new KEK version too
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
    """Destroy the tenant's key versions (all, or content versions created before ``before``); irreversible.

    Without ``before`` every version of the content and pseudonym keys goes and so does the tenant's
    KEK, so pseudonyms can no longer be linked to anyone and no copy of the keystore can be
    unwrapped. ``before`` (an ISO date or time, UTC unless it has an offset) destroys only older
    content versions (e.g. after a rotation) and is refused when it would reach the active
    version: that is a full shred, which must be asked for as such.

    An audit entry with outcome ``intent`` is committed before anything is destroyed; the outcome
    (``ok``, or ``failed`` with what was destroyed so far) follows.
    """
    tenants_repo.get(cp, tenant_id)
    if confirm != tenant_id:
        raise ConfigError(f"shredding is irreversible: confirm by naming the tenant ({tenant_id!r}), got {confirm!r}")
    require_tenant_admin_or_operator(cp, actor, tenant_id, "keys_shred")
    cutoff = parse_cutoff(before, "--before") if before else None
    purposes = ("content",) if cutoff else TENANT_PURPOSES
    planned: dict[str, list[int]] = {}
    # An early, friendly refusal before the intent entry; ``SqliteKeyStore.destroy`` enforces the same
    # rule under its write lock, so a change in between (a concurrent rotation or shred) cannot slip past it.
    for purpose in purposes:
        info = [k for k in keys.key_info(tenant_id, purpose) if k.state != "destroyed"]
        planned[purpose] = [k.version for k in info if cutoff is None or k.created_at < cutoff]
        active = max((k for k in keys.key_info(tenant_id, purpose)), key=lambda k: k.version, default=None)
        if cutoff and active is not None and active.version in planned[purpose]:
            raise ConfigError(
                f"--before {before!r} (= {cutoff.isoformat()}) would destroy the active {purpose} key "
                f"v{active.version} of {tenant_id!r} (created {active.created_at.isoformat()}); allowed: a cutoff "
                "at or before the active version's creation; to destroy every version use --all"
            )
    details = {"before": cutoff.isoformat() if cutoff else None, "planned": planned, "kms": keys.kms.kind}
    intent = audit.append(cp, actor, "keys_shred", tenant_id=tenant_id, reason=reason or None, outcome="intent",
                          details=details)
    destroyed: dict[str, list[int]] = {}
    try:
        for purpose in purposes:
            destroyed[purpose] = keys.destroy(tenant_id, purpose, cutoff)
    except Exception as err:
        audit.append(cp, actor, "keys_shred", tenant_id=tenant_id, reason=reason or None, outcome="failed",
                     details={**details, "intent": intent, "destroyed": destroyed, "error": type(err).__name__})
        raise
    with cp.transaction():
        for purpose, versions in destroyed.items():
            for version in versions:
                _record(cp, tenant_id, purpose, version, "destroyed", actor)
        audit.append(cp, actor, "keys_shred", tenant_id=tenant_id, reason=reason or None,
                     details={**details, "intent": intent, "destroyed": destroyed,
                              "kek_destroyed": not cutoff and not keys.kek_versions(tenant_id)})
    return destroyed
