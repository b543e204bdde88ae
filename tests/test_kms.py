"""Key managers (local and a real OpenBao server): crypto-shredding that survives backups, freshness.

The OpenBao server is started by the session fixture ``bao_server`` (tests/baoserver.py) on loopback.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccpipe import crypto
from ccpipe.controlplane import audit, keys, tenants_repo
from ccpipe.controlplane.db import open_control_plane
from ccpipe.errors import ConfigError, KeyUnavailableError, MasterKeyError
from ccpipe.keystore import KeystoreConfig, SqliteKeyStore
from ccpipe.kms import KmsConfig, KmsError, transit_key_name
from ccpipe.types import Tenant

OPS = audit.Actor("ops-anna", "operator")
_PREFIXES = itertools.count(1)


@pytest.fixture(params=["local", "openbao"])
def keystore_config(request, tmp_path, monkeypatch):
    """A factory of keystore configs on one backend; each test gets its own transit key prefix."""
    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "ccpipe-home"))  # the audit key's default keystore
    kms = "local"
    if request.param == "openbao":
        server = request.getfixturevalue("bao_server")
        kms = server.kms_url(prefix=f"t{next(_PREFIXES)}-")

    def make(name: str = "home", **overrides) -> KeystoreConfig:
        home = tmp_path / name
        return KeystoreConfig(str(home / "keystore.db"), str(tmp_path / "master.key"), kms=kms, **overrides)

    make.kind = request.param
    return make


def transit_key(server, config: KeystoreConfig, owner: str) -> tuple[int, dict]:
    return server.request("GET", f"transit/keys/{transit_key_name(KmsConfig.parse(config.kms).prefix, owner)}")


def control_plane(tmp_path: Path, *tenant_ids: str):
    cp = open_control_plane(f"sqlite:///{tmp_path / 'control.db'}")
    tenants_repo.import_tenants(cp, [Tenant(t, t, "nl") for t in tenant_ids], OPS)
    return cp


def seal(store: SqliteKeyStore, tenant: str, text: bytes) -> bytes:
    return crypto.encrypt(store.current(tenant, "content"), text, b"ctx")


def test_shred_survives_a_backup_of_the_keystore(keystore_config, tmp_path, request):
    config = keystore_config()
    store = SqliteKeyStore(config, create=True)
    for tenant in ("tnt-a", "tnt-b"):
        for purpose in ("content", "pseudonym"):
            store.ensure_key(tenant, purpose)
    blob_a, blob_b = seal(store, "tnt-a", b"secret a"), seal(store, "tnt-b", b"secret b")
    backup = tmp_path / "backup"
    backup.mkdir()
    shutil.copy2(config.path, backup / "keystore.db")  # the nightly backup, taken before the shred
    cp = control_plane(tmp_path, "tnt-a", "tnt-b")

    assert keys.shred(cp, store, "tnt-a", OPS, confirm="tnt-a") == {"content": [1], "pseudonym": [1]}
    assert store.kek_versions("tnt-a") == [] and store.kek_versions("tnt-b") == [1]
    if keystore_config.kind == "openbao":
        assert transit_key(request.getfixturevalue("bao_server"), config, "tnt-a")[0] == 404

    # The backup copy of keystore.db, with today's key manager (and master key): tnt-a is noise.
    restored = SqliteKeyStore(KeystoreConfig(str(backup / "keystore.db"), config.master_key_file, kms=config.kms,
                                             kek_path=config.kek_path))
    assert restored.states("tnt-a", "content") == {1: "active"}  # the backup still has the wrapped key...
    with pytest.raises(KeyUnavailableError):  # ...but nothing can unwrap it any more
        restored.get("tnt-a", "content", 1)
    with pytest.raises(KeyUnavailableError):
        restored.current("tnt-a", "pseudonym")
    assert crypto.decrypt(restored.get("tnt-b", "content", 1), blob_b, b"ctx") == b"secret b"
    with pytest.raises(KeyUnavailableError):
        store.get("tnt-a", "content", 1)
    assert crypto.decrypt(store.current("tnt-b", "content"), blob_b, b"ctx") == b"secret b"
    assert blob_a  # sealed under a key that no longer exists anywhere


def test_local_shred_destroys_the_tenant_kek_in_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
    config = KeystoreConfig(str(tmp_path / "keystore.db"), str(tmp_path / "master.key"))
    store = SqliteKeyStore(config, create=True)
    store.ensure_key("tnt-a", "content")
    store.ensure_key("tnt-b", "content")
    db = sqlite3.connect(config.kek_path)
    (kek_a,) = db.execute("SELECT wrapped FROM keks WHERE owner = 'tnt-a'").fetchone()
    db.close()
    (wrapped_dk,) = sqlite3.connect(config.path).execute(
        "SELECT wrapped FROM data_keys WHERE owner = 'tnt-a'").fetchone()
    assert kek_a in Path(config.kek_path).read_bytes()
    assert wrapped_dk in Path(config.path).read_bytes()
    assert store.destroy("tnt-a", "content") == [1]
    assert store.kek_versions("tnt-a") == []
    # secure_delete: neither the tenant's KEK nor its wrapped data key remains in the files' bytes.
    assert kek_a not in Path(config.kek_path).read_bytes()
    assert wrapped_dk not in Path(config.path).read_bytes()
    assert store.kek_versions("tnt-b") == [1]
    assert store._db.execute("PRAGMA secure_delete").fetchone() == (1,)


def test_partial_shred_rotates_and_trims_the_kek(keystore_config, tmp_path, request):
    config = keystore_config()
    store = SqliteKeyStore(config, create=True)
    cp = control_plane(tmp_path, "tnt-a")
    store.ensure_key("tnt-a", "content")
    store.ensure_key("tnt-a", "pseudonym")
    old_blob = seal(store, "tnt-a", b"old")
    sqlite3.connect(config.path).execute(
        "UPDATE data_keys SET created_at = '2025-01-01T00:00:00+00:00' WHERE owner = 'tnt-a'").connection.commit()
    assert keys.rotate(cp, store, "tnt-a", OPS) == {"content": 2, "pseudonym": 2}
    new_blob = seal(store, "tnt-a", b"new")
    backup = tmp_path / "backup.db"
    shutil.copy2(config.path, backup)

    assert keys.shred(cp, store, "tnt-a", OPS, confirm="tnt-a", before="2025-06-01") == {"content": [1]}
    kek_after = store.kek_versions("tnt-a")
    assert len(kek_after) == 1 and kek_after[0] >= 3  # rotated, older versions trimmed
    assert crypto.decrypt(store.current("tnt-a", "content"), new_blob, b"ctx") == b"new"
    assert store.get("tnt-a", "pseudonym", 1).version == 1  # survivors re-wrapped, still usable
    with pytest.raises(KeyUnavailableError):
        store.get("tnt-a", "content", 1)
    restored = SqliteKeyStore(KeystoreConfig(str(backup), config.master_key_file, kms=config.kms,
                                             kek_path=config.kek_path))
    for version in (1, 2):  # every wrap in the old copy was made by a KEK version that is gone
        with pytest.raises(KeyUnavailableError):
            restored.get("tnt-a", "content", version)
    assert old_blob
    if keystore_config.kind == "openbao":
        status, body = transit_key(request.getfixturevalue("bao_server"), config, "tnt-a")
        assert status == 200 and list(body["data"]["keys"]) == [str(kek_after[0])]
        assert body["data"]["exportable"] is False and body["data"]["deletion_allowed"] is False


def test_workers_see_rotation_and_shred_at_the_next_record(keystore_config, tmp_path):
    config = keystore_config()
    admin = SqliteKeyStore(config, create=True)
    admin.ensure_key("tnt-a", "content")
    admin.ensure_key("tnt-a", "pseudonym")
    worker = SqliteKeyStore(config)  # another process's view, e.g. a streaming DoFn
    assert worker.current("tnt-a", "content").version == 1
    admin.create_key("tnt-a", "content")
    assert worker.current("tnt-a", "content").version == 2
    cp = control_plane(tmp_path, "tnt-a")
    keys.shred(cp, admin, "tnt-a", OPS, confirm="tnt-a")
    with pytest.raises(KeyUnavailableError, match="destroyed"):
        worker.current("tnt-a", "content")
    with pytest.raises(KeyUnavailableError):
        worker.current("tnt-a", "pseudonym")


def test_kek_destroyed_outside_ccpipe_is_noticed_within_the_cache_ttl(bao_server, tmp_path):
    kms = bao_server.kms_url(prefix=f"t{next(_PREFIXES)}-")
    ttl = 1.0
    config = KeystoreConfig(str(tmp_path / "keystore.db"), str(tmp_path / "mk"), kms=kms, cache_ttl_seconds=ttl)
    store = SqliteKeyStore(config, create=True)
    store.ensure_key("tnt-a", "content")
    assert store.current("tnt-a", "content").version == 1
    name = transit_key_name(KmsConfig.parse(kms).prefix, "tnt-a")
    bao_server.request("POST", f"transit/keys/{name}/config", {"deletion_allowed": True})
    assert bao_server.request("DELETE", f"transit/keys/{name}")[0] == 204
    deleted_at = time.monotonic()
    while True:  # poll the condition: the worker refuses the key once its cached material expires
        try:
            store.current("tnt-a", "content")
        except KeyUnavailableError:
            break
        assert time.monotonic() - deleted_at <= ttl + 0.5, "cached key used past the TTL"
    assert store.states("tnt-a", "content") == {1: "active"}  # only the KEK went: unwrapping fails closed


def test_openbao_errors_are_clear(bao_server, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="plain HTTP is allowed only to a loopback"):
        KmsConfig.parse("openbao+http://10.0.0.5:8200")
    with pytest.raises(ConfigError, match="is not a key manager"):
        KmsConfig.parse("vault://127.0.0.1:8200")
    with pytest.raises(ConfigError, match="unknown parameter"):
        KmsConfig.parse("openbao://bao.example:8200?tokn=x")
    with pytest.raises(ConfigError, match="must not carry credentials"):
        KmsConfig.parse("openbao://root:secret@bao.example:8200")
    assert KmsConfig.parse("openbao://bao.example:8200/kms").base_url == "https://bao.example:8200"
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token\n")
    bad.chmod(0o600)
    url = f"openbao+http://127.0.0.1:{bao_server.port}/transit?token_file={bad}"
    with pytest.raises(KmsError, match="refused the token"):
        SqliteKeyStore(KeystoreConfig(str(tmp_path / "k.db"), "", kms=url), create=True)
    bad.chmod(0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        SqliteKeyStore(KeystoreConfig(str(tmp_path / "k.db"), "", kms=url), create=True)
    monkeypatch.delenv("BAO_TOKEN", raising=False)
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    with pytest.raises(KmsError, match="no OpenBao token"):
        SqliteKeyStore(KeystoreConfig(str(tmp_path / "k.db"), "", kms=f"openbao+http://127.0.0.1:{bao_server.port}"),
                       create=True)
    down = "openbao+http://127.0.0.1:1/transit?token_file=" + str(bao_server.token_file)
    with pytest.raises(KmsError, match="cannot reach OpenBao at http://127.0.0.1:1"):
        SqliteKeyStore(KeystoreConfig(str(tmp_path / "k.db"), "", kms=down), create=True)


def test_keystore_refuses_another_key_manager(keystore_config, bao_server, tmp_path):
    config = keystore_config()
    SqliteKeyStore(config, create=True).ensure_key("tnt-a", "content")
    other = "local" if keystore_config.kind == "openbao" else bao_server.kms_url()
    with pytest.raises(ConfigError, match="does not match the keystore"):
        SqliteKeyStore(KeystoreConfig(config.path, config.master_key_file, kms=other))
    # Without --kms the keystore's own key manager is used.
    reopened = SqliteKeyStore(KeystoreConfig(config.path, config.master_key_file))
    assert reopened.kms.kind == keystore_config.kind and reopened.current("tnt-a", "content").version == 1


def test_legacy_keystore_is_rewrapped_under_owner_keks(tmp_path, monkeypatch):
    """A keystore of the first format (data keys wrapped by the master key) is upgraded on open."""
    import base64

    master = b"m" * 32
    monkeypatch.setenv("CCPIPE_MASTER_KEY", base64.b64encode(master).decode())
    path = tmp_path / "keystore.db"
    db = sqlite3.connect(path)
    db.executescript(SqliteKeyStore._SCHEMA.split("CREATE TABLE IF NOT EXISTS kek_jobs")[0])
    db.execute("INSERT INTO meta VALUES ('kek_check', ?)",
               (crypto.wrap_key(master, b"\0" * 32, b"ccpipe/kek-check/v1"),))
    material = os.urandom(32)
    db.execute("INSERT INTO data_keys VALUES ('tnt-a', 'content', 1, ?, 'active', '2025-01-01T00:00:00+00:00', NULL)",
               (crypto.wrap_key(master, material, b"ccpipe/dk/v1|tnt-a|content|1"),))
    db.commit()
    db.close()
    store = SqliteKeyStore(KeystoreConfig(str(path), str(tmp_path / "none")))
    assert store.current("tnt-a", "content").material == material
    assert store.kek_versions("tnt-a") == [1]
    store.destroy("tnt-a", "content")
    with pytest.raises(KeyUnavailableError):
        SqliteKeyStore(KeystoreConfig(str(path), str(tmp_path / "none"))).get("tnt-a", "content", 1)


@pytest.mark.parametrize("backend", ["local", "openbao"])
def test_cli_keys_works_the_same_on_both(backend, bao_server, tmp_path, monkeypatch):
    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "home"))
    env = {**os.environ, "CCPIPE_HOME": str(tmp_path / "home")}
    env.pop("CCPIPE_MASTER_KEY", None)
    kms = "local" if backend == "local" else bao_server.kms_url(prefix=f"t{next(_PREFIXES)}-")
    (tmp_path / "tenants.yaml").write_text("- {tenant_id: tnt-a, name: A, region: nl}\n")

    def ccpipe(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ccpipe.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    done = ccpipe("keys", "init", "--kms", kms)
    assert done.returncode == 0, done.stderr
    assert f"key manager: {kms}" in done.stdout
    assert ccpipe("tenants", "import", str(tmp_path / "tenants.yaml")).returncode == 0
    store = SqliteKeyStore(KeystoreConfig.default(tmp_path / "home"))
    store.ensure_key("tnt-a", "content")
    store.ensure_key("tnt-a", "pseudonym")
    actor = ("--actor", "ops1", "--role", "operator")
    done = ccpipe("keys", "rotate", "--tenant", "tnt-a", *actor)  # no --kms: the keystore's own
    assert done.returncode == 0, done.stderr
    assert ccpipe("keys", "shred", "--tenant", "tnt-a", "--confirm", "tnt-a", *actor).returncode == 2  # no scope
    done = ccpipe("keys", "shred", "--tenant", "tnt-a", "--all", "--confirm", "tnt-a", *actor)
    assert done.returncode == 0, done.stderr
    listing = ccpipe("keys", "list").stdout
    assert listing.count("destroyed") == 4 and "pending" not in listing
    assert store.kek_versions("tnt-a") == []


def test_batch_pipeline_on_openbao_then_shred(bao_server, corpus, tmp_path, monkeypatch):
    """The pipeline takes --kms openbao://...: output decrypts; after a shred no copy of the keystore can."""
    import dataclasses

    import pyarrow.parquet as pq
    from conftest import make_config

    from ccpipe.controlplane import access
    from pipelines.batch import config_from_options, pipeline_options, run

    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "ccpipe-home"))
    kms = bao_server.kms_url(prefix=f"t{next(_PREFIXES)}-")
    base = make_config(corpus, tmp_path / "out", tmp_path / "home", "bao")
    config = dataclasses.replace(base, keystore=dataclasses.replace(base.keystore, kms=kms, kek_path=""))
    manifest = run(config, pipeline_options("FnApiRunner", 1))
    assert manifest["reconciled"] and not manifest["dead_letters_by_reason"].get("key_unavailable")
    assert not Path(config.keystore.kek_path).exists()  # no local KEKs, no master key needed
    store = SqliteKeyStore(dataclasses.replace(config.keystore, kms=""))  # the keystore knows its manager
    assert store.kms.kind == "openbao"
    call = next(
        r for p in sorted((tmp_path / "out").glob("region=*/dataset=calls/*/*.parquet"))
        for r in pq.read_table(p).to_pylist() if r.get("transcript_ciphertext")
    )
    tenant = call["tenant_id"]
    cp = open_control_plane(f"sqlite:///{tmp_path / 'control.db'}")
    tenants_repo.import_tenants(cp, config.tenants, OPS)
    admin = audit.Actor("adm", "customer_admin", tenant)
    args = (cp, store, tmp_path / "out", admin, tenant, "calls", call["record_id"], "transcript", "check")
    assert access.decrypt_field(*args)
    backup = tmp_path / "backup.db"
    shutil.copy2(config.keystore.path, backup)
    keys.shred(cp, store, tenant, OPS, confirm=tenant)
    with pytest.raises(KeyUnavailableError):
        access.decrypt_field(*args)
    restored = SqliteKeyStore(KeystoreConfig(str(backup), "", kms=kms))
    with pytest.raises(KeyUnavailableError):
        restored.get(tenant, "content", call["key_version"])
    # The flags reach the keystore config too.
    from pipelines.batch import BatchOptions

    options = BatchOptions(["--input", "x", "--tenants", str(corpus / "tenants.yaml"), "--output", str(tmp_path),
                            "--kms", kms, "--control_plane", f"sqlite:///{tmp_path / 'control.db'}"])
    assert config_from_options(options.view_as(BatchOptions)).keystore.kms == kms
    with pytest.raises(ConfigError, match="--kms"):
        config_from_options(BatchOptions(["--input", "x", "--output", str(tmp_path), "--kms", "kms://x"])
                            .view_as(BatchOptions))


