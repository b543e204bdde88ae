"""End to end: the batch pipeline on a generated corpus, output read back from Parquet."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_config, read_truth, strings_in

from ccpipe import crypto
from ccpipe.errors import MasterKeyError
from ccpipe.keystore import SqliteKeyStore, deadletter_key_owner
from ccpipe.tenants import load_tenants
from pipelines.batch import pipeline_options, run

STRUCTURED_NEVER_PLAIN = {
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "MAC_ADDRESS",
    "IP_ADDRESS",
    "CREDIT_CARD",
    "USERNAME",
    "AGENT_ID",
    "PASSWORD",
    "DTMF",
}
FREE_TEXT_NEVER_SURVIVES = {"EMAIL_ADDRESS", "CREDIT_CARD", "IP_ADDRESS", "MAC_ADDRESS"}


def parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


def partition_of(path: Path) -> dict[str, str]:
    return dict(part.split("=", 1) for part in path.parts if "=" in part)


def all_strings(table: pa.Table) -> list[str]:
    """Every string value of every column (nested too); binary columns as latin-1 text."""
    return strings_in(table.to_pylist())


def rows(root: Path, dataset: str) -> list[tuple[dict, dict]]:
    out = []
    for path in parquet_files(root):
        part = partition_of(path.relative_to(root))
        if part["dataset"] == dataset:
            out.extend((part, r) for r in pq.read_table(path).to_pylist())
    return out


def input_records(corpus: Path, with_bad: bool = False) -> dict[str, dict]:
    """Good input records by record id; ``with_bad`` adds the bad slice's parseable objects."""
    records = {}
    for path in (corpus / "input").iterdir():
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for line in data.decode().splitlines():
            obj = json.loads(line)
            records[obj["record_id"]] = obj
    if with_bad:
        for line in (corpus / "bad" / "bad.jsonl").read_bytes().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "record_id" in obj:
                records.setdefault(obj["record_id"], obj)
    return records


def test_manifest_reconciles_exactly(batch_run, corpus):
    config, manifest = batch_run
    inputs = input_records(corpus)
    bad_lines = (corpus / "bad" / "bad.jsonl").read_bytes().count(b"\n")
    assert manifest["records_read"] == len(inputs) + bad_lines
    assert manifest["reconciled"] is True
    assert manifest["records_read"] == manifest["records_written"] + manifest["records_dead_lettered"]
    # What the manifest says was written is what the files hold.
    out = Path(config.sinks.default_root)
    for dataset in ("calls", "telemetry", "chat_messages", "registrations"):
        on_disk = Counter(
            part["region"]
            for part, _ in {(tuple(p.items()), r["record_id"]): (p, r) for p, r in rows(out, dataset)}.values()
        )
        in_manifest = Counter(
            {region: per.get(dataset, 0) for region, per in manifest["records_written_by_region"].items()}
        )
        assert +on_disk == +in_manifest, dataset
    assert sum(manifest["dead_letters_by_reason"].values()) == len(rows(out, "_deadletter"))


def test_no_record_outside_its_region(batch_run, corpus):
    config, _ = batch_run
    tenants = load_tenants(corpus / "tenants.yaml")
    out = Path(config.sinks.default_root)
    seen = Counter()
    for path in parquet_files(out):
        part = partition_of(path.relative_to(out))
        for row in pq.read_table(path).to_pylist():
            tenant = tenants.get(row.get("tenant_id") or "")
            if part["dataset"] == "_deadletter" and (tenant is None or tenant.region == "ca"):
                assert part["region"] == "quarantine", row["reason"]
            else:
                assert part["region"] == tenant.region, (path, row["tenant_id"])
            seen[part["region"]] += 1
    assert set(seen) == {"nl", "us", "uk", "sg", "hk", "au", "br", "quarantine"}


def test_no_planted_value_in_plain_text_anywhere(batch_run, corpus, capsys):
    config, _ = batch_run
    out = Path(config.sinks.default_root)
    haystack = "\n".join(s for path in parquet_files(out) for s in all_strings(pq.read_table(path))).lower()
    truth = read_truth(corpus)
    structured = [t for t in truth if t["start"] is None and t["entity_type"] in STRUCTURED_NEVER_PLAIN]
    assert len(structured) > 100
    leaked = [t for t in structured if t["value"].lower() in haystack]
    assert leaked == []
    must_not_survive = [t for t in truth if t["start"] is not None and t["entity_type"] in FREE_TEXT_NEVER_SURVIVES]
    assert len(must_not_survive) > 20
    assert [t for t in must_not_survive if t["value"].lower() in haystack] == []
    # Names, addresses, phone numbers and usernames in free text: measured, reported per type.
    report = Counter()
    for t in truth:
        if t["start"] is not None and t["entity_type"] not in FREE_TEXT_NEVER_SURVIVES:
            report[(t["entity_type"], "leaked" if t["value"].lower() in haystack else "redacted")] += 1
    with capsys.disabled():
        print("\nfree-text redaction on the fixture corpus (planted values):")
        for entity in sorted({e for e, _ in report}):
            total = report[(entity, "leaked")] + report[(entity, "redacted")]
            print(
                f"  {entity:<14} redacted {report[(entity, 'redacted')]:>4}/{total:<4} "
                f"leaked {report[(entity, 'leaked')]}"
            )


