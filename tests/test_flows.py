"""Permitted flows (issue: the data sheet's sub-processors and the US monitoring copy).

For each flow: exact rows for an opted-in tenant, none for an opted-out one, none crossing regions
except the documented e-mail flow (and US monitoring), and no plaintext personal data in any column.
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to
from conftest import local_test_pipeline

from ccpipe.errors import ConfigError
from ccpipe.flows import MONITORED_EVENTS, FlowConfig, flow_rows
from ccpipe.types import OutputRow, Tenant
from transforms.handoff import HandOffFlows

REF = b"\x01ciphertext-of-recording-uri"
MAIL = b"\x02ciphertext-of-email"
CALL = {"tenant_id": "t-in", "record_id": "c-1", "event_time": "2026-10-01T10:00:00Z", "call_id": "call-9",
        "recording_uri_ciphertext": REF, "recording_sha256": "ab" * 32, "key_version": 1,
        "agent_id_pseudonym": "p1_agent", "calling_number_pseudonym": "p1_num", "transcript_redacted": "hi <PERSON>"}
REG = {"tenant_id": "t-in", "record_id": "r-1", "event_time": "2026-10-01T10:00:00Z", "username_pseudonym": "p1_user",
       "email_ciphertext": MAIL, "name_ciphertext": b"\x03", "key_version": 1, "password_hash": "scrypt$..."}
TEL = {"tenant_id": "t-in", "record_id": "e-1", "event_time": "2026-10-01T10:00:00Z", "event": "login",
       "agent_id_pseudonym": "p1_agent", "client_version": "3.1", "device_type": "softphone", "software_version": "9",
       "mac_address_pseudonym": "p1_mac", "ip_address_pseudonym": "p1_ip", "ip_prefix": "10.1.2.0/24",
       "message_log_redacted": "user <USERNAME> failed", "call_calling_number_pseudonym": "p1_num"}
ALL = FlowConfig(subprocessor_sinks=(("transcription", "/t"), ("recording_archive", "/a"), ("email_service", "/e")),
                 us_monitoring_sink="/m")
EVERYTHING = frozenset({"transcription", "recording_archive", "email_service"})


def test_flow_rows_hold_only_what_each_flow_may_carry():
    rows = flow_rows("calls", CALL, "nl", EVERYTHING, ALL)
    assert [(f, r) for f, r, _ in rows] == [("transcription", "nl"), ("recording_archive", "nl")]
    assert rows[0][2] == {"tenant_id": "t-in", "record_id": "c-1", "event_time": "2026-10-01T10:00:00Z",
                          "tenant_region": "nl", "call_id": "call-9", "recording_uri_ciphertext": REF, "key_version": 1}
    assert rows[1][2]["recording_sha256"] == "ab" * 32
    assert [(f, r) for f, r, _ in flow_rows("registrations", REG, "nl", EVERYTHING, ALL)] == [("email_service", "us")]
    email = flow_rows("registrations", REG, "nl", EVERYTHING, ALL)[0][2]
    assert set(email) == {"tenant_id", "record_id", "event_time", "tenant_region", "user_pseudonym",
                          "email_ciphertext", "key_version"}
    monitoring = flow_rows("telemetry", TEL, "nl", frozenset(), ALL)
    assert [(f, r) for f, r, _ in monitoring] == [("us_monitoring", "us")]
    assert "message_log_redacted" not in monitoring[0][2] and "call_calling_number_pseudonym" not in monitoring[0][2]
    assert flow_rows("telemetry", {**TEL, "event": "call_end"}, "nl", frozenset(), ALL) == []
    assert "call_end" not in MONITORED_EVENTS


def test_no_flow_without_opt_in_or_sink():
    assert flow_rows("calls", CALL, "nl", frozenset(), ALL) == []
    assert flow_rows("registrations", REG, "nl", frozenset(), ALL) == []
    assert flow_rows("calls", CALL, "nl", EVERYTHING, FlowConfig()) == []
    assert flow_rows("telemetry", TEL, "nl", EVERYTHING, FlowConfig()) == []
    assert flow_rows("calls", {**CALL, "recording_uri_ciphertext": None}, "nl", EVERYTHING, ALL) == []


def test_unknown_subprocessor_is_a_configuration_error(tmp_path):
    from ccpipe.tenants import load_tenants

    with pytest.raises(ConfigError, match="unknown sub-processor 'speech_ai'"):
        FlowConfig(subprocessor_sinks=(("speech_ai", "/x"),))
    path = tmp_path / "t.yaml"
    path.write_text("- {tenant_id: t-1, region: nl, subprocessors: {speech_ai: true}}\n")
    with pytest.raises(ConfigError, match="unknown sub-processor"):
        load_tenants(path)
    path.write_text("- {tenant_id: t-1, region: nl, subprocessors: {transcription: 'yes'}}\n")
    with pytest.raises(ConfigError, match="true or false"):
        load_tenants(path)


def test_hand_offs_are_written_per_flow_and_region(tmp_path):
    roots = {n: tmp_path / n for n in ("transcription", "recording_archive", "email_service", "monitoring")}
    config = FlowConfig(subprocessor_sinks=tuple((n, str(roots[n])) for n in ("transcription", "recording_archive",
                                                                               "email_service")),
                        us_monitoring_sink=str(roots["monitoring"]))
    tenants = (Tenant("t-in", "In", "nl", subprocessors=(("email_service", True), ("recording_archive", True),
                                                          ("transcription", True))),
               Tenant("t-out", "Out", "au", subprocessors=(("transcription", False),)))
    rows = [OutputRow("nl", "calls", "2026-10-01", "c-1", CALL), OutputRow("nl", "registrations", "2026-10-01", "r-1",
                                                                            REG),
            OutputRow("nl", "telemetry", "2026-10-01", "e-1", TEL),
            OutputRow("au", "calls", "2026-10-01", "c-2", {**CALL, "tenant_id": "t-out", "record_id": "c-2"}),
            OutputRow("au", "registrations", "2026-10-01", "r-2", {**REG, "tenant_id": "t-out", "record_id": "r-2"}),
            OutputRow("au", "telemetry", "2026-10-01", "e-2", {**TEL, "tenant_id": "t-out", "record_id": "e-2"})]
    with local_test_pipeline() as p:
        results = p | beam.Create(rows) | HandOffFlows(config, tenants)
        assert_that(results | beam.Map(lambda r: (r.region, r.dataset, r.rows, r.records)), equal_to([
            ("nl", "handoff_transcription", 1, 0), ("nl", "handoff_recording_archive", 1, 0),
            ("us", "handoff_email_service", 1, 0), ("us", "us_monitoring", 2, 0)]))
    found = {}
    for name, root in roots.items():
        for path in root.rglob("*.parquet"):
            parts = dict(p.split("=", 1) for p in path.relative_to(root).parts[:3])
            table = pq.read_table(path)
            found.setdefault(name, []).extend((parts["region"], r["tenant_id"], r["record_id"])
                                              for r in table.to_pylist())
            for column in table.column_names:  # pseudonyms and ciphertext only
                assert column.endswith(("_pseudonym", "_ciphertext", "_id", "_time", "_region", "_version",
                                        "_sha256", "_prefix", "event", "_type")), column
    found["monitoring"] = sorted(found["monitoring"])
    assert found == {"transcription": [("nl", "t-in", "c-1")], "recording_archive": [("nl", "t-in", "c-1")],
                     "email_service": [("us", "t-in", "r-1")],
                     "monitoring": [("us", "t-in", "e-1"), ("us", "t-out", "e-2")]}


def test_opt_in_changes_are_audited_with_who(tmp_path):
    from ccpipe.controlplane import audit, tenants_repo
    from ccpipe.controlplane.db import open_control_plane

    cp = open_control_plane(f"sqlite:///{tmp_path / 'cp.db'}")
    tenants_repo.import_tenants(cp, [Tenant("t-1", "One", "nl")], audit.Actor("setup", "operator"))
    admin = audit.Actor("adm@t-1", "customer_admin", "t-1")
    tenants_repo.set_subprocessor(cp, admin, "t-1", "transcription", True, "contract annex 3")
    assert dict(tenants_repo.get(cp, "t-1").subprocessors) == {"transcription": True}
    tenants_repo.set_subprocessor(cp, admin, "t-1", "transcription", False, "annex withdrawn")
    assert dict(tenants_repo.get(cp, "t-1").subprocessors) == {"transcription": False}
    entries = [(e["actor"], e["action"], e["target"], e["reason"]) for e in audit.entries(cp)][-2:]
    assert entries == [("adm@t-1", "subprocessor_opt_in", "transcription", "contract annex 3"),
                       ("adm@t-1", "subprocessor_opt_out", "transcription", "annex withdrawn")]
    with pytest.raises(ConfigError, match="unknown sub-processor"):
        tenants_repo.set_subprocessor(cp, admin, "t-1", "speech_ai", True, "x")


def test_batch_run_writes_the_flows_and_lists_them_in_the_manifest(corpus, tmp_path, master_key_env):
    import json
    from dataclasses import replace

    from conftest import make_config, read_truth

    from ccpipe.tenants import load_tenants
    from pipelines.batch import pipeline_options, run

    roots = {n: tmp_path / n for n in ("transcription", "recording_archive", "email_service", "monitoring")}
    config = replace(make_config(corpus, tmp_path / "out", tmp_path / "home", "flows"),
                     flows=FlowConfig(tuple((n, str(roots[n])) for n in ("transcription", "recording_archive",
                                                                          "email_service")),
                                      str(roots["monitoring"])))
    manifest = run(config, pipeline_options("FnApiRunner", 1))
    assert manifest["reconciled"]
    tenants = load_tenants(corpus / "tenants.yaml")
    opted = {n: {t for t, ten in tenants.items() if dict(ten.subprocessors).get(n)} for n in
             ("transcription", "recording_archive", "email_service")}
    flows = {f["flow"]: f for f in manifest["flows"]}
    assert set(flows) <= {"transcription", "recording_archive", "email_service", "us_monitoring"}
    assert flows["recording_archive"]["rows"] > 0 and flows["us_monitoring"]["rows"] > 0
    planted = {t["value"] for t in read_truth(corpus) if len(t["value"]) >= 6}
    for name, root in roots.items():
        flow = "us_monitoring" if name == "monitoring" else name
        rows = []
        for path in root.rglob("*.parquet"):
            region = dict(p.split("=", 1) for p in path.relative_to(root).parts[:3])["region"]
            for row in pq.read_table(path).to_pylist():
                rows.append(row)
                # Only the e-mail service and US monitoring leave the tenant's region, by design.
                home = tenants[row["tenant_id"]].region
                assert region == ("us" if flow in ("email_service", "us_monitoring") else home)
                text = json.dumps(row, default=lambda b: b.hex())
                assert not any(v in text for v in planted), name
        if flow != "us_monitoring":
            assert {r["tenant_id"] for r in rows} <= opted[flow]  # none for a tenant that did not opt in
        if flow in flows:
            assert flows[flow]["rows"] == len(rows) and flows[flow]["rule"]
    assert not opted["email_service"] and "email_service" not in flows  # no fixture tenant opted in: no rows
    assert flows["us_monitoring"]["crosses_region"] and not flows["recording_archive"]["crosses_region"]
    assert sorted(flows["recording_archive"]["tenants_opted_in"]) == sorted(opted["recording_archive"])


def test_streaming_opt_out_stops_hand_offs_within_the_refresh_bound(tmp_path):
    from ccpipe.controlplane import audit, tenants_repo
    from ccpipe.controlplane.db import open_control_plane
    from transforms.handoff import OPT_IN_TTL_SECONDS, _HandOffFn

    url = f"sqlite:///{tmp_path / 'cp.db'}"
    cp = open_control_plane(url)
    tenant = Tenant("t-in", "In", "nl", subprocessors=(("transcription", True),))
    tenants_repo.import_tenants(cp, [tenant], audit.Actor("setup", "operator"))
    fn = _HandOffFn(FlowConfig(subprocessor_sinks=(("transcription", "/t"),)), (tenant,), url)
    row = OutputRow("nl", "calls", "2026-10-01", "c-1", CALL)
    assert [o.tag for o in fn.process(row)] == ["transcription"]
    tenants_repo.set_subprocessor(cp, audit.Actor("adm", "customer_admin", "t-in"), "t-in", "transcription", False,
                                  "withdrawn")
    assert OPT_IN_TTL_SECONDS <= 30
    fn._loaded_at -= OPT_IN_TTL_SECONDS + 1  # the refresh bound has passed
    assert list(fn.process(row)) == []


def test_sink_roots_are_recorded_absolute(tmp_path, monkeypatch, master_key_env):
    """A relative --sink recorded as given would mean another folder to a command run elsewhere."""
    from ccpipe.controlplane import sink_roots
    from ccpipe.controlplane.db import open_control_plane
    from pipelines.batch import BatchOptions, common_from_options

    sample = Path(__file__).resolve().parents[1] / "fixtures" / "sample"
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    options = BatchOptions(["--tenants", str(sample / "tenants.yaml"), "--output", "out", "--sink", "us=us-root",
                            "--control_plane", url, "--keystore", str(tmp_path / "k.db")])
    common_from_options(options.view_as(BatchOptions), run_label="r1")
    cp = open_control_plane(url)
    assert sink_roots.known(cp) == sorted([str(tmp_path / "out"), str(tmp_path / "us-root")])