def test_least_privilege_policies(bao_server, tmp_path, monkeypatch):
    """deploy/openbao/*.hcl: workers only unwrap, the driver creates and wraps, the admin shreds."""
    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "ccpipe-home"))
    root = Path(__file__).resolve().parents[1] / "deploy" / "openbao"
    tokens = {}
    for role in ("worker", "driver", "admin"):
        status, _ = bao_server.request("PUT", f"sys/policies/acl/ccpipe-{role}",
                                       {"policy": (root / f"ccpipe-{role}.hcl").read_text()})
        assert status == 204
        status, body = bao_server.request("POST", "auth/token/create", {"policies": [f"ccpipe-{role}"], "ttl": "1h"})
        token_file = tmp_path / f"{role}.token"
        token_file.write_text(body["auth"]["client_token"])
        token_file.chmod(0o600)
        tokens[role] = token_file
    prefix = f"t{next(_PREFIXES)}-"

    def store_as(role: str, create: bool = False) -> SqliteKeyStore:
        kms = f"openbao+http://127.0.0.1:{bao_server.port}/transit?token_file={tokens[role]}&prefix={prefix}"
        return SqliteKeyStore(KeystoreConfig(str(tmp_path / "keystore.db"), "", kms=kms), create=create)

    driver = store_as("driver", create=True)
    driver.ensure_key("tnt-a", "content")
    driver.ensure_key("tnt-a", "pseudonym")  # the KEK exists: read, no update needed
    worker = store_as("worker")
    assert worker.current("tnt-a", "content").version == 1
    with pytest.raises(KmsError, match="refused the token"):
        worker.create_key("tnt-b", "content")
    with pytest.raises(KmsError, match="refused the token"):
        driver.rotate_kek("tnt-a")
    name = transit_key_name(prefix, "tnt-a")
    for role in ("worker", "driver"):
        req_token = tokens[role].read_text()
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"{bao_server.address}/v1/transit/keys/{name}", method="DELETE",
                                     headers={"X-Vault-Token": req_token})
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(req, timeout=10)
        assert denied.value.code == 403
    admin = store_as("admin")
    assert admin.destroy("tnt-a", "content") == [1]  # survivors: rotate, re-wrap, trim
    assert admin.destroy("tnt-a", "pseudonym") == [1]  # none left: delete
    assert admin.kek_versions("tnt-a") == [] and admin.pending_kek_jobs() == []
    status, body = bao_server.request("GET", f"transit/export/encryption-key/{name}")
    assert status in (400, 404)


