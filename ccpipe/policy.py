"""Privacy policy as plain functions: categories, identifiers, pseudonyms, encryption to rows.

This is the Beam-free core of the Pseudonymize and EncryptContent stages. Given a record, its
region, its PII findings and the tenant's keys it decides, field by field, what may be written:

* identifiers (agent id, phone numbers, MAC, IP, username, email, names) -> keyed pseudonym, and
  the original as AES-256-GCM ciphertext where it must be recoverable;
* free text (customer content) -> ciphertext + redacted copy + findings;
* passwords -> Argon2id hash only (``crypto.hash_password``, once per registration row);
* everything else (durations, versions, queue) as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from ccpipe import crypto, pseudonym
from ccpipe.crypto import DataKey
from ccpipe.pii.engine import redact
from ccpipe.schemas import iter_free_text
from ccpipe.types import (
    DATASET_DEADLETTER,
    PRIMARY_DATASET,
    DeadLetter,
    Finding,
    InputRecord,
    OutputRow,
    PseudonymizedRecord,
    TaggedRecord,
)

# (field path, pseudonym kind, original kept as ciphertext, Presidio entity when quoted in text)
Identifier = tuple[str, str, bool, str]

IDENTIFIERS: dict[str, tuple[Identifier, ...]] = {
    "call_recording": (
        ("agent_id", "agent_id", True, "AGENT_ID"),
        ("calling_number", "phone", True, "PHONE_NUMBER"),
        ("called_number", "phone", True, "PHONE_NUMBER"),
    ),
    "telemetry": (
        ("agent_id", "agent_id", True, "AGENT_ID"),
        ("mac_address", "mac", False, "MAC_ADDRESS"),
        ("ip_address", "ip", False, "IP_ADDRESS"),
        ("call.calling_number", "phone", False, "PHONE_NUMBER"),
        ("call.called_number", "phone", False, "PHONE_NUMBER"),
    ),
    "chat_transcript": (),
    "registration": (
        ("name", "name", True, "PERSON"),
        ("username", "username", True, "USERNAME"),
        ("email", "email", True, "EMAIL_ADDRESS"),
        ("phone", "phone", True, "PHONE_NUMBER"),
        ("ip_address", "ip", True, "IP_ADDRESS"),
        ("display_name", "display_name", True, "PERSON"),
    ),
}

# Structured values that are personal data without being pseudonymized (kept only encrypted).
ENCRYPTED_ONLY: dict[str, tuple[tuple[str, str], ...]] = {
    "call_recording": (("dtmf_digits", "DTMF"), ("recording_uri", "URL")),
    "telemetry": (),
    "chat_transcript": (),
    "registration": (),
}


def category(record: InputRecord) -> str:
    """The SPEC §2 data category of a record's primary dataset row."""
    if record.record_type == "registration":
        return f"{record.payload['kind']}_registration"
    if record.record_type == "chat_transcript":
        return "customer_content"
    return "telemetry"  # telemetry, and the call information of call recordings


def get_path(payload: dict[str, Any], path: str) -> Any:
    """A dotted path's value, or None."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def known_values(record_type: str, payload: dict[str, Any]) -> list[tuple[str, str]]:
    """A record's own structured personal values, to redact wherever its free text quotes them."""
    out = []
    for path, _kind, _keep, entity in IDENTIFIERS[record_type]:
        value = get_path(payload, path)
        if isinstance(value, str) and value.strip():
            out.append((entity, value))
    for path, entity in ENCRYPTED_ONLY[record_type]:
        value = get_path(payload, path)
        if isinstance(value, str) and value.strip():
            out.append((entity, value))
    return out


def pseudonymize_record(tagged: TaggedRecord, key: DataKey) -> PseudonymizedRecord:
    """Compute the keyed pseudonym (and IP prefix) of every identifier of the record."""
    record, region = tagged.routed.record, tagged.routed.region
    pseudonyms: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for path, kind, _keep, _entity in IDENTIFIERS[record.record_type]:
        value = get_path(record.payload, path)
        if not isinstance(value, str) or not value.strip():
            continue
        pseudonyms[path] = pseudonym.pseudonymize(key, kind, pseudonym.normalize(kind, value, region))
        if kind == "ip":
            prefixes[path] = pseudonym.truncate_ip(value) or ""
    return PseudonymizedRecord(tagged=tagged, pseudonyms=pseudonyms, ip_prefixes=prefixes, key_version=key.version)


def _findings_column(findings: tuple[Finding, ...]) -> list[dict[str, Any]]:
    return [{"entity_type": f.entity_type, "start": f.start, "end": f.end, "score": f.score} for f in findings]


class _Sealer:
    """Encrypts the fields of one row under one key and context."""

    def __init__(self, key: DataKey, tenant_id: str, region: str, dataset: str, record_id: str) -> None:
        self.key, self.ctx = key, (tenant_id, region, dataset, record_id)

    def seal(self, field: str, value: Any) -> bytes | None:
        if value is None or value == "":
            return None
        data = value.encode() if isinstance(value, str) else json.dumps(value, sort_keys=True).encode()
        return crypto.encrypt(self.key, data, crypto.field_aad(*self.ctx, field))


