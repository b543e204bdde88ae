"""AggregateUsage: per tenant per day usage analytics (``usage_daily``), pseudonymous only."""

import datetime as _dt
import hashlib

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.transforms.trigger import AccumulationMode
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from ccpipe.errors import ConfigError
from ccpipe.policy import usage_contribution
from ccpipe.schemas import parse_rfc3339
from ccpipe.types import DATASET_USAGE, OutputRow, PseudonymizedRecord

_METRICS = ("calls", "call_duration_s", "call_hold_s", "chat_conversations", "chat_messages",
            "telemetry_events", "registrations")


class _UsageCombineFn(beam.CombineFn):
    """Sums the additive metrics; XORs record-id hashes into an order-independent batch digest."""

    def create_accumulator(self):
        return dict.fromkeys(_METRICS, 0), 0

    def add_input(self, accumulator, element):
        counts, digest = accumulator
        record_id, contribution = element
        for name, value in contribution.items():
            counts[name] += value
        return counts, digest ^ int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:16], "big")

    def merge_accumulators(self, accumulators):
        total, digest = dict.fromkeys(_METRICS, 0), 0
        for counts, d in accumulators:
            for name in _METRICS:
                total[name] += counts[name]
            digest ^= d
        return total, digest

    def extract_output(self, accumulator):
        counts, digest = accumulator
        return counts, f"{digest:032x}"


def _keyed_contribution(psr: PseudonymizedRecord):
    key, counts = usage_contribution(psr)
    return key, (psr.tagged.routed.record.record_id, counts)


def _to_row(element) -> OutputRow:
    (region, tenant_id, day), (counts, digest) = element
    values = {"tenant_id": tenant_id, "day": day, "batch_digest": digest, **counts}
    return OutputRow(region, DATASET_USAGE, day, f"{tenant_id}/{day}/{digest}", values)


class AggregateUsage(beam.PTransform[PCollection[PseudonymizedRecord], PCollection[OutputRow]]):
    """Additive daily counts per tenant; re-running the same input yields the same rows (digest)."""

    def expand(self, records: PCollection[PseudonymizedRecord]) -> PCollection[OutputRow]:
        """One usage_daily row per (region, tenant, day)."""
        return (
            records
            | "Contribution" >> beam.Map(_keyed_contribution)
            | "SumPerTenantDay" >> beam.CombinePerKey(_UsageCombineFn())
            | "ToRow" >> beam.Map(_to_row)
        )


def _event_timestamped(psr: PseudonymizedRecord) -> TimestampedValue:
    moment = parse_rfc3339(psr.tagged.routed.record.event_time)
    return TimestampedValue(psr, Timestamp.from_utc_datetime(moment.astimezone(_dt.UTC)))


class AggregateUsageByEventTime(beam.PTransform[PCollection[PseudonymizedRecord], PCollection[OutputRow]]):
    """Streaming ``usage_daily``: daily event-time windows (UTC) with allowed lateness.

    Each pane (on time, then one per late record within ``allowed_lateness``) emits the counts of
    the records it saw (discarding mode), so rows stay additive: SUM over a day's rows. Records
    later than the allowed lateness still reach their datasets; only their usage count is left out
    (Beam counts it as dropped due to lateness).
    """

    def __init__(self, allowed_lateness_seconds: int = 86400) -> None:
        """``allowed_lateness_seconds``: how long after a day ends its late records still count."""
        super().__init__()
        if allowed_lateness_seconds < 0:
            raise ConfigError(f"allowed_lateness_seconds {allowed_lateness_seconds!r} must not be negative")
        self._lateness = allowed_lateness_seconds

    def expand(self, records: PCollection[PseudonymizedRecord]) -> PCollection[OutputRow]:
        """One usage_daily row per (region, tenant, day) and pane."""
        return (
            records
            | "ByEventTime" >> beam.Map(_event_timestamped)
            | "Daily" >> beam.WindowInto(
                beam.window.FixedWindows(86400),
                allowed_lateness=Duration(seconds=self._lateness),
                accumulation_mode=AccumulationMode.DISCARDING,
            )
            | "Contribution" >> beam.Map(_keyed_contribution)
            | "SumPerTenantDay" >> beam.CombinePerKey(_UsageCombineFn())
            | "ToRow" >> beam.Map(_to_row)
        )