def test_a_running_worker_never_encrypts_under_a_destroyed_key(keystore_config, tmp_path):
    """The EncryptContent DoFn of a long-running (streaming) job: rotation and shred apply at the next record."""
    from ccpipe.types import InputRecord, PseudonymizedRecord, RoutedRecord, TaggedRecord
    from transforms.protect import _EncryptContentFn
    from transforms.route import SideOutput

    config = keystore_config()
    admin = SqliteKeyStore(config, create=True)
    for purpose in ("content", "pseudonym"):
        admin.ensure_key("tnt-a", purpose)
    fn = _EncryptContentFn(config, "test.encrypt")
    fn.setup()

    def process(n: int):
        payload = {"record_id": f"r{n}", "tenant_id": "tnt-a", "call_id": f"c{n}",
                   "started_at": "2026-03-01T10:00:00+00:00", "transcript": "hello, my pin is 1234"}
        record = InputRecord("call_recording", "tnt-a", f"r{n}", payload["started_at"], "2026-03-01", payload, "t",
                             b"{}")
        return list(fn.process(PseudonymizedRecord(TaggedRecord(RoutedRecord(record, "nl")), {}, {}, 1)))

    first = process(1)
    assert first and all(not isinstance(o, SideOutput) for o in first)
    assert {o.values["key_version"] for o in first} == {1}
    admin.create_key("tnt-a", "content")
    rotated = process(2)
    assert {o.values["key_version"] for o in rotated} == {2}
    keys.shred(control_plane(tmp_path, "tnt-a"), admin, "tnt-a", OPS, confirm="tnt-a")
    after = process(3)
    assert [type(o) for o in after] == [SideOutput]
    assert after[0].tag == "dead_letters" and after[0].value.reason == "key_unavailable"
    fn.teardown()


