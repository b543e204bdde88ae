"""WriteRegionalParquet in bounded memory: a row cap per file, records whole, idempotent names.

Regression (issue 13, bounded memory): the writer grouped a whole (region, dataset, day, shard)
partition and wrote it as one file, so a worker held the partition and one file grew with the input.
Now no file holds more than ``SinkConfig.max_rows_per_file`` rows, the group a writer holds stays
near that cap whatever the partition size, and re-runs give the same file names.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from conftest import local_test_pipeline
from test_identity import _row

from ccpipe.errors import ConfigError
from ccpipe.schemas import OUTPUT_SCHEMAS, ROW_KEY
from ccpipe.types import OutputRow, WriteResult
from transforms.route import SinkConfig
from transforms.write import WriteRegionalParquet, file_buckets, split_into_files


def _calls(n: int, tenant: str = "t-a") -> list[OutputRow]:
    return [_row("calls", tenant, f"r-{i:05d}") for i in range(n)]


def _chat(record_id: str, messages: int, tenant: str = "t-a") -> list[OutputRow]:
    return [_row("chat_messages", tenant, record_id, seq=s) for s in range(messages)]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def _key(dataset: str, row: dict) -> tuple:
    return tuple(str(row[k]) for k in ROW_KEY[dataset])


def _save(results: list[WriteResult], path: str) -> None:
    Path(path).write_bytes(pickle.dumps(results))


def _run(rows: list[OutputRow], sinks: SinkConfig):
    """Run the writer alone on the FnApiRunner; the WriteResults and the run's ccpipe.write metrics."""
    saved = Path(sinks.default_root).parent / f"{Path(sinks.default_root).name}.results.pickle"
    pipeline = beam.Pipeline(runner="FnApiRunner", options=PipelineOptions([]))
    results = pipeline | beam.Create(rows) | WriteRegionalParquet(sinks)
    _ = results | beam.combiners.ToList() | beam.Map(_save, path=str(saved))
    outcome = pipeline.run()
    outcome.wait_until_finish()
    query = outcome.metrics().query(MetricsFilter().with_namespace("ccpipe.write"))
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    distributions = {d.key.metric.name: d.committed for d in query["distributions"]}
    collected = pickle.loads(saved.read_bytes())
    saved.unlink()
    return collected, counters, distributions


def test_sink_config_refuses_a_bad_row_cap():
    for bad in (0, -1, 10_000_001, True, 2.5, "100"):
        with pytest.raises(ConfigError) as err:
            SinkConfig(default_root="/out", max_rows_per_file=bad)
        assert str(err.value) == f"max_rows_per_file {bad!r} must be a whole number between 1 and 10000000"
    assert SinkConfig(default_root="/out").max_rows_per_file == 50_000
    assert SinkConfig(default_root="/out", max_rows_per_file=1).max_rows_per_file == 1


def test_file_buckets_aim_at_ninety_percent_of_the_cap():
    assert file_buckets(0, 100) == 1
    assert file_buckets(90, 100) == 1
    assert file_buckets(91, 100) == 2
    assert file_buckets(1_000_000, 50_000) == 23  # ceil(1,000,000 / 45,000)
    assert file_buckets(5, 1) == 5
    with pytest.raises(ValueError, match="max_rows_per_file 0"):
        file_buckets(5, 0)


def test_files_are_cut_between_records_never_inside_one():
    chat = [("t", "a", "0"), ("t", "a", "1"), ("t", "b", "0"), ("t", "b", "1"), ("t", "b", "2"), ("t", "c", "0")]
    assert split_into_files("chat_messages", chat, 3) == [chat[:2], chat[2:5], chat[5:]]
    assert split_into_files("chat_messages", chat, 5) == [chat[:5], chat[5:]]
    assert split_into_files("chat_messages", chat, 2) == [chat[:2], chat[2:5], chat[5:]]  # b: 3 rows, alone
    calls = [("t", str(i)) for i in range(7)]
    assert split_into_files("calls", calls, 3) == [calls[:3], calls[3:6], calls[6:]]
    assert split_into_files("calls", [], 3) == []
    usage = [("t", "2026-10-01", "d1"), ("t", "2026-10-01", "d2")]  # every usage row is its own unit
    assert split_into_files("usage_daily", usage, 1) == [usage[:1], usage[1:]]


def test_a_small_shard_is_one_file_byte_identical_to_the_previous_writer(tmp_path):
    """Back-compatible names and bytes: re-running an input written before replaces its file."""
    out = tmp_path / "out"
    rows = _calls(40)
    results, _, _ = _run(list(reversed(rows)), SinkConfig(default_root=str(out)))
    keys = sorted(_key("calls", r.values) for r in rows)
    digest = hashlib.sha256("\n".join("\t".join(k) for k in keys).encode()).hexdigest()[:20]
    expected = io.BytesIO()
    by_key = {_key("calls", r.values): r.values for r in rows}
    table = pa.Table.from_pylist([by_key[k] for k in keys], schema=OUTPUT_SCHEMAS["calls"])
    pq.write_table(table, expected, compression="zstd")
    name = f"region=nl/dataset=calls/dt=2026-10-01/part-00000-{digest}.parquet"
    assert _files(out) == {name: expected.getvalue()}
    assert [(r.path, r.rows, r.records) for r in results] == [(str(out / name), 40, 40)]


