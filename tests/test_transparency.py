"""The government request ledger's rules, and the transparency report built from it."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import shutil
import stat
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import governed_copy

from ccpipe.cli import main as cli
from ccpipe.controlplane import audit, dsar
from ccpipe.controlplane.db import default_url, open_control_plane
from ccpipe.errors import ConfigError
from ccpipe.tenants import load_tenants
from ccpipe.transparency import fixtures, ledger, report
from ccpipe.transparency.ledger import DemoLedgerError, LedgerRuleError

OPS = audit.Actor("legal-ops", "operator")
ARTEFACTS = Path(__file__).parent / "artefacts"
PROVIDER = "Example Contact Centers Inc."
GENERATED = _dt.datetime(2027, 2, 1, 8, 30, tzinfo=_dt.UTC)


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


@pytest.fixture
def production(tmp_path):
    """A production control plane whose audit log the demo's disclosures are recorded in."""
    cp = open_control_plane(f"sqlite:///{tmp_path / 'production.db'}")
    yield cp
    cp.close()


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
        ledger.list_all(cp),
        report.Period.parse("2026H1"),
        _dt.datetime(2027, 1, 1, tzinfo=_dt.UTC),
        False,
        provider=PROVIDER,
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
        report.build([], period, _dt.datetime(2026, 12, 31, 23, 59, tzinfo=_dt.UTC), draft=False, provider=PROVIDER)
    draft = report.build([], period, _dt.datetime(2026, 12, 31, tzinfo=_dt.UTC), draft=True, provider=PROVIDER)
    assert draft["draft"] is True
    final = report.build([], period, _dt.datetime(2027, 1, 1, tzinfo=_dt.UTC), draft=False, provider=PROVIDER)
    assert final["draft"] is False
    with pytest.raises(Exception, match="2026H1 or 2026H2"):
        report.Period.parse("2026Q1")


def expected_counts(requests: list[ledger.GovRequest], label: str) -> dict:
    """The report's figures counted independently; national-security requests are in none of them."""
    p = report.Period.parse(label)
    rs = [
        r
        for r in requests
        if p.start <= _dt.datetime.fromisoformat(r.received_utc) < p.end and r.request_type != "national_security"
    ]
    return {
        "requests_received": len(rs),
        "by_type": Counter(r.request_type for r in rs),
        "by_country": Counter(r.country for r in rs),
        "by_decision": Counter(r.decision or "pending" for r in rs),
        "disclosed": len([r for r in rs if r.decision in ("disclosed", "narrowed")]),
        "notified": len([r for r in rs if r.notified_at]),
        "prohibited": len([r for r in rs if r.notification_prohibited]),
        "emergency": len([r for r in rs if r.emergency and r.decision in ("disclosed", "narrowed")]),
        "content": len([r for r in rs if "customer_content" in r.categories]),
    }


def test_report_counts_match_a_generated_ledger(env, tmp_path, production):
    cp, keys, out = env
    ids = fixtures.generate(cp, keys, str(out), seed=4, count=45, actor=OPS, audit_cp=production)
    assert len(ids) == 45
    requests = ledger.list_all(cp)
    assert {r.decision for r in requests} >= {"disclosed", "rejected", "redirected_to_customer", None}
    assert any(r.notification_prohibited for r in requests) and any(r.emergency for r in requests)
    assert all(r.demo for r in requests)
    national = [r for r in requests if r.request_type == "national_security"]
    assert national and all(r.country == "US" for r in national)
    total = 0
    for label in ("2025H2", "2026H1", "2026H2"):
        data = report.build(
            requests, report.Period.parse(label), _dt.datetime(2028, 1, 1, tzinfo=_dt.UTC), False, provider=PROVIDER
        )
        want = expected_counts(requests, label)
        assert "national_security" not in data["by_type"]
        assert data["by_data_category"] == {
            "customer_content": want["content"],
            "non_content": want["requests_received"] - want["content"],
        }
        assert data["national_security"]["requests"] == "0–249"
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
    assert total == 45 - len(national)
    assert audit.verify(cp) == []


