"""The append-only, keyed, hash-chained audit log.

Every entry carries the MAC of the previous one: ``hash = HMAC-SHA256(K, "ccpipe/audit/v2|" | prev_hash
| "|" | canonical JSON of the entry)``, where ``K`` is the audit key held by the key manager (owner
``_audit``, purpose ``audit``; its version is stored with each entry). Whoever can write the database
but does not hold the key can neither edit an entry nor rewrite the whole chain without ``verify``
noticing. Removing entries from the tail leaves a valid shorter chain, so ``head`` exports a signed
head (``{seq, hash, key_version, exported_at, mac}``; ``exported_at`` is UTC and under the MAC, so a stale
head shows its age) to keep outside the database, append-only (never overwrite an older head: whoever can
swap in an older one hides what was logged since); ``verify(cp, head)`` fails when the log is shorter
than the head or its entry at ``seq`` differs.

No key, no entry: ``append`` raises ``AuditError`` before writing anything when the audit key is
unavailable, and the caller's transaction rolls back with it.

Appends are serialized: SQLite transactions take the write lock when they begin (``BEGIN
IMMEDIATE``); on PostgreSQL ``append`` locks the table against other appenders (readers go on).

Destructive steps that change things outside the database (files, keys) announce themselves first
with ``intent``: an entry of the step's action with outcome ``intent`` is committed before the step
starts, and the step's outcome entry (same action, outcome ``ok``/``failed``/...) names it
(``details.intent`` = the intent's seq). An intent without its outcome (``open_intents``) is a step
that started and did not finish, or whose result was never recorded.

Entries written before the log was keyed (schema version 3) have ``key_version`` NULL. They must form
a prefix of the log, their SHA-256 chain must be intact, and one keyed ``audit.anchor`` entry must pin
them (``details``: ``unkeyed_entries`` = how many, ``unkeyed_head`` = the hash of the last one). Anyone
who can write the database can produce unkeyed entries, so nothing anchors them automatically (not
``append``, not ``head``, not a migration: the schema table is just as writable): until an operator
runs ``ccpipe audit anchor`` (``anchor``, itself an audited entry naming who and why, at most once),
``verify`` reports the unkeyed entries as not anchored, whether keyed entries follow them or not. An
unkeyed entry after a keyed one, or an anchor that does not match the unkeyed prefix, is a problem too.

The database also refuses UPDATE and DELETE on the table (triggers). Entries name who, what, when,
why and the outcome; they never hold personal data (subjects appear as request ids, records as record
ids).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ccpipe.controlplane.db import ControlPlane
from ccpipe.crypto import DataKey
from ccpipe.errors import CcpipeError

GENESIS = "0" * 64
ROLES = ("operator", "customer_admin", "system")
AUDIT_OWNER = "_audit"
AUDIT_PURPOSE = "audit"
INTENT = "intent"
ANCHOR_ACTION = "audit.anchor"
_ENTRY_LABEL = "ccpipe/audit/v2|"
_HEAD_LABEL = "ccpipe/audit-head/v2|"
_FIELDS = ("seq", "at", "actor", "role", "action", "tenant_id", "target", "reason", "outcome", "details")
_COLUMNS = (*_FIELDS, "prev_hash", "hash", "key_version")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class AuditError(CcpipeError):
    """The audit log cannot be written or checked: nothing was written."""


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


SYSTEM = Actor("ccpipe", "system")


def _canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The unkeyed hash of entries written before the log was keyed (verification only)."""
    return hashlib.sha256((prev_hash + "|" + _canonical(fields)).encode()).hexdigest()


def _keyed_hash(key: DataKey, prev_hash: str, fields: dict[str, Any]) -> str:
    message = _ENTRY_LABEL + prev_hash + "|" + _canonical({**fields, "key_version": key.version})
    return hmac.new(key.material, message.encode(), hashlib.sha256).hexdigest()


def _head_mac(key: DataKey, seq: int, digest: str, exported_at: str) -> str:
    message = f"{_HEAD_LABEL}{seq}|{digest}|{key.version}|{exported_at}"
    return hmac.new(key.material, message.encode(), hashlib.sha256).hexdigest()