def encrypt_record(
    psr: PseudonymizedRecord, key: DataKey, hash_password: Callable[[str], str] = crypto.hash_password
) -> list[OutputRow]:
    """The output rows of a record, with no personal data left in plain text."""
    tagged = psr.tagged
    record, region = tagged.routed.record, tagged.routed.region
    payload, rtype = record.payload, record.record_type
    dataset = PRIMARY_DATASET[rtype]
    base = {
        "record_id": record.record_id,
        "tenant_id": record.tenant_id,
        "category": category(record),
        "key_version": key.version,
    }
    if rtype == "chat_transcript":
        rows = []
        sealer = _Sealer(key, record.tenant_id, region, dataset, record.record_id)
        for i, message in enumerate(payload["messages"]):
            findings = tagged.findings.get(f"messages[{i}].text", ())
            rows.append(
                OutputRow(
                    region,
                    dataset,
                    record.event_date,
                    record.record_id,
                    source=record.source,
                    values={
                        **base,
                        "conversation_id": payload["conversation_id"],
                        "channel": payload.get("channel"),
                        "seq": message["seq"],
                        "sender": message["sender"],
                        "sent_at": message["sent_at"],
                        "text_redacted": redact(message["text"], findings),
                        "text_ciphertext": sealer.seal(f"text:{message['seq']}", message["text"]),
                        "pii_entities": _findings_column(findings),
                    },
                )
            )
        return rows

    sealer = _Sealer(key, record.tenant_id, region, dataset, record.record_id)
    values: dict[str, Any] = {**base, "event_time": record.event_time}
    for path, _kind, keep, _entity in IDENTIFIERS[rtype]:
        column = path.replace(".", "_")
        values[f"{column}_pseudonym"] = psr.pseudonyms.get(path)
        if keep:
            values[f"{column}_ciphertext"] = sealer.seal(path, get_path(payload, path))
    for path, _entity in ENCRYPTED_ONLY[rtype]:
        values[f"{path}_ciphertext"] = sealer.seal(path, payload.get(path))
    for path, text in iter_free_text(rtype, payload):
        findings = tagged.findings.get(path, ())
        values[f"{path}_redacted"] = redact(text, findings)
        values[f"{path}_ciphertext"] = sealer.seal(path, text)
        values[f"{path}_pii_entities"] = _findings_column(findings)

    if rtype == "call_recording":
        for name in ("call_id", "direction", "queue", "duration_s", "hold_s", "recording_sha256"):
            values[name] = payload.get(name)
    elif rtype == "telemetry":
        for name in ("event", "client_version", "device_type", "software_version"):
            values[name] = payload.get(name)
        values["ip_prefix"] = psr.ip_prefixes.get("ip_address")
        call = payload.get("call") or {}
        values["call_id"] = call.get("call_id")
        values["call_duration_s"] = call.get("duration_s")
        values["call_hold_s"] = call.get("hold_s")
    elif rtype == "registration":
        values["kind"] = payload["kind"]
        values["ip_prefix"] = psr.ip_prefixes.get("ip_address")
        values["custom_ciphertext"] = sealer.seal("custom", payload.get("custom"))
        password = payload.get("password")
        values["password_hash"] = hash_password(password) if password else None
    return [OutputRow(region, dataset, record.event_date, record.record_id, values, record.source)]


def usage_contribution(psr: PseudonymizedRecord) -> tuple[tuple[str, str, str], dict[str, float]]:
    """The record's contribution to ``usage_daily``: key (region, tenant, day) and additive counts."""
    record = psr.tagged.routed.record
    payload = record.payload
    counts: dict[str, float] = {}
    if record.record_type == "call_recording":
        counts = {
            "calls": 1,
            "call_duration_s": payload.get("duration_s") or 0.0,
            "call_hold_s": payload.get("hold_s") or 0.0,
        }
    elif record.record_type == "chat_transcript":
        counts = {"chat_conversations": 1, "chat_messages": len(payload["messages"])}
    elif record.record_type == "telemetry":
        counts = {"telemetry_events": 1}
    elif record.record_type == "registration":
        counts = {"registrations": 1}
    return (psr.tagged.routed.region, record.tenant_id, record.event_date), counts


def deadletter_id(dead: DeadLetter) -> str:
    """A stable id of a dead letter: the same bad input gives the same id on every run."""
    digest = hashlib.sha256()
    for part in (dead.source, dead.reason, dead.step):
        digest.update(part.encode() + b"\0")
    digest.update(dead.raw)
    return digest.hexdigest()[:32]


def encrypt_dead_letter(dead: DeadLetter, region: str, key: DataKey) -> OutputRow:
    """A dead-letter row: the original input encrypted under the region's dead-letter key."""
    dl_id = deadletter_id(dead)
    aad = crypto.field_aad(dead.tenant_id or "", region, DATASET_DEADLETTER, dl_id, "payload")
    values = {
        "deadletter_id": dl_id,
        "reason": dead.reason,
        "step": dead.step,
        "error": dead.error,
        "source": dead.source,
        "tenant_id": dead.tenant_id,
        "record_id": dead.record_id,
        "key_id": f"{key.tenant_id}/{key.purpose}/v{key.version}",
        "payload_ciphertext": crypto.encrypt(key, dead.raw, aad),
    }
    return OutputRow(region, DATASET_DEADLETTER, dead.event_date or "unknown", dl_id, values, dead.source)
