"""Data-subject requests (SPEC §6): access, export, rectification, restriction, deletion, objection.

A request is opened for a subject identified by email, phone, username or agent id. The identifier
is never stored or searched in plain text: it is kept encrypted under the tenant's content key,
and the subject's rows are found through keyed pseudonyms computed under every usable version of
the tenant's pseudonym key. Each request has a due date (30 days), a status
(received -> identity_confirmed -> completed) and a recorded identity check; nothing is served
before identity is confirmed. Every step is audited.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ccpipe import crypto, pseudonym, store
from ccpipe.controlplane import audit, tenants_repo
from ccpipe.controlplane.access import AccessDeniedError, authorize_decrypt, require_tenant_admin_or_operator
from ccpipe.controlplane.db import ControlPlane
from ccpipe.errors import CcpipeError, ConfigError
from ccpipe.keystore import SqliteKeyStore
from ccpipe.schemas import OUTPUT_SCHEMAS

KINDS = ("access", "export", "rectification", "restriction", "deletion", "objection")
DUE_DAYS = 30
# Where each kind of subject identifier appears, as pseudonym columns per dataset.
SUBJECT_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "email": {"registrations": ("email_pseudonym",)},
    "phone": {
        "registrations": ("phone_pseudonym",),
        "calls": ("calling_number_pseudonym", "called_number_pseudonym"),
        "telemetry": ("call_calling_number_pseudonym", "call_called_number_pseudonym"),
    },
    "username": {"registrations": ("username_pseudonym",)},
    "agent_id": {"calls": ("agent_id_pseudonym",), "telemetry": ("agent_id_pseudonym",)},
}
RECTIFIABLE = ("name", "username", "email", "phone", "display_name")
_PSEUDONYM_KIND = {"email": "email", "phone": "phone", "username": "username", "agent_id": "agent_id",
                   "name": "name", "display_name": "display_name"}
EXPORT_MAGIC = b"CCX1"
LEGAL_AUTHORITY = "legal-authority"  # identity_confirmed_by of a request opened on a recorded legal authority


class RequestStateError(CcpipeError):
    """The request is not in a state that allows this step."""


@dataclass(frozen=True)
class Request:
    """A data-subject request as stored (the subject only as ciphertext and pseudonyms)."""

    request_id: str
    tenant_id: str
    kind: str
    subject_kind: str
    pseudonyms: tuple[str, ...]
    status: str
    received_at: str
    due_at: str
    requested_by: str = ""
    identity_confirmed_by: str | None = None


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def subject_pseudonyms(keys: SqliteKeyStore, tenant_id: str, region: str, kind: str, value: str) -> list[str]:
    """The subject's pseudonym under every usable version of the tenant's pseudonym key."""
    normalized = pseudonym.normalize(_PSEUDONYM_KIND[kind], value, region)
    return [pseudonym.pseudonymize(k, _PSEUDONYM_KIND[kind], normalized) for k in keys.usable_versions(tenant_id,
                                                                                                      "pseudonym")]


_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(?:\.[^@\s.]+)+")
_TOKEN = re.compile(r"[^\s]{1,200}")


def validate_subject(kind: str, value: str, region: str) -> None:
    """ConfigError unless the identifier is well formed for its kind (the value is never echoed)."""
    value = value.strip()
    if kind == "email" and not _EMAIL.fullmatch(value):
        raise ConfigError("subject-kind email: the identifier is not an e-mail address (name@domain.tld)")
    if kind == "phone":
        try:
            number = phonenumbers.parse(value, pseudonym.PHONE_REGION.get(region, "US"))
            ok = phonenumbers.is_possible_number(number)
        except phonenumbers.NumberParseException:
            ok = False
        if not ok:
            raise ConfigError(f"subject-kind phone: the identifier is not a phone number (international, or "
                              f"national in region {region!r})")
    if kind in ("username", "agent_id") and not _TOKEN.fullmatch(value):
        raise ConfigError(f"subject-kind {kind}: the identifier must be one token of at most 200 characters")


def open_request(
    cp: ControlPlane, keys: SqliteKeyStore, actor: audit.Actor, tenant_id: str, kind: str, subject_kind: str,
    subject_value: str, received_at: _dt.datetime | None = None,
) -> str:
    """Record a new request; returns its id. The due date is 30 days after receipt."""
    if kind not in KINDS:
        raise ConfigError(f"kind {kind!r} is not one of {KINDS}")
    if subject_kind not in SUBJECT_COLUMNS:
        raise ConfigError(f"subject kind {subject_kind!r} is not one of {sorted(SUBJECT_COLUMNS)}")
    if not subject_value.strip():
        raise ConfigError("the subject identifier must not be empty")
    tenant = tenants_repo.get(cp, tenant_id)
    validate_subject(subject_kind, subject_value, tenant.region)
    require_tenant_admin_or_operator(cp, actor, tenant_id, "dsar_open")
    request_id = uuid.uuid4().hex[:16]
    received = received_at or _now()
    key = keys.current(tenant_id, "content")
    ciphertext = crypto.encrypt(key, subject_value.encode(), f"ccpipe/dsar/v1|{tenant_id}|{request_id}".encode())
    pseudonyms = subject_pseudonyms(keys, tenant_id, tenant.region, subject_kind, subject_value)
    with cp.transaction():
        cp.execute(
            "INSERT INTO dsar_requests (request_id, tenant_id, kind, subject_kind, subject_ciphertext, "
            "subject_pseudonyms, status, received_at, due_at, requested_by) VALUES (?, ?, ?, ?, ?, ?, 'received', "
            "?, ?, ?)",
            (request_id, tenant_id, kind, subject_kind, ciphertext, json.dumps(pseudonyms), received.isoformat(),
             (received + _dt.timedelta(days=DUE_DAYS)).isoformat(), actor.name),
        )
        audit.append(cp, actor, "dsar_open", tenant_id=tenant_id, target=request_id,
                     details={"kind": kind, "subject_kind": subject_kind})
    return request_id


def open_authorized(
    cp: ControlPlane, keys: SqliteKeyStore, actor: audit.Actor, tenant_id: str, kind: str, subject_kind: str,
    subject_value: str, basis: str,
) -> str:
    """A request served on a recorded legal authority (a government disclosure).

    It stands on that basis instead of a subject's identity check, recorded (and audited) as its
    identity record. Only the transparency ledger calls this, after it has checked the authority.
    """
    if not basis.strip():
        raise ConfigError("an authorized request needs its legal basis")
    request_id = open_request(cp, keys, actor, tenant_id, kind, subject_kind, subject_value)
    _record_identity(cp, actor, tenant_id, request_id, basis, LEGAL_AUTHORITY,
                     details={"basis": "recorded legal authority"})
    return request_id


def _record_identity(cp: ControlPlane, actor: audit.Actor, tenant_id: str, request_id: str, method: str,
                     confirmed_by: str, details: dict[str, Any] | None = None) -> None:
    """Mark a request's identity confirmed (by whom, how) and audit it, in one transaction."""
    with cp.transaction():
        cp.execute(
            "UPDATE dsar_requests SET status = 'identity_confirmed', identity_method = ?, identity_confirmed_by = ?, "
            "identity_confirmed_at = ? WHERE request_id = ?",
            (method, confirmed_by, _now().isoformat(), request_id),
        )
        audit.append(cp, actor, "dsar_identity", tenant_id=tenant_id, target=request_id, reason=method,
                     details=details)