def test_html_renders_and_holds_no_personal_data(env, corpus, tmp_path, production):
    cp, keys, out = env
    fixtures.generate(cp, keys, str(out), seed=9, count=30, actor=OPS, audit_cp=production)
    data = report.build(
        ledger.list_all(cp),
        report.Period.parse("2026H1"),
        _dt.datetime(2027, 2, 1, tzinfo=_dt.UTC),
        False,
        provider=PROVIDER,
        generated_at=GENERATED,
    )
    page = report.to_html(data)
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count("<svg") == 5
    assert PROVIDER in page and "Generated 2027-02-01 08:30:00 UTC" in page and "DEMO DATA" in page
    assert "<td>0–249</td>" in page
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


def made_up(n: int, **overrides) -> ledger.GovRequest:
    """A ledger entry built in memory (the report is Beam- and database-free)."""
    fields = dict(
        request_id=f"gr-{n:04d}",
        agency="Politie Nederland",
        country="NL",
        request_type="court_order",
        tenant_ids=(f"t{n % 3}",),
        categories=("customer_content",),
        scope_requested="one subscriber",
        received_at="2026-03-10T09:00:00+01:00",
        received_utc="2026-03-10T08:00:00+00:00",
        authority_valid=True,
        emergency=False,
        emergency_justification=None,
        decision="disclosed",
        decided_at="2026-03-12T08:00:00+00:00",
        scope_disclosed="one subscriber",
        disclosure_request_ids=("dsar-1",),
        notified_at="2026-03-13T08:00:00+00:00",
        notification_prohibited=False,
        prohibition_basis=None,
        prohibition_challenged=False,
        status="closed",
    )
    fields.update(overrides)
    return ledger.GovRequest(**fields)


BASE = [
    made_up(1),
    made_up(2, country="US", agency="FBI", request_type="search_warrant", categories=("customer_content", "telemetry")),
    made_up(3, country="US", agency="FBI", request_type="subpoena", categories=("user_registration",),
            decision="rejected", scope_disclosed=None, disclosure_request_ids=()),
    made_up(4, request_type="emergency", emergency=True, emergency_justification="life at risk",
            notified_at="2026-03-25T08:00:00+00:00"),
    made_up(5, country="GB", categories=("telemetry",), decision="redirected_to_customer", notified_at=None,
            notification_prohibited=True, prohibition_basis="gag order", prohibition_challenged=True),
    made_up(6, decision=None, status="open", notified_at=None),
]


def national_security(n: int, **overrides) -> ledger.GovRequest:
    """A National Security Letter / FISA order, recorded with every attribute that feeds some other figure."""
    return made_up(
        100 + n,
        agency="Federal Bureau of Investigation",
        country="US",
        request_type="national_security",
        tenant_ids=(f"t{n}", "t9"),
        categories=("customer_content", "telemetry") if n % 2 else ("admin_registration",),
        decision=("disclosed", "rejected", "narrowed")[n % 3],
        notified_at=None,
        notification_prohibited=True,
        prohibition_basis="18 U.S.C. § 2709(c) non-disclosure requirement",
        prohibition_challenged=bool(n % 2),
        emergency=n == 0,
        emergency_justification="imminent threat" if n == 0 else None,
        **overrides,
    )


def outputs(requests: list[ledger.GovRequest]) -> dict[str, str]:
    data = report.build(
        requests,
        report.Period.parse("2026H1"),
        _dt.datetime(2027, 2, 1, tzinfo=_dt.UTC),
        False,
        provider=PROVIDER,
        generated_at=GENERATED,
    )
    return {"html": report.to_html(data), "csv": report.to_csv(data), "json": report.to_json(data)}


