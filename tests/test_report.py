"""The run report: its JSON twin agrees with the manifest, the residual-PII check counts what it should
(and shows no value), and the HTML page opens offline and renders in headless Chromium."""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import read_truth

from ccpipe.errors import ConfigError
from ccpipe.manifest import build_manifest, dumps, listed_path
from ccpipe.report import ReportError, ResidualConfig, build_run_report, write_run_report
from ccpipe.report.model import stage_times
from ccpipe.report.render import DEAD, WRITTEN, bar_chart
from ccpipe.report.residual import PresidioDetector, is_residual, outermost, pick_sample
from ccpipe.schemas import OUTPUT_SCHEMAS
from ccpipe.types import WriteResult

ARTEFACTS = Path(__file__).parent / "artefacts"
SAMPLE = 5
# Where each dead-letter reason of the corpus arises (the stage that refuses the record).
STAGE_OF_REASON = {
    "duplicate_record_id": "DeduplicateRecords",
    "invalid_timestamp": "ParseRecords",
    "invalid_type": "ParseRecords",
    "invalid_utf8": "ParseRecords",
    "malformed_json": "ParseRecords",
    "missing_field": "ParseRecords",
    "oversized": "ParseRecords",
    "unknown_type": "ParseRecords",
    "no_sink_for_region": "ResolveTenants",
    "tenant_terminated": "ResolveTenants",
    "unknown_tenant": "ResolveTenants",
}


@pytest.fixture(scope="module")
def detector():
    return PresidioDetector(ResidualConfig())


@pytest.fixture(scope="module")
def reported(batch_run, tmp_path_factory, detector):
    """A private copy of the session's batch output (file times kept), with its report written."""
    config, manifest = batch_run
    out = tmp_path_factory.mktemp("report") / "out"
    shutil.copytree(config.sinks.default_root, out)  # copy2: modification times kept
    paths = write_run_report(str(out), config.run_id, sample_rows=SAMPLE, detector=detector)
    report = json.loads(Path(paths.json).read_text(encoding="utf-8"))
    return manifest, out, paths, report


def test_json_twin_agrees_with_the_manifest(reported):
    manifest, out, paths, report = reported
    assert Path(paths.html) == out / "_reports" / f"{manifest['run_id']}.html"
    assert Path(paths.json) == out / "_reports" / f"{manifest['run_id']}.json"
    assert report["run_id"] == manifest["run_id"] and report["reconciled"] is True
    assert report["records"] == {"read": manifest["records_read"], "written": manifest["records_written"],
                                 "dead_lettered": manifest["records_dead_lettered"]}
    assert report["inputs"] == manifest["inputs"]
    regions = set(manifest["rows_written_by_region"]) | set(manifest["dead_letters_by_region"])
    assert set(report["by_region"]) == regions
    for region, got in report["by_region"].items():
        written = manifest["records_written_by_region"].get(region, {})
        dead = manifest["dead_letters_by_region"].get(region, 0)
        assert got == {
            "records_in": sum(written.values()) + dead,
            "records_written": sum(written.values()),
            "records_dead_lettered": dead,
            "records_written_by_dataset": written,
            "rows_written_by_dataset": manifest["rows_written_by_region"].get(region, {}),
        }
    assert sum(r["records_in"] for r in report["by_region"].values()) == manifest["records_read"]

    dead = report["dead_letters"]
    assert dead["by_reason"] == manifest["dead_letters_by_reason"]
    assert dead["by_region"] == manifest["dead_letters_by_region"]
    assert dead["by_stage_matches_manifest"] is True
    expected: dict[str, dict[str, int]] = {}
    for reason, n in manifest["dead_letters_by_reason"].items():
        expected.setdefault(STAGE_OF_REASON[reason], {})[reason] = n
    assert dead["by_stage_and_reason"] == expected
    assert dead["by_stage"] == {stage: sum(r.values()) for stage, r in expected.items()}

    assert report["key_versions"]["used"] == manifest["key_versions_used"]
    content = sum(1 for k in manifest["key_versions_used"] if k.endswith("/content/v1"))
    assert report["key_versions"]["by_purpose_and_version"] == {
        "content v1": content, "deadletter v1": len(manifest["key_versions_used"]) - content}
    assert report["files"]["count"] == manifest["files_written"]