def get(cp: ControlPlane, request_id: str) -> Request:
    """A request; NotFoundError when unknown."""
    row = cp.one(
        "SELECT request_id, tenant_id, kind, subject_kind, subject_pseudonyms, status, received_at, due_at, "
        "requested_by, identity_confirmed_by FROM dsar_requests WHERE request_id = ?",
        (request_id,),
    )
    if row is None:
        raise tenants_repo.NotFoundError(f"unknown request {request_id!r}")
    return Request(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5], row[6], row[7], row[8],
                   row[9])


def list_requests(cp: ControlPlane, tenant_id: str | None = None) -> list[Request]:
    """Requests, oldest first (optionally of one tenant)."""
    ids = cp.query(
        "SELECT request_id FROM dsar_requests WHERE (? IS NULL OR tenant_id = ?) ORDER BY received_at",
        (tenant_id, tenant_id),
    )
    return [get(cp, r[0]) for r in ids]


def confirm_identity(cp: ControlPlane, actor: audit.Actor, request_id: str, method: str) -> None:
    """Record how the subject's identity was checked; required before anything is served."""
    request = get(cp, request_id)
    require_tenant_admin_or_operator(cp, actor, request.tenant_id, "dsar_identity")
    if request.requested_by == actor.name:
        # Four eyes: whoever opened the request cannot also vouch for the subject's identity (else an
        # operator refused by 'decrypt' could open an access request and serve it to herself).
        audit.append(cp, actor, "dsar_identity", tenant_id=request.tenant_id, target=request_id, outcome="refused",
                     reason="the requester cannot confirm the identity")
        raise AccessDeniedError(f"{actor.name!r} opened request {request_id}; someone else must confirm the identity")
    if request.status != "received":
        raise RequestStateError(f"request {request_id} is {request.status}; identity can only be confirmed once")
    if not method.strip():
        raise ConfigError("name the identity check (e.g. 'verified account email + last invoice amount')")
    _record_identity(cp, actor, request.tenant_id, request_id, method, actor.name)


