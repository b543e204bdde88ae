"""Governance on real pipeline output: keys, retention, data-subject requests, access, audit.

Each test works on its own copy of the batch run's output and keystore, against a fresh control
plane: SQLite and a real PostgreSQL server.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import governed_copy

from ccpipe import pseudonym
from ccpipe import store as store_mod
from ccpipe.controlplane import access, audit, dsar, keys, retention, tenants_repo
from ccpipe.controlplane.db import ControlPlane, ControlPlaneError, open_control_plane
from ccpipe.controlplane.migrations import current_version
from ccpipe.errors import ConfigError, KeyUnavailableError

OPS = audit.Actor("ops-anna", "operator")
LATER = _dt.datetime(2028, 1, 1, tzinfo=_dt.UTC)  # the tests' clock for retention: everything is due


@pytest.fixture
def env(batch_run, corpus, tmp_path, control_plane_url):
    """(control plane, keystore, output root, tenants) on private copies of the batch run."""
    cp, store, out, tenants = governed_copy(batch_run, corpus, tmp_path, control_plane_url)
    yield cp, store, out, tenants
    cp.close()


def all_rows(root: Path) -> list[tuple[str, dict]]:
    out = []
    for path in sorted(root.glob("region=*/dataset=*/dt=*/*.parquet")):
        dataset = path.parent.parent.name.split("=", 1)[1]
        out.extend((dataset, r) for r in pq.read_table(path).to_pylist())
    return out


def row_key(dataset: str, row: dict) -> tuple:
    return (
        dataset,
        row.get("tenant_id"),
        row.get("record_id") or row.get("deadletter_id") or row.get("day"),
        row.get("seq"),
        row.get("batch_digest"),
    )


def admin_of(tenant_id: str) -> audit.Actor:
    return audit.Actor(f"admin@{tenant_id}", "customer_admin", tenant_id)


def second_admin(admin: audit.Actor) -> audit.Actor:
    """Another admin of the same tenant: identity is confirmed by someone other than the requester."""
    return audit.Actor(f"second-{admin.name}", admin.role, admin.tenant_id)


def a_call(root: Path, tenant_id: str | None = None) -> dict:
    return next(r for d, r in all_rows(root) if d == "calls" and (tenant_id is None or r["tenant_id"] == tenant_id))


def inputs(corpus: Path) -> dict[str, dict]:
    return {
        json.loads(line)["record_id"]: json.loads(line)
        for line in (corpus / "input" / "calls.jsonl").read_text().splitlines()
    }


def test_migrations_are_versioned(control_plane_url):
    cp = open_control_plane(control_plane_url)
    assert current_version(cp) == 5
    assert [r[0] for r in cp.query("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3, 4, 5]
    from ccpipe.controlplane.migrations import migrate

    assert migrate(cp) == []


def test_audit_log_is_append_only_and_tamper_evident(control_plane_url):
    cp = open_control_plane(control_plane_url)
    for i in range(5):
        audit.append(cp, OPS, "test", tenant_id="t", reason=f"entry {i}")
    assert audit.verify(cp) == []
    with pytest.raises(ControlPlaneError, match="append-only"):
        cp.execute("UPDATE audit_log SET reason = 'changed' WHERE seq = 2")
    with pytest.raises(ControlPlaneError, match="append-only"):
        cp.execute("DELETE FROM audit_log WHERE seq = 2")
    # Someone with database rights bypasses the triggers: the chain still tells.
    if cp.dialect == "sqlite":
        cp.execute("DROP TRIGGER audit_no_update")
        cp.execute("DROP TRIGGER audit_no_delete")
    else:
        cp.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_no_change")
    cp.execute("UPDATE audit_log SET reason = 'changed' WHERE seq = 2")
    assert audit.verify(cp) == ["entry 2: content does not match its hash (edited)"]
    cp.execute("UPDATE audit_log SET reason = 'entry 1' WHERE seq = 2")
    assert audit.verify(cp) == []
    cp.execute("DELETE FROM audit_log WHERE seq = 3")
    assert audit.verify(cp) == [
        "entry 3 is missing (next is 4)",
        "entry 4: does not follow entry 3 (removed or reordered)",
    ]


def test_audit_reorder_is_detected(tmp_path):
    cp = open_control_plane(f"sqlite:///{tmp_path / 'c.db'}")
    for i in range(3):
        audit.append(cp, OPS, f"a{i}")
    cp.execute("DROP TRIGGER audit_no_update")
    cp.execute("UPDATE audit_log SET seq = 99 WHERE seq = 1")
    cp.execute("UPDATE audit_log SET seq = 1 WHERE seq = 2")
    cp.execute("UPDATE audit_log SET seq = 2 WHERE seq = 99")
    problems = audit.verify(cp)
    assert "entry 1: does not follow entry 0 (removed or reordered)" in problems


def test_rotated_key_still_decrypts_old_data(env, corpus):
    cp, store, out, _ = env
    row = a_call(out)
    tenant = row["tenant_id"]
    assert keys.rotate(cp, store, tenant, OPS) == {"content": 2, "pseudonym": 2}
    assert row["key_version"] == 1
    text = access.decrypt_field(
        cp, store, out, admin_of(tenant), tenant, "calls", row["record_id"], "transcript", "customer asked for a copy"
    )
    assert text == inputs(corpus)[row["record_id"]]["transcript"]
    assert store.current(tenant, "content").version == 2
    assert cp.query(
        "SELECT purpose, version, event FROM key_events WHERE tenant_id = ? ORDER BY purpose", (tenant,)
    ) == [("content", 2, "rotated"), ("pseudonym", 2, "rotated")]


def test_new_writes_use_the_rotated_key(env, corpus, tmp_path):
    from conftest import make_config

    from pipelines.batch import pipeline_options, run

    cp, store, out, tenants = env
    tenant = a_call(out)["tenant_id"]
    keys.rotate(cp, store, tenant, OPS)
    config = make_config(corpus, tmp_path / "out2", Path(store._config.path).parent, "rotated")
    run(config, pipeline_options("FnApiRunner", 1))
    versions = {(r["tenant_id"] == tenant, r["key_version"]) for d, r in all_rows(tmp_path / "out2") if d == "calls"}
    assert (True, 2) in versions and (True, 1) not in versions and (False, 1) in versions


def test_shredded_tenant_no_longer_decrypts_others_do(env):
    cp, store, out, tenants = env
    victim = a_call(out)
    other = next(r for d, r in all_rows(out) if d == "calls" and r["tenant_id"] != victim["tenant_id"])
    with pytest.raises(ConfigError, match="irreversible"):
        keys.shred(cp, store, victim["tenant_id"], OPS, confirm="wrong")
    destroyed = keys.shred(cp, store, victim["tenant_id"], OPS, confirm=victim["tenant_id"], reason="contract end")
    assert destroyed == {"content": [1], "pseudonym": [1]}
    with pytest.raises(KeyUnavailableError):
        access.decrypt_field(
            cp,
            store,
            out,
            admin_of(victim["tenant_id"]),
            victim["tenant_id"],
            "calls",
            victim["record_id"],
            "transcript",
            "check",
        )
    assert access.decrypt_field(
        cp,
        store,
        out,
        admin_of(other["tenant_id"]),
        other["tenant_id"],
        "calls",
        other["record_id"],
        "transcript",
        "check",
    )
    with pytest.raises(keys.ShreddedError):
        keys.rotate(cp, store, victim["tenant_id"], OPS)
    assert [e["action"] for e in audit.entries(cp)][-2:] == ["keys_shred", "decrypt"]


def test_retention_removes_exactly_the_expired(env):
    cp, store, out, tenants = env
    gone = next(t for t in tenants.values() if t.status == "terminated")
    terminated = _dt.datetime.fromisoformat(gone.terminated_at.replace("Z", "+00:00"))
    before = Counter(row_key(d, r) for d, r in all_rows(out))

    def expected(after_days: int) -> Counter:
        """What must remain: everything but the terminated tenant's expired categories."""
        keep = Counter()
        for d, r in all_rows(out):
            content = d in ("registrations", "chat_messages", "_deadletter") and after_days >= 28
            call_info = d in ("calls", "telemetry") and after_days >= 60
            if r.get("tenant_id") == gone.tenant_id and (content or call_info):
                continue
            keep[row_key(d, r)] += 1
        return keep

    call_info_before = {d for d, r in all_rows(out) if r.get("tenant_id") == gone.tenant_id} & {"calls", "telemetry"}
    assert call_info_before, "the corpus must give the terminated tenant some call information"

    dry = retention.plan_and_apply(cp, store, out, OPS, terminated + _dt.timedelta(days=30), dry_run=True, now=LATER)
    assert dry and Counter(row_key(d, r) for d, r in all_rows(out)) == before
    want = expected(30)
    retention.plan_and_apply(cp, store, out, OPS, terminated + _dt.timedelta(days=30), dry_run=False, now=LATER,
                             confirm=True)
    assert Counter(row_key(d, r) for d, r in all_rows(out)) == want
    assert store.states(gone.tenant_id, "content") == {1: "destroyed"}
    assert {d for d, r in all_rows(out) if r.get("tenant_id") == gone.tenant_id} & {"calls", "telemetry"} == (
        call_info_before
    )
    want = expected(61)
    retention.plan_and_apply(cp, store, out, OPS, terminated + _dt.timedelta(days=61), dry_run=False, now=LATER,
                             confirm=True)
    assert Counter(row_key(d, r) for d, r in all_rows(out)) == want
    assert not any(r.get("tenant_id") == gone.tenant_id for d, r in all_rows(out) if d != "usage_daily")
    assert any(r["tenant_id"] == gone.tenant_id for d, r in all_rows(out) if d == "usage_daily")
    # One year on: telemetry and dead-letter partitions of October 2026 are host/usage data past a year.
    retention.plan_and_apply(cp, store, out, OPS, _dt.datetime(2027, 11, 1, tzinfo=_dt.UTC), dry_run=False, now=LATER,
                             confirm=True)
    left = Counter(d for d, _ in all_rows(out))
    assert left["telemetry"] == 0 and left["calls"] > 0 and left["chat_messages"] > 0 and left["usage_daily"] > 0
    assert list(out.glob("region=*/dataset=telemetry/dt=2026-10-*")) == []
    runs = [e for e in audit.entries(cp) if e["action"] == "retention_run"]
    assert [e["outcome"] for e in runs] == ["dry_run", "intent", "ok", "intent", "ok", "intent", "ok"]