def test_national_security_requests_only_in_bands_and_in_no_total():
    without = outputs(BASE)
    with_three = outputs(BASE + [national_security(n) for n in range(3)])
    # Every figure, in every format, is identical with and without the three NSLs: none can be derived.
    assert with_three == without
    data = json.loads(with_three["json"])
    assert data["national_security"] == {
        "reporting_option": "50 U.S.C. § 1874(a)(3)",
        "band_size": 250,
        "requests": "0–249",
        "customer_accounts_targeted": "0–249",
    }
    assert data["requests_received"] == 6 and "national_security" not in data["by_type"]
    assert data["by_country"] == {"GB": 1, "NL": 3, "US": 2}
    rows = list(csv.reader(io.StringIO(with_three["csv"])))
    assert ["national_security", "requests", "0–249"] in rows
    assert ["national_security", "customer_accounts_targeted", "0–249"] in rows
    assert "<td>0–249</td>" in with_three["html"]
    definitions = data["definitions"]["National security requests"]
    assert "50 U.S.C. § 1874(a)(3)" in definitions and "left out of every other figure" in definitions
    assert definitions in json.loads(without["json"])["definitions"].values()
    # 250 of them move the band, and still no other figure.
    many = outputs(BASE + [national_security(n % 3) for n in range(250)])
    assert json.loads(many["json"])["national_security"]["requests"] == "250–499"
    assert json.loads(many["json"])["requests_received"] == 6
    assert [report.band(n) for n in (0, 249, 250, 499, 500)] == ["0–249", "0–249", "250–499", "250–499", "500–749"]


def test_report_has_provider_generation_time_and_data_categories_in_every_format():
    out = outputs(BASE)
    data = json.loads(out["json"])
    assert (data["provider"], data["generated_at"], data["demo"]) == (PROVIDER, "2027-02-01T08:30:00Z", False)
    assert data["by_data_category"] == {"customer_content": 4, "non_content": 2}
    assert data["data_disclosed_by_category"] == {"customer_content": 3, "non_content": 0}
    assert data["by_category_requested"] == {
        "admin_registration": 0,
        "user_registration": 1,
        "telemetry": 2,
        "customer_content": 4,
    }
    rows = list(csv.reader(io.StringIO(out["csv"])))
    assert rows[0] == ["section", "item", "value"]
    assert ["report", "provider", PROVIDER] in rows and ["report", "generated_at", "2027-02-01T08:30:00Z"] in rows
    assert ["by_data_category", "customer_content", "4"] in rows and ["by_data_category", "non_content", "2"] in rows
    page = out["html"]
    assert f'<p class="provider">{PROVIDER}</p>' in page and "Generated 2027-02-01 08:30:00 UTC" in page
    assert "<tr><th>Customer content</th><td>4</td><td>3</td></tr>" in page
    assert "<tr><th>Non-content</th><td>2</td><td>0</td></tr>" in page
    # Generation time is shown in UTC whatever zone it is given in.
    later = report.build(BASE, report.Period.parse("2026H1"), GENERATED, False, provider=PROVIDER,
                         generated_at=_dt.datetime(2027, 2, 1, 10, 30, tzinfo=_dt.timezone(_dt.timedelta(hours=2))))
    assert later["generated_at"] == "2027-02-01T08:30:00Z"
    for bad in ("", "   ", "=HYPERLINK(1)", "two\nlines", "x" * 201):
        with pytest.raises(ConfigError, match="must be a non-empty name of at most 200 printable characters"):
            report.build(BASE, report.Period.parse("2026H1"), GENERATED, False, provider=bad)