def test_no_file_holds_more_than_the_cap_and_records_stay_whole(tmp_path):
    out = tmp_path / "out"
    calls = _calls(2000)
    chats = [row for i in range(150) for row in _chat(f"c-{i:04d}", 1 + i % 7)]
    sinks = SinkConfig(default_root=str(out), max_rows_per_file=50)
    results, counters, distributions = _run(calls + chats, sinks)

    files = sorted(out.rglob("*.parquet"))
    assert len(files) == len(results) == counters["files"]
    seen: Counter = Counter()
    chat_files: dict[tuple, set] = {}
    for path in files:
        rows = pq.read_table(path).to_pylist()
        assert 1 <= len(rows) <= 50, (path.name, len(rows))
        dataset = path.parent.parent.name.removeprefix("dataset=")
        for row in rows:
            seen[(dataset, _key(dataset, row))] += 1
            if dataset == "chat_messages":
                chat_files.setdefault((row["tenant_id"], row["record_id"]), set()).add(path.name)
    expected = Counter([("calls", _key("calls", r.values)) for r in calls]
                       + [("chat_messages", _key("chat_messages", r.values)) for r in chats])
    assert seen == expected  # every row exactly once
    assert len(chat_files) == 150 and all(len(names) == 1 for names in chat_files.values())
    by_dataset: dict[str, list[int]] = {}
    for r in results:
        by_dataset.setdefault(r.dataset, [0, 0])
        by_dataset[r.dataset][0] += r.rows
        by_dataset[r.dataset][1] += r.records
    assert by_dataset == {"calls": [2000, 2000], "chat_messages": [len(chats), 150]}
    assert counters["rows"] == 2000 + len(chats)
    assert counters.get("files_over_row_cap", 0) == 0
    # A writer holds one file bucket: near the cap, never the shard (2000 call rows, 600 chat rows).
    # Deterministic: the buckets hash fixed record ids.
    assert distributions["rows_per_group"].max <= 75
    assert distributions["rows_per_group"].sum == 2000 + len(chats)


def test_rerun_of_the_same_input_replaces_the_same_files(tmp_path):
    out = tmp_path / "out"
    rows = _calls(700) + [row for i in range(60) for row in _chat(f"c-{i:03d}", 3)]
    sinks = SinkConfig(default_root=str(out), max_rows_per_file=40, shards=2)
    first, _, _ = _run(rows, sinks)
    before = _files(out)
    second, _, _ = _run(list(reversed(rows)), sinks)  # another order: the same files
    assert _files(out) == before
    assert sorted(r.path for r in second) == sorted(r.path for r in first)
    assert list(out.rglob(".tmp-*")) == []
    total = sum(pq.read_metadata(out / name).num_rows for name in before)
    assert total == len(rows)  # no duplicates, no stale extra files


def test_a_record_over_the_cap_is_one_file_and_counted(tmp_path):
    out = tmp_path / "out"
    rows = _chat("c-big", 7) + _chat("c-small", 2)
    results, counters, _ = _run(rows, SinkConfig(default_root=str(out), max_rows_per_file=3))
    assert sorted((r.rows, r.records) for r in results) == [(2, 1), (7, 1)]
    assert counters["files_over_row_cap"] == 1


def test_duplicate_rows_are_written_once_and_counted(tmp_path):
    out = tmp_path / "out"
    rows = _calls(30)
    results, counters, _ = _run(rows + rows[:4], SinkConfig(default_root=str(out), max_rows_per_file=10))
    assert sum(r.rows for r in results) == 30
    assert counters["duplicate_rows"] == 4
    assert sum(pq.read_metadata(p).num_rows for p in out.rglob("*.parquet")) == 30


def test_streaming_cuts_a_window_into_capped_files_and_reports_its_sources_once(tmp_path):
    out = tmp_path / "out"
    rows = [OutputRow(r.region, r.dataset, r.dt, r.record_id, r.values, f"kafka:topic:0:{i}")
            for i, r in enumerate(_calls(9))]
    sinks = SinkConfig(default_root=str(out), streaming=True, max_rows_per_file=4)
    with local_test_pipeline() as p:
        results = (
            p
            | beam.Create(rows)
            | beam.Map(lambda r: TimestampedValue(r, 10))
            | beam.WindowInto(beam.window.FixedWindows(2))
            | WriteRegionalParquet(sinks)
        )
        assert_that(results | beam.Map(lambda r: (r.rows, len(r.sources))), equal_to([(4, 0), (4, 0), (1, 9)]))
    files = sorted(out.rglob("*.parquet"))
    assert [p.name.startswith("part-00000-w12000-") for p in files] == [True, True, True]
    assert sum(pq.read_metadata(p).num_rows for p in files) == 9

    # Replayed after a restart: nothing written again, every source still reported (offsets commit).
    with local_test_pipeline() as p:
        results = (
            p
            | beam.Create(rows)
            | beam.Map(lambda r: TimestampedValue(r, 30))
            | beam.WindowInto(beam.window.FixedWindows(2))
            | WriteRegionalParquet(sinks)
        )
        assert_that(results | beam.Map(lambda r: (r.path, r.rows, len(r.sources))), equal_to([("", 0, 9)]))
    assert sorted(out.rglob("*.parquet")) == files