def test_retention_commits_its_intent_before_touching_anything(env, monkeypatch):
    cp, keystore, out, tenants = env
    gone = next(t for t in tenants.values() if t.status == "terminated")
    as_of = _dt.datetime.fromisoformat(gone.terminated_at.replace("Z", "+00:00")) + _dt.timedelta(days=61)
    seen: list[list[str]] = []
    real_delete, real_rewrite, real_destroy = store_mod.delete_file, store_mod.rewrite_without, keystore.destroy

    def outcomes():
        seen.append([e["outcome"] for e in audit.entries(cp) if e["action"] == "retention_run"])

    monkeypatch.setattr(store_mod, "delete_file", lambda *a: (outcomes(), real_delete(*a))[1])
    monkeypatch.setattr(store_mod, "rewrite_without", lambda *a: (outcomes(), real_rewrite(*a))[1])
    monkeypatch.setattr(keystore, "destroy", lambda *a, **k: (outcomes(), real_destroy(*a, **k))[1])
    retention.plan_and_apply(cp, keystore, out, OPS, as_of, dry_run=False, now=LATER, confirm=True)
    assert seen and all(s == ["intent"] for s in seen)  # every irreversible step ran after the intent
    runs = [e for e in audit.entries(cp) if e["action"] == "retention_run"]
    assert [e["outcome"] for e in runs] == ["intent", "ok"]
    assert json.loads(runs[1]["details"])["intent"] == runs[0]["seq"]