def test_findings_per_type_and_field_match_the_written_rows(reported):
    manifest, out, _, report = reported
    expected: dict[str, dict[str, int]] = {}
    columns = {"calls": {"transcript_pii_entities": "transcript", "wrapup_notes_pii_entities": "wrapup_notes"},
               "telemetry": {"message_log_pii_entities": "message_log"}, "chat_messages": {"pii_entities": "text"}}
    for dataset, fields in columns.items():
        for path in out.glob(f"region=*/dataset={dataset}/*/*.parquet"):
            for row in pq.read_table(path, columns=list(fields)).to_pylist():
                for column, field in fields.items():
                    for finding in row[column] or []:
                        per = expected.setdefault(f"{dataset}.{field}", {})
                        per[finding["entity_type"]] = per.get(finding["entity_type"], 0) + 1
    pii = report["pii_findings"]
    assert pii["by_field"] == {k: dict(sorted(v.items())) for k, v in sorted(expected.items())}
    assert pii["total"] == sum(n for per in expected.values() for n in per.values()) > 0
    assert pii["findings_tagged_metric"] == pii["total"]  # nothing tagged in this run was dead-lettered later
    assert pii["tagging_failures_metric"] == 0


def test_residual_sample_is_deterministic_and_sized(reported, detector):
    manifest, out, _, report = reported
    rows = {d: sum(per.get(d, 0) for per in manifest["rows_written_by_region"].values())
            for d in ("calls", "telemetry", "chat_messages")}
    residual = report["residual_pii"]
    assert {d: (e["rows_in_run"], e["rows_sampled"]) for d, e in residual["by_dataset"].items()} == {
        d: (n, min(n, SAMPLE)) for d, n in rows.items()}
    assert {d: sorted(e["columns"]) for d, e in residual["by_dataset"].items()} == {
        "calls": ["transcript_redacted", "wrapup_notes_redacted"], "telemetry": ["message_log_redacted"],
        "chat_messages": ["text_redacted"]}
    assert residual["config"]["sample_rows"] == SAMPLE and residual["config"]["score_threshold"] == 0.2
    again = build_run_report(str(out), manifest["run_id"], ResidualConfig(sample_rows=SAMPLE), detector)
    assert again["residual_pii"] == residual
    assert pick_sample([("b", 1), ("a", 2), ("c", 3), ("a", 4)], 3) == [2, 4, 1]


def test_stage_times_say_what_they_measure():
    step = {"namespace": "beam", "name": "ptransform_execution_time:total_msecs"}
    metrics = {"seconds": 9.5, "distributions": [], "counters": [
        {**step, "step": "ProcessRecords/TagPii/Analyze/ParDo(_TagPiiFn)", "value": 1500},
        {**step, "step": "ProcessRecords/TagPii/Batch/ParDo(_GlobalWindowsBatchingDoFn)", "value": 100},
        {**step, "step": "WriteRegionalParquet/WriteFiles", "value": 700},
        {"namespace": "ccpipe.write", "name": "rows", "step": "WriteRegionalParquet/WriteFiles", "value": 5},
    ]}
    times = stage_times(metrics)
    assert times["msec_by_stage"] == {"ProcessRecords/TagPii": 1600, "WriteRegionalParquet": 700}
    assert times["run_seconds"] == 9.5 and times["source"].startswith("Beam's per-transform execution time")
    batches = {"seconds": 3.0, "counters": [], "distributions": [
        {"namespace": "BatchElements", "name": "msec_per_batch", "count": 2, "sum": 40, "min": 10, "max": 30,
         "step": "ProcessRecords/TagPii/Batch/ParDo(_GlobalWindowsBatchingDoFn)"}]}
    assert stage_times(batches)["msec_by_stage"] == {"ProcessRecords/TagPii": 40}
    assert stage_times(batches)["source"].startswith("not recorded per stage")
    assert stage_times(None) == {"run_seconds": None, "msec_by_stage": {},
                                 "source": "not recorded: the run saved no metrics file"}