# ---------------------------------------------------------------- regressions of the key manager review
# (each failed on the code before the fix)


def _policy_token(server, tmp_path: Path, name: str, policy: str) -> Path:
    """A 0600 token file of a token holding only ``policy`` (stored as ``name``)."""
    assert server.request("PUT", f"sys/policies/acl/{name}", {"policy": policy})[0] == 204
    status, body = server.request("POST", "auth/token/create", {"policies": [name], "ttl": "1h"})
    assert status == 200, body
    token_file = tmp_path / f"{name}.token"
    token_file.write_text(body["auth"]["client_token"])
    token_file.chmod(0o600)
    return token_file


def _as_token(server, token_file: Path, method: str, path: str, body: dict | None = None) -> int:
    """An HTTP call with another token; returns the status."""
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{server.address}/v1/{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"X-Vault-Token": token_file.read_text().strip()})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_openbao_refuses_a_kek_that_can_leave_the_server(bao_server, tmp_path, monkeypatch):
    """A transit key made (or changed) outside ccpipe as exportable / plaintext-backup once made shreds undoable."""
    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "ccpipe-home"))
    kms = bao_server.kms_url(prefix=f"t{next(_PREFIXES)}-")
    prefix = KmsConfig.parse(kms).prefix
    store = SqliteKeyStore(KeystoreConfig(str(tmp_path / "keystore.db"), "", kms=kms), create=True)
    # 1. It already exists, exportable with plaintext backup: refused when ccpipe opens it, nothing is written.
    bao_server.request("POST", f"transit/keys/{prefix}tnt-a",
                       {"type": "aes256-gcm96", "exportable": True, "allow_plaintext_backup": True})
    with pytest.raises(KmsError, match=rf"transit key '{prefix}tnt-a' .*exportable=true, allow_plaintext_backup=true"):
        store.ensure_key("tnt-a", "content")
    assert store.states("tnt-a", "content") == {}
    bao_server.request("POST", f"transit/keys/{prefix}tnt-c", {"type": "chacha20-poly1305"})
    with pytest.raises(KmsError, match=rf"'{prefix}tnt-c' .*type=chacha20-poly1305"):
        store.ensure_key("tnt-c", "content")
    # 2. Made by ccpipe, then changed behind its back: no new data key is wrapped under it.
    store.ensure_key("tnt-b", "content")
    store.ensure_key("tnt-b", "pseudonym")
    status, _ = bao_server.request("POST", f"transit/keys/{prefix}tnt-b/config", {"allow_plaintext_backup": True})
    assert status in (200, 204)
    with pytest.raises(KmsError, match=rf"'{prefix}tnt-b' .*allow_plaintext_backup=true"):
        store.create_key("tnt-b", "content")
    assert store.states("tnt-b", "content") == {1: "active"}
    with pytest.raises(KmsError, match=rf"'{prefix}tnt-b' .*allow_plaintext_backup=true.*wrap a data key under it"):
        store._km.wrap("tnt-b", b"k" * 32, b"aad")
    # 3. A partial shred (rotate, re-wrap the survivors under it) is refused; nothing changes.
    with pytest.raises(KmsError, match=rf"'{prefix}tnt-b' .*allow_plaintext_backup=true"):
        store.destroy("tnt-b", "pseudonym")
    assert store.states("tnt-b", "pseudonym") == {1: "active"}
    # 4. Deleting it all still deletes it, but is not reported as a clean destruction.
    store._db.execute("UPDATE data_keys SET state = 'destroyed', wrapped = NULL WHERE owner = 'tnt-b' "
                      "AND purpose = 'pseudonym'")
    with pytest.raises(KmsError, match=rf"'{prefix}tnt-b' .*allow_plaintext_backup=true.*report it destroyed"):
        store.destroy("tnt-b", "content")
    assert bao_server.request("GET", f"transit/keys/{prefix}tnt-b")[0] == 404  # deleted all the same