def _subject(out: Path, corpus: Path) -> tuple[str, str, str]:
    row = a_call(out)
    original = inputs(corpus)[row["record_id"]]
    return row["tenant_id"], "phone", original["calling_number"]


def test_deletion_leaves_no_trace_and_keeps_others(env, corpus):
    cp, store, out, tenants = env
    tenant, kind, value = _subject(out, corpus)
    region = tenants[tenant].region
    pseudonyms = dsar.subject_pseudonyms(store, tenant, region, kind, value)
    subject_records = dsar.find_subject_records(out, region, tenant, kind, tuple(pseudonyms))
    assert subject_records["calls"]
    ids = set().union(*subject_records.values())
    before = Counter(row_key(d, r) for d, r in all_rows(out))
    admin = admin_of(tenant)
    request_id = dsar.open_request(cp, store, admin, tenant, "deletion", kind, value)
    with pytest.raises(dsar.RequestStateError, match="confirm the subject's identity"):
        dsar.execute(cp, store, out, admin, request_id)
    dsar.confirm_identity(cp, second_admin(admin), request_id, "caller verified last invoice amount and account PIN")
    result = dsar.execute(cp, store, out, admin, request_id)
    after = Counter(row_key(d, r) for d, r in all_rows(out))
    removed = before - after
    assert result["rows_removed"] == sum(removed.values()) > 0
    assert {k[2] for k in removed} == ids and after + removed == before
    haystack = json.dumps([r for _, r in all_rows(out)], default=lambda b: b.hex()).lower()
    assert all(p.lower() not in haystack for p in pseudonyms)
    assert value.lower() not in haystack
    with pytest.raises(dsar.RequestStateError, match="already completed"):
        dsar.execute(cp, store, out, admin, request_id)
    assert Counter(row_key(d, r) for d, r in all_rows(out)) == after
    assert dsar.get(cp, request_id).status == "completed"
    assert (
        dsar.get(cp, request_id).due_at[:10]
        == (_dt.datetime.fromisoformat(dsar.get(cp, request_id).received_at) + _dt.timedelta(days=30))
        .date()
        .isoformat()
    )
    stored = cp.one("SELECT subject_ciphertext FROM dsar_requests WHERE request_id = ?", (request_id,))[0]
    assert value.encode() not in bytes(stored)