def test_customer_content_is_ciphertext_plus_redacted_copy(batch_run, corpus):
    config, _ = batch_run
    out = Path(config.sinks.default_root)
    originals = input_records(corpus, with_bad=True)
    store = SqliteKeyStore(config.keystore)
    checked = 0
    for part, row in rows(out, "calls"):
        original = originals[row["record_id"]]
        key = store.get(row["tenant_id"], "content", row["key_version"])
        for field in ("transcript", "wrapup_notes"):
            if field not in original:
                continue
            aad = crypto.field_aad(row["tenant_id"], part["region"], "calls", row["record_id"], field)
            assert crypto.decrypt(key, row[f"{field}_ciphertext"], aad).decode() == original[field]
            assert field not in row or row[field] is None
            assert row[f"{field}_redacted"] != original[field]
            checked += 1
        aad = crypto.field_aad(row["tenant_id"], part["region"], "calls", row["record_id"], "calling_number")
        if "calling_number" in original:
            plain = crypto.decrypt(key, row["calling_number_ciphertext"], aad).decode()
            assert plain == original["calling_number"]
    for part, row in rows(out, "chat_messages"):
        original = originals[row["record_id"]]
        key = store.get(row["tenant_id"], "content", row["key_version"])
        aad = crypto.field_aad(
            row["tenant_id"], part["region"], "chat_messages", row["record_id"], f"text:{row['seq']}"
        )
        text = next(m["text"] for m in original["messages"] if m["seq"] == row["seq"])
        assert crypto.decrypt(key, row["text_ciphertext"], aad).decode() == text
        checked += 1
    assert checked > 50
    assert set(pq.read_schema(parquet_files(out / "region=nl" / "dataset=chat_messages")[0]).names) >= {
        "text_redacted",
        "text_ciphertext",
        "pii_entities",
    }
    assert "text" not in pq.read_schema(parquet_files(out / "region=nl" / "dataset=chat_messages")[0]).names


def test_ciphertext_fails_in_another_context(batch_run):
    config, _ = batch_run
    out = Path(config.sinks.default_root)
    store = SqliteKeyStore(config.keystore)
    part, row = rows(out, "calls")[0]
    key = store.get(row["tenant_id"], "content", row["key_version"])
    blob = row["transcript_ciphertext"]
    good = (row["tenant_id"], part["region"], "calls", row["record_id"], "transcript")
    assert crypto.decrypt(key, blob, crypto.field_aad(*good))
    for i, other in enumerate(["tnt-other", "zz", "telemetry", "another-record", "wrapup_notes"]):
        context = list(good)
        context[i] = other
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(key, blob, crypto.field_aad(*context))
    flipped = bytearray(blob)
    flipped[-5] ^= 0x80
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(key, bytes(flipped), crypto.field_aad(*good))
    other_tenant = next(r for _, r in rows(out, "calls") if r["tenant_id"] != row["tenant_id"])
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(store.get(other_tenant["tenant_id"], "content", 1), blob, crypto.field_aad(*good))


def test_passwords_only_hashed(batch_run, corpus):
    config, _ = batch_run
    regs = rows(Path(config.sinks.default_root), "registrations")
    originals = input_records(corpus)
    assert len(regs) > 5
    for _, row in regs:
        assert crypto.verify_password(originals[row["record_id"]]["password"], row["password_hash"])
        assert not any(c.startswith("password") and c != "password_hash" for c in row)


def test_bad_slice_every_line_dead_lettered_with_its_reason(batch_run, corpus):
    config, _ = batch_run
    expected = json.loads((corpus / "bad_expected.json").read_text())
    dead = [r for _, r in rows(Path(config.sinks.default_root), "_deadletter") if r["source"].endswith("bad.jsonl")]
    assert Counter(r["reason"] for r in dead) == Counter(e for e in expected if e != "written")
    assert all(r["payload_ciphertext"] and r["error"] and r["step"] for r in dead)


