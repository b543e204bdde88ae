"""WriteRegionalParquet: Hive-partitioned Parquet per region, idempotent, in bounded memory.

Every file lands in its partition folder::

    <root>/region=<code>/dataset=<name>/dt=<YYYY-MM-DD>/part-<shard>-<digest>.parquet
    <root>/region=<code>/dataset=<name>/dt=<YYYY-MM-DD>/part-<shard>-w<window end ms>-<digest>.parquet  (streaming)

What the writer promises, and how:

* **Bounded memory, a row cap per file.** A worker never holds a whole partition: no file holds more
  than ``SinkConfig.max_rows_per_file`` rows (default 50,000) and a batch worker holds about one
  file's rows at a time, whatever the size of the input. Batch rows are grouped in three steps, none
  of which gathers a partition (a shuffle group is what a worker holds in memory):

  1. each row gets a *shard* (``SinkConfig.shards``) and one of 256 *size buckets* from a hash of its
     record id; rows are counted per (partition, shard, size bucket) with a combiner, and the counts
     are summed per (partition, shard): the shard's size, without its rows;
  2. the size is joined to the rows of each size bucket (a group holds 1/256 of a shard: under the
     cap for shards of up to 256 times the cap, 12.8 million rows by default; beyond, raise
     ``shards``), which gives every row its *file bucket*:
     ``hash(record id) % ceil(size / (0.9 * max_rows_per_file))``, so a file bucket holds about 90%
     of the cap or less;
  3. rows are grouped by file bucket, sorted by row key and cut into files of at most the cap (a file
     bucket over the cap by the luck of the hash gives two files).

  Streaming windows are short (seconds), so a streaming shard is grouped once per window and cut
  into files the same way (step 3); its memory follows the window, not the input. Beam's own
  shuffle (the runner's buffers) is outside this transform.
* **All rows of one record in one file** (a chat's messages): shards and buckets hash the record id,
  and files are cut between records, never inside one. Only a record with more rows than the cap
  makes a larger file (counted: ``ccpipe.write/files_over_row_cap``). Per-file ``WriteResult.records``
  can therefore be summed by the manifest.
* **Idempotent re-runs.** File names derive from the input alone: the shard, and ``digest``, a hash
  of the file's sorted row keys. The same input (with the same ``shards`` and ``max_rows_per_file``)
  gives the same buckets, the same files and the same names, which replace the previous run's files:
  no duplicates, no stale extra files. A shard that fits in one file gets the name earlier versions
  gave it (the digest of all its keys), so re-running an input written before this design replaces
  its files too.
* **No stale duplicates after a re-run with other settings.** A re-run of the same input with another
  ``max_rows_per_file`` or ``shards`` cuts other files (other names), so after its files are written
  the batch writer looks, in every partition it wrote, at the batch part files it did not write
  (``part-<shard>-<digest>.parquet`` of any shard; never streaming files, ``part-<shard>-w<ms>-...``,
  nor hidden temporary files, nor any other name) and removes each one whose row keys are *all*
  written by this run, so the partition holds every row once (counted,
  ``ccpipe.write/stale_files_removed``). A file holding any row key this run does not write (an
  earlier, different input into the same partition) is kept, whole (``ccpipe.write/stale_files_kept``):
  never data loss, at the price of duplicate rows for the keys both inputs share. Only key columns
  are read, a bounded number of keys at a time (the run's files are read back per batch of
  candidates; with the row key's record id, only the files of the shards those keys hash to).
  Counts are logged, never values. Two batch jobs writing the same partitions of one root at the
  same time are not supported: one may remove a file of the other whose rows it also wrote (no row
  is lost, but the other run's manifest then names a removed file). A streaming job beside a batch
  job is fine (streaming files are never removed).
* **Atomic files.** Each file is written under a hidden temporary name that no reader takes for a part
  file (``.tmp-<uuid>.inprogress``) and renamed, so readers never see a partial file.
* **Row content.** Rows are written exactly as given (one copy per row key: the same key twice is
  the same record delivered twice; the copy dropped is counted, ``ccpipe.write/duplicate_rows``).
  Streaming skips rows a partition already holds (records replayed after a restart; counted,
  ``ccpipe.write/rows_already_written``) and reports the record sources of a shard on the last
  WriteResult of that shard, after all its files are written (the Kafka commit stage relies on it).
"""