def test_report_command_requires_a_provider(monkeypatch, capsys):
    monkeypatch.delenv("CCPIPE_PROVIDER", raising=False)
    assert cli(["transparency", "report", "--period", "2026H1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "ccpipe transparency: error: --provider is required (or set $CCPIPE_PROVIDER): "
        "the provider's name shown in the report\n"
    )


@pytest.fixture
def sqlite_env(batch_run, corpus, tmp_path):
    """Output and keystore copies, a 'real' control plane with the tenants, and private $CCPIPE_HOME and cwd."""
    cp, keys, out, _ = governed_copy(batch_run, corpus, tmp_path, f"sqlite:///{tmp_path / 'real.db'}")
    yield cp, keys, out
    cp.close()


def fixture_flags(out: Path, tmp_path: Path, corpus: Path, *extra: str) -> list[str]:
    home = tmp_path / "home"
    return [
        "transparency", "fixtures", "--output", str(out), "--tenants", str(corpus / "tenants.yaml"),
        "--keystore", str(home / "keystore.db"), "--master-key-file", str(home / "master.key"),
        "--count", "12", "--seed", "3", "--actor", "legal1", "--role", "operator", *extra,
    ]


def test_demo_fixtures_write_only_their_own_control_plane_and_bundles(sqlite_env, corpus, tmp_path, monkeypatch,
                                                                      capsys):
    cp, keys, out = sqlite_env
    home = tmp_path / "ccpipe-home"
    home.mkdir()
    monkeypatch.setenv("CCPIPE_HOME", str(home))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    real_before = snapshot(cp)
    assert cli(fixture_flags(out, tmp_path, corpus)) == 0
    demo_url = f"sqlite:///{out / '_demo' / 'control.db'}"
    assert capsys.readouterr().out.splitlines()[0] == f"added 12 demo government requests to {demo_url}"
    assert list(cwd.iterdir()) == []  # nothing in the current folder
    assert snapshot(cp) == real_before  # no other control plane was touched
    assert stat.S_IMODE((out / "_demo").stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "_demo" / "control.db").stat().st_mode) == 0o600
    demo = open_control_plane(demo_url)
    try:
        requests = ledger.list_all(demo)
        assert len(requests) == 12 and all(r.demo for r in requests)
        assert ledger.entry_counts(demo) == (0, 12)
        exports = [e for r in requests for e in r.disclosure_request_ids]
        assert exports
        # A demo ledger never takes a real request.
        with pytest.raises(DemoLedgerError, match="holds 12 demo government requests"):
            new_request(demo, requests[0].tenant_ids[0])
    finally:
        demo.close()
    bundles = out / "_demo" / "bundles"
    assert stat.S_IMODE(bundles.stat().st_mode) == 0o700
    disclosed = sorted(p.stem for p in bundles.glob("*.bin"))
    assert disclosed == sorted(r.request_id for r in requests if r.disclosure_request_ids)
    secrets_seen = set()
    for r in requests:
        if not r.disclosure_request_ids:
            continue
        secret = bundles / f"{r.request_id}.passphrase"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        passphrase = secret.read_text().strip()
        assert len(passphrase) >= 32 and "fixture" not in passphrase
        secrets_seen.add(passphrase)
        content = json.loads(dsar.open_bundle((bundles / f"{r.request_id}.bin").read_bytes(), passphrase,
                                              f"ccpipe-export/v1|{r.disclosure_request_ids[0]}".encode()))
        assert content["data_held"]
    assert len(secrets_seen) == len(disclosed)  # one random passphrase per bundle
    # The default (production) control plane got the audit trail of the real disclosures, and nothing else.
    production = open_control_plane(default_url())
    try:
        trail = audit.entries(production)
        assert {e["action"] for e in trail} == {fixtures.DISCLOSURE_ACTION}
        assert len(trail) == 2 * len(disclosed)
        assert fixtures.holdings(production) == {label: 0 for _, label in fixtures.HOLDINGS} | {
            "audit entries": len(trail)}
    finally:
        production.close()
    # The demo report says what it is, in every format.
    assert cli(["transparency", "report", "--control_plane", demo_url, "--period", "2026H1", "--draft",
                "--format", "json", "--provider", PROVIDER, "--keystore", str(tmp_path / "home" / "keystore.db"),
                "--master_key_file", str(tmp_path / "home" / "master.key")]) == 0
    assert json.loads(capsys.readouterr().out)["demo"] is True


def test_demo_fixtures_refuse_a_ledger_with_real_requests(sqlite_env, corpus, tmp_path, monkeypatch, capsys,
                                                         production):
    cp, keys, out = sqlite_env
    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "ccpipe-home"))
    tenant, _ = tenant_with_calls(out, corpus)
    new_request(cp, tenant)
    before = snapshot(cp)
    assert cli(fixture_flags(out, tmp_path, corpus, "--control_plane", f"sqlite:///{tmp_path / 'real.db'}")) == 2
    assert capsys.readouterr().err == (
        "ccpipe transparency: error: the control plane's ledger holds 1 real (non-demo) government requests; demo "
        "requests go only to an empty or demo control plane (default OUTPUT/_demo/control.db)\n"
    )
    assert snapshot(cp) == before
    assert not (out / "_demo").exists()
    with pytest.raises(DemoLedgerError, match="holds 1 real"):
        fixtures.generate(cp, keys, str(out), seed=1, count=1, actor=OPS, audit_cp=production)
    assert snapshot(cp) == before
    # Nor does it write to the default control plane, even an empty one.
    assert cli(fixture_flags(out, tmp_path, corpus, "--control_plane", default_url())) == 2
    assert "is the default control plane of $CCPIPE_HOME" in capsys.readouterr().err
    assert not (tmp_path / "ccpipe-home" / "control.db").exists() and not (out / "_demo").exists()


