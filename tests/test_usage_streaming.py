"""Event-time logic of streaming usage_daily, with TestStream: out-of-order and late records."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_pipeline, test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Timestamp

from ccpipe.types import InputRecord, PseudonymizedRecord, RoutedRecord, TaggedRecord
from transforms.usage import AggregateUsageByEventTime

DAY = 86400
D1 = Timestamp.of(1_790_812_800)  # 2026-10-01T00:00:00Z


def psr(record_id: str, at: Timestamp, record_type: str = "call_recording", tenant: str = "t1") -> PseudonymizedRecord:
    iso = at.to_utc_datetime(has_tz=True).isoformat()
    payload = {"duration_s": 60.0, "hold_s": 5.0} if record_type == "call_recording" else {"messages": [{}, {}]}
    record = InputRecord(record_type, tenant, record_id, iso, iso[:10], payload, "test", b"")
    return PseudonymizedRecord(TaggedRecord(RoutedRecord(record, "nl")), {}, {}, 1)


def test_daily_windows_with_out_of_order_and_late_records():
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(D1)
        .add_elements([psr("c2", D1 + 7200), psr("c1", D1 + 3600), psr("x1", D1 + 60, "chat_transcript")])
        .add_elements([psr("d2-1", D1 + DAY + 10)])  # next day, arrives early
        .add_elements([psr("c0", D1 + 10)])  # out of order, still on time
        .advance_watermark_to(D1 + DAY + 100)  # day 1 closes: its on-time pane fires
        .add_elements([psr("late-ok", D1 + 500)])  # late, within one hour: a late pane
        .advance_watermark_to(D1 + DAY + 7200)  # now beyond the allowed lateness of day 1
        .add_elements([psr("too-late", D1 + 900)])  # dropped from usage only
        .advance_watermark_to_infinity()
    )
    with test_pipeline.TestPipeline(runner="BundleBasedDirectRunner", options=options) as p:
        rows = p | stream | AggregateUsageByEventTime(allowed_lateness_seconds=3600)
        assert_that(
            rows | beam.Map(lambda r: (r.values["day"], r.values["calls"], r.values["call_duration_s"],
                                       r.values["chat_conversations"], r.values["chat_messages"])),
            equal_to([
                ("2026-10-01", 3, 180.0, 1, 2),  # on-time pane: c0, c1, c2, x1
                ("2026-10-01", 1, 60.0, 0, 0),  # late pane: late-ok
                ("2026-10-02", 1, 60.0, 0, 0),
            ]),
        )
