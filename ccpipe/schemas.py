"""Input and output schemas as pyarrow types, and validation of input records against them.

Input validation walks the pyarrow schema of the record's type: required fields present and
non-null, every present field of the declared type, timestamps RFC 3339 with an offset, enums
in their allowed set. Errors name the field and the expected type, never the value.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import pyarrow as pa

from ccpipe.errors import RecordError

# A timestamp given as RFC 3339 text; validated and kept as text in the record.
RFC3339 = pa.timestamp("us", tz="UTC")

_MESSAGE = pa.struct(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("sender", pa.string(), nullable=False),
        pa.field("sent_at", RFC3339, nullable=False),
        pa.field("text", pa.string(), nullable=False),
    ]
)
_CALL_INFO = pa.struct(
    [
        pa.field("call_id", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("hold_s", pa.float64()),
        pa.field("calling_number", pa.string()),
        pa.field("called_number", pa.string()),
    ]
)

INPUT_SCHEMAS: dict[str, pa.Schema] = {
    "call_recording": pa.schema(
        [
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("call_id", pa.string(), nullable=False),
            pa.field("started_at", RFC3339, nullable=False),
            pa.field("agent_id", pa.string()),
            pa.field("calling_number", pa.string()),
            pa.field("called_number", pa.string()),
            pa.field("direction", pa.string()),
            pa.field("queue", pa.string()),
            pa.field("duration_s", pa.float64()),
            pa.field("hold_s", pa.float64()),
            pa.field("recording_uri", pa.string()),
            pa.field("recording_sha256", pa.string()),
            pa.field("dtmf_digits", pa.string()),
            pa.field("transcript", pa.string()),
            pa.field("wrapup_notes", pa.string()),
        ]
    ),
    "telemetry": pa.schema(
        [
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("event", pa.string(), nullable=False),
            pa.field("event_at", RFC3339, nullable=False),
            pa.field("agent_id", pa.string()),
            pa.field("client_version", pa.string()),
            pa.field("device_type", pa.string()),
            pa.field("mac_address", pa.string()),
            pa.field("ip_address", pa.string()),
            pa.field("software_version", pa.string()),
            pa.field("call", _CALL_INFO),
            pa.field("message_log", pa.string()),
        ]
    ),
    "chat_transcript": pa.schema(
        [
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("conversation_id", pa.string(), nullable=False),
            pa.field("started_at", RFC3339, nullable=False),
            pa.field("messages", pa.list_(_MESSAGE), nullable=False),
            pa.field("channel", pa.string()),
        ]
    ),
    "registration": pa.schema(
        [
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("registered_at", RFC3339, nullable=False),
            pa.field("name", pa.string()),
            pa.field("username", pa.string()),
            pa.field("email", pa.string()),
            pa.field("phone", pa.string()),
            pa.field("password", pa.string()),
            pa.field("ip_address", pa.string()),
            pa.field("display_name", pa.string()),
            pa.field("custom", pa.map_(pa.string(), pa.string())),
        ]
    ),
}

EVENT_TIME_FIELD: dict[str, str] = {
    "call_recording": "started_at",
    "telemetry": "event_at",
    "chat_transcript": "started_at",
    "registration": "registered_at",
}

ENUMS: dict[tuple[str, str], frozenset[str]] = {
    ("call_recording", "direction"): frozenset({"inbound", "outbound"}),
    ("chat_transcript", "channel"): frozenset({"chat", "email"}),
    ("chat_transcript", "messages.sender"): frozenset({"customer", "agent", "bot"}),
    ("registration", "kind"): frozenset({"admin", "user"}),
}


def parse_rfc3339(value: str) -> _dt.datetime:
    """Parse an RFC 3339 timestamp that carries an offset (``Z`` or ``±hh:mm``)."""
    text = value.strip()
    if len(text) < 20 or text[10] not in "Tt ":
        raise ValueError("not RFC 3339")
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise ValueError("not RFC 3339") from None
    if parsed.tzinfo is None:
        raise ValueError("RFC 3339 timestamp without offset")
    try:  # the instant must exist in UTC too: 9999-12-31T23:00:00-05:00 does not
        parsed.astimezone(_dt.UTC)
    except OverflowError:
        raise ValueError("RFC 3339 timestamp outside the representable range") from None
    return parsed


def utc_date(value: str) -> str:
    """The UTC calendar date of an RFC 3339 timestamp, as ``YYYY-MM-DD``."""
    return parse_rfc3339(value).astimezone(_dt.UTC).date().isoformat()


def _check(path: str, value: Any, typ: pa.DataType, record_type: str) -> None:
    if pa.types.is_string(typ):
        if not isinstance(value, str):
            raise RecordError("invalid_type", f"field {path!r} must be a string, got {type(value).__name__}")
        _check_text(path, value)
    elif pa.types.is_int64(typ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError("invalid_type", f"field {path!r} must be an integer, got {type(value).__name__}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise RecordError("invalid_value", f"field {path!r} is outside the 64-bit integer range")
    elif pa.types.is_float64(typ):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError("invalid_type", f"field {path!r} must be a number, got {type(value).__name__}")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX or not math.isfinite(value):
            raise RecordError("invalid_value", f"field {path!r} must be a finite number in the 64-bit range")
        if value < 0:
            raise RecordError("invalid_value", f"field {path!r} must not be negative")
    elif pa.types.is_timestamp(typ):
        if not isinstance(value, str):
            raise RecordError("invalid_type", f"field {path!r} must be an RFC 3339 string, got {type(value).__name__}")
        try:
            parse_rfc3339(value)
        except ValueError:
            raise RecordError("invalid_timestamp", f"field {path!r} is not RFC 3339 with an offset") from None
    elif pa.types.is_struct(typ):
        if not isinstance(value, dict):
            raise RecordError("invalid_type", f"field {path!r} must be an object, got {type(value).__name__}")
        _check_fields(path + ".", value, list(typ), record_type)
    elif pa.types.is_list(typ):
        if not isinstance(value, list):
            raise RecordError("invalid_type", f"field {path!r} must be a list, got {type(value).__name__}")
        for item in value:
            _check(path, item, typ.value_type, record_type)
    elif pa.types.is_map(typ):
        if not isinstance(value, dict):
            raise RecordError("invalid_type", f"field {path!r} must be an object, got {type(value).__name__}")
        for key, item in value.items():
            if item is not None and not isinstance(item, str | int | float | bool):
                raise RecordError("invalid_type", f"field {path!r} must hold only scalar values")
            _check_text(path, key)
            if isinstance(item, str):
                _check_text(path, item)
            elif isinstance(item, float) and not math.isfinite(item):
                raise RecordError("invalid_value", f"field {path!r} must hold only finite numbers")
            elif isinstance(item, int) and not isinstance(item, bool) and not INT64_MIN <= item <= INT64_MAX:
                raise RecordError("invalid_value", f"field {path!r} holds an integer outside the 64-bit range")
    else:  # pragma: no cover - schemas above use only the types handled here
        raise TypeError(f"unsupported schema type {typ}")
    allowed = ENUMS.get((record_type, path))
    if allowed is not None and value not in allowed:
        raise RecordError("invalid_value", f"field {path!r} must be one of {sorted(allowed)}")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _check_text(path: str, value: str) -> None:
    """A string that UTF-8 can hold: no lone surrogates (what JSON escapes of a lone half decode to)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError("invalid_utf8", f"field {path!r} holds a lone surrogate") from None