def find_subject_records(root: str | Path, region: str, tenant_id: str, subject_kind: str,
                         pseudonyms: tuple[str, ...]) -> dict[str, set[str]]:
    """Record ids per dataset whose identifier columns hold one of the subject's pseudonyms."""
    found: dict[str, set[str]] = {}
    wanted = pa.array(list(pseudonyms))
    for dataset, columns in SUBJECT_COLUMNS[subject_kind].items():
        for file in store.partition_files(root, dataset=dataset, region=region):
            table = store.read(file)
            mask = pc.equal(table["tenant_id"], tenant_id)
            hit = None
            for column in columns:
                m = pc.fill_null(pc.is_in(table[column], wanted), False)
                hit = m if hit is None else pc.or_(hit, m)
            ids = table.filter(pc.and_(mask, hit))["record_id"].to_pylist()
            if ids:
                found.setdefault(dataset, set()).update(ids)
    return found


def _subject_mask(tenant_id: str, records: dict[str, set[str]], dataset: str):
    """A table -> boolean mask of the rows of the subject's records in one dataset.

    Record ids are unique per tenant and dataset only: a registration ``x-1`` and a chat ``x-1`` are
    different records (of possibly different people), so each dataset matches its own ids. Dead
    letters carry no dataset and match the subject's record ids of any dataset.
    """
    if dataset == "_deadletter":
        wanted = set().union(*records.values()) if records else set()
    else:
        wanted = records.get(dataset, set())
    ids = pa.array(sorted(wanted), pa.string())

    def mask(table: pa.Table) -> pa.Array:
        return pc.fill_null(pc.and_(pc.equal(table["tenant_id"], tenant_id), pc.is_in(table["record_id"], ids)), False)

    return mask


def _subject_rows(root: str | Path, region: str, tenant_id: str, records: dict[str, set[str]]) -> list[tuple]:
    out = []
    for file in store.partition_files(root, region=region):
        if file.dataset == "usage_daily":
            continue
        table = store.read(file)
        mask = _subject_mask(tenant_id, records, file.dataset)
        out.extend((file, row) for row in table.filter(mask(table)).to_pylist())
    return out