def test_real_and_demo_requests_are_never_mixed_and_demo_is_audited(env, corpus):
    cp, keys, out = env
    tenant, _ = tenant_with_calls(out, corpus)
    rid = new_request(cp, tenant, demo=True)
    assert ledger.get(cp, rid).demo is True
    assert json.loads(audit.entries(cp)[-1]["details"])["demo"] is True
    with pytest.raises(DemoLedgerError, match="holds 1 demo government requests"):
        new_request(cp, tenant)
    assert ledger.entry_counts(cp) == (0, 1)


def test_demo_fixtures_skip_a_crypto_shredded_tenant(sqlite_env, corpus, tmp_path, production):
    cp, keys, out = sqlite_env
    demo = open_control_plane(f"sqlite:///{tmp_path / 'demo.db'}")
    try:
        from ccpipe.controlplane import tenants_repo

        tenants_repo.import_tenants(demo, load_tenants(corpus / "tenants.yaml").values(), OPS)
        shredded, _ = tenant_with_calls(out, corpus)
        assert keys.destroy(shredded, "content")
        ids = fixtures.generate(demo, keys, str(out), seed=2, count=6, actor=OPS, audit_cp=production)
        assert len(ids) == 6
        assert shredded not in {t for r in ledger.list_all(demo) for t in r.tenant_ids}
    finally:
        demo.close()


def test_demo_disclosures_are_audited_in_the_production_log_before_any_decryption(sqlite_env, tmp_path, corpus,
                                                                                    monkeypatch, production):
    """Regression: the demo's real decryptions left no trace outside the throwaway demo control plane."""
    cp, keys, out = sqlite_env
    demo = open_control_plane(f"sqlite:///{tmp_path / 'demo.db'}")
    from ccpipe.controlplane import tenants_repo

    tenants_repo.import_tenants(demo, load_tenants(corpus / "tenants.yaml").values(), OPS)
    decrypting = []
    subject_phone = fixtures._subject_phone

    def watched(keys_, root, tenant):
        # The intent of this disclosure is committed in the production log before the subject is decrypted.
        last = audit.entries(production)[-1]
        assert (last["action"], last["outcome"], last["tenant_id"]) == (
            fixtures.DISCLOSURE_ACTION, audit.INTENT, tenant.tenant_id)
        decrypting.append(last["target"])
        return subject_phone(keys_, root, tenant)

    monkeypatch.setattr(fixtures, "_subject_phone", watched)
    try:
        fixtures.generate(demo, keys, str(out), seed=3, count=12, actor=OPS, audit_cp=production)
        requests = {r.request_id: r for r in ledger.list_all(demo)}
    finally:
        demo.close()
    disclosed = sorted(r.request_id for r in requests.values() if r.disclosure_request_ids)
    assert disclosed and sorted(decrypting) == disclosed
    trail = audit.entries(production)
    assert len(trail) == 2 * len(disclosed)
    bundles = fixtures.bundles_dir(out)
    for intent, outcome in zip(trail[::2], trail[1::2], strict=True):
        rid = intent["target"]
        request = requests[rid]
        assert (intent["actor"], intent["role"], intent["action"], intent["outcome"]) == (
            "legal-ops", "operator", "demo_disclosure", "intent")
        assert (outcome["action"], outcome["outcome"], outcome["target"]) == ("demo_disclosure", "ok", rid)
        assert intent["tenant_id"] == outcome["tenant_id"] == request.tenant_ids[0]
        details = json.loads(outcome["details"])
        assert details["intent"] == intent["seq"] and [details["export"]] == list(request.disclosure_request_ids)
        assert json.loads(intent["details"])["bundle"] == details["bundle"] == str(bundles / f"{rid}.bin")
    assert audit.open_intents(production) == [] and audit.verify(production) == []