import dataclasses
import hashlib
import io
import logging
import re
import uuid

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from ccpipe.flows import DATASETS as FLOW_DATASETS
from ccpipe.progress import Progress
from ccpipe.schemas import OUTPUT_SCHEMAS, ROW_KEY
from ccpipe.types import DATASET_DEADLETTER, DATASET_USAGE, OutputRow, WriteResult
from transforms.route import SinkConfig

_LOG = logging.getLogger(__name__)
# Derived rows: counted as rows, never as records (reconciliation counts the primary datasets).
DERIVED_DATASETS = frozenset({DATASET_USAGE, DATASET_DEADLETTER, *FLOW_DATASETS.values()})


def partition_dir(root: str, region: str, dataset: str, dt: str) -> str:
    """The Hive partition folder of a region, dataset and day under a sink root."""
    return FileSystems.join(root, f"region={region}", f"dataset={dataset}", f"dt={dt}")


# Size buckets per shard: step 1 counts rows per bucket, step 2 holds one bucket's rows at a time.
SIZE_BUCKETS = 256
# A file bucket aims at this share of max_rows_per_file, so that hashing luck seldom overflows the cap.
_BUCKET_FILL = 0.9
# Rows turned into one Arrow table (and Parquet row group) at a time while a file is written.
_ROW_GROUP_ROWS = 10_000
# A batch part file's name (the shard, the digest). Streaming files (``part-<shard>-w<ms>-<digest>``)
# and anything else never match: the stale-file removal never looks at them.
_BATCH_PART = re.compile(r"part-(\d{5})-([0-9a-f]{20})\.parquet")
# Row keys of candidate stale files checked against this run's files in one pass (a file is never split).
_STALE_CHECK_KEYS = 100_000


def _record_hash(record_id: str) -> bytes:
    return hashlib.sha256(record_id.encode()).digest()


def _shard_of(record_id: str, shards: int) -> int:
    return int.from_bytes(_record_hash(record_id)[:4], "big") % shards


def _size_bucket_of(record_id: str) -> int:
    return int.from_bytes(_record_hash(record_id)[4:8], "big") % SIZE_BUCKETS


def _file_bucket_of(record_id: str, buckets: int) -> int:
    return int.from_bytes(_record_hash(record_id)[8:16], "big") % buckets


