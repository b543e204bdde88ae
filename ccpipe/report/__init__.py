"""The run report: ``<root>/_reports/<run_id>.html`` for people and ``<run_id>.json`` for machines.

Built from what a batch run leaves beside its data: the manifest, the Beam metrics it saved, and its
Parquet files (the dead letters' step and reason, the findings columns, a sample of the redacted text
for the residual-PII check). Counts only: no payload value ever reaches either file.

Usage::

    paths = write_run_report("out", "20260301T120000Z-ab12cd", sample_rows=200)
    print(paths.html)
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ccpipe.report import model, render
from ccpipe.report.files import (
    ReportError,
    ReportPaths,
    RunFiles,
    load_manifest,
    read_json,
    read_table,
    report_paths,
    run_files,
)
from ccpipe.report.residual import (
    DEFAULT_SAMPLE_ROWS,
    PresidioDetector,
    ResidualConfig,
    checked_datasets,
    count_residual,
    pick_sample,
    redacted_columns,
    row_digest,
)
from ccpipe.schemas import OUTPUT_SCHEMAS, ROW_KEY
from ccpipe.types import DATASET_DEADLETTER
from transforms.manifest import metrics_path
from transforms.write import write_atomically

__all__ = ["DEFAULT_SAMPLE_ROWS", "ReportError", "ReportPaths", "ResidualConfig", "build_run_report",
           "report_paths", "write_run_report"]


def findings_columns(dataset: str) -> dict[str, str]:
    """The findings columns of a dataset and the free-text field each belongs to."""
    schema = OUTPUT_SCHEMAS.get(dataset)
    if schema is None:
        return {}
    out = {}
    for f in schema:
        if f.name == "pii_entities":
            out[f.name] = "text"
        elif f.name.endswith("_pii_entities"):
            out[f.name] = f.name[: -len("_pii_entities")]
    return out


def dead_letter_steps(files: RunFiles) -> list[tuple[str, str, int]]:
    """``(step, reason, n)`` over the run's dead-letter files (plain-text columns; the payload stays sealed)."""
    counts: Counter[tuple[str, str]] = Counter()
    for f in files.of(DATASET_DEADLETTER):
        table = read_table(f.path, ["step", "reason"])
        counts.update(zip(table.column("step").to_pylist(), table.column("reason").to_pylist(), strict=True))
    return [(step, reason, n) for (step, reason), n in sorted(counts.items())]


def findings_by_field(files: RunFiles) -> dict[str, dict[str, int]]:
    """Findings per ``dataset.field`` per entity type, from the findings columns of the run's files."""
    out: dict[str, dict[str, int]] = {}
    for dataset in sorted({f.dataset for f in files.files}):
        columns = findings_columns(dataset)
        if not columns:
            continue
        for f in files.of(dataset):
            table = read_table(f.path, list(columns))
            for column in table.column_names:
                flat = pc.list_flatten(table.column(column))
                if len(flat) == 0:
                    continue
                types = pc.struct_field(flat, "entity_type")
                per = out.setdefault(f"{dataset}.{columns[column]}", {})
                for item in pc.value_counts(types).to_pylist():
                    per[item["values"]] = per.get(item["values"], 0) + item["counts"]
    return out


def _sample(files: RunFiles, dataset: str, n: int) -> tuple[int, dict[str, list[str]]]:
    """Rows in the run, and the sampled rows' redacted texts per column (non-empty ones only)."""
    keys = list(ROW_KEY[dataset])
    digests: list[tuple[str, tuple[int, int]]] = []
    paths = [f.path for f in files.of(dataset)]
    for i, path in enumerate(paths):
        for j, row in enumerate(read_table(path, keys).to_pylist()):
            digests.append((row_digest(dataset, row), (i, j)))
    chosen = pick_sample(digests, n)
    by_file: dict[int, list[int]] = {}
    for i, j in chosen:
        by_file.setdefault(i, []).append(j)
    columns = list(redacted_columns(dataset))
    texts: dict[str, list[str]] = {c: [] for c in columns}
    for i in sorted(by_file):
        table = read_table(paths[i], columns).take(pa.array(sorted(by_file[i]), pa.int64()))
        for column in table.column_names:
            texts[column].extend(t for t in table.column(column).to_pylist() if t)
    return len(digests), texts


def check_residual(files: RunFiles, config: ResidualConfig, detector: Any = None) -> dict[str, Any]:
    """The residual-PII check over a deterministic sample of each dataset's redacted columns.

    ``detector`` (anything with ``detect(texts)``) defaults to a PresidioDetector, loaded only when
    there is text to check.
    """
    result: dict[str, Any] = {"config": config.describe(), "by_dataset": {}, "by_entity_type": {}, "total": 0}
    if config.sample_rows == 0:
        result["skipped"] = "sample_rows is 0: the check was turned off"
        return result
    totals: dict[str, int] = {}
    for dataset in checked_datasets():
        if not files.of(dataset):
            continue
        rows, texts = _sample(files, dataset, config.sample_rows)
        entry: dict[str, Any] = {"rows_in_run": rows, "rows_sampled": min(rows, config.sample_rows), "columns": {}}
        for column, values in texts.items():
            if values and detector is None:
                detector = PresidioDetector(config)
            counts = count_residual(values, detector) if values else {}
            entry["columns"][column] = {"texts_checked": len(values), "by_entity_type": counts}
            for entity_type, n in counts.items():
                totals[entity_type] = totals.get(entity_type, 0) + n
        result["by_dataset"][dataset] = entry
    result["by_entity_type"] = dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))
    result["total"] = sum(totals.values())
    return result


def build_run_report(root: str, run_id: str, config: ResidualConfig | None = None,
                     detector: Any = None) -> dict[str, Any]:
    """The report of run ``run_id`` under the output root ``root``, as data (the JSON twin)."""
    config = config or ResidualConfig()
    manifest = load_manifest(root, run_id)
    metrics = read_json(metrics_path(root, run_id))
    files = run_files(root, run_id, manifest)
    return model.build(
        manifest,
        metrics,
        {"method": files.method, "count": len(files.files), "missing": files.missing},
        dead_letter_steps(files),
        findings_by_field(files),
        check_residual(files, config, detector),
    )


def to_json(report: dict[str, Any]) -> str:
    """The JSON twin: stable, indented."""
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_run_report(root: str, run_id: str, sample_rows: int = DEFAULT_SAMPLE_ROWS, *,
                     config: ResidualConfig | None = None, detector: Any = None) -> ReportPaths:
    """Build the report of ``run_id`` and write its HTML page and JSON twin under ``<root>/_reports/``.

    ``sample_rows``: rows per dataset for the residual-PII check (0 turns it off); ``config``
    overrides the whole residual configuration. Raises ReportError when the run has no manifest.
    """
    config = config or ResidualConfig(sample_rows=sample_rows)
    report = build_run_report(root, run_id, config, detector)
    paths = report_paths(root, run_id)
    write_atomically(paths.json, to_json(report).encode("utf-8"))
    write_atomically(paths.html, render.to_html(report).encode("utf-8"))
    return paths