def _check_fields(prefix: str, obj: dict[str, Any], fields: list[pa.Field], record_type: str) -> None:
    for fld in fields:
        path = prefix + fld.name
        value = obj.get(fld.name)
        if value is None:
            if not fld.nullable:
                raise RecordError("missing_field", f"required field {path!r} is missing")
            continue
        _check(path, value, fld.type, record_type)


def validate(obj: Any, max_text_chars: int) -> str:
    """Validate a decoded JSON object as a SPEC §1 record and return its type.

    Raises RecordError with the dead-letter reason. Unknown extra fields are allowed (forward
    compatibility) but never written: each dataset writes only the fields it declares.
    """
    if not isinstance(obj, dict):
        raise RecordError("invalid_type", f"a record must be a JSON object, got {type(obj).__name__}")
    record_type = obj.get("type")
    if record_type is None:
        raise RecordError("missing_field", "required field 'type' is missing")
    if not isinstance(record_type, str) or record_type not in INPUT_SCHEMAS:
        raise RecordError("unknown_type", f"field 'type' must be one of {sorted(INPUT_SCHEMAS)}")
    _check_fields("", obj, list(INPUT_SCHEMAS[record_type]), record_type)
    if record_type == "chat_transcript":
        # A message is identified by (tenant_id, record_id, seq): two messages with one seq would
        # overwrite each other in the sink, so the record is refused whole (contract §3).
        first: dict[int, int] = {}
        for i, message in enumerate(obj["messages"]):
            if message["seq"] in first:
                raise RecordError(
                    "duplicate_seq", f"messages[{first[message['seq']]}] and messages[{i}] share seq {message['seq']}"
                )
            first[message["seq"]] = i
    for path, text in iter_free_text(record_type, obj):
        if len(text) > max_text_chars:
            raise RecordError("oversized", f"field {path!r} exceeds {max_text_chars} characters")
    return record_type