def _readable(keys: SqliteKeyStore, tenant_id: str, file: store.PartitionFile, row: dict[str, Any]) -> dict[str, Any]:
    """A row with its ciphertexts decrypted (for the subject's own access report)."""
    out: dict[str, Any] = {"dataset": file.dataset, "day": file.dt}
    for name, value in row.items():
        if name.endswith("_ciphertext") and value is not None:
            if file.dataset == "_deadletter":
                # A known tenant's dead letter is sealed under its content key (the original line, its
                # secrets removed: ccpipe.deadletter); others are under the operator's region key.
                prefix = f"{tenant_id}/content/v"
                if name == "payload_ciphertext" and (row.get("key_id") or "").startswith(prefix):
                    key = keys.get(tenant_id, "content", int(row["key_id"].removeprefix(prefix)))
                    aad = crypto.field_aad(tenant_id, file.region, file.dataset, row["deadletter_id"], "payload")
                    out["payload"] = crypto.decrypt(key, value, aad).decode("utf-8", "replace")
                continue
            field = name.removesuffix("_ciphertext")
            aad_field = f"text:{row['seq']}" if file.dataset == "chat_messages" else field
            key = keys.get(tenant_id, "content", row["key_version"])
            out[field] = crypto.decrypt(key, value, crypto.field_aad(tenant_id, file.region, file.dataset,
                                                                      row["record_id"], aad_field)).decode()
        elif not name.endswith("_ciphertext") and not isinstance(value, bytes):
            out[name] = value
    return out


# What the subject is told per data category: its name, why it is held, how long, and the fields
# shown. Everything else is left out on purpose: pseudonyms, key versions, offsets and ids are
# internal; agent ids and the other party's number are third-party personal data; keypad input and
# password hashes are security secrets (their existence is stated, not their value).
CATEGORIES: dict[str, dict[str, Any]] = {
    "calls": {"title": "Calls with the contact center",
              "purpose": "handling your calls and keeping a record of them for the customer's service",
              "retention": "until 60 days after the contract of the company you called ends; call transcripts "
                           "as customer content until 28 days after",
              "fields": ("event_time", "direction", "queue", "duration_s", "hold_s", "transcript", "wrapup_notes"),
              "own_numbers": ("calling_number", "called_number"),
              "withheld": {"dtmf_digits": "keypad input (PINs) is not shown for your security"}},
    "chat_messages": {"title": "Chat conversations",
                      "purpose": "answering your chat messages and keeping the conversation",
                      "retention": "until 28 days after the contract of the company you chatted with ends",
                      "fields": ("sent_at", "sender", "channel", "text")},
    "registrations": {"title": "Registration",
                      "purpose": "creating and managing your account",
                      "retention": "until 28 days after the contract of the company you registered with ends",
                      "fields": ("event_time", "kind", "name", "username", "email", "phone", "display_name",
                                 "ip_address", "custom"),
                      "withheld": {"password_hash": "your password is held only as a salted hash that "
                                                    "cannot be turned back into the password"}},
    "telemetry": {"title": "Agent and device telemetry",
                  "purpose": "running and securing the contact-center service",
                  "retention": "one year, or 60 days after the contract ends if sooner",
                  "fields": ("event_time", "event", "client_version", "device_type", "software_version",
                             "ip_prefix", "call_duration_s")},
    "_deadletter": {"title": "Records that could not be processed",
                    "purpose": "finding and fixing processing errors",
                    "retention": "one year",
                    "fields": ("reason",)},
}