def _current_key(cp: ControlPlane) -> DataKey:
    """The active audit key (created on first use); AuditError when it cannot be had."""
    try:
        keys = cp.key_manager()
    except Exception as err:  # noqa: BLE001 - any failure to reach the key manager: fail closed
        raise AuditError(f"the audit key manager is unavailable ({type(err).__name__}: {err}); "
                         "nothing was written") from None
    created_error: Exception | None = None
    try:
        keys.ensure_key(AUDIT_OWNER, AUDIT_PURPOSE)
    except Exception as err:  # noqa: BLE001 - a concurrent first use may have created it: current() decides
        created_error = err
    try:
        return keys.current(AUDIT_OWNER, AUDIT_PURPOSE)
    except Exception as err:  # noqa: BLE001
        cause = created_error or err
        raise AuditError(
            f"the audit key is unavailable ({type(cause).__name__}: {cause}); nothing was written"
        ) from None


def _key_version(cp: ControlPlane, version: int, cache: dict[int, DataKey | str]) -> DataKey | str:
    """A given audit key version, or the reason it cannot be had."""
    if version not in cache:
        try:
            cache[version] = cp.key_manager(create=False).get(AUDIT_OWNER, AUDIT_PURPOSE, version)
        except Exception as err:  # noqa: BLE001 - reported as a verification problem
            cache[version] = f"{type(err).__name__}: {err}"
    return cache[version]


def _lock_chain(cp: ControlPlane) -> None:
    """Serialize appenders (inside a transaction). SQLite's BEGIN IMMEDIATE already did."""
    if cp.dialect == "postgresql":
        # Conflicts with itself and with writers, not with readers; released at commit/rollback.
        cp.execute("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")


def _tail(cp: ControlPlane) -> tuple | None:
    return cp.one("SELECT seq, hash, key_version FROM audit_log ORDER BY seq DESC LIMIT 1")


def _insert(
    cp: ControlPlane, key: DataKey, seq: int, prev: str, actor: Actor, action: str, tenant_id: str | None,
    target: str | None, reason: str | None, outcome: str, details: dict[str, Any] | None,
) -> str:
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
    digest = _keyed_hash(key, prev, fields)
    cp.execute(
        f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
        (*(fields[f] for f in _FIELDS), prev, digest, key.version),
    )
    return digest


def _unkeyed_prefix(rows: list[dict[str, Any]]) -> tuple[int, str]:
    """How many entries come before the first keyed one, and the hash of the last of them."""
    n, last = 0, GENESIS
    for e in rows:
        if e["key_version"] is not None:
            break
        n, last = n + 1, e["hash"]
    return n, last


def _anchor_details(e: dict[str, Any]) -> dict[str, Any] | None:
    try:
        details = json.loads(e["details"] or "{}")
    except ValueError:
        return None
    return details if isinstance(details, dict) else None


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
    """Append one entry (inside the caller's transaction, if any); return its sequence number.

    Never anchors unkeyed entries (see ``anchor``). Raises AuditError, having written nothing, when
    the audit key is unavailable.
    """
    if action == ANCHOR_ACTION:
        raise AuditError(f"{ANCHOR_ACTION!r} entries are written by audit.anchor only")
    key = _current_key(cp)  # before taking the lock: fail before anything is written
    with cp.transaction():
        _lock_chain(cp)
        row = _tail(cp)
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        _insert(cp, key, seq, prev, actor, action, tenant_id, target, reason, outcome, details)
    return seq


def anchor(cp: ControlPlane, actor: Actor, reason: str) -> int:
    """Pin the unkeyed entries at the start of the log (written before it was keyed): an operator's decision.

    Appends one keyed ``audit.anchor`` entry by ``actor`` (an operator) with ``reason``, naming how many
    unkeyed entries there are and the hash of the last one; returns its seq. Refuses (AuditError,
    nothing written) when there is nothing to anchor, when the log is already anchored, or when it
    has any other problem. Unkeyed entries cannot be told apart from ones forged by whoever can write
    the database: anchor only a log upgraded from before the keyed chain, after checking it (and
    ``verify --against`` any head exported before).
    """
    if actor.role != "operator":
        raise AuditError("only an operator can anchor the audit log")
    if not (reason or "").strip():
        raise AuditError("anchoring the audit log needs a reason")
    key = _current_key(cp)
    with cp.transaction():
        _lock_chain(cp)
        rows = entries(cp)
        n, last = _unkeyed_prefix(rows)
        if n == 0:
            raise AuditError("nothing to anchor: every entry of the audit log is keyed")
        if any(e["action"] == ANCHOR_ACTION and e["key_version"] is not None for e in rows):
            raise AuditError("the audit log was anchored already (anchoring happens once); nothing was written")
        problems = [p for p in verify(cp) if _UNANCHORED not in p]
        if problems:
            raise AuditError(f"the audit log does not verify ({len(problems)} problems, first: {problems[0]}); "
                             "not anchored")
        seq = rows[-1]["seq"] + 1
        _insert(cp, key, seq, rows[-1]["hash"], actor, ANCHOR_ACTION, None, None, reason, "ok",
                {"unkeyed_entries": n, "unkeyed_head": last, "keyed_entries_before": len(rows) - n})
    return seq


