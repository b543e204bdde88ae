"""Versioned schema migrations of the control plane, for SQLite and PostgreSQL.

Each migration is a version number and its statements; ``schema_migrations`` records what ran.
Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

import datetime as _dt

from ccpipe.controlplane.db import ControlPlane

_COMMON_V1 = [
    """CREATE TABLE tenants (
        tenant_id TEXT PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'terminated')), terminated_at TEXT,
        subprocessors TEXT NOT NULL DEFAULT '{}', updated_at TEXT NOT NULL)""",
    """CREATE TABLE grants (
        grant_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id),
        grantee TEXT NOT NULL, granted_by TEXT NOT NULL, scope TEXT NOT NULL, reason TEXT NOT NULL,
        created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT)""",
    """CREATE TABLE key_events (
        tenant_id TEXT NOT NULL, purpose TEXT NOT NULL, version INTEGER NOT NULL, event TEXT NOT NULL,
        at TEXT NOT NULL, actor TEXT NOT NULL, PRIMARY KEY (tenant_id, purpose, version, event))""",
    """CREATE TABLE dsar_requests (
        request_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id),
        kind TEXT NOT NULL CHECK (kind IN ('access', 'export', 'rectification', 'restriction', 'deletion',
                                            'objection')),
        subject_kind TEXT NOT NULL, subject_ciphertext BLOB NOT NULL, subject_pseudonyms TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('received', 'identity_confirmed', 'completed', 'rejected')),
        received_at TEXT NOT NULL, due_at TEXT NOT NULL, identity_method TEXT, identity_confirmed_by TEXT,
        identity_confirmed_at TEXT, completed_at TEXT, result TEXT, requested_by TEXT NOT NULL)""",
    """CREATE TABLE restrictions (
        tenant_id TEXT NOT NULL, pseudonym TEXT NOT NULL, request_id TEXT NOT NULL, kind TEXT NOT NULL,
        created_at TEXT NOT NULL, PRIMARY KEY (tenant_id, pseudonym, request_id))""",
    """CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
        action TEXT NOT NULL, tenant_id TEXT, target TEXT, reason TEXT, outcome TEXT NOT NULL,
        details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE)""",
]
_SQLITE_V1 = list(_COMMON_V1) + [
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
]
_POSTGRES_V1 = [s.replace("BLOB", "BYTEA") for s in _COMMON_V1] + [
    """CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
]

_V2 = [
    """CREATE TABLE gov_requests (
        request_id TEXT PRIMARY KEY, agency TEXT NOT NULL, country TEXT NOT NULL,
        request_type TEXT NOT NULL CHECK (request_type IN ('search_warrant', 'court_order', 'subpoena', 'emergency',
                                                           'national_security', 'other')),
        tenant_ids TEXT NOT NULL, categories TEXT NOT NULL, scope_requested TEXT NOT NULL,
        received_at TEXT NOT NULL, received_utc TEXT NOT NULL,
        authority_valid INTEGER, authority_checked_by TEXT, authority_checked_at TEXT, authority_notes TEXT,
        emergency INTEGER NOT NULL DEFAULT 0, emergency_justification TEXT,
        decision TEXT CHECK (decision IN ('rejected', 'narrowed', 'disclosed', 'redirected_to_customer')),
        decided_by TEXT, decided_at TEXT, scope_disclosed TEXT, disclosure_request_ids TEXT NOT NULL DEFAULT '[]',
        notified_at TEXT, notification_prohibited INTEGER NOT NULL DEFAULT 0, prohibition_basis TEXT,
        prohibition_challenged INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('open', 'closed')), closed_at TEXT)""",
]

# Version 3 keys the audit chain (HMAC under the key manager's audit key). Entries written before it
# keep ``key_version`` NULL: an unkeyed prefix that ``audit.verify`` reports as not anchored until an
# operator pins it with ``ccpipe audit anchor`` (one keyed, audited ``audit.anchor`` entry). Migrations
# never anchor: this table is as writable as the log, so an attacker could re-run one over a forged log.
_V3 = ["ALTER TABLE audit_log ADD COLUMN key_version INTEGER"]

# Version 4 remembers every sink root a pipeline run wrote to, so data-subject requests reach every
# copy of a subject's data (a region with its own --sink, another run's output), not only one root.
_V4 = ["CREATE TABLE sink_roots (root TEXT PRIMARY KEY, first_run TEXT NOT NULL, last_run TEXT NOT NULL, "
       "last_at TEXT NOT NULL)"]

# Version 5 marks made-up government requests (``ccpipe transparency fixtures``) as demo entries, so a
# ledger holding real requests is never mixed with demo ones and a demo report says what it is.
_V5 = ["ALTER TABLE gov_requests ADD COLUMN demo INTEGER NOT NULL DEFAULT 0"]

MIGRATIONS: list[tuple[int, str, dict[str, list[str]]]] = [
    (1, "tenants, grants, key events, data-subject requests, restrictions, audit log",
     {"sqlite": _SQLITE_V1, "postgresql": _POSTGRES_V1}),
    (2, "government data-request ledger", {"sqlite": _V2, "postgresql": _V2}),
    (3, "keyed audit chain: key version of each entry", {"sqlite": _V3, "postgresql": _V3}),
    (4, "sink roots written by pipeline runs", {"sqlite": _V4, "postgresql": _V4}),
    (5, "demo marker of government requests made by the fixtures", {"sqlite": _V5, "postgresql": _V5}),
]


def current_version(cp: ControlPlane) -> int:
    """The newest applied migration (0 for an empty database)."""
    row = cp.one("SELECT MAX(version) FROM schema_migrations")
    return int(row[0]) if row and row[0] is not None else 0


def migrate(cp: ControlPlane) -> list[int]:
    """Apply every pending migration, each in its own transaction; return the versions applied."""
    cp.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
        "applied_at TEXT NOT NULL)"
    )
    applied = []
    for version, description, statements in MIGRATIONS:
        if version <= current_version(cp):
            continue
        with cp.transaction():
            # Another process may be migrating the same database: take the migration lock, then
            # look again (SQLite's transactions already hold the write lock: BEGIN IMMEDIATE).
            if cp.dialect == "postgresql":
                cp.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
            if version <= current_version(cp):
                continue
            for sql in statements[cp.dialect]:
                cp.execute(sql)
            cp.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                (version, description, _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")),
            )
        applied.append(version)
    return applied
