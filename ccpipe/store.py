"""Read and rewrite the regional Parquet output in place (governance: retention, deletion, access).

Works on local sink roots (the embedded default). Files are replaced atomically (temporary file,
then rename); a file left without rows is removed, and so is a partition folder left empty.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


@dataclass(frozen=True)
class PartitionFile:
    """One Parquet file of the output and its Hive partition values."""

    path: Path
    region: str
    dataset: str
    dt: str


def partition_files(root: str | Path, dataset: str | None = None, region: str | None = None) -> Iterator[PartitionFile]:
    """Every output file under a root, optionally of one dataset or region, in path order."""
    root = Path(root)
    for path in sorted(root.glob("region=*/dataset=*/dt=*/*.parquet")):
        if path.name.startswith("."):
            continue
        parts = dict(p.split("=", 1) for p in path.relative_to(root).parts[:3])
        if (dataset and parts["dataset"] != dataset) or (region and parts["region"] != region):
            continue
        yield PartitionFile(path, parts["region"], parts["dataset"], parts["dt"])


def read(file: PartitionFile) -> pa.Table:
    """The file's rows."""
    return pq.read_table(file.path)


def rewrite_without(file: PartitionFile, drop: Callable[[pa.Table], pa.Array]) -> int:
    """Rewrite ``file`` without the rows where ``drop(table)`` is true; return how many were removed."""
    table = read(file)
    mask = drop(table)
    removed = int(pc.sum(mask).as_py() or 0)
    if removed == 0:
        return 0
    kept = table.filter(pc.invert(mask))
    if kept.num_rows == 0:
        delete_file(file.path)
        return removed
    temp = file.path.with_name(f".tmp-{uuid.uuid4().hex}.inprogress")
    pq.write_table(kept, temp, compression="zstd")
    os.replace(temp, file.path)
    return removed


def delete_file(path: Path) -> None:
    """Remove a file, and its partition folder when that becomes empty."""
    path.unlink()
    folder = path.parent
    if not any(folder.iterdir()):
        folder.rmdir()
