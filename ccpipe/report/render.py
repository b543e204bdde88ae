"""The run report as one static HTML page: tables and inline SVG charts drawn with matplotlib.

The page opens offline: no script, no external style sheet, font or image, and no ``http(s)://``
anywhere (the SVG namespace declarations and metadata matplotlib writes are removed: an SVG inside
HTML needs neither). Text in the charts stays text (``svg.fonttype: none``), set in the reader's
own sans-serif font.
"""

from __future__ import annotations

import html
import io
import re
from string import Template
from typing import Any

from ccpipe.report.model import missing_files_note

WRITTEN = "#2f6f9f"  # records written (the screenshot test looks for this blue)
DEAD = "#b5533c"
PALETTE = ("#2f6f9f", "#4f8f4f", "#9f6f2f", "#7f4f9f", "#b5533c", "#3f8f8f", "#8f8f3f", "#6f6f6f")

_e = html.escape


def _strip(svg: str, title: str) -> str:
    """Matplotlib's SVG as an element to inline: no XML prologue, namespaces or metadata (no URLs)."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(?::[\w-]+)?="[^"]*"', "", svg)
    return svg.replace("<svg", f'<svg role="img" aria-label="{_e(title)}"', 1).strip()


def bar_chart(title: str, labels: list[str], series: list[tuple[str, list[float], str]], unit: str,
              salt: str, integer: bool = True) -> str:
    """A horizontal (stacked) bar chart as inline SVG; the total of each bar written at its end."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # text.parse_math off: a label is plain text ('$' in a stage, reason or region name is no TeX)
    rc = {"svg.fonttype": "none", "svg.hashsalt": salt, "font.family": "sans-serif", "font.size": 10,
          "axes.titlesize": 12, "text.parse_math": False}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(7.8, 0.95 + 0.3 * max(len(labels), 1)))
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        y = list(range(len(labels)))
        left = [0.0] * len(labels)
        for name, values, color in series:
            ax.barh(y, values, left=left, color=color, label=name, height=0.66)
            left = [a + b for a, b in zip(left, values, strict=True)]
        top = max(left + [0.0])
        for i, total in enumerate(left):
            ax.text(total + top * 0.01, i, f"{total:,.0f}" if integer else f"{total:,.2f}", va="center", fontsize=9)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.12 if top else 1)
        ax.set_title(title, loc="left", fontweight="bold")
        ax.set_xlabel(unit)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if integer:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(series) > 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight",
                    metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    return _strip(buf.getvalue(), title)


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_fmt(v))}</td>" if i else f"<th>{_e(_fmt(v))}</th>" for i, v in enumerate(row))
        + "</tr>" for row in rows
    )
    return f'<div class="wide"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _fmt(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _matrix(per: dict[str, dict[str, int]], row_head: str) -> str:
    """A table of rows (outer keys) by columns (inner keys), with totals."""
    columns = sorted({c for inner in per.values() for c in inner})
    rows = [[name, *(inner.get(c, 0) for c in columns), sum(inner.values())] for name, inner in per.items()]
    return _table([row_head, *columns, "total"], rows, "matrix")