def access_report(request: Request, region: str, rows: list[tuple[str, dict[str, Any], dict[str, Any]]]
                  ) -> dict[str, Any]:
    """The subject's access report: per data category what is held, why, where and for how long.

    ``rows`` are (dataset, stored row, decrypted row). Only the fields of ``CATEGORIES`` are shown;
    a phone number is shown only where it is the subject's own (its pseudonym is the subject's).
    """
    own = set(request.pseudonyms)
    categories: dict[str, dict[str, Any]] = {}
    for dataset, stored, readable in rows:
        spec = CATEGORIES.get(dataset)
        if spec is None:
            continue
        entry = categories.setdefault(dataset, {
            "category": spec["title"], "why": spec["purpose"], "where": f"region {region}",
            "how_long": spec["retention"], "records": [],
            **({"not_shown": spec["withheld"]} if spec.get("withheld") else {}),
        })
        item = {f: readable[f] for f in spec["fields"] if readable.get(f) not in (None, "")}
        for field in spec.get("own_numbers", ()):
            if stored.get(f"{field}_pseudonym") in own and readable.get(field):
                item[field] = readable[field]
        entry["records"].append(item)
    for entry in categories.values():
        entry["records"].sort(key=lambda r: str(r.get("event_time") or r.get("sent_at") or ""))
    return {"request_id": request.request_id, "tenant_id": request.tenant_id, "kind": request.kind,
            "data_held": [categories[d] for d in CATEGORIES if d in categories],
            "rows": sum(len(c["records"]) for c in categories.values())}


def seal_bundle(payload: bytes, passphrase: str, context: bytes) -> bytes:
    """AES-256-GCM under a key derived from the passphrase with scrypt."""
    salt, nonce = os.urandom(16), os.urandom(12)
    key = hashlib.scrypt(passphrase.encode(), salt=salt, n=2**15, r=8, p=1, maxmem=64 * 1024 * 1024, dklen=32)
    return EXPORT_MAGIC + salt + nonce + AESGCM(key).encrypt(nonce, payload, context)


def open_bundle(blob: bytes, passphrase: str, context: bytes) -> bytes:
    """Decrypt an export bundle (raises on a wrong passphrase or a tampered file)."""
    if blob[:4] != EXPORT_MAGIC:
        raise ConfigError("not a ccpipe export bundle")
    salt, nonce = blob[4:20], blob[20:32]
    key = hashlib.scrypt(passphrase.encode(), salt=salt, n=2**15, r=8, p=1, maxmem=64 * 1024 * 1024, dklen=32)
    return AESGCM(key).decrypt(nonce, blob[32:], context)


def _rectify(keys: SqliteKeyStore, tenant: Any, file: store.PartitionFile, record_ids: set[str],
             changes: dict[str, str]) -> int:
    table = store.read(file)
    rows = table.to_pylist()
    pkey = keys.current(tenant.tenant_id, "pseudonym")
    changed = 0
    for row in rows:
        if row["tenant_id"] != tenant.tenant_id or row["record_id"] not in record_ids:
            continue
        content_key = keys.get(tenant.tenant_id, "content", row["key_version"])
        for field, value in changes.items():
            kind = _PSEUDONYM_KIND[field]
            row[f"{field}_pseudonym"] = pseudonym.pseudonymize(pkey, kind, pseudonym.normalize(kind, value,
                                                                                            tenant.region))
            row[f"{field}_ciphertext"] = crypto.encrypt(
                content_key, value.encode(),
                crypto.field_aad(tenant.tenant_id, file.region, file.dataset, row["record_id"], field),
            )
        changed += 1
    if changed:
        temp = file.path.with_name(f".tmp-{uuid.uuid4().hex}.inprogress")
        pq.write_table(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMAS[file.dataset]), temp, compression="zstd")
        os.replace(temp, file.path)
    return changed


