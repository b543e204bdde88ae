"""ParseRecords and DeduplicateRecords: raw lines to validated InputRecords, bad ones dead-lettered."""

import hashlib
import json
import re
from dataclasses import dataclass
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from ccpipe.deadletter import MAX_NESTING, nesting_exceeds
from ccpipe.errors import ConfigError, RecordError
from ccpipe.progress import Progress
from ccpipe.schemas import EVENT_TIME_FIELD, utc_date, validate
from ccpipe.types import DeadLetter, InputRecord, RawInput
from transforms.route import SideOutput, SplitTagged

DEAD = "dead_letters"


class Parsed(NamedTuple):
    """Valid records and the dead letters of the stage."""

    records: PCollection
    dead_letters: PCollection


@dataclass(frozen=True)
class ParseConfig:
    """Limits of a single input record.

    Attributes:
        max_record_bytes: a longer line is dead-lettered as ``oversized``.
        max_text_chars: a longer free-text field is dead-lettered as ``oversized``.

    """

    max_record_bytes: int = 1_048_576
    max_text_chars: int = 100_000

    def __post_init__(self) -> None:
        if self.max_record_bytes < 1024:
            raise ConfigError(f"max_record_bytes {self.max_record_bytes!r} must be at least 1024")
        if self.max_text_chars < 1:
            raise ConfigError(f"max_text_chars {self.max_text_chars!r} must be at least 1")


def parse_line(raw: RawInput, config: ParseConfig) -> InputRecord:
    """Decode, parse and validate one line; RecordError with the dead-letter reason otherwise."""
    if len(raw.data) > config.max_record_bytes:
        raise RecordError("oversized", f"record exceeds {config.max_record_bytes} bytes")
    try:
        text = raw.data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordError("invalid_utf8", f"invalid UTF-8 at byte {err.start}") from None
    if nesting_exceeds(text):
        # Checked before parsing, never left to RecursionError: where that strikes depends on the call
        # stack, so the same line would be a record on one runner and a dead letter on another.
        raise RecordError("malformed_json", f"malformed JSON: nested deeper than {MAX_NESTING} levels")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        # The message names only a position, never the content.
        raise RecordError("malformed_json", f"malformed JSON: {err.msg} at char {err.pos}") from None
    except RecursionError:
        raise RecordError("malformed_json", "malformed JSON: nested too deeply") from None
    record_type = validate(obj, config.max_text_chars)
    event_time = obj[EVENT_TIME_FIELD[record_type]]
    return InputRecord(
        record_type=record_type,
        tenant_id=obj["tenant_id"],
        record_id=obj["record_id"],
        event_time=event_time,
        event_date=utc_date(event_time),
        payload=obj,
        source=raw.source,
        raw=raw.data,
    )


_ID_FIELD = {name: re.compile(rf'"{name}"\s*:\s*"([^"\\]{{1,200}})"') for name in ("tenant_id", "record_id")}


def _id_in_text(data: bytes, name: str) -> str | None:
    """An id field of a line that is not valid JSON, when the line names exactly one."""
    found = set(_ID_FIELD[name].findall(data.decode("utf-8", "replace")))
    return found.pop() if len(found) == 1 else None


def _clean_id(value) -> bool:
    """An id worth routing a dead letter by: a short string UTF-8 can hold."""
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ids_of(raw: RawInput) -> tuple[str | None, str | None]:
    """Best-effort tenant and record id of a bad line, to route its dead letter to its region.

    A line that is not valid JSON (truncated, invalid UTF-8) is searched for ``"tenant_id": "..."``:
    when it names one tenant, its dead letter goes to that tenant's region and, if the tenant is in
    the registry, is sealed under its key (ccpipe.deadletter), so shredding the tenant reaches it.
    """
    try:  # as json.loads(bytes) decodes; nesting beyond MAX_NESTING is searched as text (never by recursion)
        text = raw.data.decode(json.detect_encoding(raw.data), "surrogatepass")
        if nesting_exceeds(text):
            raise ValueError("nested too deeply")
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return _id_in_text(raw.data, "tenant_id"), _id_in_text(raw.data, "record_id")
    if not isinstance(obj, dict):
        return None, None
    tenant = obj.get("tenant_id") if _clean_id(obj.get("tenant_id")) else None
    record = obj.get("record_id") if _clean_id(obj.get("record_id")) else None
    return tenant, record