def test_residual_finding_rules():
    assert not is_residual("Hi <PERSON>, thanks", 3, 11)
    assert is_residual("Hi <PERSON> Smith, thanks", 3, 17)
    assert outermost([("URL", 20, 31), ("EMAIL_ADDRESS", 5, 31), ("PERSON", 40, 45)]) == [
        ("EMAIL_ADDRESS", 5, 31), ("PERSON", 40, 45)]
    with pytest.raises(ConfigError, match=r"sample_rows -1 must be a whole number of rows, 0 or more"):
        ResidualConfig(sample_rows=-1)
    with pytest.raises(ConfigError, match=r"score_threshold 1.5 must be between 0 and 1"):
        ResidualConfig(score_threshold=1.5)


PLANTED = {
    "name": "Maria Gonzalez",
    "email": "maria.gonzalez@example.com",
    "phone": "+44 20 7946 0958",
}


def _write(out: Path, region: str, dataset: str, rows: list[dict]) -> WriteResult:
    folder = out / f"region={region}" / f"dataset={dataset}" / "dt=2026-03-01"
    folder.mkdir(parents=True)
    path = folder / "part-00000-planted.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMAS[dataset]), path)
    return WriteResult(region=region, dataset=dataset, path=str(path), rows=len(rows),
                       records=len({r["record_id"] for r in rows}), keys_used=("tnt-nl-1/content/v1",))


def test_residual_check_counts_a_planted_value_and_never_shows_it(tmp_path, detector):
    out = tmp_path / "out"
    started = (_dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=30)).isoformat(timespec="seconds")
    chat = [
        {"record_id": "chat-1", "tenant_id": "tnt-nl-1", "seq": 1, "category": "customer_content", "key_version": 1,
         "text_redacted": f"Thanks, this is {PLANTED['name']}, mail me at {PLANTED['email']} about <REFERENCE>."},
        {"record_id": "chat-1", "tenant_id": "tnt-nl-1", "seq": 2, "category": "customer_content", "key_version": 1,
         "text_redacted": "Hi <PERSON>, your order <REFERENCE> ships on Monday. Call <PHONE_NUMBER> if needed."},
    ]
    calls = [
        {"record_id": "call-1", "tenant_id": "tnt-nl-1", "category": "customer_content", "key_version": 1,
         "transcript_redacted": "Router reboot fixed it; customer <PERSON> happy.",
         "wrapup_notes_redacted": f"Customer asked to be called back on {PLANTED['phone']} tomorrow."},
    ]
    results = [_write(out, "nl", "chat_messages", chat), _write(out, "nl", "calls", calls)]
    manifest = build_manifest("planted", [("in.jsonl", 2)], [], results, {"runner": "test", "started_at": started},
                              root=str(out))
    (out / "_manifests").mkdir()
    (out / "_manifests" / "planted.json").write_text(dumps(manifest))

    paths = write_run_report(str(out), "planted", sample_rows=10, detector=detector)
    report = json.loads(Path(paths.json).read_text(encoding="utf-8"))
    residual = report["residual_pii"]
    assert residual["by_dataset"] == {
        "calls": {"rows_in_run": 1, "rows_sampled": 1, "columns": {
            "transcript_redacted": {"texts_checked": 1, "by_entity_type": {}},
            "wrapup_notes_redacted": {"texts_checked": 1, "by_entity_type": {"PHONE_NUMBER": 1}}}},
        "chat_messages": {"rows_in_run": 2, "rows_sampled": 2, "columns": {
            "text_redacted": {"texts_checked": 2, "by_entity_type": {"EMAIL_ADDRESS": 1, "PERSON": 1}}}},
    }
    assert residual["by_entity_type"] == {"EMAIL_ADDRESS": 1, "PERSON": 1, "PHONE_NUMBER": 1}
    assert residual["total"] == 3
    assert report["files"] == {"method": "listed by the manifest", "count": 2, "missing": 0,
                               "manifest_files_written": 2}
    page = Path(paths.html).read_text(encoding="utf-8")
    twin = Path(paths.json).read_text(encoding="utf-8")
    assert "still look personal" in page
    for value in (*PLANTED.values(), "Gonzalez", "7946"):
        assert value.lower() not in page.lower() and value.lower() not in twin.lower(), value


