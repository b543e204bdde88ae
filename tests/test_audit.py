"""The keyed audit chain: signed heads, forged chains, concurrent appends, intents before destructive steps.

SQLite and a real PostgreSQL server (``control_plane_url``). Each test that needs the audit key binds
its own keystore to the control plane.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import governed_copy

from ccpipe import store as sink_store
from ccpipe.controlplane import audit, dsar, migrations
from ccpipe.controlplane.db import open_control_plane
from ccpipe.keystore import KeystoreConfig, SqliteKeyStore

OPS = audit.Actor("ops-anna", "operator")
UNANCHORED = ("entries 1-{n} are unkeyed and not anchored: no audit.anchor entry pins them (anyone who can write the "
              "database can write unkeyed entries; if this log was upgraded from before the keyed chain, an "
              "operator anchors them once with 'ccpipe audit anchor')")
FORGER_KEY = b"f" * 32


@pytest.fixture
def keys(tmp_path):
    store = SqliteKeyStore(KeystoreConfig(str(tmp_path / "ks" / "keystore.db"), str(tmp_path / "ks" / "master.key")),
                           create=True)
    yield store
    store.close()


@pytest.fixture
def cp(control_plane_url, keys):
    cp = open_control_plane(control_plane_url, keys=keys)
    yield cp
    cp.close()


def bypass_triggers(cp) -> None:
    """Someone with database rights (not the key) disables the append-only triggers."""
    if cp.dialect == "sqlite":
        cp.execute("DROP TRIGGER IF EXISTS audit_no_update")
        cp.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    else:
        cp.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_no_change")


def rewrite_chain(cp, digest, key_version) -> None:
    """Replace every entry by a re-chained copy (reason changed) under ``digest(prev, fields)``."""
    rows = audit.entries(cp)
    bypass_triggers(cp)
    cp.execute("DELETE FROM audit_log")
    prev = audit.GENESIS
    for e in rows:
        fields = {k: e[k] for k in audit._FIELDS}
        fields["reason"] = "nothing to see"
        version = key_version(e)
        h = digest(prev, {**fields, "key_version": version} if version is not None else fields)
        cp.execute(
            "INSERT INTO audit_log (seq, at, actor, role, action, tenant_id, target, reason, outcome, details, "
            "prev_hash, hash, key_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*(fields[k] for k in audit._FIELDS), prev, h, version),
        )
        prev = h


def test_truncating_the_tail_fails_verify_against_the_signed_head(cp):
    for i in range(7):
        audit.append(cp, OPS, "test", tenant_id="t", reason=f"entry {i}")
    head = audit.head(cp)
    assert (head["seq"], head["hash"]) == (7, audit.entries(cp)[-1]["hash"])
    assert set(head) == {"seq", "hash", "key_version", "exported_at", "mac"}
    audit.append(cp, OPS, "later")
    assert audit.verify(cp, head) == []  # growing past the head is fine
    bypass_triggers(cp)
    cp.execute("DELETE FROM audit_log WHERE seq >= 6")
    assert audit.verify(cp) == []  # a shorter chain is still a valid chain ...
    assert audit.verify(cp, head) == [  # ... but not the one that was signed
        "the log ends at entry 5 but the signed head is at entry 7: entries were removed from the tail (truncated)"
    ]


def test_rewritten_entry_at_the_head_and_forged_heads_fail(cp, keys):
    for i in range(3):
        audit.append(cp, OPS, "test", reason=f"entry {i}")
    head = audit.head(cp)
    forged = dict(head, seq=2, hash=audit.entries(cp)[1]["hash"])
    assert audit.verify(cp, forged) == ["the signed head's MAC does not verify (forged, or signed under another key)"]
    assert audit.verify(cp, {"seq": 3}) == [
        "the signed head is malformed (expected {seq, hash, key_version, exported_at, mac})"]
    # The whole log replaced by a chain re-made under the real key (an insider with the key): the
    # head still notices that entry 3 is not the one signed.
    key = keys.current(audit.AUDIT_OWNER, audit.AUDIT_PURPOSE)
    rewrite_chain(cp, lambda prev, f: audit._keyed_hash(key, prev, {k: v for k, v in f.items() if k != "key_version"}),
                  lambda e: e["key_version"])
    assert audit.verify(cp) == []
    assert audit.verify(cp, head) == ["entry 3 differs from the signed head (rewritten)"]


@pytest.mark.parametrize("forgery", ["sha256", "hmac_other_key", "unkeyed_rows"])
def test_rewriting_the_whole_chain_without_the_key_fails(cp, forgery):
    for i in range(4):
        audit.append(cp, OPS, "test", tenant_id="t", reason=f"entry {i}")
    if forgery == "sha256":  # the chain as it was computed before the log was keyed
        rewrite_chain(cp, lambda prev, f: hashlib.sha256((prev + "|" + audit._canonical(f)).encode()).hexdigest(),
                      lambda e: e["key_version"])
    elif forgery == "hmac_other_key":
        import hmac

        rewrite_chain(cp, lambda prev, f: hmac.new(FORGER_KEY, (audit._ENTRY_LABEL + prev + "|"
                                                                + audit._canonical(f)).encode(), "sha256").hexdigest(),
                      lambda e: e["key_version"])
    else:  # passed off as entries from before the log was keyed
        rewrite_chain(cp, audit._entry_hash, lambda e: None)
    problems = audit.verify(cp)
    if forgery == "unkeyed_rows":
        assert problems == [UNANCHORED.format(n=4)]
    else:
        assert problems == [f"entry {n}: content does not match its hash (edited)" for n in range(1, 5)]


def test_no_audit_key_no_entry_and_the_action_rolls_back(cp, keys):
    audit.append(cp, OPS, "first")
    keys.destroy(audit.AUDIT_OWNER, audit.AUDIT_PURPOSE)
    with pytest.raises(audit.AuditError, match="audit key is unavailable"):
        with cp.transaction():
            cp.execute("INSERT INTO tenants (tenant_id, name, region, status, updated_at) "
                       "VALUES ('tnt-x', 'X', 'nl', 'active', '2026-01-01')")
            audit.append(cp, OPS, "tenants_import")
    assert cp.one("SELECT COUNT(*) FROM tenants")[0] == 0
    assert len(audit.entries(cp)) == 1
    assert audit.verify(cp)[0].startswith("entry 1: cannot be checked: audit key v1 unavailable")
    with pytest.raises(audit.AuditError):
        audit.head(cp)


def test_concurrent_appends_all_land_on_one_chain(cp, keys, control_plane_url):
    audit.append(cp, OPS, "warm-up")  # the audit key exists before the crowd arrives
    # SQLite: 200 connections at once; PostgreSQL: 40 connections (its default limit is 100) x 5.
    workers, each = (200, 1) if cp.dialect == "sqlite" else (40, 5)
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def work(n: int) -> None:
        try:
            mine = open_control_plane(control_plane_url, keys=keys)
            try:
                start.wait()
                for i in range(each):
                    audit.append(mine, OPS, "concurrent", target=f"{n}/{i}")
            finally:
                mine.close()
        except BaseException as err:  # noqa: BLE001 - collected and reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = audit.entries(cp)
    assert [e["seq"] for e in rows] == list(range(1, 202))
    assert Counter(e["action"] for e in rows)["concurrent"] == 200
    assert len({e["target"] for e in rows if e["action"] == "concurrent"}) == 200
    assert audit.verify(cp) == []


def insert_unkeyed(cp, seqs, prev=audit.GENESIS, actor="ops") -> str:
    """Entries chained the old way (unkeyed SHA-256), as before the log was keyed, or as forged without the key."""
    for seq in seqs:
        fields = {"seq": seq, "at": f"2026-01-0{seq % 10}T00:00:00+00:00", "actor": actor, "role": "operator",
                  "action": "old", "tenant_id": None, "target": None, "reason": None, "outcome": "ok", "details": "{}"}
        digest = audit._entry_hash(prev, fields)
        cp.execute("INSERT INTO audit_log (seq, at, actor, role, action, tenant_id, target, reason, outcome, "
                   "details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*fields.values(), prev, digest))
        prev = digest
    return prev


def test_unkeyed_entries_from_before_the_upgrade_are_anchored_only_by_an_operator(control_plane_url, keys,
                                                                                   monkeypatch):
    # A control plane at schema version 2 with entries chained the old way (unkeyed SHA-256).
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
    old = open_control_plane(control_plane_url)
    prev = insert_unkeyed(old, (1, 2, 3))
    old.close()
    monkeypatch.undo()
    cp = open_control_plane(control_plane_url, keys=keys)  # migrates to the newest version: anchors nothing
    assert migrations.current_version(cp) == migrations.MIGRATIONS[-1][0] >= 3
    assert [e["key_version"] for e in audit.entries(cp)] == [None] * 3
    assert audit.verify(cp) == [UNANCHORED.format(n=3)]
    # Ordinary appends and head never anchor: the log stays unverified until an operator decides.
    assert audit.append(cp, OPS, "new") == 4
    assert audit.entries(cp)[3]["action"] == "new"
    assert audit.verify(cp) == [UNANCHORED.format(n=3)]
    with pytest.raises(audit.AuditError, match="not anchored"):
        audit.head(cp)
    with pytest.raises(audit.AuditError, match="audit.anchor"):
        audit.append(cp, OPS, audit.ANCHOR_ACTION)
    with pytest.raises(audit.AuditError, match="operator"):
        audit.anchor(cp, audit.SYSTEM, "upgrade")
    with pytest.raises(audit.AuditError, match="reason"):
        audit.anchor(cp, OPS, " ")
    assert audit.anchor(cp, OPS, "upgraded from 1.x; checked the old log") == 5
    anchor = audit.entries(cp)[4]
    assert (anchor["action"], anchor["actor"], anchor["reason"], anchor["key_version"]) == (
        audit.ANCHOR_ACTION, "ops-anna", "upgraded from 1.x; checked the old log", 1)
    assert json.loads(anchor["details"]) == {"unkeyed_entries": 3, "unkeyed_head": prev, "keyed_entries_before": 1}
    assert audit.verify(cp) == []
    assert audit.head(cp)["seq"] == 5
    with pytest.raises(audit.AuditError, match="anchored already"):  # once
        audit.anchor(cp, OPS, "again")
    bypass_triggers(cp)
    # The unkeyed prefix is pinned by the anchor: editing it is found ...
    cp.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    assert audit.verify(cp) == ["entry 2: content does not match its hash (edited)"]
    cp.execute("UPDATE audit_log SET actor = 'ops' WHERE seq = 2")
    # ... and so is an unkeyed entry slipped in after the keyed ones.
    tail = audit.entries(cp)[-1]
    insert_unkeyed(cp, (6,), prev=tail["hash"])
    assert audit.verify(cp) == ["entry 6: unkeyed entry after keyed ones (forged)"]
    cp.close()


@pytest.mark.parametrize("then", ["append", "head"])
def test_a_forged_unkeyed_history_is_never_anchored_by_ordinary_use(cp, then):
    """Regression: a database-only attacker replaced the keyed log by a made-up unkeyed chain; the next
    append (any command) or head used to sign an anchor over it, and verify then reported nothing."""
    for i in range(3):
        audit.append(cp, OPS, "decrypt", tenant_id="acme", target=f"rec{i}", reason="incident")
    bypass_triggers(cp)
    cp.execute("DELETE FROM audit_log")
    insert_unkeyed(cp, (1,), actor="bob")
    [problem] = audit.verify(cp)
    assert "not anchored" in problem
    if then == "append":
        audit.append(cp, OPS, "grants_list")
    else:
        with pytest.raises(audit.AuditError, match="no head exported"):
            audit.head(cp)
    assert audit.verify(cp) == [problem] == [UNANCHORED.format(n=1)]
    assert [e["action"] for e in audit.entries(cp)] == (["old", "grants_list"] if then == "append" else ["old"])


def test_signed_head_carries_its_export_time_under_the_mac(cp):
    audit.append(cp, OPS, "test")
    head = audit.head(cp)
    at = datetime.datetime.fromisoformat(head["exported_at"])
    assert at.utcoffset() == datetime.timedelta(0)
    assert abs(datetime.datetime.now(datetime.UTC) - at) < datetime.timedelta(minutes=5)
    assert audit.verify(cp, head) == []
    older = dict(head, exported_at="2020-01-01T00:00:00+00:00")  # made to look older/newer: MAC fails
    assert audit.verify(cp, older) == ["the signed head's MAC does not verify (forged, or signed under another key)"]
    for bad in (dict(head, exported_at="yesterday"), dict(head, exported_at="2026-01-01T00:00:00"),
                {k: v for k, v in head.items() if k != "exported_at"}):
        assert audit.verify(cp, bad) == [
            "the signed head is malformed (expected {seq, hash, key_version, exported_at, mac})"]


def test_intent_is_committed_before_the_step_and_a_failure_is_recorded(cp):
    seen = []
    with audit.intent(cp, OPS, "keys_shred", tenant_id="t", details={"planned": [1]}) as seq:
        other = open_control_plane(cp.url, keys=cp.keys)  # another connection sees it: committed
        seen = [(e["seq"], e["action"], e["outcome"]) for e in audit.entries(other)]
        other.close()
        audit.append(cp, OPS, "keys_shred", tenant_id="t", details={"intent": seq})
    assert seen == [(1, "keys_shred", "intent")]
    assert audit.open_intents(cp) == []
    with pytest.raises(RuntimeError, match="disk full"):
        with audit.intent(cp, OPS, "dsar_deletion", target="r1"):
            raise RuntimeError("disk full")
    last = audit.entries(cp)[-1]
    assert (last["action"], last["outcome"], json.loads(last["details"])) == (
        "dsar_deletion", "failed", {"intent": 3, "error": "RuntimeError"})
    with audit.intent(cp, OPS, "retention_run"):
        pass  # the step "crashed" before recording its outcome
    assert [e["seq"] for e in audit.open_intents(cp)] == [5]
    with cp.transaction(), pytest.raises(audit.AuditError, match="outside a transaction"):
        with audit.intent(cp, OPS, "keys_shred"):
            pass


# ---------------------------------------------------------------- data-subject deletion on real output


def _subject_request(env, corpus):
    from test_governance import _subject, admin_of, second_admin

    cp, store, out, tenants = env
    tenant, kind, value = _subject(out, corpus)
    admin = admin_of(tenant)
    request_id = dsar.open_request(cp, store, admin, tenant, "deletion", kind, value)
    dsar.confirm_identity(cp, second_admin(admin), request_id, "caller verified last invoice amount")
    return admin, request_id


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.glob("region=*/dataset=*/dt=*/*.parquet"))}


@pytest.fixture
def gov(batch_run, corpus, tmp_path):
    env = governed_copy(batch_run, corpus, tmp_path, f"sqlite:///{tmp_path / 'control.db'}")
    yield env
    env[0].close()


def test_dsar_deletion_writes_its_intent_before_rewriting_anything(gov, corpus, monkeypatch):
    cp, store, out, _ = gov
    admin, request_id = _subject_request(gov, corpus)
    rewrite = sink_store.rewrite_without
    logged_before_first_rewrite = []

    def watched(file, mask):
        if not logged_before_first_rewrite:
            other = open_control_plane(cp.url, keys=cp.keys)
            logged_before_first_rewrite.extend((e["action"], e["outcome"]) for e in audit.entries(other))
            other.close()
        return rewrite(file, mask)

    monkeypatch.setattr(sink_store, "rewrite_without", watched)
    result = dsar.execute(cp, store, out, admin, request_id)
    assert logged_before_first_rewrite[-1] == ("dsar_deletion", "intent")
    entries = audit.entries(cp)
    intent = next(e for e in entries if e["action"] == "dsar_deletion" and e["outcome"] == "intent")
    done = entries[-1]
    assert (done["action"], done["outcome"]) == ("dsar_deletion", "ok")
    assert json.loads(done["details"])["intent"] == intent["seq"] == result["intent"]
    assert audit.open_intents(cp) == [] and audit.verify(cp) == []


def test_dsar_deletion_without_the_audit_key_changes_nothing(gov, corpus, keys):
    cp, store, out, _ = gov
    admin, request_id = _subject_request(gov, corpus)
    keys.ensure_key(audit.AUDIT_OWNER, audit.AUDIT_PURPOSE)
    keys.destroy(audit.AUDIT_OWNER, audit.AUDIT_PURPOSE)
    cp.keys = keys  # the key manager now has no usable audit key
    before = _files(out)
    with pytest.raises(audit.AuditError):
        dsar.execute(cp, store, out, admin, request_id)
    assert _files(out) == before
    assert dsar.get(cp, request_id).status == "identity_confirmed"


def test_dsar_deletion_that_fails_part_way_is_audited(gov, corpus, monkeypatch):
    cp, store, out, _ = gov
    admin, request_id = _subject_request(gov, corpus)
    calls = []

    def failing(file, mask):
        calls.append(file)
        raise OSError("disk full")

    monkeypatch.setattr(sink_store, "rewrite_without", failing)
    with pytest.raises(OSError):
        dsar.execute(cp, store, out, admin, request_id)
    assert calls
    outcomes = [(e["action"], e["outcome"]) for e in audit.entries(cp)][-2:]
    assert outcomes == [("dsar_deletion", "intent"), ("dsar_deletion", "failed")]
    assert dsar.get(cp, request_id).status == "identity_confirmed"


# ---------------------------------------------------------------- command line


def test_cli_head_and_verify_against_it(tmp_path, keys):
    url = f"sqlite:///{tmp_path / 'control.db'}"
    cp = open_control_plane(url, keys=keys)
    for i in range(4):
        audit.append(cp, OPS, "test", reason=f"entry {i}")
    flags = ["--control-plane", url, "--keystore", keys._config.path, "--master-key-file", keys._config.master_key_file]
    head_file = tmp_path / "audit-head.json"

    def ccpipe(*args):
        return subprocess.run([sys.executable, "-m", "ccpipe.cli", "audit", *args, *flags],
                              capture_output=True, text=True)

    done = ccpipe("head", "--out", str(head_file))
    assert done.returncode == 0, done.stderr
    assert set(json.loads(head_file.read_text())) == {"seq", "hash", "key_version", "exported_at", "mac"}
    assert head_file.stat().st_mode & 0o777 == 0o600
    done = ccpipe("verify", "--against", str(head_file))
    exported_at = json.loads(head_file.read_text())["exported_at"]
    assert done.returncode == 0, done.stderr
    assert f"matches the signed head at entry 4 exported at {exported_at}" in done.stdout
    bypass_triggers(cp)
    cp.execute("DELETE FROM audit_log WHERE seq = 4")
    assert ccpipe("verify").returncode == 0  # the chain alone cannot tell ...
    done = ccpipe("verify", "--against", str(head_file))
    assert done.returncode == 1 and "truncated" in done.stderr  # ... the signed head can
    head_file.write_text(json.dumps(dict(json.loads(head_file.read_text()), seq=3)))
    done = ccpipe("verify", "--against", str(head_file))
    assert done.returncode == 1 and "MAC does not verify" in done.stderr
    cp.close()


def test_a_keystore_config_is_opened_on_first_use(tmp_path, keys):
    cp = open_control_plane(f"sqlite:///{tmp_path / 'control.db'}", keys=keys._config)
    assert isinstance(cp.keys, KeystoreConfig)  # nothing opened until the audit log needs its key
    audit.append(cp, OPS, "test")
    assert audit.entries(cp)[0]["key_version"] == keys.current(audit.AUDIT_OWNER, audit.AUDIT_PURPOSE).version
    assert audit.verify(cp) == []
    cp.close()


def test_cli_head_out_does_not_follow_a_planted_symlink(tmp_path, keys):
    """Regression: 'audit head --out' wrote through a predictable OUT.tmp-PID path, following symlinks."""
    from ccpipe.cli.governance import audit_main

    url = f"sqlite:///{tmp_path / 'control.db'}"
    cp = open_control_plane(url, keys=keys)
    audit.append(cp, OPS, "test")
    cp.close()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "heads" / "audit-head.json"
    out.parent.mkdir()
    (out.parent / f"audit-head.json.tmp-{os.getpid()}").symlink_to(victim)  # the old temporary name
    flags = ["--control-plane", url, "--keystore", keys._config.path, "--master-key-file",
             keys._config.master_key_file]
    assert audit_main(["head", "--out", str(out), *flags]) == 0
    assert victim.read_text() == "precious\n"
    assert not out.is_symlink() and out.stat().st_mode & 0o777 == 0o600
    assert json.loads(out.read_text())["seq"] == 1
    # A symlink at OUT itself is replaced, not written through.
    out.unlink()
    out.symlink_to(victim)
    assert audit_main(["head", "--out", str(out), *flags]) == 0
    assert victim.read_text() == "precious\n" and not out.is_symlink()
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.startswith("audit-head.json.tmp-")) == [
        "audit-head.json"]  # no temporary file left behind


def test_cli_anchor_is_explicit_and_audited(tmp_path, keys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'control.db'}"
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
    old = open_control_plane(url)
    insert_unkeyed(old, (1, 2))
    old.close()
    monkeypatch.undo()
    flags = ["--control-plane", url, "--keystore", keys._config.path, "--master-key-file", keys._config.master_key_file]

    def ccpipe(*args):
        return subprocess.run([sys.executable, "-m", "ccpipe.cli", "audit", *args, *flags],
                              capture_output=True, text=True)

    done = ccpipe("verify")
    assert done.returncode == 1 and "not anchored" in done.stderr
    assert ccpipe("anchor").returncode == 2  # who and why are required
    done = ccpipe("anchor", "--actor", "ops-anna", "--reason", "upgrade from 1.x")
    assert done.returncode == 0 and "anchored by entry 3" in done.stdout, done.stderr
    assert ccpipe("verify").returncode == 0
    done = ccpipe("anchor", "--actor", "ops-anna", "--reason", "again")
    assert done.returncode != 0 and "anchored already" in done.stderr
    cp = open_control_plane(url, keys=keys)
    entry = audit.entries(cp)[-1]
    assert (entry["seq"], entry["action"], entry["actor"], entry["role"], entry["reason"]) == (
        3, audit.ANCHOR_ACTION, "ops-anna", "operator", "upgrade from 1.x")
    cp.close()
