import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from conftest import local_test_pipeline

from ccpipe.errors import RecordError
from ccpipe.types import RawInput, Tenant
from transforms.parse import DeduplicateRecords, ParseConfig, ParseRecords, parse_line
from transforms.tenants import ResolveTenants

GOOD = {
    "type": "telemetry",
    "record_id": "r1",
    "tenant_id": "t-nl",
    "event": "login",
    "event_at": "2026-10-05T23:30:00-02:00",
    "agent_id": "agt-1",
}


def raw(obj, source="f.jsonl"):
    return RawInput(source, obj if isinstance(obj, bytes) else json.dumps(obj).encode())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"type": "telemetry",', "malformed_json"),
        (b'{"type": "telemetry", "x": "\xff"}', "invalid_utf8"),
        ({**GOOD, "event_at": "2026-10-05T10:00:00"}, "invalid_timestamp"),
        ({**GOOD, "agent_id": 7}, "invalid_type"),
        ({k: v for k, v in GOOD.items() if k != "event"}, "missing_field"),
        ({**GOOD, "type": "fax"}, "unknown_type"),
        ({**GOOD, "message_log": "x" * 101}, "oversized"),
        ({**GOOD, "call": {"duration_s": -1}}, "invalid_value"),
        (["not", "an", "object"], "invalid_type"),
    ],
)
def test_parse_line_reasons(data, reason):
    with pytest.raises(RecordError) as err:
        parse_line(raw(data), ParseConfig(max_text_chars=100))
    assert err.value.reason == reason


def test_error_messages_never_hold_values():
    with pytest.raises(RecordError) as err:
        parse_line(raw({**GOOD, "agent_id": 4111111111111111}), ParseConfig())
    assert "4111" not in str(err.value)
    assert str(err.value) == "field 'agent_id' must be a string, got int"


def test_event_date_is_utc():
    record = parse_line(raw(GOOD), ParseConfig())
    assert (record.event_date, record.record_type, record.tenant_id) == ("2026-10-06", "telemetry", "t-nl")


def test_parse_records_splits_good_and_bad():
    with local_test_pipeline() as p:
        lines = p | beam.Create([raw(GOOD), raw(b"{oops"), raw({**GOOD, "record_id": "r2"})])
        parsed = lines | ParseRecords()
        assert_that(parsed.records | "Ids" >> beam.Map(lambda r: r.record_id),
                    equal_to(["r1", "r2"]), label="Good")
        assert_that(parsed.dead_letters | "Reasons" >> beam.Map(lambda d: (d.reason, d.step)),
                    equal_to([("malformed_json", "ParseRecords")]), label="Bad")


def test_deduplicate_and_resolve():
    tenants = (
        Tenant("t-nl", "A", "nl"),
        Tenant("t-old", "B", "us", status="terminated", terminated_at="2026-10-01T00:00:00Z"),
        Tenant("t-ca", "C", "ca"),
    )
    records = [
        parse_line(raw(GOOD), ParseConfig()),
        parse_line(raw(GOOD, source="copy.jsonl"), ParseConfig()),
        parse_line(raw({**GOOD, "record_id": "r3", "tenant_id": "t-old"}), ParseConfig()),
        parse_line(raw({**GOOD, "record_id": "r4", "tenant_id": "t-old", "event_at": "2026-09-30T10:00:00Z"}),
                   ParseConfig()),
        parse_line(raw({**GOOD, "record_id": "r5", "tenant_id": "t-ca"}), ParseConfig()),
        parse_line(raw({**GOOD, "record_id": "r6", "tenant_id": "nobody"}), ParseConfig()),
    ]
    with local_test_pipeline() as p:
        unique = p | beam.Create(records) | DeduplicateRecords()
        resolved = unique.records | ResolveTenants(tenants, frozenset({"nl", "us"}))
        assert_that(
            resolved.records | "Routed" >> beam.Map(lambda r: (r.record.record_id, r.region)),
            equal_to([("r1", "nl"), ("r4", "us")]),
            label="Routed",
        )
        assert_that(
            resolved.dead_letters | "Dead" >> beam.Map(lambda d: (d.record_id, d.reason)),
            equal_to([("r3", "tenant_terminated"), ("r5", "no_sink_for_region"), ("r6", "unknown_tenant")]),
            label="Dead",
        )
        assert_that(
            unique.dead_letters | "Dups" >> beam.Map(lambda d: (d.record_id, d.reason)),
            equal_to([("r1", "duplicate_record_id")]),
            label="Dups",
        )