def test_page_opens_offline_and_shows_no_value(reported, corpus):
    manifest, _, paths, _ = reported
    page = Path(paths.html).read_text(encoding="utf-8")
    lowered = page.lower()
    for needle in ("http://", "https://", "<script", "<link", "<img", "<iframe", "@import", "src=", "//www."):
        assert needle not in lowered, needle
    assert set(re.findall(r"url\((.)", page)) <= {"#"}  # only clip paths inside the page's own SVGs
    assert "default-src 'none'" in page
    report = reported[3]
    # regions, dead letters, findings; time per stage and residual findings when there are any
    charts = 3 + bool(report["stage_times"]["msec_by_stage"]) + bool(report["residual_pii"]["total"])
    assert page.count("<svg") == charts
    truth = read_truth(corpus)
    assert not [t["value"] for t in truth if len(t["value"]) > 4 and t["value"].lower() in lowered]


def test_page_renders_in_headless_chromium(reported, tmp_path):
    _, _, paths, _ = reported
    ARTEFACTS.mkdir(exist_ok=True)
    html_path = ARTEFACTS / "run-report.html"
    shutil.copyfile(paths.html, html_path)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "install Debian's chromium package (.ci/run does) to render the report"
    png = ARTEFACTS / "run-report.png"
    png.unlink(missing_ok=True)
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1000,1800", f"--screenshot={png}",
         html_path.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == (1000, 1800)
        colors = img.convert("RGB").getcolors(maxcolors=1_000_000)
    assert len(colors) > 50, "the page must not be blank"

    def count(hex_color: str) -> int:
        rgb = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
        return sum(n for n, c in colors if c == rgb)

    assert count(WRITTEN) > 2000, "the region chart's written bars must be drawn"
    assert count(DEAD) > 200, "the region chart's dead-letter bars must be drawn"