class _NoAuditKey:
    """A key manager that cannot give the audit key: the production log cannot be written."""

    def ensure_key(self, *args, **kwargs):
        raise RuntimeError("key manager down")

    def current(self, *args, **kwargs):
        raise RuntimeError("key manager down")


def test_demo_decrypts_nothing_when_the_production_log_cannot_be_written(sqlite_env, tmp_path, corpus,
                                                                        monkeypatch):
    cp, keys, out = sqlite_env
    demo = open_control_plane(f"sqlite:///{tmp_path / 'demo.db'}")
    unwritable = open_control_plane(f"sqlite:///{tmp_path / 'production.db'}", keys=_NoAuditKey())
    from ccpipe.controlplane import tenants_repo

    tenants_repo.import_tenants(demo, load_tenants(corpus / "tenants.yaml").values(), OPS)
    decrypted = []
    monkeypatch.setattr(fixtures, "_subject_phone", lambda *a: decrypted.append(a) or "+31200000000")
    try:
        with pytest.raises(audit.AuditError, match="audit key manager is unavailable|audit key is unavailable"):
            fixtures.generate(demo, keys, str(out), seed=3, count=12, actor=OPS, audit_cp=unwritable)
        assert demo.query("SELECT COUNT(*) FROM dsar_requests") == [(0,)]
    finally:
        demo.close()
        unwritable.close()
    assert decrypted == []
    assert list(fixtures.bundles_dir(out).iterdir()) == []


def test_demo_disclosures_are_never_audited_only_in_a_demo_control_plane(sqlite_env, tmp_path, corpus):
    cp, keys, out = sqlite_env
    demo = open_control_plane(f"sqlite:///{tmp_path / 'demo.db'}")
    other = open_control_plane(f"sqlite:///{tmp_path / 'other-demo.db'}")
    try:
        with pytest.raises(DemoLedgerError, match="audited in the production control plane, not in the demo's own"):
            fixtures.generate(demo, keys, str(out), seed=3, count=1, actor=OPS, audit_cp=demo)
        fixtures.claim_demo_control_plane(other, OPS, out)
        with pytest.raises(DemoLedgerError, match="other-demo.db is a demo control plane"):
            fixtures.generate(demo, keys, str(out), seed=3, count=1, actor=OPS, audit_cp=other)
        assert [e["action"] for e in audit.entries(other)] == [fixtures.DEMO_MARK]
        assert audit.entries(demo) == []
    finally:
        demo.close()
        other.close()


def test_demo_fixtures_need_an_identity_on_the_command_line(sqlite_env, corpus, tmp_path, monkeypatch, capsys):
    cp, keys, out = sqlite_env
    home = tmp_path / "ccpipe-home"
    monkeypatch.setenv("CCPIPE_HOME", str(home))
    monkeypatch.setenv("CCPIPE_ACTOR", "eve")
    monkeypatch.setenv("CCPIPE_ROLE", "operator")
    flags = fixture_flags(out, tmp_path, corpus)
    at = flags.index("--actor")
    without_identity = flags[:at] + flags[at + 4:]
    assert "--actor" not in without_identity and "--role" not in without_identity
    assert cli(without_identity) == 2
    assert capsys.readouterr().err == (
        "ccpipe transparency: error: --actor and --role are required on the command line: the demo discloses real "
        "customer data and the production audit log records who did it ($CCPIPE_ACTOR and $CCPIPE_ROLE do not "
        "apply here)\n"
    )
    assert cli([*without_identity, "--actor", "eve", "--role", "customer_admin", "--actor_tenant", "t"]) == 2
    assert "--role operator is required" in capsys.readouterr().err
    assert not (out / "_demo").exists() and not home.exists()