@contextmanager
def intent(
    cp: ControlPlane,
    actor: Actor,
    action: str,
    *,
    tenant_id: str | None = None,
    target: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> Iterator[int]:
    """Announce a destructive step: commit an ``action`` entry with outcome ``intent`` first; yields its seq.

    Use it around steps that change things outside the control plane's transaction (files, keys)::

        with audit.intent(cp, actor, "dsar_deletion", tenant_id=t, details=plan) as intent_seq:
            removed = rewrite_files(...)                       # the step
            with cp.transaction():
                ...                                            # its database records
                audit.append(cp, actor, "dsar_deletion", tenant_id=t, details={..., "intent": intent_seq})

    If the intent cannot be written nothing runs (AuditError). If the step raises, an ``action``
    entry with outcome ``failed`` (the exception type, never its message) is appended, best effort,
    and the exception goes on.
    """
    if cp.in_transaction:
        raise AuditError(f"the intent of {action!r} must be committed before the step: call audit.intent "
                         "outside a transaction")
    seq = append(cp, actor, action, tenant_id=tenant_id, target=target, reason=reason, outcome=INTENT,
                 details=details)
    try:
        yield seq
    except BaseException as err:
        try:
            append(cp, actor, action, tenant_id=tenant_id, target=target, reason=reason, outcome="failed",
                   details={"intent": seq, "error": type(err).__name__})
        except Exception:  # noqa: BLE001, S110 - the step's own error matters more; the intent stays open
            pass
        raise


def entries(cp: ControlPlane) -> list[dict[str, Any]]:
    """Every entry in order."""
    return [
        dict(zip(_COLUMNS, r, strict=True))
        for r in cp.query(f"SELECT {', '.join(_COLUMNS)} FROM audit_log ORDER BY seq")
    ]


_UNANCHORED = "are unkeyed and not anchored"


def verify(cp: ControlPlane, head: dict[str, Any] | None = None) -> list[str]:
    """Problems found (empty when intact): edits, removals, reordering, forged or unanchored entries.

    With ``head`` (a signed head from ``head``) also: a log shorter than the head (truncated) or an
    entry at the head's ``seq`` other than the one signed (rewritten).
    """
    problems: list[str] = []
    keys: dict[int, DataKey | str] = {}
    prev, expected_seq = GENESIS, 1
    keyed_seen = False
    anchors: list[dict[str, Any]] = []  # keyed audit.anchor entries whose MAC verified
    rows = entries(cp)
    for e in rows:
        if e["seq"] != expected_seq:
            problems.append(f"entry {expected_seq} is missing (next is {e['seq']})")
        if e["prev_hash"] != prev:
            problems.append(f"entry {e['seq']}: does not follow entry {e['seq'] - 1} (removed or reordered)")
        fields = {k: e[k] for k in _FIELDS}
        if e["key_version"] is None:
            if keyed_seen:
                problems.append(f"entry {e['seq']}: unkeyed entry after keyed ones (forged)")
            elif _entry_hash(e["prev_hash"], fields) != e["hash"]:
                problems.append(f"entry {e['seq']}: content does not match its hash (edited)")
        else:
            keyed_seen = True
            key = _key_version(cp, int(e["key_version"]), keys)
            if isinstance(key, str):
                problems.append(f"entry {e['seq']}: cannot be checked: audit key v{e['key_version']} unavailable "
                                f"({key})")
            elif not hmac.compare_digest(_keyed_hash(key, e["prev_hash"], fields), str(e["hash"])):
                problems.append(f"entry {e['seq']}: content does not match its hash (edited)")
            elif e["action"] == ANCHOR_ACTION:
                anchors.append(e)
        prev, expected_seq = e["hash"], e["seq"] + 1
    n, last = _unkeyed_prefix(rows)
    pinned = {"unkeyed_entries": n, "unkeyed_head": last}
    matching = [a for a in anchors
                if n and {k: (_anchor_details(a) or {}).get(k) for k in pinned} == pinned]
    for a in anchors:
        if a not in matching[:1]:
            problems.append(f"entry {a['seq']}: {ANCHOR_ACTION} does not pin the unkeyed entries of this log "
                            f"({n} unkeyed)")
    if n and not matching:
        problems.append(f"entries 1-{n} {_UNANCHORED}: no {ANCHOR_ACTION} entry pins them (anyone who can write "
                        "the database can write unkeyed entries; if this log was upgraded from before the keyed "
                        "chain, an operator anchors them once with 'ccpipe audit anchor')")
    if head is not None:
        problems.extend(_check_head(cp, rows, head, keys))
    return problems


def _check_head(cp: ControlPlane, rows: list[dict[str, Any]], head: dict[str, Any],
                keys: dict[int, DataKey | str]) -> list[str]:
    seq, digest, version, exported_at, mac = (
        (head.get(k) for k in ("seq", "hash", "key_version", "exported_at", "mac")) if isinstance(head, dict)
        else (None,) * 5
    )
    if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 and isinstance(digest, str)
            and _HEX64.fullmatch(digest) and isinstance(version, int) and _is_utc(exported_at)
            and isinstance(mac, str)):
        return ["the signed head is malformed (expected {seq, hash, key_version, exported_at, mac})"]
    key = _key_version(cp, version, keys)
    if isinstance(key, str):
        return [f"the signed head cannot be checked: audit key v{version} unavailable ({key})"]
    if not hmac.compare_digest(_head_mac(key, seq, digest, exported_at), mac):
        return ["the signed head's MAC does not verify (forged, or signed under another key)"]
    if seq == 0:
        return []
    last = rows[-1]["seq"] if rows else 0
    if last < seq:
        return [f"the log ends at entry {last} but the signed head is at entry {seq}: "
                "entries were removed from the tail (truncated)"]
    at = next((e for e in rows if e["seq"] == seq), None)
    if at is None:
        return [f"entry {seq} of the signed head is missing"]
    if at["hash"] != digest:
        return [f"entry {seq} differs from the signed head (rewritten)"]
    return []


