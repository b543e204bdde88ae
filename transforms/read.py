"""ReadInputs: newline-delimited JSON (optionally gzip) and Parquet files as raw input lines.

Lines are read as bytes so that invalid UTF-8 reaches the dead-letter output instead of failing
the read. Parquet rows are re-encoded as JSON and validated like any other line.

The inputs are listed and split into byte ranges when the pipeline is built (Beam's own text and
Parquet sources do the splitting and the reading, with ReadFromText's line rules), and the ranges go
through ``beam.Create``: Beam's DaskRunner translates neither ``Read`` nor splittable DoFns, and a
``Create`` of ranges is what it spreads over Dask partitions (one range per partition with
``pipelines.batch.pipeline_options``; the partition count then holds through every GroupByKey up to the
writer, so a run keeps at most as many Dask workers busy as it has ranges). Every file
must therefore be visible from where the pipeline is built (a shared or object-store path for a
cluster), as ReadFromText's validation already required.
"""

import datetime as _dt
import decimal
import json
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from ccpipe.deadletter import MAX_NESTING
from ccpipe.errors import ConfigError
from ccpipe.types import RawInput
from transforms.route import SideOutput, SplitTagged

BLANK = "blank_lines"
SPLIT_BYTES = 64 * 1024 * 1024  # as Beam's ReadAllFiles: large files are read as several ranges


class Inputs(NamedTuple):
    """The input lines and the count of blank lines skipped per source file."""

    lines: PCollection
    blank_lines: PCollection


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return float(value)  # a Parquet decimal column holds numbers
    # Decimal, timedelta and anything else a Parquet column can hold: as text, which validation then
    # accepts or dead-letters with a named reason (never an exception that fails the read).
    return str(value)


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than ``limit`` deep (iteratively: the call stack never decides)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list | tuple) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _parquet_row_to_raw(row: dict[str, Any], source: str) -> RawInput:
    """A Parquet row as a JSON line; any row becomes a line (bad ones are dead-lettered downstream).

    A row nested deeper than the parser accepts becomes the unencodable-row line on every runner, rather
    than whatever ``json.dumps`` makes of it at the stack depth of the moment.
    """
    try:
        if _nests_deeper(row, MAX_NESTING):
            raise ValueError("nested too deeply")
        data = json.dumps(row, default=_json_default, allow_nan=True)
    except (ValueError, TypeError, RecursionError):
        data = json.dumps({"_unencodable_row": True})
    return RawInput(source=source, data=data.encode("utf-8", errors="surrogatepass"))


_BLANK = Metrics.counter("ccpipe.read", "blank_lines")


def is_blank(raw: RawInput) -> bool:
    """Whether a line is empty or white space (not a record; counted, not processed)."""
    if raw.data.strip():
        return False
    _BLANK.inc()
    return True


def _splits(path: str, split_bytes: int) -> list[tuple[Any, Any, Any, str]]:
    """(source, start, stop, parquet label) of every byte range of the files a path or glob names.

    ConfigError when the path or glob matches no file. The label is the path as given for
    Parquet rows (their ``source``) and empty for text, whose lines carry the file's name.
    """
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.match([path])[0].metadata_list:
        raise ConfigError(f"input {path!r} matches no file")
    if path.endswith(".parquet"):
        source, label = beam.io.ReadFromParquetBatched(path)._source, path
    else:
        source, label = beam.io.ReadFromTextWithFilename(path, coder=BytesCoder())._source, ""
    return [(b.source, b.start_position, b.stop_position, label) for b in source.split(split_bytes)]


class _ReadRangeFn(beam.DoFn):
    """Read one byte range of one file; blank lines go out as their source's name, tagged BLANK."""

    def __init__(self) -> None:
        self._lines = Metrics.counter("ccpipe.read", "lines")

    def process(self, split):
        source, start, stop, label = split
        for item in source.read(source.get_range_tracker(start, stop)):
            if label:  # a Parquet row group (a pyarrow Table)
                raws = [_parquet_row_to_raw(row, label) for row in item.to_pylist()]
            else:
                raws = [RawInput(source=item[0], data=item[1])]
            for raw in raws:
                if is_blank(raw):
                    yield SideOutput(BLANK, raw.source)
                else:
                    self._lines.inc()
                    yield raw


class ReadInputs(beam.PTransform[beam.pvalue.PBegin, Inputs]):
    """Read every input path or glob; ``*.parquet`` as Parquet, anything else as JSON lines."""

    def __init__(self, paths: tuple[str, ...], split_bytes: int = SPLIT_BYTES) -> None:
        """``paths``: file paths or globs (any Beam filesystem); ``split_bytes``: the size of a read range."""
        super().__init__()
        if not paths:
            raise ConfigError("paths must name at least one input file or glob")
        if split_bytes < 1024:
            raise ConfigError(f"split_bytes {split_bytes!r} must be at least 1024")
        self._paths = tuple(paths)
        self._split_bytes = split_bytes

    def expand(self, pbegin: beam.pvalue.PBegin):  # -> Inputs
        """One RawInput per line or row; the source of every blank line."""
        splits = [split for path in self._paths for split in _splits(path, self._split_bytes)]
        out = (
            pbegin
            | "ListRanges" >> beam.Create(splits)
            | "ReadRanges" >> beam.ParDo(_ReadRangeFn())
            | "SplitBlank" >> SplitTagged((BLANK,), main="lines")
        )
        return Inputs(lines=out["lines"], blank_lines=out[BLANK])
