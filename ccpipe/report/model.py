"""The run report as data (the JSON twin): figures only, never a payload value.

``build`` is plain Python over what ccpipe.report gathered: the manifest, the saved Beam metrics,
the dead letters' (step, reason) columns, the findings columns and the residual check's counts.
Every figure says where it comes from; a figure nothing records is listed under ``not_recorded``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REPORT_VERSION = 1
# Beam's per-transform execution time (FnApiRunner monitoring infos), when the run saved it.
EXECUTION_TIME = "ptransform_execution_time:total_msecs"
# Composite stages whose sub-stages the report shows one by one.
SPLIT_STAGES = frozenset({"ProcessRecords"})


def stage_of(step: str) -> str:
    """The pipeline stage a Beam step belongs to: its top-level transform (ProcessRecords: its sub-stage)."""
    parts = [p for p in (step or "").split("/") if p]
    if not parts:
        return "(unnamed)"
    if parts[0] in SPLIT_STAGES and len(parts) > 1:
        return f"{parts[0]}/{parts[1]}"
    return parts[0]


def _counter(metrics: dict[str, Any] | None, namespace: str, name: str) -> int | None:
    """A counter summed over steps; None when the run saved no metrics.

    0 when the run saved metrics without it: Beam omits counters never incremented.
    """
    if metrics is None:
        return None
    return sum(c["value"] for c in metrics.get("counters", []) if c.get("namespace") == namespace
               and c.get("name") == name)


def stage_times(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """Milliseconds per stage from the saved metrics, and a plain statement of what they measure."""
    if metrics is None:
        return {"run_seconds": None, "msec_by_stage": {}, "source": "not recorded: the run saved no metrics file"}
    run_seconds = metrics.get("seconds")
    per: dict[str, int] = {}
    for c in metrics.get("counters", []):
        if EXECUTION_TIME in str(c.get("name", "")) and c.get("step"):
            stage = stage_of(c["step"])
            per[stage] = per.get(stage, 0) + int(c.get("value") or 0)
    if per:
        return {
            "run_seconds": run_seconds,
            "msec_by_stage": dict(sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))),
            "source": "Beam's per-transform execution time (process, start and finish bundle), summed per stage; "
                      "time in the runner itself (shuffles, scheduling) is not in any stage",
        }
    for d in metrics.get("distributions", []):
        if d.get("namespace") in ("BatchElements", "ccpipe.tag_pii") and d.get("name") == "msec_per_batch" \
                and d.get("step"):
            stage = stage_of(d["step"])
            per[stage] = per.get(stage, 0) + int(d.get("sum") or 0)
    if per:
        return {
            "run_seconds": run_seconds,
            "msec_by_stage": dict(sorted(per.items())),
            "source": "not recorded per stage: the runner saved no per-transform execution time. Shown: the wall "
                      "time Beam's BatchElements measured around each batch of "
                      + ", ".join(sorted(per)) + " (that stage and the steps fused after it in the same bundle), "
                      "and the whole run",
        }
    return {"run_seconds": run_seconds, "msec_by_stage": {},
            "source": "not recorded per stage: the runner saved no per-transform execution time; only the whole run"}


def missing_files_note(n: int) -> str:
    """What the report says of listed files that are gone."""
    return (f"{n} file{'s' if n != 1 else ''} listed by the manifest no longer exist{'s' if n == 1 else ''} "
            f"(retention, DSAR deletion); figures read from the files cover the rest")


def _key_purpose_version(key_id: str) -> str:
    parts = key_id.rsplit("/", 2)
    return f"{parts[1]} {parts[2]}" if len(parts) == 3 else "unparsed"


def build(
    manifest: dict[str, Any],
    metrics: dict[str, Any] | None,
    files: dict[str, Any],
    dead_letter_steps: Iterable[tuple[str, str, int]],
    findings: dict[str, dict[str, int]],
    residual: dict[str, Any],
) -> dict[str, Any]:
    """The report.

    ``files``: ``{"method", "count", "missing"}`` of the run's part files (``missing``: listed by the
    manifest, no longer there; figures read from the files leave them out); ``dead_letter_steps``: ``(step,
    reason, n)`` read from the run's dead letters; ``findings``: per ``dataset.field`` per entity type
    from the findings columns; ``residual``: the residual check's result (ccpipe.report.check_residual).
    """
    not_recorded: list[dict[str, str]] = [{
        "figure": "records in and dead-lettered per dataset",
        "why": "a dead letter carries no record type (a malformed line has none); records in per region are "
               "written + dead-lettered in that region (the tenant's, or the quarantine when it is unknown)",
    }]
    written = manifest.get("records_written_by_region", {})
    rows = manifest.get("rows_written_by_region", {})
    dead_by_region = manifest.get("dead_letters_by_region", {})
    by_region: dict[str, Any] = {}
    for region in sorted(set(written) | set(rows) | set(dead_by_region)):
        w = dict(sorted(written.get(region, {}).items()))
        total = sum(w.values())
        dead = int(dead_by_region.get(region, 0))
        by_region[region] = {
            "records_in": total + dead,
            "records_written": total,
            "records_dead_lettered": dead,
            "records_written_by_dataset": w,
            "rows_written_by_dataset": dict(sorted(rows.get(region, {}).items())),
        }
    by_dataset: dict[str, int] = {}
    for per in written.values():
        for dataset, n in per.items():
            by_dataset[dataset] = by_dataset.get(dataset, 0) + n

    stages: dict[str, dict[str, int]] = {}
    for step, reason, n in dead_letter_steps:
        stages.setdefault(step, {}).setdefault(reason, 0)
        stages[step][reason] += n
    stage_totals = {s: sum(r.values()) for s, r in sorted(stages.items())}
    dead_total = int(manifest.get("records_dead_lettered", 0))
    dead_letters = {
        "total": dead_total,
        "by_reason": dict(manifest.get("dead_letters_by_reason", {})),
        "by_region": dict(dead_by_region),
        "by_stage": stage_totals,
        "by_stage_and_reason": {s: dict(sorted(r.items())) for s, r in sorted(stages.items())},
        "by_stage_source": "the step and reason columns of the run's dead-letter files",
        "by_stage_matches_manifest": sum(stage_totals.values()) == dead_total,
    }

    by_type: dict[str, int] = {}
    for per in findings.values():
        for entity_type, n in per.items():
            by_type[entity_type] = by_type.get(entity_type, 0) + n
    pii = {
        "total": sum(by_type.values()),
        "by_entity_type": dict(sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_field": {f: dict(sorted(per.items())) for f, per in sorted(findings.items())},
        "source": "the findings columns (*_pii_entities) of the rows the run wrote: free text only; structured "
                  "identifiers (numbers, MAC, IP, email fields) are pseudonymized or encrypted without NER",
        "texts_tagged_metric": _counter(metrics, "ccpipe.tag_pii", "texts"),
        "findings_tagged_metric": _counter(metrics, "ccpipe.tag_pii", "findings"),
        "tagging_failures_metric": _counter(metrics, "ccpipe.tag_pii", "failed"),
    }

    keys = list(manifest.get("key_versions_used", []))
    per_version: dict[str, int] = {}
    for key_id in keys:
        label = _key_purpose_version(key_id)
        per_version[label] = per_version.get(label, 0) + 1

    missing = int(files.get("missing", 0))
    if missing:
        not_recorded.append({"figure": "dead letters per stage, PII findings and the residual check over every file",
                             "why": missing_files_note(missing)})

    times = stage_times(metrics)
    if not times["msec_by_stage"] or times["source"].startswith("not recorded"):
        not_recorded.append({"figure": "time per stage", "why": times["source"]})
    if metrics is None:
        not_recorded.append({"figure": "Beam metrics (PII tagging totals, stage times)",
                             "why": "no <run_id>.metrics.json beside the report"})

    return {
        "report_version": REPORT_VERSION,
        "run_id": manifest["run_id"],
        "runner": manifest.get("runner"),
        "started_at": manifest.get("started_at"),
        "reconciled": bool(manifest.get("reconciled")),
        "records": {
            "read": int(manifest["records_read"]),
            "written": int(manifest["records_written"]),
            "dead_lettered": dead_total,
        },
        "inputs": dict(manifest.get("inputs", {})),
        "blank_lines_skipped": dict(manifest.get("blank_lines_skipped", {})),
        "by_region": by_region,
        "records_written_by_dataset": dict(sorted(by_dataset.items())),
        "dead_letters": dead_letters,
        "pii_findings": pii,
        "key_versions": {"used": keys, "by_purpose_and_version": dict(sorted(per_version.items()))},
        "stage_times": times,
        "residual_pii": residual,
        "flows": [{"flow": f["flow"], "rows": f["rows"], "rows_by_region": f["rows_by_region"],
                   "crosses_region": f["crosses_region"]} for f in manifest.get("flows", [])],
        "files": {"method": files["method"], "count": files["count"], "missing": missing,
                  "manifest_files_written": manifest.get("files_written")},
        "not_recorded": not_recorded,
    }