def _transpose(per: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for outer, inner in per.items():
        for key, n in inner.items():
            out.setdefault(key, {})[outer] = n
    return dict(sorted(out.items()))


def _stacked(per: dict[str, dict[str, int]]) -> tuple[list[str], list[tuple[str, list[float], str]]]:
    """Bars: the inner keys; stacks: the outer keys (one colour each)."""
    labels = sorted({k for inner in per.values() for k in inner},
                    key=lambda k: (-sum(inner.get(k, 0) for inner in per.values()), k))
    series = [(name, [float(inner.get(k, 0)) for k in labels], PALETTE[i % len(PALETTE)])
              for i, (name, inner) in enumerate(sorted(per.items()))]
    return labels, series


def _section_records(r: dict[str, Any]) -> str:
    regions = r["by_region"]
    labels = list(regions)
    chart = bar_chart(
        "Records per region", labels,
        [("written", [float(v["records_written"]) for v in regions.values()], WRITTEN),
         ("dead-lettered", [float(v["records_dead_lettered"]) for v in regions.values()], DEAD)],
        "records", "regions",
    ) if labels else "<p>No records.</p>"
    datasets = sorted({d for v in regions.values() for d in v["records_written_by_dataset"]})
    rows = [[region, v["records_in"], v["records_written"], v["records_dead_lettered"],
             *(v["records_written_by_dataset"].get(d, 0) for d in datasets)] for region, v in regions.items()]
    rows.append(["all regions", sum(v["records_in"] for v in regions.values()), r["records"]["written"],
                 r["records"]["dead_lettered"], *(r["records_written_by_dataset"].get(d, 0) for d in datasets)])
    table = _table(["region", "records in", "written", "dead-lettered", *(f"written: {d}" for d in datasets)],
                   rows, "matrix")
    rows_table = _matrix({k: v["rows_written_by_dataset"] for k, v in regions.items()}, "region")
    inputs = _table(["input", "records read"], [[k, v] for k, v in r["inputs"].items()]
                    + [["all inputs", r["records"]["read"]]])
    blanks = r["blank_lines_skipped"]
    blank = f"<p>Blank lines skipped: {_e(_fmt(sum(blanks.values())))}.</p>" if blanks else ""
    flows = ""
    if r["flows"]:
        flows = "<h3>Permitted flows</h3>" + _table(
            ["flow", "rows", "rows by region", "crosses region"],
            [[f["flow"], f["rows"], ", ".join(f"{k}={v}" for k, v in f["rows_by_region"].items()), f["crosses_region"]]
             for f in r["flows"]])
    return (f"<h2>Records</h2>{chart}{table}<p class=note>Records in per region = written + dead-lettered in "
            f"that region (the tenant's region; <em>quarantine</em> when the tenant is unknown).</p>"
            f"<h3>Rows written per dataset</h3><p class=note>A chat conversation is one record and one row per "
            f"message; usage_daily and _deadletter rows are derived, not records.</p>{rows_table}"
            f"<h3>Inputs</h3>{inputs}{blank}{flows}")


def _section_dead(r: dict[str, Any]) -> str:
    d = r["dead_letters"]
    if not d["total"]:
        return "<h2>Dead letters</h2><p>None.</p>"
    per = d["by_stage_and_reason"]
    labels, series = _stacked(per)
    chart = bar_chart("Dead letters per reason, by stage", labels, series, "records", "dead") if labels else ""
    gone = r["files"].get("missing", 0)
    check = ("" if d["by_stage_matches_manifest"] else
             f"<p class=warn>The dead-letter files found hold {_e(_fmt(sum(d['by_stage'].values())))} dead letters; "
             f"the manifest counts {_e(_fmt(d['total']))}"
             f"{f' ({_e(missing_files_note(gone))})' if gone else ''}.</p>")
    by_reason = _table(["reason", "dead letters"], [[k, v] for k, v in d["by_reason"].items()]
                       + [["all reasons", d["total"]]])
    by_region = _table(["region", "dead letters"], [[k, v] for k, v in d["by_region"].items()])
    stage_reason = _matrix(_transpose(per), "reason") if per else "<p>No dead-letter files found for this run.</p>"
    return (f"<h2>Dead letters</h2>{chart}{check}<div class=row>{by_reason}{by_region}</div>"
            f"<h3>Per stage and reason</h3><p class=note>From {_e(d['by_stage_source'])}.</p>{stage_reason}")


def _section_pii(r: dict[str, Any]) -> str:
    p = r["pii_findings"]
    per_field = p["by_field"]
    if p["total"]:
        labels, series = _stacked(per_field)
        chart = bar_chart("PII findings per entity type, by field", labels, series, "findings", "findings")
        table = _matrix(_transpose(per_field), "entity type")
    else:
        chart, table = "", "<p>No findings in the written rows.</p>"
    metric = _table(["Beam metric (ccpipe.tag_pii)", "value"], [
        ["texts tagged", p["texts_tagged_metric"]],
        ["findings tagged (including records dead-lettered later)", p["findings_tagged_metric"]],
        ["texts whose tagging failed", p["tagging_failures_metric"]],
    ])
    return (f"<h2>PII findings</h2>{chart}<p class=note>From {_e(p['source'])}. Total: {_e(_fmt(p['total']))}.</p>"
            f"{table}{metric}")


def _section_keys(r: dict[str, Any]) -> str:
    k = r["key_versions"]
    summary = _table(["purpose and version", "keys"], [[a, b] for a, b in k["by_purpose_and_version"].items()])
    used = _table(["key used (owner/purpose/version)"], [[key] for key in k["used"]])
    if len(k["used"]) > 20:
        used = f"<details><summary>{_e(_fmt(len(k['used'])))} keys used</summary>{used}</details>"
    return f"<h2>Key versions used</h2><div class=row>{summary}{used}</div>"


def _section_times(r: dict[str, Any]) -> str:
    t = r["stage_times"]
    run = f"<p>Whole run: {_e(_fmt(t['run_seconds']))} s (wall clock, pipeline start to finish).</p>"
    if t["msec_by_stage"]:
        labels = list(t["msec_by_stage"])
        chart = bar_chart("Time per stage", labels,
                          [("seconds", [v / 1000 for v in t["msec_by_stage"].values()], PALETTE[2])], "seconds", "time",
                          integer=False)
    else:
        chart = ""
    return f"<h2>Time per stage</h2>{chart}{run}<p class=note>{_e(t['source'])}.</p>"


def _section_residual(r: dict[str, Any]) -> str:
    res = r["residual_pii"]
    cfg = res["config"]
    conf = "".join(f"<dt>{_e(k.replace('_', ' '))}</dt><dd>{_e(_fmt(v) if not isinstance(v, list) else ', '.join(v))}"
                   f"</dd>" for k, v in cfg.items())
    if res.get("skipped"):
        return f"<h2>Residual PII check</h2><p>{_e(res['skipped'])}.</p><dl>{conf}</dl>"
    rows: list[list[Any]] = []
    per: dict[str, dict[str, int]] = {}
    for dataset, entry in res["by_dataset"].items():
        for column, c in entry["columns"].items():
            found = ", ".join(f"{t}: {n}" for t, n in c["by_entity_type"].items()) or "none"
            rows.append([f"{dataset}.{column}", entry["rows_in_run"], entry["rows_sampled"], c["texts_checked"],
                         sum(c["by_entity_type"].values()), found])
            if c["by_entity_type"]:
                per[f"{dataset}.{column}"] = c["by_entity_type"]
    table = _table(["dataset.column", "rows in run", "rows sampled", "texts checked", "still looks personal",
                    "per entity type"], rows) if rows else "<p>The run wrote no redacted text.</p>"
    if per:
        labels, series = _stacked(per)
        chart = bar_chart("Still looks personal after redaction (sample)", labels, series, "findings", "residual")
        verdict = (f"<p class=warn>{_e(_fmt(res['total']))} span(s) in the sample still look personal to the "
                   f"second detector. Review the detector configuration; the values are not shown here.</p>")
    else:
        chart = ""
        verdict = "<p class=ok>Nothing in the sample still looks personal to the second detector.</p>" if rows else ""
    return (f"<h2>Residual PII check</h2>{verdict}{chart}{table}<p class=note>A second, independent detector over a "
            f"sample of the redacted text columns (content itself is encrypted). Counts only.</p><dl>{conf}</dl>")


def _section_missing(r: dict[str, Any]) -> str:
    items = "".join(f"<li><strong>{_e(n['figure'])}</strong>: {_e(n['why'])}</li>" for n in r["not_recorded"])
    f = r["files"]
    gone = f.get("missing", 0)
    return (f"<h2>Not recorded, and sources</h2><ul>{items}</ul>"
            + (f"<p class=warn>{_e(missing_files_note(gone))}.</p>" if gone else "")
            + f"<p class=note>Part files read: {_e(_fmt(f['count']))} ({_e(f['method'])}); the manifest counts "
            f"{_e(_fmt(f['manifest_files_written']))} files written.</p>")


_PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Run report $run_id</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 62em; color: #222; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .8em 1.5em .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .7em; } thead th { background: #f2f2f2; }
tbody th { text-align: left; font-weight: normal; } td { text-align: right; }
.wide { overflow-x: auto; } .row { display: flex; flex-wrap: wrap; align-items: flex-start; }
.note { color: #555; font-size: .9em; } .badge { font-weight: bold; padding: .2em .6em; border-radius: .3em; }
.ok { color: #2a6b2a; } .warn { color: #b00; font-weight: bold; }
.reconciled { background: #dcefdc; color: #1f5f1f; } .unreconciled { background: #f6d8d8; color: #8f1f1f; }
svg { display: block; margin: 1em 0; max-width: 100%; height: auto; }
dt { font-weight: bold; margin-top: .4em; } dd { margin-left: 1.2em; }
</style></head><body>
<h1>Run report</h1>
<p>Run <strong>$run_id</strong> on $runner, started $started_at.
<span class="badge $badge_class">$badge</span></p>
$summary
$records
$dead
$pii
$keys
$times
$residual
$missing
<p class=note>Counts only: this report never shows a value from the data.</p>
</body></html>
""")


def to_html(r: dict[str, Any]) -> str:
    """The report page."""
    summary = _table(["run", "records"], [["read", r["records"]["read"]], ["written", r["records"]["written"]],
                                          ["dead-lettered", r["records"]["dead_lettered"]],
                                          ["PII findings", r["pii_findings"]["total"]],
                                          ["still looks personal (sample)", r["residual_pii"]["total"]]])
    return _PAGE.substitute(
        run_id=_e(r["run_id"]),
        runner=_e(_fmt(r["runner"])),
        started_at=_e(_fmt(r["started_at"])),
        badge="RECONCILED" if r["reconciled"] else "NOT RECONCILED",
        badge_class="reconciled" if r["reconciled"] else "unreconciled",
        summary=summary,
        records=_section_records(r),
        dead=_section_dead(r),
        pii=_section_pii(r),
        keys=_section_keys(r),
        times=_section_times(r),
        residual=_section_residual(r),
        missing=_section_missing(r),
    )
