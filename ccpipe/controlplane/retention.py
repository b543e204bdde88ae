"""Retention (SPEC §5): remove what has expired, per data category, as of a date.

| data | after termination | always |
|---|---|---|
| registrations, customer content (chat messages, dead letters) | removed 28 days after | |
| customer content inside call records | crypto-shredded 28 days after (content key destroyed) | |
| call information (calls, telemetry) | removed 60 days after | |
| other host and usage information (telemetry) | | removed after 1 year |
| usage analytics (``usage_daily``, pseudonymous) | kept | kept |

A partition is deleted whole when everything in it has expired; otherwise its files are rewritten
without the expired rows. ``--dry-run`` prints the plan and changes nothing. Every run is audited.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ccpipe import store
from ccpipe.controlplane import audit, tenants_repo
from ccpipe.controlplane.db import ControlPlane
from ccpipe.errors import ConfigError
from ccpipe.keystore import SqliteKeyStore
from ccpipe.schemas import parse_rfc3339

CONTENT_DAYS = 28
CALL_INFO_DAYS = 60
HOST_USAGE_DAYS = 365
CONTENT_DATASETS = ("registrations", "chat_messages", "_deadletter")
CALL_INFO_DATASETS = ("calls", "telemetry")
HOST_USAGE_DATASETS = ("telemetry", "_deadletter")


@dataclass(frozen=True)
class Action:
    """One change retention makes (or would make)."""

    kind: str  # delete_partition | rewrite | shred_content_key
    target: str
    rows: int
    rule: str


def _expired_tenants(cp: ControlPlane, as_of: _dt.datetime, days: int) -> set[str]:
    out = set()
    for t in tenants_repo.load(cp).values():
        if t.status == "terminated" and t.terminated_at:
            if parse_rfc3339(t.terminated_at) + _dt.timedelta(days=days) <= as_of:
                out.add(t.tenant_id)
    return out


def _refuse(cp: ControlPlane, actor: audit.Actor, reason: str, error: type[Exception], message: str) -> None:
    audit.append(cp, actor, "retention_run", outcome="refused", reason=reason)
    raise error(message)


def plan_and_apply(
    cp: ControlPlane, keys: SqliteKeyStore, root: str | Path, actor: audit.Actor, as_of: _dt.datetime,
    dry_run: bool, confirm: bool = False, now: _dt.datetime | None = None,
) -> list[Action]:
    """Compute, and unless ``dry_run`` apply, the retention actions as of ``as_of``.

    Guard rails (each refusal audited): operators only (retention spans every tenant); a run that
    applies must not have ``as_of`` after ``now`` (default: the clock; it would destroy what is not
    yet due; a dry run may look ahead); the sink root must exist (a mistyped root is not "nothing
    to do"); destroying content keys needs ``confirm``.
    """
    from ccpipe.controlplane.access import AccessDeniedError

    if actor.role != "operator":
        _refuse(cp, actor, "operators only", AccessDeniedError,
                f"{actor.name} is {actor.role}: retention runs over every tenant and is for operators only")
    if not dry_run and as_of > (now or _dt.datetime.now(_dt.UTC)) + _dt.timedelta(minutes=5):
        _refuse(cp, actor, "as_of in the future", ConfigError,
                f"as_of {as_of.isoformat()} is in the future: retention applies what is due now, or was due")
    if not Path(root).is_dir():
        _refuse(cp, actor, "missing sink root", ConfigError, f"sink root {str(root)!r} does not exist")
    content = _expired_tenants(cp, as_of, CONTENT_DAYS)
    call_info = _expired_tenants(cp, as_of, CALL_INFO_DAYS)
    host_cutoff = (as_of - _dt.timedelta(days=HOST_USAGE_DAYS)).date().isoformat()
    actions: list[Action] = []
    steps: list[tuple[str, store.PartitionFile, pa.Array]] = []
    for file in list(store.partition_files(root)):
        expired_tenants: set[str] = set()
        rule = ""
        if file.dataset in CONTENT_DATASETS:
            expired_tenants |= content
            rule = f"customer content/registration of a tenant terminated {CONTENT_DAYS}+ days ago"
        if file.dataset in CALL_INFO_DATASETS:
            expired_tenants |= call_info
            rule = f"call information of a tenant terminated {CALL_INFO_DAYS}+ days ago"
        whole_partition_old = file.dataset in HOST_USAGE_DATASETS and file.dt != "unknown" and file.dt < host_cutoff
        table = store.read(file)
        if whole_partition_old:
            mask = pa.array([True] * table.num_rows)
            rule = f"host and usage information older than {HOST_USAGE_DAYS} days"
        elif expired_tenants:
            mask = pc.fill_null(pc.is_in(table["tenant_id"], pa.array(sorted(expired_tenants))), False)
        else:
            continue
        n = int(pc.sum(mask).as_py() or 0)
        if n == 0:
            continue
        kind = "delete_partition" if n == table.num_rows else "rewrite"
        actions.append(Action(kind, str(file.path), n, rule))
        steps.append((kind, file, mask))
    for tenant_id in sorted(content):
        live = [v for v, s in keys.states(tenant_id, "content").items() if s != "destroyed"]
        if live:
            actions.append(Action("shred_content_key", tenant_id, 0,
                                  f"customer content in call records, {CONTENT_DAYS}+ days after termination"))
    details = {"as_of": as_of.isoformat(), "actions": len(actions), "rows": sum(a.rows for a in actions),
               "shredded": [a.target for a in actions if a.kind == "shred_content_key"]}
    if dry_run:
        audit.append(cp, actor, "retention_run", outcome="dry_run", details=details)
        return actions
    if details["shredded"] and not confirm:
        _refuse(cp, actor, "content keys to destroy, not confirmed", ConfigError,
                f"this run would destroy the content keys of {', '.join(details['shredded'])} (irreversible): "
                "review it with --dry-run, then run again with --confirm")
    # Irreversible: the intent is committed before the first file or key is touched.
    with audit.intent(cp, actor, "retention_run", details=details) as intent_seq:
        for kind, file, mask in steps:
            if kind == "delete_partition":
                store.delete_file(file.path)
            else:
                store.rewrite_without(file, lambda _t, m=mask: m)
        for tenant_id in details["shredded"]:
            keys.destroy(tenant_id, "content")
        audit.append(cp, actor, "retention_run", outcome="ok", details={**details, "intent": intent_seq})
    return actions