def execute(
    cp: ControlPlane, keys: SqliteKeyStore, root: str | Path, actor: audit.Actor, request_id: str,
    out: str | None = None, passphrase: str | None = None, changes: dict[str, str] | None = None,
    authority: str | None = None,
) -> dict[str, Any]:
    """Serve a request whose identity is confirmed; returns what was done (counts, paths).

    ``authority``: the recorded legal authority a government disclosure is served on (transparency
    ledger); it stands in for the tenant admin's grant, which such a disclosure cannot wait for.
    """
    request = get(cp, request_id)
    require_tenant_admin_or_operator(cp, actor, request.tenant_id, f"dsar_{request.kind}")
    if request.status == "completed":
        raise RequestStateError(f"request {request_id} was already completed; nothing was changed")
    if request.status != "identity_confirmed":
        raise RequestStateError(f"request {request_id} is {request.status}: confirm the subject's identity first")
    tenant = tenants_repo.get(cp, request.tenant_id)
    # Every sink root the control plane knows (runs record theirs), not only the one given: a region
    # with its own --sink or another run's output holds copies too.
    roots, unreachable = _roots(cp, root)
    by_root = {r: find_subject_records(r, tenant.region, tenant.tenant_id, request.subject_kind, request.pseudonyms)
               for r in roots}
    records: dict[str, set[str]] = {}
    for found in by_root.values():
        for dataset, ids in found.items():
            records.setdefault(dataset, set()).update(ids)
    result: dict[str, Any] = {"records": {d: len(ids) for d, ids in sorted(records.items())},
                              "sink_roots": [str(r) for r in roots]}
    if unreachable:
        result["sink_roots_not_reachable"] = unreachable
    if authority:
        # Only a request opened on a recorded legal authority (open_authorized) may be served on one.
        if request.identity_confirmed_by != LEGAL_AUTHORITY:
            raise AccessDeniedError(f"request {request_id} was not opened on a legal authority")
        result["legal_authority"] = authority
    elif actor.role == "operator" and request.kind in ("access", "export", "deletion", "rectification"):
        # Serving a request reads or changes customer content: operators need the tenant admin's grant,
        # exactly as for 'decrypt' (refusals audited there).
        authorize_decrypt(cp, actor, tenant.tenant_id, f"dsar {request.kind} {request_id}")
    if request.kind == "rectification" and not records:
        raise tenants_repo.NotFoundError(f"request {request_id}: no data of this subject in tenant {tenant.tenant_id}")
    if not records and request.kind in ("access", "export", "deletion"):
        # A formal answer: no personal data of this subject is held (recorded, audited, reported).
        result["no_data_held"] = True

    if request.kind in ("access", "export"):
        if not out:
            raise ConfigError(f"{request.kind} needs an output file (--out)")
        subject_rows = [x for r in roots for x in _subject_rows(r, tenant.region, tenant.tenant_id, by_root[r])]
        rows = [_readable(keys, tenant.tenant_id, f, r) for f, r in subject_rows]
        answer = access_report(request, tenant.region, [(f.dataset, raw, r) for (f, raw), r in zip(subject_rows, rows,
                                                                                                   strict=True)])
        if not records:
            answer["answer"] = f"No personal data of this subject is held by tenant {tenant.tenant_id}."
        report = json.dumps(answer, indent=2, sort_keys=True, default=str).encode()
        if request.kind == "export":
            if not passphrase or len(passphrase) < 12:
                raise ConfigError("export needs a passphrase of at least 12 characters, handed over separately")
            report = seal_bundle(report, passphrase, f"ccpipe-export/v1|{request_id}".encode())
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(report)
        result.update(rows=answer["rows"], out=out)
    elif request.kind == "deletion":
        files = [(f, by_root[r]) for r in roots for f in store.partition_files(r, region=tenant.region)
                 if f.dataset != "usage_daily"]
        # Files are rewritten outside any transaction: the intent is committed first, so a crash or an
        # error part-way leaves an audited trace of what was being done (and an error outcome).
        with audit.intent(cp, actor, "dsar_deletion", tenant_id=tenant.tenant_id, target=request_id,
                          details={"records": result["records"], "files": len(files)}) as intent_seq:
            result["rows_removed"] = sum(
                store.rewrite_without(file, _subject_mask(tenant.tenant_id, found, file.dataset))
                for file, found in files
            )
        result["intent"] = intent_seq
    elif request.kind == "rectification":
        if not changes or set(changes) - set(RECTIFIABLE):
            raise ConfigError(f"rectification needs changes of fields {RECTIFIABLE}")
        if not records.get("registrations"):
            raise tenants_repo.NotFoundError(f"request {request_id}: the subject has no registration to rectify")
        files = [(f, by_root[r].get("registrations", set())) for r in roots
                 for f in store.partition_files(r, dataset="registrations", region=tenant.region)]
        with audit.intent(cp, actor, "dsar_rectification", tenant_id=tenant.tenant_id, target=request_id,
                          details={"records": result["records"], "fields": sorted(changes)}) as intent_seq:
            result["rows_rectified"] = sum(_rectify(keys, tenant, f, ids, changes) for f, ids in files if ids)
        result["fields"] = sorted(changes)
        result["intent"] = intent_seq
    else:  # restriction, objection: stop processing the subject's new records
        now = _now().isoformat()
        with cp.transaction():
            for p in request.pseudonyms:
                cp.execute("INSERT INTO restrictions (tenant_id, pseudonym, request_id, kind, created_at) "
                           "VALUES (?, ?, ?, ?, ?)", (tenant.tenant_id, p, request_id, request.kind, now))
        result["pseudonyms_restricted"] = len(request.pseudonyms)
    with cp.transaction():
        cp.execute("UPDATE dsar_requests SET status = 'completed', completed_at = ?, result = ? WHERE request_id = ?",
                   (_now().isoformat(), json.dumps(result, sort_keys=True), request_id))
        audit.append(cp, actor, f"dsar_{request.kind}", tenant_id=tenant.tenant_id, target=request_id,
                     details={k: v for k, v in result.items() if k != "out"})
    return result