def test_dead_letters_decrypt_to_the_original_line(batch_run, corpus):
    """Under the key they name: a known tenant's own key, else the region's; secrets scrubbed (ccpipe.deadletter)."""
    from ccpipe.deadletter import scrub

    config, _ = batch_run
    out = Path(config.sinks.default_root)
    store = SqliteKeyStore(config.keystore)
    tenants = load_tenants(corpus / "tenants.yaml")
    bad = set((corpus / "bad" / "bad.jsonl").read_bytes().split(b"\n"))
    for part, row in rows(out, "_deadletter"):
        if not row["source"].endswith("bad.jsonl"):
            continue
        owner, purpose, version = row["key_id"].rsplit("/", 2)
        if row["tenant_id"] in tenants:
            assert (owner, purpose) == (row["tenant_id"], "content")
        else:
            assert (owner, purpose) == (deadletter_key_owner(part["region"]), "deadletter")
        key = store.get(owner, purpose, int(version.removeprefix("v")))
        aad = crypto.field_aad(row["tenant_id"] or "", part["region"], "_deadletter", row["deadletter_id"], "payload")
        assert crypto.decrypt(key, row["payload_ciphertext"], aad) in {scrub(line, key) for line in bad}


def test_usage_daily_is_pseudonymous_and_adds_up(batch_run):
    config, manifest = batch_run
    usage = rows(Path(config.sinks.default_root), "usage_daily")
    assert {c for _, r in usage for c in r} == {
        "tenant_id",
        "day",
        "calls",
        "call_duration_s",
        "call_hold_s",
        "chat_conversations",
        "chat_messages",
        "telemetry_events",
        "registrations",
        "batch_digest",
    }
    assert sum(r["calls"] for _, r in usage) == sum(
        per.get("calls", 0) for per in manifest["records_written_by_region"].values()
    )


def test_rerun_is_idempotent(batch_run, corpus, tmp_path):
    config, _ = batch_run
    out = Path(config.sinks.default_root)

    def snapshot():
        keyed = Counter()
        for path in parquet_files(out):
            part = partition_of(path.relative_to(out))
            for row in pq.read_table(path).to_pylist():
                keyed[
                    (
                        part["dataset"],
                        row.get("record_id") or row.get("deadletter_id") or row["batch_digest"],
                        row.get("seq"),
                    )
                ] += 1
        return keyed, sorted(p.name for p in parquet_files(out))

    before = snapshot()
    again = make_config(corpus, out, Path(config.keystore.path).parent, "run-2")
    manifest = run(again, pipeline_options("FnApiRunner", 1))
    assert manifest["reconciled"]
    after = snapshot()
    assert after == before
    assert max(after[0].values()) == 1


def test_missing_or_broken_tenant_key_fails_closed(corpus, tmp_path):
    tenants = load_tenants(corpus / "tenants.yaml")
    victim = next(t for t in tenants.values() if t.status == "active" and t.region == "nl")
    config = make_config(corpus, tmp_path / "out", tmp_path / "home", "closed")
    store = SqliteKeyStore(config.keystore, create=True)
    store.ensure_key(victim.tenant_id, "content")
    store.close()
    db = sqlite3.connect(config.keystore.path)
    db.execute(
        "UPDATE data_keys SET wrapped = ? WHERE owner = ? AND purpose = 'content'", (b"\x00" * 60, victim.tenant_id)
    )
    db.commit()
    db.close()
    manifest = run(config, pipeline_options("FnApiRunner", 1))
    out = tmp_path / "out"
    victim_ids = {rid for rid, rec in input_records(corpus).items() if rec["tenant_id"] == victim.tenant_id}
    assert victim_ids
    written = {
        r["record_id"] for ds in ("calls", "telemetry", "chat_messages", "registrations") for _, r in rows(out, ds)
    }
    assert written & victim_ids == set()
    dead = {r["record_id"]: r["reason"] for _, r in rows(out, "_deadletter") if r["record_id"] in victim_ids}
    assert set(dead) == victim_ids
    assert set(dead.values()) == {"key_unavailable"}
    assert manifest["reconciled"]
    assert manifest["dead_letters_by_reason"]["key_unavailable"] == len(victim_ids)


def test_wrong_master_key_writes_nothing(corpus, tmp_path, monkeypatch):
    import base64

    config = make_config(corpus, tmp_path / "out", tmp_path / "home", "wrong-master")
    SqliteKeyStore(config.keystore, create=True).close()
    monkeypatch.setenv("CCPIPE_MASTER_KEY", base64.b64encode(b"w" * 32).decode())
    with pytest.raises(MasterKeyError):
        run(config, pipeline_options("FnApiRunner", 1))
    assert not (tmp_path / "out").exists()