def test_cli_rebuilds_both_files(reported, capsys):
    from ccpipe.cli.report import main

    manifest, out, paths, _ = reported
    scratch = out.parent / "cli"
    shutil.copytree(out, scratch)
    assert main([manifest["run_id"], "--output", str(scratch), "--sample", "0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    run_id = manifest["run_id"]
    html_path, json_path = scratch / "_reports" / f"{run_id}.html", scratch / "_reports" / f"{run_id}.json"
    assert printed == [f"report: {html_path}", f"report (JSON): {json_path}"]
    first = (html_path.read_bytes(), json_path.read_bytes())
    assert json.loads(first[1])["residual_pii"]["skipped"] == "sample_rows is 0: the check was turned off"
    assert main([manifest["run_id"], "--output", str(scratch), "--sample", "0"]) == 0
    assert (html_path.read_bytes(), json_path.read_bytes()) == first  # a rebuild is identical
    assert not list((scratch / "_reports").glob(".tmp-*"))
    with pytest.raises(ReportError, match=r"no manifest for run 'nope' at .*_manifests/nope.json"):
        main(["nope", "--output", str(scratch)])
    with pytest.raises(ConfigError, match=r"--sample '-3' must be a whole number of rows per dataset, 0 or more"):
        main([manifest["run_id"], "--output", str(scratch), "--sample", "-3"])


def test_manifest_lists_files_relative_to_the_root_it_is_written_under(tmp_path):
    root, other = tmp_path / "out", tmp_path / "eu-sink"
    part = "dt=2026-03-01/part-00000-x.parquet"
    results = [WriteResult("nl", "calls", f"{root}/region=nl/dataset=calls/{part}", 1, 1),
               WriteResult("eu", "calls", f"{other}/region=eu/dataset=calls/{part}", 1, 1),
               WriteResult("us", "calls", f"gs://bucket/us/region=us/dataset=calls/{part}", 1, 1),
               WriteResult("nl", "telemetry", "", 0, 0)]
    manifest = build_manifest("r", [("in.jsonl", 3)], [], results, root=str(root))
    assert manifest["files"] == [f"{other}/region=eu/dataset=calls/{part}",
                                 f"gs://bucket/us/region=us/dataset=calls/{part}",
                                 f"region=nl/dataset=calls/{part}"]
    assert manifest["files_written"] == 4
    assert build_manifest("r", [], [], results[:1])["files"] == [results[0].path]  # no root: as written
    assert listed_path(f"gs://bucket/out/region=us/{part}", "gs://bucket/out/") == f"region=us/{part}"
    assert listed_path(f"gs://bucket/outer/{part}", "gs://bucket/out") == f"gs://bucket/outer/{part}"
    assert listed_path(f"{tmp_path}/outer/{part}", str(root)) == f"{tmp_path}/outer/{part}"


def test_batch_manifest_lists_every_part_file_relative_to_the_output_root(batch_run):
    config, manifest = batch_run
    root = Path(config.sinks.default_root)
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("part-*.parquet"))
    assert on_disk and manifest["files"] == on_disk


def test_report_reads_the_root_it_is_asked_about_and_counts_files_gone(batch_run, tmp_path):
    """A copy of the output is reported from its own files; a listed file that is gone is counted, not fatal."""
    config, manifest = batch_run
    run_id, root = manifest["run_id"], config.sinks.default_root
    out1, out1b = tmp_path / "out1", tmp_path / "out1b"
    shutil.copytree(root, out1)
    # the manifest as the pipeline lists its files: relative to the output root
    listed = json.loads((out1 / "_manifests" / f"{run_id}.json").read_text())
    listed["files"] = sorted(listed_path(f, root) for f in listed["files"])
    (out1 / "_manifests" / f"{run_id}.json").write_text(dumps(listed))
    shutil.copytree(out1, out1b)
    gone = sorted(out1b.glob("region=*/dataset=_deadletter/*/part-*.parquet"))[0]
    gone_rows = pq.read_metadata(gone).num_rows
    gone.unlink()
    off = ResidualConfig(sample_rows=0)

    whole = build_run_report(str(out1), run_id, off)
    assert whole["files"]["count"] == len(listed["files"]) and whole["files"]["missing"] == 0
    assert whole["files"]["method"] == "listed by the manifest"
    assert whole["dead_letters"]["by_stage_matches_manifest"] is True

    copy = build_run_report(str(out1b), run_id, off)
    assert copy["files"]["count"] == len(listed["files"]) - 1 and copy["files"]["missing"] == 1
    dead = copy["dead_letters"]
    assert dead["by_stage_matches_manifest"] is False
    assert sum(dead["by_stage"].values()) == dead["total"] - gone_rows > 0
    note = "1 file listed by the manifest no longer exists (retention, DSAR deletion)"
    assert [n["why"] for n in copy["not_recorded"] if n["why"].startswith(note)]
    paths = write_run_report(str(out1b), run_id, sample_rows=0)
    assert Path(paths.html).read_text(encoding="utf-8").count(note) == 3  # warning, dead letters, not recorded

    # every listed file gone (retention removed the run's data): still a report, from the manifest
    for part in out1b.glob("region=*/**/part-*.parquet"):
        part.unlink()
    empty = build_run_report(str(out1b), run_id, off)
    assert empty["files"] == {"method": "listed by the manifest", "count": 0, "missing": len(listed["files"]),
                              "manifest_files_written": manifest["files_written"]}
    assert empty["records"]["dead_lettered"] == manifest["records_dead_lettered"]


def test_report_reads_files_under_other_sink_roots_where_they_were_written(tmp_path):
    out, eu = tmp_path / "out", tmp_path / "eu-sink"
    row = {"record_id": "call-1", "tenant_id": "tnt-nl-1", "category": "customer_content", "key_version": 1,
           "transcript_redacted": "Router reboot fixed it.", "wrapup_notes_redacted": "Done."}
    results = [_write(out, "nl", "calls", [row]), _write(eu, "eu", "calls", [{**row, "record_id": "call-2"}])]
    manifest = build_manifest("two-roots", [("in.jsonl", 2)], [], results, {"runner": "test"}, root=str(out))
    assert manifest["files"][0].startswith(str(eu)) and not manifest["files"][1].startswith("/")
    (out / "_manifests").mkdir()
    (out / "_manifests" / "two-roots.json").write_text(dumps(manifest))
    report = build_run_report(str(out), "two-roots", ResidualConfig(sample_rows=0))
    assert report["files"] == {"method": "listed by the manifest (1 under other sink roots, read where the run "
                                         "wrote them)", "count": 2, "missing": 0, "manifest_files_written": 2}


def test_chart_labels_are_plain_text_not_mathtext():
    svg = bar_chart("Dead letters $\\alpha$", ["$\\undefinedmacro$", "costs $5 and $6"],
                    [("dead-lettered", [1.0, 2.0], DEAD)], "records", "math")
    for text in ("$\\undefinedmacro$", "costs $5 and $6", "Dead letters $\\alpha$"):
        assert text in svg, text