def _is_utc(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        at = _dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return at.utcoffset() == _dt.timedelta(0)


def head(cp: ControlPlane) -> dict[str, Any]:
    """The signed head of a verified log: ``{seq, hash, key_version, exported_at, mac}`` (``exported_at``: UTC).

    Keep heads append-only, outside the database. Raises AuditError, exporting nothing, when the log
    does not verify (unanchored unkeyed entries included: ``head`` never anchors) or the key is
    unavailable.
    """
    key = _current_key(cp)
    problems = verify(cp)
    if problems:
        raise AuditError(f"the audit log does not verify ({len(problems)} problems, first: {problems[0]}); "
                         "no head exported")
    row = _tail(cp)
    seq, digest = (row[0], row[1]) if row else (0, GENESIS)
    exported_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return {"seq": seq, "hash": digest, "key_version": key.version, "exported_at": exported_at,
            "mac": _head_mac(key, seq, digest, exported_at)}


def write_head(path: str, signed: dict[str, Any]) -> None:
    """Write a signed head to ``path``: a fresh 0600 temporary file in the same folder, then a rename.

    The temporary file is created with O_EXCL|O_NOFOLLOW under an unpredictable name, so a file or
    symlink planted there is never followed or written through; a symlink at ``path`` is replaced,
    not followed.
    """
    target = os.path.abspath(path)
    folder, name = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    while True:
        temp = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(temp, flags, 0o600)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(signed, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def open_intents(cp: ControlPlane) -> list[dict[str, Any]]:
    """Intent entries with no later entry of their action naming them (started, outcome not recorded)."""
    rows = entries(cp)
    done = set()
    for e in rows:
        try:
            ref = json.loads(e["details"] or "{}").get("intent")
        except (ValueError, AttributeError):
            continue
        if e["outcome"] != INTENT and isinstance(ref, int):
            done.add((e["action"], ref))
    return [e for e in rows if e["outcome"] == INTENT and (e["action"], e["seq"]) not in done]
