"""The append-only, hash-chained audit log.

Every entry carries the hash of the previous one: ``hash = SHA-256(prev_hash | canonical JSON of the
entry)``. ``verify`` recomputes the chain and reports the first entry that was edited, removed or
moved. The database also refuses UPDATE and DELETE on the table (triggers); the chain catches
whoever bypasses them. Entries name who, what, when, why and the outcome; they never hold personal
data (subjects appear as request ids, records as record ids).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ccpipe.controlplane.db import ControlPlane

GENESIS = "0" * 64
ROLES = ("operator", "customer_admin", "system")


@dataclass(frozen=True)
class Actor:
    """Who does something: a name and a role; a customer admin is scoped to one tenant."""

    name: str
    role: str
    tenant_id: str | None = None

    def __post_init__(self) -> None:
        from ccpipe.errors import ConfigError

        if not self.name:
            raise ConfigError("actor name must not be empty")
        if self.role not in ROLES:
            raise ConfigError(f"role {self.role!r} is not one of {ROLES}")
        if self.role == "customer_admin" and not self.tenant_id:
            raise ConfigError("a customer_admin actor must name its tenant")


def _entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + "|" + canonical).encode()).hexdigest()


def append(
    cp: ControlPlane,
    actor: Actor,
    action: str,
    *,
    tenant_id: str | None = None,
    target: str | None = None,
    reason: str | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> int:
    """Append one entry (inside the caller's transaction, if any); return its sequence number."""
    with cp.transaction():
        row = cp.one("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        fields = {
            "seq": seq,
            "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds"),
            "actor": actor.name,
            "role": actor.role,
            "action": action,
            "tenant_id": tenant_id,
            "target": target,
            "reason": reason,
            "outcome": outcome,
            "details": json.dumps(details or {}, sort_keys=True),
        }
        digest = _entry_hash(prev, fields)
        cp.execute(
            "INSERT INTO audit_log (seq, at, actor, role, action, tenant_id, target, reason, outcome, details, "
            "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                fields["at"],
                actor.name,
                actor.role,
                action,
                tenant_id,
                target,
                reason,
                outcome,
                fields["details"],
                prev,
                digest,
            ),
        )
    return seq


def entries(cp: ControlPlane) -> list[dict[str, Any]]:
    """Every entry in order."""
    names = [
        "seq",
        "at",
        "actor",
        "role",
        "action",
        "tenant_id",
        "target",
        "reason",
        "outcome",
        "details",
        "prev_hash",
        "hash",
    ]
    return [
        dict(zip(names, r, strict=True)) for r in cp.query(f"SELECT {', '.join(names)} FROM audit_log ORDER BY seq")
    ]


def verify(cp: ControlPlane) -> list[str]:
    """Problems found in the chain (empty when intact): edits, removals, reordering."""
    problems = []
    prev, expected_seq = GENESIS, 1
    for e in entries(cp):
        if e["seq"] != expected_seq:
            problems.append(f"entry {expected_seq} is missing (next is {e['seq']})")
        if e["prev_hash"] != prev:
            problems.append(f"entry {e['seq']}: does not follow entry {e['seq'] - 1} (removed or reordered)")
        fields = {
            k: e[k]
            for k in ("seq", "at", "actor", "role", "action", "tenant_id", "target", "reason", "outcome", "details")
        }
        if _entry_hash(e["prev_hash"], fields) != e["hash"]:
            problems.append(f"entry {e['seq']}: content does not match its hash (edited)")
        prev, expected_seq = e["hash"], e["seq"] + 1
    return problems
