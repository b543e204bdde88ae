"""The government request ledger's rules, and the transparency report built from it."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import governed_copy

from ccpipe.controlplane import audit, dsar
from ccpipe.tenants import load_tenants
from ccpipe.transparency import fixtures, ledger, report
from ccpipe.transparency.ledger import LedgerRuleError

OPS = audit.Actor("legal-ops", "operator")
ARTEFACTS = Path(__file__).parent / "artefacts"


@pytest.fixture
def env(batch_run, corpus, tmp_path, control_plane_url):
    cp, keys, out, _ = governed_copy(batch_run, corpus, tmp_path, control_plane_url)
    yield cp, keys, out
    cp.close()


def tenant_with_calls(out: Path, corpus: Path) -> tuple[str, str]:
    calls = [json.loads(line) for line in (corpus / "input" / "calls.jsonl").read_text().splitlines()]
    written = {p.name for p in out.glob("region=*/dataset=calls/*/*.parquet")}
    assert written
    import pyarrow.parquet as pq

    ids = {r["record_id"] for p in out.glob("region=*/dataset=calls/*/*.parquet") for r in pq.read_table(p).to_pylist()}
    call = next(c for c in calls if c["record_id"] in ids)
    return call["tenant_id"], call["calling_number"]


def new_request(cp, tenant, **overrides) -> str:
    args = dict(
        agency="Politie Nederland",
        country="NL",
        request_type="court_order",
        tenant_ids=[tenant],
        categories=["customer_content"],
        scope="chat transcripts of one subscriber, March 2026",
        received_at="2026-03-10T09:00:00+01:00",
    )
    args.update(overrides)
    return ledger.add(cp, OPS, **args)


def snapshot(cp) -> tuple:
    return (
        cp.query("SELECT * FROM gov_requests ORDER BY request_id"),
        cp.query("SELECT COUNT(*) FROM audit_log"),
        cp.query("SELECT COUNT(*) FROM dsar_requests"),
    )


def test_no_disclosure_without_valid_authority(env, corpus, tmp_path):
    cp, keys, out = env
    tenant, phone = tenant_with_calls(out, corpus)
    rid = new_request(cp, tenant)
    before = snapshot(cp)
    with pytest.raises(LedgerRuleError, match="no disclosure without a recorded valid legal authority"):
        ledger.disclose(
            cp, keys, str(out), OPS, rid, tenant, "phone", phone, str(tmp_path / "b.bin"), "a long passphrase"
        )
    with pytest.raises(LedgerRuleError, match="no disclosure without a recorded valid legal authority"):
        ledger.decide(cp, OPS, rid, "disclosed", disclosure_request_ids=["whatever"])
    ledger.check_authority(cp, OPS, rid, False, "order lacks jurisdiction over the tenant")
    with pytest.raises(LedgerRuleError, match="no disclosure"):
        ledger.decide(cp, OPS, rid, "narrowed", scope_disclosed="less", disclosure_request_ids=["x"])
    assert snapshot(cp)[0] != before[0]  # only the authority review was recorded
    assert not (tmp_path / "b.bin").exists()
    assert ledger.get(cp, rid).decision is None


def test_us_content_needs_warrant_or_court_order(env, corpus):
    cp, keys, out = env
    tenant, _ = tenant_with_calls(out, corpus)
    rid = new_request(cp, tenant, agency="FBI", country="US", request_type="subpoena")
    before = snapshot(cp)
    with pytest.raises(LedgerRuleError, match="search warrant or court order"):
        ledger.check_authority(cp, OPS, rid, True, "grand jury subpoena")
    assert snapshot(cp) == before


def test_disclosure_goes_through_the_export_path(env, corpus, tmp_path):
    cp, keys, out = env
    tenant, phone = tenant_with_calls(out, corpus)
    rid = new_request(cp, tenant)
    ledger.check_authority(cp, OPS, rid, True, "court order 2026/123 of the Rotterdam district court")
    with pytest.raises(LedgerRuleError, match="not a completed export request"):
        ledger.decide(cp, OPS, rid, "disclosed", disclosure_request_ids=["raw-files"])
    with pytest.raises(LedgerRuleError, match="goes through a data-subject export"):
        ledger.decide(cp, OPS, rid, "disclosed")
    bundle = tmp_path / "disclosure.bin"
    export_id = ledger.disclose(
        cp, keys, str(out), OPS, rid, tenant, "phone", phone, str(bundle), "passphrase for the agency"
    )
    assert phone.encode() not in bundle.read_bytes()
    content = json.loads(
        dsar.open_bundle(bundle.read_bytes(), "passphrase for the agency", f"ccpipe-export/v1|{export_id}".encode())
    )
    assert any(r.get("calling_number") == phone for c in content["data_held"] for r in c["records"])
    with pytest.raises(LedgerRuleError, match="states the scope"):
        ledger.decide(cp, OPS, rid, "narrowed", disclosure_request_ids=[export_id])
    ledger.decide(
        cp,
        OPS,
        rid,
        "narrowed",
        scope_disclosed="call records of one number, 1 month",
        disclosure_request_ids=[export_id],
    )
    assert ledger.get(cp, rid).disclosure_request_ids == (export_id,)
    assert [e["action"] for e in audit.entries(cp)][-2:] == ["dsar_export", "gov_request_decide"]


def test_closing_needs_notification_or_prohibition(env, corpus):
    cp, keys, out = env
    tenant, _ = tenant_with_calls(out, corpus)
    rid = new_request(cp, tenant)
    ledger.check_authority(cp, OPS, rid, False, "no jurisdiction")
    with pytest.raises(LedgerRuleError, match="no decision yet"):
        ledger.close(cp, OPS, rid)
    ledger.decide(cp, OPS, rid, "rejected")
    before = snapshot(cp)
    with pytest.raises(LedgerRuleError, match="notify the customer, or record the legal prohibition"):
        ledger.close(cp, OPS, rid)
    with pytest.raises(LedgerRuleError, match="legal basis"):
        ledger.notify(cp, OPS, rid, prohibited=True)
    assert snapshot(cp) == before
    ledger.notify(cp, OPS, rid, prohibited=True, basis="gag order of the issuing court", challenged=True)
    ledger.close(cp, OPS, rid)
    with pytest.raises(LedgerRuleError, match="closed"):
        ledger.notify(cp, OPS, rid, notified_at="2026-04-01T00:00:00Z")
    assert ledger.get(cp, rid).status == "closed"


def test_emergency_disclosure_must_be_notified_and_is_flagged(env, corpus, tmp_path):
    cp, keys, out = env
    tenant, phone = tenant_with_calls(out, corpus)
    with pytest.raises(LedgerRuleError, match="justification"):
        new_request(cp, tenant, request_type="emergency")
    rid = new_request(
        cp,
        tenant,
        request_type="emergency",
        emergency_justification="kidnapping, life at risk",
        received_at="2026-05-01T10:00:00+00:00",
    )
    export_id = ledger.disclose(
        cp, keys, str(out), OPS, rid, tenant, "phone", phone, str(tmp_path / "e.bin"), "emergency passphrase"
    )
    ledger.decide(cp, OPS, rid, "disclosed", disclosure_request_ids=[export_id])
    with pytest.raises(LedgerRuleError, match="must be notified"):
        ledger.notify(cp, OPS, rid, prohibited=True, basis="agency asked for secrecy")
    assert ledger.notified_promptly(ledger.get(cp, rid)) is False
    ledger.notify(cp, OPS, rid, notified_at="2026-05-12T10:00:00+00:00")
    assert ledger.notified_promptly(ledger.get(cp, rid)) is False  # 11 days: late, flagged
    data = report.build(
        ledger.list_all(cp), report.Period.parse("2026H1"), _dt.datetime(2027, 1, 1, tzinfo=_dt.UTC), False
    )
    assert (data["emergency_exceptions"], data["emergency_not_notified_promptly"]) == (1, 1)


@pytest.mark.parametrize(
    ("received", "period"),
    [
        ("2026-06-30T23:59:59+00:00", "2026H1"),
        ("2026-07-01T00:00:00+00:00", "2026H2"),
        ("2026-07-01T01:30:00+02:00", "2026H1"),  # 30 June 23:30 UTC
        ("2026-06-30T20:00:00-05:00", "2026H2"),  # 1 July 01:00 UTC
        ("2026-01-01T00:30:00+01:00", "2025H2"),  # 31 December 23:30 UTC
        ("2025-12-31T23:59:59-01:00", "2026H1"),  # 1 January 00:59 UTC
    ],
)
def test_period_boundaries_are_utc(received, period):
    utc = ledger._timestamp(received, "received_at")[1]
    assert [p for p in ("2025H2", "2026H1", "2026H2") if report.Period.parse(p).contains(utc)] == [period]


def test_embargo_holds_six_months():
    period = report.Period.parse("2026H1")
    assert period.publishable_from == _dt.datetime(2027, 1, 1, tzinfo=_dt.UTC)
    assert report.Period.parse("2026H2").publishable_from == _dt.datetime(2027, 7, 1, tzinfo=_dt.UTC)
    with pytest.raises(report.EmbargoError, match="2027-01-01"):
        report.build([], period, _dt.datetime(2026, 12, 31, 23, 59, tzinfo=_dt.UTC), draft=False)
    assert report.build([], period, _dt.datetime(2026, 12, 31, tzinfo=_dt.UTC), draft=True)["draft"] is True
    assert report.build([], period, _dt.datetime(2027, 1, 1, tzinfo=_dt.UTC), draft=False)["draft"] is False
    with pytest.raises(Exception, match="2026H1 or 2026H2"):
        report.Period.parse("2026Q1")


def expected_counts(requests: list[ledger.GovRequest], label: str) -> dict:
    p = report.Period.parse(label)
    rs = [r for r in requests if p.start <= _dt.datetime.fromisoformat(r.received_utc) < p.end]
    return {
        "requests_received": len(rs),
        "by_type": Counter(r.request_type for r in rs),
        "by_country": Counter(r.country for r in rs),
        "by_decision": Counter(r.decision or "pending" for r in rs),
        "disclosed": len([r for r in rs if r.decision in ("disclosed", "narrowed")]),
        "notified": len([r for r in rs if r.notified_at]),
        "prohibited": len([r for r in rs if r.notification_prohibited]),
        "emergency": len([r for r in rs if r.emergency and r.decision in ("disclosed", "narrowed")]),
    }


def test_report_counts_match_a_generated_ledger(env, tmp_path):
    cp, keys, out = env
    ids = fixtures.generate(cp, keys, str(out), tmp_path / "bundles", seed=4, count=45, actor=OPS)
    assert len(ids) == 45
    requests = ledger.list_all(cp)
    assert {r.decision for r in requests} >= {"disclosed", "rejected", "redirected_to_customer", None}
    assert any(r.notification_prohibited for r in requests) and any(r.emergency for r in requests)
    total = 0
    for label in ("2025H2", "2026H1", "2026H2"):
        data = report.build(requests, report.Period.parse(label), _dt.datetime(2028, 1, 1, tzinfo=_dt.UTC), False)
        want = expected_counts(requests, label)
        assert data["requests_received"] == want["requests_received"]
        assert {k: v for k, v in data["by_type"].items() if v} == dict(want["by_type"])
        assert data["by_country"] == dict(want["by_country"])
        assert {k: v for k, v in data["by_decision"].items() if v} == dict(want["by_decision"])
        assert data["data_disclosed"] == want["disclosed"]
        assert data["no_data_disclosed"] == want["requests_received"] - want["disclosed"]
        assert (data["customer_notified"], data["notification_prohibited"]) == (want["notified"], want["prohibited"])
        assert data["emergency_exceptions"] == want["emergency"]
        csv_rows = report.to_csv(data).splitlines()
        assert f"total,requests_received,{want['requests_received']}" in csv_rows
        total += data["requests_received"]
    assert total == 45
    assert audit.verify(cp) == []


def test_html_renders_and_holds_no_personal_data(env, corpus, tmp_path):
    cp, keys, out = env
    fixtures.generate(cp, keys, str(out), tmp_path / "bundles", seed=9, count=30, actor=OPS)
    data = report.build(
        ledger.list_all(cp), report.Period.parse("2026H1"), _dt.datetime(2027, 2, 1, tzinfo=_dt.UTC), False
    )
    page = report.to_html(data)
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count("<svg") == 4
    tenants = load_tenants(corpus / "tenants.yaml")
    truth = [json.loads(line) for line in (corpus / "truth.jsonl").read_text().splitlines()]
    lowered = page.lower()
    assert not [t for t in tenants if t.lower() in lowered]
    assert not [t["value"] for t in truth if len(t["value"]) > 4 and t["value"].lower() in lowered]
    ARTEFACTS.mkdir(exist_ok=True)
    html_path = ARTEFACTS / "transparency-2026H1.html"
    html_path.write_text(page, encoding="utf-8")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "install Debian's chromium package (.ci/run does) to render the report"
    png = ARTEFACTS / "transparency-2026H1.png"
    png.unlink(missing_ok=True)
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chrome'}",
            "--window-size=1000,1800",
            f"--screenshot={png}",
            html_path.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == (1000, 1800)
        colors = img.convert("RGB").getcolors(maxcolors=1_000_000)
    bar_blue = sum(n for n, rgb in colors if rgb == (0x2F, 0x6F, 0x9F))
    assert bar_blue > 500, "the type chart's bars must be drawn"