def test_deletion_reaches_every_recorded_sink_root(env, corpus, tmp_path):
    import shutil

    from ccpipe.controlplane import sink_roots

    cp, keystore, out, tenants = env
    tenant, kind, value = _subject(out, corpus)
    second = tmp_path / "second-root"  # e.g. a region's own --sink, or another run's output
    shutil.copytree(out, second)
    sink_roots.record(cp, [str(out), str(second)], "run-a")
    region = tenants[tenant].region
    pseudonyms = tuple(dsar.subject_pseudonyms(keystore, tenant, region, kind, value))
    assert dsar.find_subject_records(second, region, tenant, kind, pseudonyms)
    admin = admin_of(tenant)
    request_id = dsar.open_request(cp, keystore, admin, tenant, "deletion", kind, value)
    dsar.confirm_identity(cp, second_admin(admin), request_id, "PIN")
    result = dsar.execute(cp, keystore, out, admin, request_id)
    assert sorted(result["sink_roots"]) == sorted(str(p.resolve()) for p in (out, second))
    for root in (out, second):
        assert dsar.find_subject_records(root, region, tenant, kind, pseudonyms) == {}
    stored = json.loads(cp.one("SELECT result FROM dsar_requests WHERE request_id = ?", (request_id,))[0])
    assert stored["sink_roots"] == result["sink_roots"]  # the completion record lists them


def test_access_and_encrypted_export(env, corpus, tmp_path):
    cp, store, out, _ = env
    tenant, kind, value = _subject(out, corpus)
    admin = admin_of(tenant)
    request_id = dsar.open_request(cp, store, admin, tenant, "export", kind, value)
    dsar.confirm_identity(cp, second_admin(admin), request_id, "verified by signed letter")
    bundle = tmp_path / "export.bin"
    with pytest.raises(ConfigError, match="passphrase"):
        dsar.execute(cp, store, out, admin, request_id, out=str(bundle), passphrase="short")
    dsar.execute(cp, store, out, admin, request_id, out=str(bundle), passphrase="correct horse battery staple")
    blob = bundle.read_bytes()
    assert value.encode() not in blob
    context = f"ccpipe-export/v1|{request_id}".encode()
    report = json.loads(dsar.open_bundle(blob, "correct horse battery staple", context))
    calls = next(c for c in report["data_held"] if c["category"] == "Calls with the contact center")
    assert any(r.get("calling_number") == value for r in calls["records"])
    assert {"why", "where", "how_long"} <= set(calls)
    # Third-party data and internals are left out: no agent, no pseudonyms, key versions or offsets.
    text = json.dumps(report)
    for internal in ("agent_id", "_pseudonym", "key_version", "record_id", "source"):
        assert internal not in text, internal
    assert not any("dtmf_digits" in r for c in report["data_held"] for r in c["records"])  # a secret: not shown
    with pytest.raises(Exception):  # noqa: B017 - cryptography raises InvalidTag
        dsar.open_bundle(blob, "wrong passphrase!!", context)
    access_id = dsar.open_request(cp, store, admin, tenant, "access", kind, value)
    dsar.confirm_identity(cp, second_admin(admin), access_id, "verified by signed letter")
    readable = tmp_path / "access.json"
    result = dsar.execute(cp, store, out, admin, access_id, out=str(readable))
    held = json.loads(readable.read_text())["data_held"]
    assert result["rows"] == sum(len(c["records"]) for c in held) > 0
    assert oct(readable.stat().st_mode)[-3:] == "600"


