"""Shared record types that cross pipeline boundaries.

Every PCollection in ccpipe holds one of these frozen dataclasses. They are plain Python so the
domain modules and unit tests use them without Beam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REGIONS: tuple[str, ...] = ("nl", "us", "uk", "sg", "hk", "au", "br")
QUARANTINE_REGION = "quarantine"

RECORD_TYPES: tuple[str, ...] = ("call_recording", "telemetry", "chat_transcript", "registration")

# Output datasets of SPEC §4.
DATASET_CALLS = "calls"
DATASET_TELEMETRY = "telemetry"
DATASET_CHAT = "chat_messages"
DATASET_REGISTRATIONS = "registrations"
DATASET_USAGE = "usage_daily"
DATASET_DEADLETTER = "_deadletter"

PRIMARY_DATASET: dict[str, str] = {
    "call_recording": DATASET_CALLS,
    "telemetry": DATASET_TELEMETRY,
    "chat_transcript": DATASET_CHAT,
    "registration": DATASET_REGISTRATIONS,
}


@dataclass(frozen=True)
class RawInput:
    """One input line (or Parquet row, re-encoded as JSON) and the file it came from."""

    source: str
    data: bytes


@dataclass(frozen=True)
class InputRecord:
    """A parsed, schema-valid input record."""

    record_type: str
    tenant_id: str
    record_id: str
    event_time: str  # RFC 3339, as given
    event_date: str  # YYYY-MM-DD in UTC, the ``dt`` partition
    payload: dict[str, Any]
    source: str
    raw: bytes


@dataclass(frozen=True)
class Tenant:
    """A tenant of the registry (SPEC §1)."""

    tenant_id: str
    name: str
    region: str
    status: str = "active"
    terminated_at: str | None = None
    subprocessors: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class RoutedRecord:
    """An input record whose tenant is known, active for its event time, and has a sink."""

    record: InputRecord
    region: str


@dataclass(frozen=True)
class Finding:
    """One PII finding in a free-text field, with offsets into the original text."""

    entity_type: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class TaggedRecord:
    """A routed record with PII findings for each free-text field path."""

    routed: RoutedRecord
    findings: dict[str, tuple[Finding, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PseudonymizedRecord:
    """A tagged record with keyed pseudonyms of its identifier fields.

    ``pseudonyms`` maps a field path to its pseudonym; ``ip_prefixes`` maps a field path to the
    truncated network. Plaintext stays in ``tagged`` only until EncryptContent drops it.
    """

    tagged: TaggedRecord
    pseudonyms: dict[str, str]
    ip_prefixes: dict[str, str]
    key_version: int


@dataclass(frozen=True)
class OutputRow:
    """A row ready for a regional Parquet sink: all personal data pseudonymized or encrypted."""

    region: str
    dataset: str
    dt: str
    record_id: str
    values: dict[str, Any]
    source: str = ""  # where the record came from (file, or kafka:<topic>:<partition>:<offset>)


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be processed, before encryption. ``error`` never holds values."""

    reason: str
    step: str
    error: str
    raw: bytes
    source: str
    tenant_id: str | None = None
    record_id: str | None = None
    region: str | None = None
    event_date: str | None = None


@dataclass(frozen=True)
class WriteResult:
    """What one Parquet file write produced, for the run manifest."""

    region: str
    dataset: str
    path: str
    rows: int
    records: int
    reasons: tuple[tuple[str, int], ...] = ()
    keys_used: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # streaming: every record source this write made safe