def _roots(cp: ControlPlane, root: str | Path) -> tuple[list[Path], list[str]]:
    """The given root and every recorded one that is a local folder; recorded remote roots apart."""
    from ccpipe.controlplane import sink_roots

    roots: list[Path] = []
    unreachable: list[str] = []
    for r in [str(root), *sink_roots.known(cp)]:
        if "://" in r:
            unreachable.append(r)
            continue
        path = Path(r).resolve()
        if path.is_dir() and path not in roots:
            roots.append(path)
        elif not path.is_dir() and r == str(root):
            raise ConfigError(f"sink root {r!r} does not exist")
    return roots, sorted(set(unreachable))


def restricted_pseudonyms(cp: ControlPlane, keys: SqliteKeyStore | None = None) -> frozenset[tuple[str, str]]:
    """(tenant, pseudonym) pairs whose new records the pipelines must not process.

    The pseudonyms stored with a restriction are those of the key versions usable when it was
    made; after ``keys rotate`` new records carry pseudonyms of the new version. With ``keys``, the
    subject's identifier (kept encrypted with the request) is decrypted and pseudonymized under
    every version usable now, so a restriction survives rotation. A request whose tenant key is
    gone keeps its stored pseudonyms (fail closed: still restricted).
    """
    pairs = {(r[0], r[1]) for r in cp.query("SELECT tenant_id, pseudonym FROM restrictions")}
    if keys is None:
        return frozenset(pairs)
    rows = cp.query(
        "SELECT DISTINCT d.request_id, d.tenant_id, d.subject_kind, d.subject_ciphertext FROM dsar_requests d "
        "JOIN restrictions r ON r.request_id = d.request_id"
    )
    for request_id, tenant_id, subject_kind, ciphertext in rows:
        try:
            tenant = tenants_repo.get(cp, tenant_id)
            value = _subject_value(keys, tenant_id, request_id, bytes(ciphertext))
            pairs.update((tenant_id, p) for p in subject_pseudonyms(keys, tenant_id, tenant.region, subject_kind,
                                                                    value))
        except (CcpipeError, ValueError):
            continue
    return frozenset(pairs)


def _subject_value(keys: SqliteKeyStore, tenant_id: str, request_id: str, ciphertext: bytes) -> str:
    """The subject identifier of a request, decrypted under any usable version of the content key."""
    aad = f"ccpipe/dsar/v1|{tenant_id}|{request_id}".encode()
    for key in keys.usable_versions(tenant_id, "content"):
        try:
            return crypto.decrypt(key, ciphertext, aad).decode()
        except Exception:  # noqa: BLE001 - another version; InvalidTag
            continue
    raise ValueError(f"request {request_id}: no usable key decrypts the subject")