def test_admin_policy_cannot_make_a_kek_exportable_or_back_it_up(bao_server, tmp_path):
    root = Path(__file__).resolve().parents[1] / "deploy" / "openbao"
    admin = _policy_token(bao_server, tmp_path, "ccpipe-admin-review", (root / "ccpipe-admin.hcl").read_text())
    driver = _policy_token(bao_server, tmp_path, "ccpipe-driver-review", (root / "ccpipe-driver.hcl").read_text())
    name = f"t{next(_PREFIXES)}-tnt-a"
    ok = {"type": "aes256-gcm96", "exportable": False, "allow_plaintext_backup": False}
    for token in (admin, driver):
        assert _as_token(bao_server, token, "POST", f"transit/keys/{name}-x", {**ok, "exportable": True}) == 403
        assert _as_token(bao_server, token, "POST", f"transit/keys/{name}-x", {**ok, "type": "aes128-gcm96"}) == 403
    assert _as_token(bao_server, driver, "POST", f"transit/keys/{name}", ok) == 200  # what ccpipe sends
    for setting in ("exportable", "allow_plaintext_backup"):
        assert _as_token(bao_server, admin, "POST", f"transit/keys/{name}/config", {setting: True}) == 403
    assert _as_token(bao_server, admin, "POST", f"transit/keys/{name}/config", {"auto_rotate_period": "1h"}) == 403
    assert _as_token(bao_server, driver, "POST", f"transit/keys/{name}/config", {"deletion_allowed": True}) == 403
    assert _as_token(bao_server, admin, "POST", f"transit/keys/{name}/config", {"min_decryption_version": 1}) == 200
    assert _as_token(bao_server, admin, "GET", f"transit/backup/{name}") == 403
    assert _as_token(bao_server, admin, "POST", f"transit/restore/{name}", {"backup": "eA=="}) == 403
    assert _as_token(bao_server, admin, "POST", "transit/restore", {"backup": "eA=="}) == 403
    body = bao_server.request("GET", f"transit/keys/{name}")[1]["data"]
    assert body["exportable"] is False and body["allow_plaintext_backup"] is False


