"""The run manifest: what a run read, wrote and dead-lettered, and whether it reconciles.

``records_read == records_written + records_dead_lettered`` must hold for every run; the
manifest states it in ``reconciled``. Written records count primary datasets only
(``usage_daily`` is derived, dead letters are counted on their own).

``files`` lists the part files the run wrote: a file under the output root (the default root, where
the manifest itself is written) relative to it, ``/``-separated (``region=eu/dataset=calls/...``),
so the listing names the same files wherever the root is copied or mounted and compares between
runs; a file under another root (``--sink REGION=URI``, a flow's sub-processor root) by its full
path or URI, as written. The report resolves the relative ones against the root it is asked about.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable
from typing import Any

from ccpipe.flows import FLOW_OF_DATASET, SUBPROCESSORS, US_MONITORING_RULE, crosses_region
from ccpipe.types import WriteResult

PRIMARY = ("calls", "telemetry", "chat_messages", "registrations")


def build_manifest(
    run_id: str,
    reads: Iterable[tuple[str, int]],
    blanks: Iterable[tuple[str, int]],
    results: Iterable[WriteResult],
    extra: dict[str, Any] | None = None,
    root: str | None = None,
) -> dict[str, Any]:
    """Assemble the manifest from per-source read counts and per-file write results.

    ``root``: the output root the manifest is written under; the files under it are listed relative
    to it (None: every file by its path as written).
    """
    inputs = dict(sorted(reads))
    written: dict[str, dict[str, int]] = {}
    rows: dict[str, dict[str, int]] = {}
    reasons: dict[str, int] = {}
    dl_regions: dict[str, int] = {}
    keys: set[str] = set()
    files = 0
    paths: list[str] = []
    flow_rows: dict[str, dict[str, int]] = {}
    for r in results:
        files += 1
        if r.path:
            paths.append(listed_path(r.path, root))
        if r.dataset in FLOW_OF_DATASET:  # a permitted flow to its own sink: listed apart, never a record
            flow_rows.setdefault(FLOW_OF_DATASET[r.dataset], {}).setdefault(r.region, 0)
            flow_rows[FLOW_OF_DATASET[r.dataset]][r.region] += r.rows
            continue
        rows.setdefault(r.region, {}).setdefault(r.dataset, 0)
        rows[r.region][r.dataset] += r.rows
        if r.dataset in PRIMARY:
            written.setdefault(r.region, {}).setdefault(r.dataset, 0)
            written[r.region][r.dataset] += r.records
        for reason, n in r.reasons:
            reasons[reason] = reasons.get(reason, 0) + n
            dl_regions[r.region] = dl_regions.get(r.region, 0) + n
        keys.update(r.keys_used)
    records_read = sum(inputs.values())
    records_written = sum(n for per in written.values() for n in per.values())
    dead = sum(reasons.values())
    return {
        "run_id": run_id,
        **(extra or {}),
        "inputs": inputs,
        "blank_lines_skipped": dict(sorted(blanks)),
        "records_read": records_read,
        "records_written": records_written,
        "records_dead_lettered": dead,
        "reconciled": records_read == records_written + dead,
        "records_written_by_region": {k: dict(sorted(v.items())) for k, v in sorted(written.items())},
        "rows_written_by_region": {k: dict(sorted(v.items())) for k, v in sorted(rows.items())},
        "dead_letters_by_reason": dict(sorted(reasons.items())),
        "dead_letters_by_region": dict(sorted(dl_regions.items())),
        "key_versions_used": sorted(keys),
        "files_written": files,
        "files": sorted(paths),
        "flows": _flows(flow_rows, (extra or {}).get("flow_opt_ins", {})),
    }


def listed_path(path: str, root: str | None) -> str:
    """How ``files`` lists ``path``: relative to ``root`` (``/``-separated) when under it, else as written."""
    if not root:
        return path
    if "://" in root or "://" in path:
        prefix = root.rstrip("/") + "/"
        rest = posixpath.normpath(path[len(prefix):]) if path.startswith(prefix) else ".."
        return path if rest in (".", "..") or rest.startswith("../") else rest
    base, full = os.path.abspath(root), os.path.abspath(path)
    if full == base or os.path.commonpath([base, full]) != base:
        return path
    return os.path.relpath(full, base).replace(os.sep, "/")


def _flows(flow_rows: dict[str, dict[str, int]], opt_ins: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every cross-region or third-party flow of the run: rows per region, who opted in, the rule."""
    out = []
    for flow in sorted(flow_rows):
        spec = SUBPROCESSORS.get(flow)
        out.append({
            "flow": flow,
            "rows": sum(flow_rows[flow].values()),
            "rows_by_region": dict(sorted(flow_rows[flow].items())),
            "crosses_region": crosses_region(flow),
            "tenants_opted_in": sorted(opt_ins.get(flow, [])) if spec else "all (pseudonymized telemetry)",
            "rule": spec["rule"] if spec else US_MONITORING_RULE,
        })
    return out


def dumps(manifest: dict[str, Any]) -> str:
    """The manifest as stable, indented JSON."""
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"


def _chat_note(manifest: dict[str, Any]) -> str:
    """Records count a chat conversation once; say how many message rows that is (what a row query counts)."""
    messages = sum(per.get("chat_messages", 0) for per in manifest["rows_written_by_region"].values())
    chats = sum(per.get("chat_messages", 0) for per in manifest["records_written_by_region"].values())
    return f"  (a chat is one record: {chats} chats = {messages} message rows)" if chats else ""


def summary(manifest: dict[str, Any], manifest_path: str) -> str:
    """A one-screen, human summary of a run."""
    lines = [
        f"run {manifest['run_id']}: {'RECONCILED' if manifest['reconciled'] else 'NOT RECONCILED'}",
        f"  records read        {manifest['records_read']:>9}  from {len(manifest['inputs'])} input file(s)",
        f"  records written     {manifest['records_written']:>9}{_chat_note(manifest)}",
        f"  records dead-letter {manifest['records_dead_lettered']:>9}",
        "  written by region:",
    ]
    for region, per in manifest["records_written_by_region"].items():
        lines.append(f"    {region:<11}" + "  ".join(f"{d}={n}" for d, n in per.items()))
    if manifest["dead_letters_by_reason"]:
        lines.append("  dead letters by reason:")
        for reason, n in manifest["dead_letters_by_reason"].items():
            lines.append(f"    {reason:<24}{n:>7}")
    for flow in manifest.get("flows", []):
        where = ", ".join(f"{r}={n}" for r, n in flow["rows_by_region"].items())
        lines.append(f"  flow {flow['flow']:<18}{flow['rows']:>7} rows ({where})"
                     f"{'  crosses region by design' if flow['crosses_region'] else ''}")
    lines.append(f"  manifest: {manifest_path}")
    return "\n".join(lines)
