"""AggregateUsage: per tenant per day usage analytics (``usage_daily``), pseudonymous only."""

import hashlib

import apache_beam as beam
from apache_beam.pvalue import PCollection

from ccpipe.policy import usage_contribution
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