def test_worker_and_driver_tokens_cannot_unwrap_the_audit_key(bao_server, tmp_path, monkeypatch):
    """Worker credentials once unwrapped the audit log's HMAC key (and so could forge the audit chain)."""
    from ccpipe.controlplane.audit import AUDIT_OWNER, AUDIT_PURPOSE

    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "ccpipe-home"))
    root = Path(__file__).resolve().parents[1] / "deploy" / "openbao"
    tenant = f"tnt-w{next(_PREFIXES)}"  # the policies name the default prefix "ccpipe-"
    path = str(tmp_path / "keystore.db")
    admin = SqliteKeyStore(KeystoreConfig(path, "", kms=bao_server.kms_url()), create=True)
    admin.ensure_key(AUDIT_OWNER, AUDIT_PURPOSE)
    admin.ensure_key(tenant, "content")
    admin.ensure_key("_deadletter:nl", "deadletter")
    for role in ("worker", "driver"):
        token = _policy_token(bao_server, tmp_path, f"ccpipe-{role}-audit", (root / f"ccpipe-{role}.hcl").read_text())
        kms = f"openbao+http://127.0.0.1:{bao_server.port}/transit?token_file={token}"
        store = SqliteKeyStore(KeystoreConfig(path, "", kms=kms))
        assert store.current(tenant, "content").version == 1  # tenant keys unwrap
        assert store.current("_deadletter:nl", "deadletter").version == 1  # dead-letter keys too
        with pytest.raises(KmsError, match="refused the token to unwrap a data key"):
            store.current(AUDIT_OWNER, AUDIT_PURPOSE)
        (wrapped,) = store._db.execute("SELECT wrapped FROM data_keys WHERE owner = ?", (AUDIT_OWNER,)).fetchone()
        assert _as_token(bao_server, token, "POST", "transit/decrypt/ccpipe-_audit",
                         {"ciphertext": wrapped.decode()}) == 403
        assert _as_token(bao_server, token, "GET", "transit/keys/ccpipe-_audit") == 403
        assert _as_token(bao_server, token, "GET", f"transit/backup/ccpipe-{tenant}") == 403
        store.close()
    assert admin.current(AUDIT_OWNER, AUDIT_PURPOSE).version == 1