FREE_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "call_recording": ("transcript", "wrapup_notes"),
    "telemetry": ("message_log",),
    "chat_transcript": (),  # messages[i].text, below
    "registration": (),
}


def iter_free_text(record_type: str, payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The free-text fields of a record as ``(path, text)``; chat messages as ``messages[i].text``."""
    out = [(name, payload[name]) for name in FREE_TEXT_FIELDS[record_type] if payload.get(name)]
    if record_type == "chat_transcript":
        out.extend((f"messages[{i}].text", m["text"]) for i, m in enumerate(payload.get("messages") or []))
    return out


# ---- output schemas (SPEC §4) -------------------------------------------------------------

_FINDINGS = pa.list_(
    pa.struct(
        [
            pa.field("entity_type", pa.string()),
            pa.field("start", pa.int32()),
            pa.field("end", pa.int32()),
            pa.field("score", pa.float32()),
        ]
    )
)
_COMMON = [
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("tenant_id", pa.string(), nullable=False),
    pa.field("category", pa.string(), nullable=False),
    pa.field("event_time", pa.string()),
    pa.field("key_version", pa.int32()),
]


def _ct(name: str) -> list[pa.Field]:
    return [pa.field(f"{name}_pseudonym", pa.string()), pa.field(f"{name}_ciphertext", pa.binary())]


def _text(name: str) -> list[pa.Field]:
    return [
        pa.field(f"{name}_redacted", pa.string()),
        pa.field(f"{name}_ciphertext", pa.binary()),
        pa.field(f"{name}_pii_entities", _FINDINGS),
    ]


OUTPUT_SCHEMAS: dict[str, pa.Schema] = {
    "calls": pa.schema(
        _COMMON
        + [pa.field("call_id", pa.string()), pa.field("direction", pa.string()), pa.field("queue", pa.string())]
        + _ct("agent_id")
        + _ct("calling_number")
        + _ct("called_number")
        + [pa.field("duration_s", pa.float64()), pa.field("hold_s", pa.float64())]
        + [pa.field("dtmf_digits_ciphertext", pa.binary())]
        + [pa.field("recording_uri_ciphertext", pa.binary()), pa.field("recording_sha256", pa.string())]
        + _text("transcript")
        + _text("wrapup_notes")
    ),
    "telemetry": pa.schema(
        _COMMON
        + [pa.field("event", pa.string())]
        + _ct("agent_id")
        + [
            pa.field("client_version", pa.string()),
            pa.field("device_type", pa.string()),
            pa.field("software_version", pa.string()),
            pa.field("mac_address_pseudonym", pa.string()),
            pa.field("ip_address_pseudonym", pa.string()),
            pa.field("ip_prefix", pa.string()),
            pa.field("call_id", pa.string()),
            pa.field("call_duration_s", pa.float64()),
            pa.field("call_hold_s", pa.float64()),
            pa.field("call_calling_number_pseudonym", pa.string()),
            pa.field("call_called_number_pseudonym", pa.string()),
        ]
        + _text("message_log")
    ),
    "chat_messages": pa.schema(
        [
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("conversation_id", pa.string()),
            pa.field("channel", pa.string()),
            pa.field("seq", pa.int64()),
            pa.field("sender", pa.string()),
            pa.field("sent_at", pa.string()),
            pa.field("category", pa.string(), nullable=False),
            pa.field("key_version", pa.int32()),
            pa.field("text_redacted", pa.string()),
            pa.field("text_ciphertext", pa.binary()),
            pa.field("pii_entities", _FINDINGS),
        ]
    ),
    "registrations": pa.schema(
        _COMMON
        + [pa.field("kind", pa.string())]
        + _ct("name")
        + _ct("username")
        + _ct("email")
        + _ct("phone")
        + _ct("ip_address")
        + [pa.field("ip_prefix", pa.string())]
        + _ct("display_name")
        + [pa.field("custom_ciphertext", pa.binary()), pa.field("password_hash", pa.string())]
    ),
    "usage_daily": pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("day", pa.string(), nullable=False),
            pa.field("calls", pa.int64()),
            pa.field("call_duration_s", pa.float64()),
            pa.field("call_hold_s", pa.float64()),
            pa.field("chat_conversations", pa.int64()),
            pa.field("chat_messages", pa.int64()),
            pa.field("telemetry_events", pa.int64()),
            pa.field("registrations", pa.int64()),
            pa.field("batch_digest", pa.string()),
        ]
    ),
    "_deadletter": pa.schema(
        [
            pa.field("deadletter_id", pa.string(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("step", pa.string(), nullable=False),
            pa.field("error", pa.string()),
            pa.field("source", pa.string()),
            pa.field("tenant_id", pa.string()),
            pa.field("record_id", pa.string()),
            pa.field("key_id", pa.string()),
            pa.field("payload_ciphertext", pa.binary(), nullable=False),
        ]
    ),
}

# Permitted flows (ccpipe.flows): hand-offs to opted-in sub-processors and the US monitoring copy.
# Pseudonyms and ciphertext only; ``tenant_region`` says where the record itself lives.
_FLOW_BASE = [pa.field("tenant_id", pa.string(), nullable=False), pa.field("record_id", pa.string(), nullable=False),
              pa.field("event_time", pa.string()), pa.field("tenant_region", pa.string())]
_REFERENCE = [pa.field("call_id", pa.string()), pa.field("recording_uri_ciphertext", pa.binary()),
              pa.field("key_version", pa.int32())]
OUTPUT_SCHEMAS.update({
    "handoff_transcription": pa.schema(_FLOW_BASE + _REFERENCE),
    "handoff_recording_archive": pa.schema(_FLOW_BASE + _REFERENCE + [pa.field("recording_sha256", pa.string())]),
    "handoff_email_service": pa.schema(_FLOW_BASE + [pa.field("user_pseudonym", pa.string()),
                                                     pa.field("email_ciphertext", pa.binary()),
                                                     pa.field("key_version", pa.int32())]),
    "us_monitoring": pa.schema(_FLOW_BASE + [
        pa.field("event", pa.string()), pa.field("agent_id_pseudonym", pa.string()),
        pa.field("client_version", pa.string()), pa.field("device_type", pa.string()),
        pa.field("software_version", pa.string()), pa.field("mac_address_pseudonym", pa.string()),
        pa.field("ip_address_pseudonym", pa.string()), pa.field("ip_prefix", pa.string())]),
})

# The primary key of a row in each dataset, used to sort and to de-duplicate.
ROW_KEY: dict[str, tuple[str, ...]] = {
    # A record is identified by (tenant_id, record_id): two tenants may use the same record id.
    "calls": ("tenant_id", "record_id"),
    "telemetry": ("tenant_id", "record_id"),
    "chat_messages": ("tenant_id", "record_id", "seq"),
    "registrations": ("tenant_id", "record_id"),
    "usage_daily": ("tenant_id", "day", "batch_digest"),
    "handoff_transcription": ("tenant_id", "record_id"),
    "handoff_recording_archive": ("tenant_id", "record_id"),
    "handoff_email_service": ("tenant_id", "record_id"),
    "us_monitoring": ("tenant_id", "record_id"),
    "_deadletter": ("deadletter_id",),
}