def test_demo_fixtures_audit_in_the_named_production_control_plane(sqlite_env, corpus, tmp_path, monkeypatch,
                                                                    capsys):
    cp, keys, out = sqlite_env
    home = tmp_path / "ccpipe-home"
    monkeypatch.setenv("CCPIPE_HOME", str(home))
    real = f"sqlite:///{tmp_path / 'real.db'}"
    before = audit.entries(cp)
    demo_url = f"sqlite:///{out / '_demo' / 'control.db'}"
    # Never the demo's own control plane, nor a database that does not exist yet.
    assert cli(fixture_flags(out, tmp_path, corpus, "--audit_control_plane", demo_url)) == 2
    assert "is the demo's own state" in capsys.readouterr().err
    assert cli(fixture_flags(out, tmp_path, corpus, "--audit-control-plane", f"sqlite:///{tmp_path / 'new.db'}")) == 2
    assert "does not exist: name the production control plane in use" in capsys.readouterr().err
    assert not (out / "_demo").exists() and not (tmp_path / "new.db").exists()
    assert cli(fixture_flags(out, tmp_path, corpus, "--audit_control_plane", real)) == 0
    assert capsys.readouterr().out.splitlines()[2] == f"each disclosure is audited (demo_disclosure) in {real}"
    added = audit.entries(cp)[len(before):]
    bundles = sorted(p.stem for p in fixtures.bundles_dir(out).glob("*.bin"))
    assert bundles and sorted(e["target"] for e in added if e["outcome"] == "ok") == bundles
    assert [e["outcome"] for e in added] == ["intent", "ok"] * len(bundles)
    assert audit.entries(cp)[: len(before)] == before
    assert not (home / "control.db").exists()  # the default one was not the one named
    # Running again adds to the demo control plane it made (marked as its own).
    assert cli(fixture_flags(out, tmp_path, corpus, "--audit_control_plane", real, "--seed", "5")) == 0
    demo = open_control_plane(demo_url)
    try:
        assert ledger.entry_counts(demo) == (0, 24)
        assert audit.entries(demo)[0]["action"] == fixtures.DEMO_MARK
    finally:
        demo.close()


def _holding_audit_history_only(path: Path) -> str:
    url = f"sqlite:///{path}"
    other = open_control_plane(url)
    try:
        audit.append(other, OPS, "retention_run", reason="nightly")
    finally:
        other.close()
    return url


def test_demo_fixtures_refuse_a_production_control_plane_with_an_empty_ledger(sqlite_env, corpus, tmp_path,
                                                                             monkeypatch, capsys):
    """Regression: a production database with an empty ledger took demo requests, locking out real ones."""
    cp, keys, out = sqlite_env
    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "ccpipe-home"))
    copy = tmp_path / "production-copy.db"
    shutil.copy(tmp_path / "real.db", copy)  # tenants and audit history, no ledger entries
    copy_cp = open_control_plane(f"sqlite:///{copy}")
    try:
        before = snapshot(copy_cp)
        tenants = len(copy_cp.query("SELECT * FROM tenants"))
        entries = len(audit.entries(copy_cp))
        assert tenants and entries and ledger.entry_counts(copy_cp) == (0, 0)
        assert cli(fixture_flags(out, tmp_path, corpus, "--control_plane", f"sqlite:///{copy}")) == 2
        assert capsys.readouterr().err == (
            f"ccpipe transparency: error: the control plane sqlite:///{copy} is not a demo control plane: it holds "
            f"{tenants} tenants, {entries} audit entries; demo requests go only to a new, empty control plane or one "
            "made by 'ccpipe transparency fixtures' (omit --control_plane for OUTPUT/_demo/control.db)\n"
        )
        assert snapshot(copy_cp) == before
        # Its ledger still takes real requests.
        tenant, _ = tenant_with_calls(out, corpus)
        assert new_request(copy_cp, tenant).startswith("gr-")
    finally:
        copy_cp.close()
    assert not (out / "_demo").exists() and not (tmp_path / "ccpipe-home" / "control.db").exists()
    # Audit history alone is enough to refuse.
    history = _holding_audit_history_only(tmp_path / "history.db")
    assert cli(fixture_flags(out, tmp_path, corpus, "--control_plane", history)) == 2
    assert "it holds 1 audit entries;" in capsys.readouterr().err
    # A new, empty one is taken, and marked as the demo's.
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert cli(fixture_flags(out, tmp_path, corpus, "--control_plane", fresh)) == 0
    demo = open_control_plane(fresh)
    try:
        assert fixtures.is_demo_control_plane(demo) and ledger.entry_counts(demo) == (0, 12)
    finally:
        demo.close()