@pytest.mark.parametrize("value", [
    "openbao://hvs.SECRETTOKEN@bao.example.com/transit",
    "openbao://hvs.SECRETTOKEN@bao.example.com:8200/transit",
    "openbao+http://hvs.SECRETTOKEN@10.0.0.5:8200",
    "openbao://bao.example.com:8200/transit?token=hvs.SECRETTOKEN",
    "openbao://bao.example.com:8200/transit?TOKEN=hvs.SECRETTOKEN&prefix=x",
    "openbao://bao.example.com:8200/transit?vault_token=hvs.SECRETTOKEN",
    "vault://hvs.SECRETTOKEN@bao.example.com:8200",
    "openbao://bao.example.com/transit?token_file=/run/SECRETTOKEN",
    "openbao://bao.example.com:8200/transit?hvs.SECRETTOKEN",
    "openbao://bao.example.com:8200/transit?tokn=hvs.SECRETTOKEN",
    "openbao://bao.example.com:8200/transit?prefix=SECRETTOKEN!",
    "openbao://bao.example.com:8200/transit?timeout=SECRETTOKEN",
    "openbao+http://10.0.0.5:8200?token_file=/SECRETTOKEN",
])
def test_kms_errors_never_echo_credentials(value):
    with pytest.raises(ConfigError) as refused:
        KmsConfig.parse(value)
    assert "SECRETTOKEN" not in str(refused.value)
    if "token=" in value.lower() or "@" in value:
        assert "token_file" in str(refused.value) and "$BAO_TOKEN" in str(refused.value)