def file_buckets(rows: int, max_rows_per_file: int) -> int:
    """How many file buckets a shard of ``rows`` rows is hashed into (each about 90% of the cap at most)."""
    if rows < 0 or max_rows_per_file < 1:
        raise ValueError(f"rows {rows!r} must be >= 0 and max_rows_per_file {max_rows_per_file!r} >= 1")
    target = max(1, int(max_rows_per_file * _BUCKET_FILL))
    return max(1, -(-rows // target))


def split_into_files(dataset: str, keys: list[tuple], max_rows_per_file: int) -> list[list[tuple]]:
    """Sorted row keys cut into files of at most ``max_rows_per_file`` rows, never inside a record.

    A record is ``(tenant_id, record_id)`` where the dataset's row key starts with them (a chat's
    messages share one), else the row itself. A record with more rows than the cap is a file alone.
    """
    width = 2 if ROW_KEY[dataset][:2] == ("tenant_id", "record_id") else len(ROW_KEY[dataset])
    files: list[list[tuple]] = []
    current: list[tuple] = []
    record: list[tuple] = []
    for key in keys:
        if record and key[:width] != record[0][:width]:
            if current and len(current) + len(record) > max_rows_per_file:
                files.append(current)
                current = []
            current.extend(record)
            record = []
        record.append(key)
    if record:
        if current and len(current) + len(record) > max_rows_per_file:
            files.append(current)
            current = []
        current.extend(record)
    if current:
        files.append(current)
    return files


def _key_by_size_bucket(row: OutputRow, shards: int):
    return (row.region, row.dataset, row.dt, _shard_of(row.record_id, shards), _size_bucket_of(row.record_id)), row


def _size_per_bucket(element):
    """((partition, shard), [(size bucket, rows)]) -> ((partition, shard, size bucket), rows of the shard)."""
    shard, counts = element
    counts = list(counts)
    total = sum(n for _, n in counts)
    for bucket, _ in counts:
        yield (*shard, bucket), total


def _key_by_file_bucket(element, max_rows_per_file: int):
    """A size bucket's rows, each keyed by its file bucket (from the size of its shard)."""
    (region, dataset, dt, shard, _bucket), joined = element
    sizes = list(joined["size"])
    if len(sizes) != 1:  # every size bucket with rows has exactly one size: anything else is a bug
        raise RuntimeError(f"a size bucket of dataset {dataset} has {len(sizes)} shard sizes, expected 1")
    buckets = file_buckets(sizes[0], max_rows_per_file)
    for row in joined["rows"]:
        yield (region, dataset, dt, shard, _file_bucket_of(row.record_id, buckets)), row


def _row_key(dataset: str, values: dict) -> tuple:
    return tuple(str(values.get(k)) for k in ROW_KEY[dataset])


def write_atomically(final: str, data: bytes) -> None:
    """Write ``data`` to ``final`` through a temporary file and a rename: never a partial file under its name.

    The temporary name (``.tmp-<uuid>.inprogress``) is hidden and does not end in ``.parquet``, so no
    reader takes it for a part file: not ``read_parquet('**/*.parquet')`` (DuckDB matches hidden files),
    not pyarrow datasets or Spark (they skip ``.``-prefixed names), not the streaming writer's look-up of
    what a partition holds (``part-*.parquet``). A failed write (ENOSPC, ...) deletes its temporary file
    and raises; a killed worker may leave one behind, hidden (the next run writes the final file anew).
    """
    temp = FileSystems.join(FileSystems.split(final)[0], f".tmp-{uuid.uuid4().hex}.inprogress")
    try:
        with FileSystems.create(temp, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write(data)
        try:
            FileSystems.rename([temp], [final])  # replaces an existing file atomically (POSIX rename, object stores)
        except Exception:  # noqa: BLE001 - file systems whose rename refuses an existing destination (HDFS)
            if not FileSystems.exists(final):
                raise
            FileSystems.delete([final])
            FileSystems.rename([temp], [final])
    except BaseException:
        try:
            if FileSystems.exists(temp):
                FileSystems.delete([temp])
        except Exception:  # noqa: BLE001 - keep the original error; the hidden file is harmless
            _LOG.warning("could not delete the temporary file %s", temp)
        raise


class _WriteParquetFn(beam.DoFn):
    def __init__(self, sinks: SinkConfig) -> None:
        self._sinks = sinks
        self._rows = Metrics.counter("ccpipe.write", "rows")
        self._files = Metrics.counter("ccpipe.write", "files")
        self._duplicates = Metrics.counter("ccpipe.write", "duplicate_rows")
        self._already_written = Metrics.counter("ccpipe.write", "rows_already_written")
        self._over_cap = Metrics.counter("ccpipe.write", "files_over_row_cap")
        self._group_rows = Metrics.distribution("ccpipe.write", "rows_per_group")  # what a worker holds at once
        self._progress = Progress("written rows")
        self._known: dict[str, tuple[set[tuple], set[str]]] = {}

    def _existing_keys(self, folder: str, dataset: str) -> set[tuple]:
        """Row keys already in a partition (streaming: records replayed after a restart).

        Reads each file of the partition once per worker: later calls read only new files.
        """
        keys, seen = self._known.setdefault(folder, (set(), set()))
        pattern = FileSystems.join(folder, "part-*.parquet")
        try:
            matches = FileSystems.match([pattern])[0].metadata_list
        except Exception:  # noqa: BLE001 - Beam raises when the folder does not exist yet
            matches = []
        for match in matches:
            if match.path in seen:
                continue
            with FileSystems.open(match.path) as handle:
                table = pq.read_table(io.BytesIO(handle.read()), columns=list(ROW_KEY[dataset]))
            keys.update(_row_key(dataset, v) for v in table.to_pylist())
            seen.add(match.path)
        return keys

    def process(self, element, window=beam.DoFn.WindowParam):
        (region, dataset, dt, shard, _bucket), rows = element
        streaming = self._sinks.streaming
        folder = partition_dir(self._sinks.root(region), region, dataset, dt)
        unique: dict[tuple, dict] = {}
        sources: set[str] = set()
        for row in rows:  # consumed once, as it comes: only the unique rows are kept
            if streaming and row.source:
                sources.add(row.source)
            key = _row_key(dataset, row.values)
            if key in unique:  # same key twice in one group can only be the same record re-delivered
                self._duplicates.inc()
                continue
            unique[key] = row.values
        self._group_rows.update(len(unique))
        group_sources = tuple(sorted(sources))
        if streaming and dataset != DATASET_USAGE:
            already = self._existing_keys(folder, dataset) & set(unique)
            for key in already:
                del unique[key]
            self._already_written.inc(len(already))
            if not unique:
                yield WriteResult(region=region, dataset=dataset, path="", rows=0, records=0, sources=group_sources)
                return
        window_part = ""
        if streaming and isinstance(window, beam.window.IntervalWindow):
            window_part = f"w{int(window.end.micros // 1000)}-"
        results = [
            self._write_file(region, dataset, folder, f"part-{shard:05d}-{window_part}", keys, unique)
            for keys in split_into_files(dataset, sorted(unique), self._sinks.max_rows_per_file)
        ]
        # The sources of the whole group, once every file of it is written (streaming commits on them).
        results[-1] = dataclasses.replace(results[-1], sources=group_sources)
        yield from results

    def _write_file(self, region: str, dataset: str, folder: str, prefix: str, keys: list[tuple],
                    unique: dict[tuple, dict]) -> WriteResult:
        digest = hashlib.sha256("\n".join("\t".join(k) for k in keys).encode()).hexdigest()[:20]
        schema = OUTPUT_SCHEMAS[dataset]
        buffer = io.BytesIO()
        with pq.ParquetWriter(buffer, schema, compression="zstd") as writer:
            for start in range(0, len(keys), _ROW_GROUP_ROWS):
                part = keys[start:start + _ROW_GROUP_ROWS]
                writer.write_table(pa.Table.from_pylist([unique[k] for k in part], schema=schema))
        final = FileSystems.join(folder, f"{prefix}{digest}.parquet")
        write_atomically(final, buffer.getvalue())
        if self._sinks.streaming and dataset != DATASET_USAGE:
            # This worker knows what it just wrote: record it instead of reading the file back later.
            known_keys, seen = self._known.setdefault(folder, (set(), set()))
            known_keys.update(keys)
            seen.add(final)
        self._rows.inc(len(keys))
        self._files.inc()
        if len(keys) > self._sinks.max_rows_per_file:
            self._over_cap.inc()
        _LOG.debug("wrote %d rows to region=%s dataset=%s", len(keys), region, dataset)
        self._progress.add(dataset, len(keys))

        reasons: dict[str, int] = {}
        keys_used: set[str] = set()
        records: set[tuple[str, str]] = set()
        for key in keys:
            v = unique[key]
            if dataset == DATASET_DEADLETTER:
                reasons[v["reason"]] = reasons.get(v["reason"], 0) + 1
                keys_used.add(v["key_id"])
            elif dataset not in DERIVED_DATASETS:
                keys_used.add(f"{v['tenant_id']}/content/v{v['key_version']}")
                records.add((v["tenant_id"], v["record_id"]))
        return WriteResult(
            region=region,
            dataset=dataset,
            path=final,
            rows=len(keys),
            records=len(records),
            reasons=tuple(sorted(reasons.items())),
            keys_used=tuple(sorted(keys_used)),
        )


def _read_keys(path: str, dataset: str) -> list[tuple]:
    """The row keys of one Parquet file (its key columns only)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        table = pq.read_table(io.BytesIO(handle.read()), columns=list(ROW_KEY[dataset]))
    return [_row_key(dataset, v) for v in table.to_pylist()]


class _RemoveStaleFilesFn(beam.DoFn):
    """A partition's WriteResults, passed on after its stale batch files are removed (see the module doc)."""

    def __init__(self, sinks: SinkConfig) -> None:
        self._sinks = sinks
        self._removed = Metrics.counter("ccpipe.write", "stale_files_removed")
        self._kept = Metrics.counter("ccpipe.write", "stale_files_kept")

    def process(self, element):
        folder, results = element
        results = list(results)
        own: dict[str, int | None] = {}  # this run's file names in the partition -> shard
        for result in results:
            name = FileSystems.split(result.path)[1]
            match = _BATCH_PART.fullmatch(name)
            own[name] = int(match.group(1)) if match else None
        try:
            listed = FileSystems.match([FileSystems.join(folder, "part-*.parquet")])[0].metadata_list
        except Exception:  # noqa: BLE001 - Beam raises when nothing matches
            listed = []
        candidates = sorted(
            m.path for m in listed
            if _BATCH_PART.fullmatch(FileSystems.split(m.path)[1]) and FileSystems.split(m.path)[1] not in own
        )
        if candidates:
            dataset = results[0].dataset
            own_paths = {name: FileSystems.join(folder, name) for name in own}
            removed, kept = self._remove_stale(dataset, candidates, own, own_paths)
            _LOG.info("partition %s: removed %d stale files, kept %d holding rows this run does not write",
                      folder, removed, kept)
        yield from results

    def _remove_stale(self, dataset: str, candidates: list[str], own: dict[str, int | None],
                      own_paths: dict[str, str]) -> tuple[int, int]:
        removed = kept = 0
        pending: list[tuple[str, set[tuple]]] = []
        held = 0
        for index, path in enumerate(candidates):
            try:
                keys = set(_read_keys(path, dataset))
            except Exception:  # noqa: BLE001 - a file that cannot be read is never removed
                _LOG.warning("kept %s: its row keys could not be read", path)
                kept += 1
                self._kept.inc()
                keys = None
            if keys is not None:
                pending.append((path, keys))
                held += len(keys)
            if pending and (held >= _STALE_CHECK_KEYS or index == len(candidates) - 1):
                r, k = self._check(dataset, pending, own, own_paths)
                removed, kept = removed + r, kept + k
                pending, held = [], 0
        return removed, kept

    def _check(self, dataset: str, pending: list[tuple[str, set[tuple]]], own: dict[str, int | None],
               own_paths: dict[str, str]) -> tuple[int, int]:
        """Remove the pending files whose every row key is in one of this run's files of the partition."""
        missing: set[tuple] = set().union(*(keys for _, keys in pending))
        key_columns = ROW_KEY[dataset]
        names = sorted(own)
        if "record_id" in key_columns and None not in own.values():
            # Only this run's files of the shards the keys hash to can hold them (pruning only ever keeps more).
            at = key_columns.index("record_id")
            shards = {_shard_of(key[at], self._sinks.shards) for key in missing}
            names = [name for name in names if own[name] in shards]
        for name in names:
            if not missing:
                break
            missing.difference_update(_read_keys(own_paths[name], dataset))
        removed = kept = 0
        for path, keys in pending:
            if not keys.isdisjoint(missing):
                kept += 1
                self._kept.inc()
                continue
            try:
                FileSystems.delete([path])
            except Exception:  # noqa: BLE001 - already gone (a retried bundle) is fine
                if FileSystems.exists(path):
                    raise
            removed += 1
            self._removed.inc()
        return removed, kept


class WriteRegionalParquet(beam.PTransform[PCollection[OutputRow], PCollection[WriteResult]]):
    """Write rows to their region's sink: files of at most ``max_rows_per_file`` rows per partition shard."""

    def __init__(self, sinks: SinkConfig) -> None:
        """``sinks``: roots, shard count, row cap per file, streaming or batch."""
        super().__init__()
        self._sinks = sinks

    def expand(self, rows: PCollection[OutputRow]) -> PCollection[WriteResult]:
        """One WriteResult per file written (streaming: also one without a file for a shard already written).

        Batch: the WriteResults of a partition come out once all its files are written and its stale
        files (a previous run's, cut with other settings) are removed.
        """
        shards, max_rows = self._sinks.shards, self._sinks.max_rows_per_file
        if self._sinks.streaming:
            # A window's rows of one shard: bounded by the window, cut into files by the cap.
            grouped = (
                rows
                | "KeyByShard" >> beam.Map(
                    lambda r: ((r.region, r.dataset, r.dt, _shard_of(r.record_id, shards), 0), r)
                )
                | "GroupByShard" >> beam.GroupByKey()
            )
        else:
            keyed = rows | "KeyBySizeBucket" >> beam.Map(_key_by_size_bucket, shards=shards)
            sizes = (
                keyed
                | "OnePerRow" >> beam.Map(lambda kv: (kv[0], 1))
                | "CountPerSizeBucket" >> beam.CombinePerKey(sum)
                | "KeyByShard" >> beam.Map(lambda kv: (kv[0][:4], (kv[0][4], kv[1])))
                | "GroupSizesByShard" >> beam.GroupByKey()
                | "SizeOfShard" >> beam.FlatMap(_size_per_bucket)
            )
            grouped = (
                {"rows": keyed, "size": sizes}
                | "JoinShardSize" >> beam.CoGroupByKey()
                | "KeyByFileBucket" >> beam.FlatMap(_key_by_file_bucket, max_rows_per_file=max_rows)
                | "GroupByFileBucket" >> beam.GroupByKey()
            )
        written = grouped | "WriteFiles" >> beam.ParDo(_WriteParquetFn(self._sinks))
        if self._sinks.streaming:
            return written
        return (
            written
            | "KeyByPartition" >> beam.Map(lambda r: (FileSystems.split(r.path)[0], r))
            | "GroupByPartition" >> beam.GroupByKey()
            | "RemoveStaleFiles" >> beam.ParDo(_RemoveStaleFilesFn(self._sinks))
        )