class _ParseRecordFn(beam.DoFn):
    def __init__(self, config: ParseConfig) -> None:
        self._config = config
        self._ok = Metrics.counter("ccpipe.parse", "records")
        self._bad = Metrics.counter("ccpipe.parse", "dead_letters")
        self._unexpected = Metrics.counter("ccpipe.parse", "unexpected_errors")
        self._progress = Progress("read records")

    def process(self, raw):
        try:
            record = parse_line(raw, self._config)
        except RecordError as err:
            self._bad.inc()
            self._progress.add("invalid", 1)
            tenant, record_id = _ids_of(raw)
            yield SideOutput(
                DEAD,
                DeadLetter(err.reason, "ParseRecords", str(err), raw.data, raw.source, tenant, record_id),
            )
            return
        except Exception as err:  # noqa: BLE001 - one hostile line must never fail the run
            # A case nobody thought of: dead-letter it with the exception's type only (its message
            # could quote the input), count it, and keep going.
            self._bad.inc()
            self._unexpected.inc()
            tenant, record_id = _ids_of(raw)
            yield SideOutput(
                DEAD,
                DeadLetter("unparseable", "ParseRecords", f"unexpected {type(err).__name__} while parsing",
                           raw.data, raw.source, tenant, record_id),
            )
            return
        self._ok.inc()
        self._progress.add("valid", 1)
        yield record


class ParseRecords(beam.PTransform[PCollection[RawInput], Parsed]):
    """Validate raw lines against the SPEC §1 schemas."""

    def __init__(self, config: ParseConfig | None = None) -> None:
        """``config``: record size limits."""
        super().__init__()
        self._config = config or ParseConfig()

    def expand(self, lines: PCollection[RawInput]):  # -> Parsed
        """Records and dead letters."""
        out = (
            lines
            | "Parse" >> beam.ParDo(_ParseRecordFn(self._config))
            | "SplitOutputs" >> SplitTagged((DEAD,), main="records")
        )
        return Parsed(records=out["records"], dead_letters=out[DEAD])


def _record_rank(record: InputRecord) -> str:
    return hashlib.sha256(record.raw).hexdigest() + record.source


class _SplitDuplicatesFn(beam.DoFn):
    def __init__(self) -> None:
        self._dups = Metrics.counter("ccpipe.dedupe", "duplicates")

    def process(self, element):
        _key, records = element
        ordered = sorted(records, key=_record_rank)
        yield ordered[0]
        for dup in ordered[1:]:
            self._dups.inc()
            yield SideOutput(
                DEAD,
                DeadLetter(
                    "duplicate_record_id",
                    "DeduplicateRecords",
                    "another record with the same tenant_id and record_id was kept",
                    dup.raw,
                    dup.source,
                    dup.tenant_id,
                    dup.record_id,
                    event_date=dup.event_date,
                ),
            )


class DeduplicateRecords(beam.PTransform[PCollection[InputRecord], Parsed]):
    """Keep one record per (tenant_id, record_id); dead-letter the others (deterministically)."""

    def expand(self, records: PCollection[InputRecord]):  # -> Parsed
        """Unique records and the duplicates as dead letters."""
        out = (
            records
            | "KeyByRecordId" >> beam.Map(lambda r: ((r.tenant_id, r.record_id), r))
            | "GroupByRecordId" >> beam.GroupByKey()
            | "SplitDuplicates" >> beam.ParDo(_SplitDuplicatesFn())
            | "SplitOutputs" >> SplitTagged((DEAD,), main="records")
        )
        return Parsed(records=out["records"], dead_letters=out[DEAD])