def test_keystore_mismatch_error_masks_the_kms_value(tmp_path, monkeypatch):
    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
    config = KeystoreConfig(str(tmp_path / "keystore.db"), str(tmp_path / "master.key"))
    SqliteKeyStore(config, create=True).close()
    other = "openbao://bao.example:8200/transit?token_file=/run/SECRETTOKEN&namespace=SECRETNS"
    with pytest.raises(ConfigError, match="does not match the keystore") as refused:
        SqliteKeyStore(KeystoreConfig(config.path, config.master_key_file, kms=other))
    assert "SECRET" not in str(refused.value)


@pytest.mark.parametrize("mount", ["..", "../../sys/policy", "transit/../sys", "a/./b", "a//b", "."])
def test_kms_mount_refuses_dot_segments(mount):
    with pytest.raises(ConfigError, match=r"no empty, '\.' or '\.\.' segment"):
        KmsConfig.parse(f"openbao://bao.example:8200/{mount}/x")
    assert KmsConfig.parse("openbao://bao.example:8200/team.a/ccpipe-transit").mount == "team.a/ccpipe-transit"


def test_failed_delete_sets_deletion_allowed_back(bao_server, tmp_path, monkeypatch):
    """destroy_kek allows deletion, then deletes: a refused delete once left the key deletable by anyone."""
    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "ccpipe-home"))
    prefix = f"t{next(_PREFIXES)}-"
    path = str(tmp_path / "keystore.db")
    root_kms = bao_server.kms_url(prefix=prefix)
    SqliteKeyStore(KeystoreConfig(path, "", kms=root_kms), create=True).ensure_key("tnt-a", "content")
    no_delete = (Path(__file__).resolve().parents[1] / "deploy" / "openbao" / "ccpipe-admin.hcl").read_text().replace(
        '"create", "update", "read", "delete"', '"create", "update", "read"')
    token = _policy_token(bao_server, tmp_path, "ccpipe-admin-nodelete", no_delete)
    kms = f"openbao+http://127.0.0.1:{bao_server.port}/transit?token_file={token}&prefix={prefix}"
    store = SqliteKeyStore(KeystoreConfig(path, "", kms=kms))
    with pytest.raises(KmsError, match="delete a transit key.*deletion_allowed was set back to false"):
        store.destroy("tnt-a", "content")
    status, body = bao_server.request("GET", f"transit/keys/{prefix}tnt-a")
    assert status == 200 and body["data"]["deletion_allowed"] is False
    assert store.pending_kek_jobs() == [("tnt-a", "delete", 0)]  # shows in 'ccpipe keys list', retried later
    SqliteKeyStore(KeystoreConfig(path, "", kms=root_kms), create=True)  # 'ccpipe keys init' finishes it
    assert bao_server.request("GET", f"transit/keys/{prefix}tnt-a")[0] == 404