# Regression (review, stale files): a re-run of the same input with another max_rows_per_file (or
# shards) cut other files with other names and left the previous run's files beside them: both
# manifests reconciled, a query counted 1207 rows for 755 unique messages. Now the batch writer
# removes, in the partitions it writes, the batch files whose row keys it all wrote again.


def _on_disk(root: Path) -> Counter:
    keys: Counter = Counter()
    for path in root.rglob("*.parquet"):
        if path.name.startswith("."):
            continue
        dataset = path.parent.parent.name.removeprefix("dataset=")
        keys.update((dataset, _key(dataset, row)) for row in pq.read_table(path).to_pylist())
    return keys


def test_rerun_with_another_cap_or_shard_count_leaves_no_duplicates(tmp_path):
    out = tmp_path / "out"
    rows = _calls(300) + [row for i in range(40) for row in _chat(f"c-{i:03d}", 1 + i % 4)]
    unique = Counter((r.dataset, _key(r.dataset, r.values)) for r in rows)
    first, counters, _ = _run(rows, SinkConfig(default_root=str(out), max_rows_per_file=50_000))
    assert len(first) == 2 and counters.get("stale_files_removed", 0) == 0

    second, counters, _ = _run(rows, SinkConfig(default_root=str(out), max_rows_per_file=5))
    assert _on_disk(out) == unique  # every row once: the row count equals the unique keys
    assert counters["stale_files_removed"] == 2 and counters.get("stale_files_kept", 0) == 0
    assert sorted(str(p) for p in out.rglob("*.parquet")) == sorted(r.path for r in second)

    third, counters, _ = _run(rows, SinkConfig(default_root=str(out), max_rows_per_file=7, shards=3))
    assert _on_disk(out) == unique
    replaced = {r.path for r in second} - {r.path for r in third}  # a file of the same keys and shard: same name
    assert len(replaced) > 100
    assert counters["stale_files_removed"] == len(replaced) and counters.get("stale_files_kept", 0) == 0
    assert sorted(str(p) for p in out.rglob("*.parquet")) == sorted(r.path for r in third)


def test_files_of_a_different_input_in_the_same_partition_survive(tmp_path):
    out = tmp_path / "out"
    earlier = _calls(40)  # r-00000 .. r-00039, cut into files of at most 10 rows
    first, _, _ = _run(earlier, SinkConfig(default_root=str(out), max_rows_per_file=10))
    assert len(first) == 6  # deterministic: the file buckets hash fixed record ids
    earlier_files = {r.path: {_key("calls", row) for row in pq.read_table(r.path).to_pylist()} for r in first}
    # A later input into the same partition: two of the earlier files' records again, plus new ones.
    covered = sorted(earlier_files)[:2]
    again = {k for path in covered for k in earlier_files[path]}
    later = [r for r in earlier if _key("calls", r.values) in again] + [
        _row("calls", "t-a", f"n-{i:03d}") for i in range(15)
    ]
    second, counters, _ = _run(later, SinkConfig(default_root=str(out), max_rows_per_file=50_000))
    assert counters["stale_files_removed"] == 2 and counters["stale_files_kept"] == 4
    on_disk = _on_disk(out)
    expected = Counter(
        ("calls", _key("calls", r.values)) for r in earlier + later if _key("calls", r.values) not in again
    )
    expected.update(("calls", k) for k in again)
    assert on_disk == expected  # nothing of the earlier input lost, nothing twice
    assert sorted(str(p) for p in out.rglob("*.parquet")) == sorted(
        [r.path for r in second] + sorted(earlier_files)[2:]
    )


def test_stale_file_removal_never_touches_streaming_hidden_foreign_or_unreadable_files(tmp_path):
    out = tmp_path / "out"
    rows = _calls(20)
    _run(rows, SinkConfig(default_root=str(out), max_rows_per_file=50_000))
    (batch_file,) = out.rglob("part-*.parquet")
    folder = batch_file.parent
    data = batch_file.read_bytes()
    keep = {
        "part-00000-w1700000000000-0123456789abcdef0123.parquet": data,  # a streaming window's file
        ".tmp-0123.inprogress": data,  # another writer's file in progress
        "part-00000-mine.parquet": data,  # not a name this writer gives
        "part-00001-fedcba9876543210fedc.parquet": b"not parquet",  # a batch name, unreadable
    }
    for name, content in keep.items():
        (folder / name).write_bytes(content)
    results, counters, _ = _run(rows, SinkConfig(default_root=str(out), max_rows_per_file=8))
    assert counters["stale_files_removed"] == 1  # only the earlier run's batch file
    assert counters["stale_files_kept"] == 1  # the unreadable one: never removed unverified
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*keep, *(Path(r.path).name for r in results)]
    )
    assert all((folder / name).read_bytes() == content for name, content in keep.items())