def test_rectification(env, corpus):
    cp, store, out, tenants = env
    reg = next(r for d, r in all_rows(out) if d == "registrations")
    tenant = reg["tenant_id"]
    original = {
        json.loads(line)["record_id"]: json.loads(line)
        for line in (corpus / "input" / "registrations.jsonl").read_text().splitlines()
    }[reg["record_id"]]
    admin = admin_of(tenant)
    request_id = dsar.open_request(cp, store, admin, tenant, "rectification", "email", original["email"])
    dsar.confirm_identity(cp, second_admin(admin), request_id, "verified via account login")
    result = dsar.execute(cp, store, out, admin, request_id, changes={"email": "New.Address@Example.org"})
    assert result["rows_rectified"] == 1
    assert (
        access.decrypt_field(
            cp, store, out, admin, tenant, "registrations", reg["record_id"], "email", "verify rectification"
        )
        == "New.Address@Example.org"
    )
    new_pseudonyms = dsar.subject_pseudonyms(store, tenant, tenants[tenant].region, "email", "new.address@example.org")
    assert dsar.find_subject_records(out, tenants[tenant].region, tenant, "email", tuple(new_pseudonyms)) == {
        "registrations": {reg["record_id"]}
    }


def test_restriction_dead_letters_the_subjects_new_records(env, corpus, tmp_path):
    from conftest import make_config

    from pipelines.batch import pipeline_options, run

    cp, store, out, tenants = env
    row = a_call(out)
    tenant = row["tenant_id"]
    agent = inputs(corpus)[row["record_id"]]["agent_id"]
    admin = admin_of(tenant)
    request_id = dsar.open_request(cp, store, admin, tenant, "restriction", "agent_id", agent)
    dsar.confirm_identity(cp, second_admin(admin), request_id, "agent confirmed by HR ticket")
    dsar.execute(cp, store, out, admin, request_id)
    config = make_config(corpus, tmp_path / "out2", Path(store._config.path).parent, "restricted")
    from dataclasses import replace

    manifest = run(replace(config, restricted=dsar.restricted_pseudonyms(cp)), pipeline_options("FnApiRunner", 1))
    assert manifest["reconciled"]
    restricted = [r for d, r in all_rows(tmp_path / "out2") if d == "_deadletter" and r["reason"] == "restricted"]
    expected = {rid for rid, rec in inputs(corpus).items() if rec["tenant_id"] == tenant and rec["agent_id"] == agent}
    assert {r["record_id"] for r in restricted} >= expected and expected
    assert not {r["record_id"] for d, r in all_rows(tmp_path / "out2") if d == "calls"} & expected


def test_restriction_survives_key_rotation(env, corpus):
    cp, keystore, out, tenants = env
    row = a_call(out)
    tenant = row["tenant_id"]
    agent = inputs(corpus)[row["record_id"]]["agent_id"]
    admin = admin_of(tenant)
    request_id = dsar.open_request(cp, keystore, admin, tenant, "restriction", "agent_id", agent)
    dsar.confirm_identity(cp, second_admin(admin), request_id, "agent confirmed by HR ticket")
    dsar.execute(cp, keystore, out, admin, request_id)
    keys.rotate(cp, keystore, tenant, OPS)
    region = tenants[tenant].region
    newest = max(keystore.usable_versions(tenant, "pseudonym"), key=lambda k: k.version)
    new_pseudonym = pseudonym.pseudonymize(newest, "agent_id", pseudonym.normalize("agent_id", agent, region))
    assert (tenant, new_pseudonym) not in dsar.restricted_pseudonyms(cp)  # what the stored pseudonyms cover
    assert (tenant, new_pseudonym) in dsar.restricted_pseudonyms(cp, keystore)  # every usable version now


