"""Where a run's report reads from and writes to, through Beam's file systems (local or any URI).

Reads: the manifest (``<root>/_manifests/<run_id>.json``), the Beam metrics saved by the batch run
(``<root>/_reports/<run_id>.metrics.json``) and the run's Parquet part files: those the manifest
lists relative to the output root are read under ``<root>``, the root the report is asked about
(a copy of the output reads its own files), those it lists by full path or URI (other sink roots)
where the run wrote them; a listed file that no longer exists is counted, not read. Writes: the
report and its JSON twin under ``<root>/_reports/``, each through a hidden temporary file and a rename
(``transforms.write.write_atomically``).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ccpipe.errors import CcpipeError
from transforms.manifest import manifest_path

_PART = re.compile(r"region=([^/\\]+)[/\\]dataset=([^/\\]+)[/\\][^/\\]+[/\\]part-[^/\\]+\.parquet$")


class ReportError(CcpipeError):
    """A run's report cannot be built: its manifest is missing or unreadable, or a file cannot be read."""


@dataclass(frozen=True)
class ReportPaths:
    """Where a run's report was written: the HTML page and its JSON twin."""

    html: str
    json: str


@dataclass(frozen=True)
class RunFile:
    """One Parquet part file of a run."""

    region: str
    dataset: str
    path: str


@dataclass(frozen=True)
class RunFiles:
    """The run's part files, and how they were told apart from other runs' (stated in the report).

    ``missing``: files the manifest lists that no longer exist (retention, DSAR deletion).
    """

    files: tuple[RunFile, ...]
    method: str
    missing: int = 0

    def of(self, dataset: str) -> list[RunFile]:
        """The files of one dataset, in path order."""
        return [f for f in self.files if f.dataset == dataset]


def report_paths(root: str, run_id: str) -> ReportPaths:
    """``<root>/_reports/<run_id>.html`` and ``.json``."""
    return ReportPaths(
        html=FileSystems.join(root, "_reports", f"{run_id}.html"),
        json=FileSystems.join(root, "_reports", f"{run_id}.json"),
    )


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:  # noqa: BLE001 - a file system that cannot tell: treat as absent
        return False


def _mtime(path: str) -> float | None:
    try:
        found = FileSystems.match([path])[0].metadata_list
    except Exception:  # noqa: BLE001 - Beam raises when nothing matches
        return None
    return found[0].last_updated_in_seconds if found else None


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON object file, or None when the file does not exist; ReportError when it is not JSON."""
    if not _exists(path):
        return None
    try:
        with FileSystems.open(path) as handle:
            data = json.loads(handle.read())
    except (OSError, ValueError) as err:
        raise ReportError(f"{path} is not readable as JSON: {type(err).__name__}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def load_manifest(root: str, run_id: str) -> dict[str, Any]:
    """The run's manifest; ReportError naming the path when there is none."""
    if not run_id or "/" in run_id or "\\" in run_id:
        raise ReportError(f"run_id {run_id!r} must be a non-empty name without '/'")
    path = manifest_path(root, run_id)
    manifest = read_json(path)
    if manifest is None:
        raise ReportError(f"no manifest for run {run_id!r} at {path}: was the run written to --output {root}?")
    for key in ("run_id", "records_read", "records_written", "records_dead_lettered"):
        if key not in manifest:
            raise ReportError(f"manifest {path} has no {key!r}: not a run manifest")
    return manifest


def _part_file(path: str, listed: str | None = None) -> RunFile | None:
    """The part file at ``path``; region and dataset from ``listed`` (the manifest's entry) when given."""
    m = _PART.search(listed if listed is not None else path)
    return RunFile(m.group(1), m.group(2), path) if m else None


def _is_absolute(path: str) -> bool:
    return "://" in path or os.path.isabs(path)


def resolve_listed(root: str, entry: str) -> str:
    """A ``files`` entry of the manifest as a path: relative ones under ``root``, full ones as listed."""
    if _is_absolute(entry):
        return entry
    return FileSystems.join(root, *[part for part in entry.split("/") if part])


def _under(root: str, path: str) -> bool:
    if "://" in root or "://" in path:
        return path.startswith(root.rstrip("/") + "/")
    base = os.path.abspath(root)
    return os.path.commonpath([base, os.path.abspath(path)]) == base


def _listed_files(root: str, listed: list[Any]) -> RunFiles:
    found: list[RunFile] = []
    missing = elsewhere = 0
    for entry in listed:
        part = _part_file(resolve_listed(root, str(entry)), str(entry))
        if part is None:
            continue
        try:
            present = FileSystems.exists(part.path)
        except Exception as err:  # noqa: BLE001 - a file system that cannot tell: not the same as "gone"
            raise ReportError(f"cannot tell whether the part file {part.path} exists: {type(err).__name__}") from None
        if not present:
            missing += 1
            continue
        found.append(part)
        elsewhere += not _under(root, part.path)
    method = "listed by the manifest"
    if elsewhere:
        method += f" ({elsewhere} under other sink roots, read where the run wrote them)"
    return RunFiles(tuple(sorted(found, key=lambda f: f.path)), method, missing)


def _parse_time(text: str) -> float | None:
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return None


def run_files(root: str, run_id: str, manifest: dict[str, Any]) -> RunFiles:
    """The part files the run wrote.

    Exact when the manifest lists them (``files``: relative entries under ``root``, full paths and
    URIs as listed; files gone since are counted in ``missing``); otherwise the part files under the default root
    last written between the run's start and its manifest (a later run that rewrote the same files
    takes them), or, for a manifest without a start time, every part file under the root.
    """
    listed = manifest.get("files")
    if isinstance(listed, list):
        return _listed_files(root, listed)
    pattern = FileSystems.join(root, "region=*", "dataset=*", "*", "part-*.parquet")
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001 - Beam raises when nothing matches
        matches = []
    started = _parse_time(str(manifest.get("started_at", "")))
    ended = _mtime(manifest_path(root, run_id))
    if started is None or ended is None:
        chosen = matches
        method = "every part file under the output root (the manifest records no start time)"
    else:
        chosen = [m for m in matches if started - 1 <= m.last_updated_in_seconds <= ended + 1]
        method = ("part files under the output root written between the run's start and its manifest "
                  "(the manifest lists no files)")
    found = [_part_file(m.path) for m in chosen]
    return RunFiles(tuple(sorted((f for f in found if f), key=lambda f: f.path)), method)


def read_table(path: str, columns: list[str]) -> pa.Table:
    """Some columns of one Parquet file (those it has); ReportError naming the file when unreadable."""
    try:
        with FileSystems.open(path) as handle:
            data = handle.read()
        parquet = pq.ParquetFile(io.BytesIO(data))
        present = [c for c in columns if c in parquet.schema_arrow.names]
        return parquet.read(columns=present)
    except (OSError, pa.ArrowException) as err:
        raise ReportError(f"cannot read the part file {path}: {type(err).__name__}") from None
