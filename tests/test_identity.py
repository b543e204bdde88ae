"""Record identity is (tenant_id, record_id), and (tenant_id, record_id, seq) for chat messages.

Regression tests for two silent losses found in review: rows of two tenants sharing a record id in
one region kept only one (batch NOT RECONCILED, streaming dropped one and committed its offset), and a
chat with two messages sharing a seq lost one while the manifest said RECONCILED.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to
from conftest import local_test_pipeline

from ccpipe.errors import RecordError
from ccpipe.schemas import OUTPUT_SCHEMAS, validate
from ccpipe.types import OutputRow, RawInput
from transforms.parse import ParseRecords
from transforms.route import SinkConfig
from transforms.write import WriteRegionalParquet

CHAT = {
    "type": "chat_transcript", "record_id": "c-1", "tenant_id": "t-a", "conversation_id": "conv-1",
    "started_at": "2026-10-01T10:00:00Z",
    "messages": [
        {"seq": 0, "sender": "customer", "sent_at": "2026-10-01T10:00:00Z", "text": "hello"},
        {"seq": 1, "sender": "agent", "sent_at": "2026-10-01T10:00:05Z", "text": "hi"},
        {"seq": 1, "sender": "customer", "sent_at": "2026-10-01T10:00:09Z", "text": "my card is lost"},
    ],
}


def test_two_messages_sharing_a_seq_are_refused():
    with pytest.raises(RecordError) as err:
        validate(CHAT, 10_000)
    assert err.value.reason == "duplicate_seq"
    assert "messages[1] and messages[2] share seq 1" in str(err.value)
    assert validate({**CHAT, "messages": CHAT["messages"][:2]}, 10_000) == "chat_transcript"


def test_duplicate_seq_is_dead_lettered_in_the_pipeline():
    import json

    with local_test_pipeline() as p:
        parsed = p | beam.Create([RawInput("chats.jsonl", json.dumps(CHAT).encode())]) | ParseRecords()
        assert_that(parsed.records | "Ids" >> beam.Map(lambda r: r.record_id), equal_to([]), label="Kept")
        assert_that(parsed.dead_letters | "Dead" >> beam.Map(lambda d: (d.record_id, d.reason)),
                    equal_to([("c-1", "duplicate_seq")]), label="Dead")


def _row(dataset: str, tenant: str, record_id: str, **extra) -> OutputRow:
    values = {}
    for f in OUTPUT_SCHEMAS[dataset]:
        if pa.types.is_string(f.type):
            values[f.name] = f"{f.name}-{tenant}"
        elif pa.types.is_integer(f.type):
            values[f.name] = 1
        elif pa.types.is_boolean(f.type):
            values[f.name] = False
        elif pa.types.is_floating(f.type):
            values[f.name] = 1.0
        else:
            values[f.name] = None
    values.update(tenant_id=tenant, record_id=record_id, **extra)
    return OutputRow("nl", dataset, "2026-10-01", record_id, values)


@pytest.mark.parametrize("streaming", [False, True])
def test_two_tenants_may_share_a_record_id(tmp_path, streaming):
    rows = [_row("calls", "t-a", "r-1"), _row("calls", "t-b", "r-1"),
            _row("chat_messages", "t-a", "c-1", seq=0), _row("chat_messages", "t-b", "c-1", seq=0)]
    sinks = SinkConfig(default_root=str(tmp_path), streaming=streaming)
    with local_test_pipeline() as p:
        results = p | beam.Create(rows) | WriteRegionalParquet(sinks)
        assert_that(results | beam.Map(lambda r: (r.dataset, r.rows, r.records)),
                    equal_to([("calls", 2, 2), ("chat_messages", 2, 2)]))
    for dataset in ("calls", "chat_messages"):
        files = list((tmp_path / "region=nl" / f"dataset={dataset}").rglob("*.parquet"))
        table = pa.concat_tables([pq.read_table(f) for f in files])
        assert sorted(table.column("tenant_id").to_pylist()) == ["t-a", "t-b"]


def test_dsar_rows_are_matched_within_their_dataset(tmp_path):
    """A registration x-1 of the subject must not pull in (or delete) an unrelated chat x-1."""
    from ccpipe import store
    from ccpipe.controlplane.dsar import _subject_mask, _subject_rows

    for dataset, rows in {
        "registrations": [{"tenant_id": "t", "record_id": "x-1", "who": "subject"},
                          {"tenant_id": "t", "record_id": "x-2", "who": "other"}],
        "chat_messages": [{"tenant_id": "t", "record_id": "x-1", "who": "another customer"}],
        "_deadletter": [{"tenant_id": "t", "record_id": "x-1", "who": "subject's bad copy"}],
    }.items():
        folder = tmp_path / "region=nl" / f"dataset={dataset}" / "dt=2026-10-01"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")
    records = {"registrations": {"x-1"}}
    found = sorted(row["who"] for _, row in _subject_rows(tmp_path, "nl", "t", records))
    assert found == ["subject", "subject's bad copy"]
    removed = {f.dataset: store.rewrite_without(f, _subject_mask("t", records, f.dataset))
               for f in store.partition_files(tmp_path)}
    assert removed == {"registrations": 1, "chat_messages": 0, "_deadletter": 1}