def test_operator_needs_a_grant_and_refusals_are_audited(env):
    cp, store, out, _ = env
    row = a_call(out)
    tenant = row["tenant_id"]
    with pytest.raises(access.AccessDeniedError, match="no active grant"):
        access.decrypt_field(cp, store, out, OPS, tenant, "calls", row["record_id"], "transcript", "debugging")
    last = audit.entries(cp)[-1]
    assert (last["actor"], last["action"], last["outcome"], last["tenant_id"]) == (
        "ops-anna",
        "decrypt",
        "refused",
        tenant,
    )
    with pytest.raises(access.AccessDeniedError):
        access.add_grant(cp, OPS, tenant, "ops-anna", 3, "self-grant")
    other_admin = audit.Actor("admin@else", "customer_admin", "tnt-someone-else")
    with pytest.raises(access.AccessDeniedError):
        access.decrypt_field(cp, store, out, other_admin, tenant, "calls", row["record_id"], "transcript", "peek")
    access.add_grant(cp, admin_of(tenant), tenant, "ops-anna", 3, "ticket 4411: transcript garbled")
    assert access.decrypt_field(cp, store, out, OPS, tenant, "calls", row["record_id"], "transcript", "ticket 4411")
    assert audit.verify(cp) == []
    assert [e["outcome"] for e in audit.entries(cp) if e["action"] == "decrypt"] == ["refused", "refused", "ok"]


def test_errors_are_clear_and_change_nothing(env, corpus):
    cp, store, out, tenants = env
    entries_before = len(audit.entries(cp))
    with pytest.raises(tenants_repo.NotFoundError, match="unknown tenant 'tnt-nope'"):
        keys.rotate(cp, store, "tnt-nope", OPS)
    with pytest.raises(tenants_repo.NotFoundError, match="unknown tenant"):
        dsar.open_request(cp, store, OPS, "tnt-nope", "deletion", "email", "x@example.com")
    tenant = a_call(out)["tenant_id"]
    request_id = dsar.open_request(cp, store, admin_of(tenant), tenant, "deletion", "email", "nobody@example.com")
    dsar.confirm_identity(cp, second_admin(admin_of(tenant)), request_id, "email round-trip")
    before = Counter(row_key(d, r) for d, r in all_rows(out))
    result = dsar.execute(cp, store, out, admin_of(tenant), request_id)
    assert result["no_data_held"] is True and result["rows_removed"] == 0  # a formal answer, not an error
    assert Counter(row_key(d, r) for d, r in all_rows(out)) == before
    assert dsar.get(cp, request_id).status == "completed"
    assert audit.verify(cp) == []
    assert len(audit.entries(cp)) > entries_before + 2  # open + identity + the completed answer


def test_access_request_for_a_subject_without_data_gets_a_formal_answer(env, tmp_path):
    cp, store, out, tenants = env
    tenant = a_call(out)["tenant_id"]
    request_id = dsar.open_request(cp, store, admin_of(tenant), tenant, "access", "email", "nobody@example.com")
    dsar.confirm_identity(cp, second_admin(admin_of(tenant)), request_id, "email round-trip")
    report = tmp_path / "answer.json"
    result = dsar.execute(cp, store, out, admin_of(tenant), request_id, out=str(report))
    assert result["no_data_held"] is True and result["rows"] == 0
    answer = json.loads(report.read_text())
    assert answer["data_held"] == [] and "No personal data of this subject is held" in answer["answer"]
    assert dsar.get(cp, request_id).status == "completed"
    assert [e["outcome"] for e in audit.entries(cp) if e["target"] == request_id][-1] == "ok"


def test_unreachable_database_is_a_clear_error(tmp_path):
    with pytest.raises(ControlPlaneError, match=r"cannot connect to the control plane at postgresql://ccpipe:\*\*\*@"):
        ControlPlane("postgresql://ccpipe:secret@127.0.0.1:1/control")
    with pytest.raises(ControlPlaneError, match="does not exist"):
        ControlPlane(f"sqlite:///{tmp_path / 'missing' / 'control.db'}")


