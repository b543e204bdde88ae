"""WriteRegionalParquet: Hive-partitioned Parquet per region, idempotent by (tenant id, record id).

Rows are grouped by ``(region, dataset, dt, shard)``, where the shard is a hash of the record id,
so all rows of a record land in one file. Each group becomes one file::

    <root>/region=<code>/dataset=<name>/dt=<YYYY-MM-DD>/part-<shard>-<digest>.parquet

``digest`` is a hash of the group's sorted row keys: re-running the same input writes the same
file names again (replacing them) instead of adding duplicates. Files are written under a hidden
temporary name that no reader takes for a part file (``.tmp-<uuid>.inprogress``) and renamed, so
readers never see a partial file.
"""

import hashlib
import io
import logging
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


def _shard_of(record_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:4], "big") % shards


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
        (region, dataset, dt, shard), rows = element
        rows = list(rows)
        sources = tuple(sorted({r.source for r in rows if r.source})) if self._sinks.streaming else ()
        folder = partition_dir(self._sinks.root(region), region, dataset, dt)
        unique: dict[tuple, dict] = {}
        for row in rows:
            # Same key twice in one group can only be the same record re-delivered: keep one.
            unique.setdefault(_row_key(dataset, row.values), row.values)
        if self._sinks.streaming and dataset != DATASET_USAGE:
            for key in self._existing_keys(folder, dataset) & set(unique):
                del unique[key]
            if not unique:
                yield WriteResult(region=region, dataset=dataset, path="", rows=0, records=0, sources=sources)
                return
        keys = sorted(unique)
        digest = hashlib.sha256("\n".join("\t".join(k) for k in keys).encode()).hexdigest()[:20]
        schema = OUTPUT_SCHEMAS[dataset]
        table = pa.Table.from_pylist([unique[k] for k in keys], schema=schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        name = f"part-{shard:05d}-{digest}.parquet"
        if self._sinks.streaming and isinstance(window, beam.window.IntervalWindow):
            name = f"part-{shard:05d}-w{int(window.end.micros // 1000)}-{digest}.parquet"
        final = FileSystems.join(folder, name)
        write_atomically(final, buffer.getvalue())
        if self._sinks.streaming and dataset != DATASET_USAGE:
            # This worker knows what it just wrote: record it instead of reading the file back later.
            known_keys, seen = self._known.setdefault(folder, (set(), set()))
            known_keys.update(keys)
            seen.add(final)
        self._rows.inc(len(keys))
        self._files.inc()
        _LOG.debug("wrote %d rows to region=%s dataset=%s dt=%s", len(keys), region, dataset, dt)
        self._progress.add(dataset, len(keys))

        values = list(unique.values())
        reasons: dict[str, int] = {}
        keys_used: set[str] = set()
        if dataset == DATASET_DEADLETTER:
            for v in values:
                reasons[v["reason"]] = reasons.get(v["reason"], 0) + 1
                keys_used.add(v["key_id"])
        elif dataset not in DERIVED_DATASETS:
            keys_used.update(f"{v['tenant_id']}/content/v{v['key_version']}" for v in values)
        records = 0 if dataset in DERIVED_DATASETS else len({(v["tenant_id"], v["record_id"]) for v in values})
        yield WriteResult(
            region=region,
            dataset=dataset,
            path=final,
            rows=len(keys),
            records=records,
            reasons=tuple(sorted(reasons.items())),
            keys_used=tuple(sorted(keys_used)),
            sources=sources,
        )


class WriteRegionalParquet(beam.PTransform[PCollection[OutputRow], PCollection[WriteResult]]):
    """Write rows to their region's sink, one Parquet file per partition shard."""

    def __init__(self, sinks: SinkConfig) -> None:
        """``sinks``: roots and shard count."""
        super().__init__()
        self._sinks = sinks

    def expand(self, rows: PCollection[OutputRow]) -> PCollection[WriteResult]:
        """One WriteResult per file written."""
        shards = self._sinks.shards
        return (
            rows
            | "KeyByPartition" >> beam.Map(
                lambda r: ((r.region, r.dataset, r.dt, _shard_of(r.record_id, shards)), r)
            )
            | "GroupByPartition" >> beam.GroupByKey()
            | "WriteFiles" >> beam.ParDo(_WriteParquetFn(self._sinks))
        )
