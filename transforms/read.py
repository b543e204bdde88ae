"""ReadInputs: newline-delimited JSON (optionally gzip) and Parquet files as raw input lines.

Lines are read as bytes so that invalid UTF-8 reaches the dead-letter output instead of failing
the read. Parquet rows are re-encoded as JSON and validated like any other line.
"""

import datetime as _dt
import decimal
import json
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from ccpipe.errors import ConfigError
from ccpipe.types import RawInput


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


def _parquet_row_to_raw(row: dict[str, Any], source: str) -> RawInput:
    """A Parquet row as a JSON line; any row becomes a line (bad ones are dead-lettered downstream)."""
    try:
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


class ReadInputs(beam.PTransform[beam.pvalue.PBegin, Inputs]):
    """Read every input path or glob; ``*.parquet`` as Parquet, anything else as JSON lines."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        """``paths``: file paths or globs (any Beam filesystem)."""
        super().__init__()
        if not paths:
            raise ConfigError("paths must name at least one input file or glob")
        self._paths = tuple(paths)

    def expand(self, pbegin: beam.pvalue.PBegin):  # -> Inputs
        """One RawInput per line or row."""
        parts = []
        for i, path in enumerate(self._paths):
            if path.endswith(".parquet"):
                parts.append(
                    pbegin
                    | f"ReadParquet{i}" >> beam.io.ReadFromParquet(path)
                    | f"ParquetToRaw{i}" >> beam.Map(_parquet_row_to_raw, source=path)
                )
            else:
                parts.append(
                    pbegin
                    | f"ReadJsonLines{i}" >> beam.io.ReadFromTextWithFilename(path, coder=BytesCoder())
                    | f"LinesToRaw{i}" >> beam.MapTuple(lambda src, data: RawInput(source=src, data=data))
                )
        everything = parts | "FlattenInputs" >> beam.Flatten()
        split = everything | "SplitBlank" >> beam.Partition(lambda raw, _n: 1 if is_blank(raw) else 0, 2)
        blank = split[1] | "BlankSource" >> beam.Map(lambda raw: raw.source)
        return Inputs(lines=split[0], blank_lines=blank)