def test_cli_audit_verify_and_retention_dry_run(batch_run, corpus, tmp_path):
    import subprocess
    import sys

    cp, store, out, _ = governed_copy(batch_run, corpus, tmp_path, f"sqlite:///{tmp_path / 'control.db'}")
    args = [
        "--control-plane",
        cp.url,
        "--keystore",
        store._config.path,
        "--master-key-file",
        store._config.master_key_file,
    ]
    done = subprocess.run(
        [sys.executable, "-m", "ccpipe.cli", "audit", "verify", "--control-plane", cp.url],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "chain verified" in done.stdout
    dry = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccpipe.cli",
            "retention",
            "run",
            "--output",
            str(out),
            "--as-of",
            "2027-12-01",
            "--dry-run",
            "--actor",
            "ops",
            "--role",
            "operator",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing changed" in dry.stdout
    db = sqlite3.connect(cp.url.removeprefix("sqlite:///"))
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    db.commit()
    done = subprocess.run(
        [sys.executable, "-m", "ccpipe.cli", "audit", "verify", "--control-plane", cp.url],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "TAMPERED" in done.stderr


def test_retention_guard_rails(env, tmp_path):
    cp, keystore, out, tenants = env
    gone = next(t for t in tenants.values() if t.status == "terminated")
    as_of = _dt.datetime.fromisoformat(gone.terminated_at.replace("Z", "+00:00")) + _dt.timedelta(days=30)
    before = Counter(row_key(d, r) for d, r in all_rows(out))
    with pytest.raises(access.AccessDeniedError, match="operators only"):
        retention.plan_and_apply(cp, keystore, out, admin_of(gone.tenant_id), as_of, dry_run=False, now=LATER)
    with pytest.raises(ConfigError, match="is in the future"):
        retention.plan_and_apply(cp, keystore, out, OPS, LATER + _dt.timedelta(days=1), dry_run=False, now=LATER)
    with pytest.raises(ConfigError, match="does not exist"):
        retention.plan_and_apply(cp, keystore, tmp_path / "typo", OPS, as_of, dry_run=True, now=LATER)
    with pytest.raises(ConfigError, match=f"would destroy the content keys of {gone.tenant_id}"):
        retention.plan_and_apply(cp, keystore, out, OPS, as_of, dry_run=False, now=LATER)
    assert Counter(row_key(d, r) for d, r in all_rows(out)) == before  # nothing partially applied
    assert keystore.states(gone.tenant_id, "content") == {1: "active"}
    refusals = [e for e in audit.entries(cp) if e["action"] == "retention_run"]
    assert [e["outcome"] for e in refusals] == ["refused"] * 4
    assert [e["reason"] for e in refusals] == ["operators only", "as_of in the future", "missing sink root",
                                               "content keys to destroy, not confirmed"]


def test_operator_cannot_bypass_decrypt_through_a_data_subject_request(env, corpus):
    cp, keystore, out, tenants = env
    row = a_call(out)
    tenant = row["tenant_id"]
    agent = inputs(corpus)[row["record_id"]]["agent_id"]
    request_id = dsar.open_request(cp, keystore, OPS, tenant, "access", "agent_id", agent)
    with pytest.raises(access.AccessDeniedError, match="someone else must confirm"):
        dsar.confirm_identity(cp, OPS, request_id, "I checked it myself")
    dsar.confirm_identity(cp, admin_of(tenant), request_id, "HR ticket 77")
    with pytest.raises(access.AccessDeniedError, match="no active grant"):
        dsar.execute(cp, keystore, out, OPS, request_id, out=str(out / "leak.json"))
    assert not (out / "leak.json").exists()
    assert dsar.get(cp, request_id).status == "identity_confirmed"
    outcomes = [(e["action"], e["outcome"]) for e in audit.entries(cp) if e["outcome"] == "refused"]
    assert outcomes == [("dsar_identity", "refused"), ("decrypt", "refused")]
    access.add_grant(cp, admin_of(tenant), tenant, OPS.name, 1, "DSAR 77")
    assert dsar.execute(cp, keystore, out, OPS, request_id, out=str(out / "ok.json"))["rows"] > 0


def test_a_legal_authority_cannot_be_claimed_for_an_ordinary_request(env, corpus):
    cp, keystore, out, tenants = env
    tenant, kind, value = _subject(out, corpus)
    request_id = dsar.open_request(cp, keystore, OPS, tenant, "export", kind, value)
    dsar.confirm_identity(cp, admin_of(tenant), request_id, "PIN")
    with pytest.raises(access.AccessDeniedError, match="not opened on a legal authority"):
        dsar.execute(cp, keystore, out, OPS, request_id, out=str(out / "x.bin"), passphrase="p" * 20,
                     authority="made up")
