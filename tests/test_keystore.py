import base64
import sqlite3

import pytest

from ccpipe.errors import KeyUnavailableError, MasterKeyError
from ccpipe.keystore import KeystoreConfig, SqliteKeyStore


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "ccpipe-home"))  # the audit key's default keystore
    return KeystoreConfig(path=str(tmp_path / "ks.db"), master_key_file=str(tmp_path / "master.key"))


def test_create_on_first_use_and_reopen(config, tmp_path):
    store = SqliteKeyStore(config, create=True)
    assert store.ensure_key("t1", "content") == 1
    assert store.ensure_key("t1", "content") == 1
    key = store.current("t1", "content")
    store.close()
    assert oct((tmp_path / "master.key").stat().st_mode)[-3:] == "600"
    again = SqliteKeyStore(config)
    assert again.current("t1", "content").material == key.material


def test_missing_keystore_is_an_error_without_create(config):
    with pytest.raises(MasterKeyError, match="ccpipe keys init"):
        SqliteKeyStore(config)


def test_wrong_master_key_is_refused(config, monkeypatch):
    SqliteKeyStore(config, create=True).ensure_key("t1", "content")
    monkeypatch.setenv("CCPIPE_MASTER_KEY", base64.b64encode(b"z" * 32).decode())
    with pytest.raises(MasterKeyError, match="does not match"):
        SqliteKeyStore(config)


def test_bad_env_master_key(config, monkeypatch):
    monkeypatch.setenv("CCPIPE_MASTER_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(MasterKeyError, match="32 bytes"):
        SqliteKeyStore(config, create=True)


def test_rotation_keeps_old_versions(config):
    store = SqliteKeyStore(config, create=True)
    v1 = store.create_key("t1", "content")
    v2 = store.create_key("t1", "content")
    assert (v1.version, v2.version) == (1, 2)
    assert store.current("t1", "content").version == 2
    assert store.get("t1", "content", 1).material == v1.material
    assert [row[3] for row in store.versions()] == ["retired", "active"]


def test_missing_and_corrupt_keys_are_unavailable(config):
    store = SqliteKeyStore(config, create=True)
    with pytest.raises(KeyUnavailableError):
        store.current("nobody", "content")
    store.ensure_key("t1", "content")
    store.close()
    db = sqlite3.connect(config.path)
    db.execute("UPDATE data_keys SET wrapped = ? WHERE owner = 't1'", (b"\0" * 60,))
    db.commit()
    with pytest.raises(KeyUnavailableError, match="cannot be unwrapped"):
        SqliteKeyStore(config).current("t1", "content")


def test_destroyed_key_is_not_recreated(config):
    store = SqliteKeyStore(config, create=True)
    store.ensure_key("t1", "pseudonym")
    store._db.execute("UPDATE data_keys SET state = 'destroyed', wrapped = NULL")
    assert store.ensure_key("t1", "pseudonym") == 1
    with pytest.raises(KeyUnavailableError, match="destroyed"):
        store.current("t1", "pseudonym")


# ---------------------------------------------------------------- regressions (each failed on the old code)


def _control_plane(tmp_path, *tenant_ids):
    from ccpipe.controlplane import audit, tenants_repo
    from ccpipe.controlplane.db import open_control_plane
    from ccpipe.types import Tenant

    cp = open_control_plane(f"sqlite:///{tmp_path / 'control.db'}")
    tenants_repo.import_tenants(cp, [Tenant(t, t, "nl") for t in tenant_ids], audit.Actor("setup", "operator"))
    return cp


def test_shred_before_compares_moments_not_strings(config, tmp_path):
    """`--before 20260101` once destroyed today's key: '2026-11-..' < '20260101' as strings."""
    import datetime as dt

    from ccpipe.controlplane import audit, keys
    from ccpipe.errors import ConfigError

    ops = audit.Actor("ops", "operator")
    store = SqliteKeyStore(config, create=True)
    cp = _control_plane(tmp_path, "t1")
    store.ensure_key("t1", "content")
    store.ensure_key("t1", "pseudonym")
    # v1 made on 2025-12-31 at 23:30 in UTC-2 = 2026-01-01T01:30Z; v2 (active) made now
    store._db.execute("UPDATE data_keys SET created_at = '2025-12-31T23:30:00-02:00' WHERE owner = 't1'")
    store.create_key("t1", "content")
    assert keys.shred(cp, store, "t1", ops, confirm="t1", before="20260101") == {"content": []}
    assert keys.shred(cp, store, "t1", ops, confirm="t1", before="2026-01-01T01:00:00Z") == {"content": []}
    assert store.states("t1", "content") == {1: "retired", 2: "active"}
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y%m%d")
    with pytest.raises(ConfigError, match=r"would destroy the active content key v2 .*--all"):
        keys.shred(cp, store, "t1", ops, confirm="t1", before=tomorrow)
    with pytest.raises(ConfigError, match="must be an ISO date"):
        keys.shred(cp, store, "t1", ops, confirm="t1", before="next tuesday")
    assert store.states("t1", "content") == {1: "retired", 2: "active"}
    assert keys.shred(cp, store, "t1", ops, confirm="t1", before="2026-01-01T03:00:00+01:00") == {"content": [1]}
    assert store.states("t1", "content") == {1: "destroyed", 2: "active"}
    assert store.current("t1", "content").version == 2


def test_state_is_created_private_and_readable_key_files_are_refused(tmp_path, monkeypatch):
    import os
    import stat
    import subprocess
    import sys

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "CCPIPE_MASTER_KEY"}
    env["CCPIPE_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "ccpipe.cli", "keys", "init"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "ccpipe.cli", "tenants", "list"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [home, *home.iterdir()]}
    assert modes == {"home": 0o700, "keystore.db": 0o600, "keystore-kek.db": 0o600, "master.key": 0o600,
                     "control.db": 0o600}
    (home / "master.key").chmod(0o640)
    done = subprocess.run([sys.executable, "-m", "ccpipe.cli", "keys", "list"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "master key file" in done.stderr and "mode 0640" in done.stderr and "chmod 600" in done.stderr
    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
    with pytest.raises(MasterKeyError, match="readable or writable by group/others"):
        SqliteKeyStore(KeystoreConfig(str(home / "keystore.db"), str(home / "master.key")))


@pytest.mark.parametrize("content", [b"this is not a key\n", b"\x89PNG\r\n\x1a\n\x00\x00", b"c2hvcnQ=\n"])
def test_a_file_that_is_not_a_master_key_is_named(config, tmp_path, content):
    import subprocess
    import sys

    bad = tmp_path / "notakey.txt"
    bad.write_bytes(content)
    bad.chmod(0o600)
    with pytest.raises(MasterKeyError, match=r"notakey\.txt .*(not base64|holds 5 bytes).*base64 of 32"):
        SqliteKeyStore(KeystoreConfig(config.path, str(bad)), create=True)
    import os

    env = {k: v for k, v in os.environ.items() if k != "CCPIPE_MASTER_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "ccpipe.cli", "keys", "init", "--keystore", config.path, "--master-key-file", str(bad)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and "notakey.txt" in done.stderr


def _ensure_many(args):
    path, master, owners, barrier = args
    import base64
    import os

    os.environ["CCPIPE_MASTER_KEY"] = base64.b64encode(master).decode()
    store = SqliteKeyStore(KeystoreConfig(path, path + ".mk"))
    barrier.wait()
    out = [store.ensure_key(owner, purpose) for owner in owners for purpose in ("content", "pseudonym")]
    store.close()
    return out


def test_concurrent_ensure_key_is_safe(config, monkeypatch):
    """Workers and CLIs preparing keys at once once raised sqlite3.IntegrityError."""
    import base64
    import multiprocessing

    master = b"c" * 32
    monkeypatch.setenv("CCPIPE_MASTER_KEY", base64.b64encode(master).decode())
    SqliteKeyStore(config, create=True).close()
    owners = [f"t{i}" for i in range(40)]
    ctx = multiprocessing.get_context("spawn")
    n = 6
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            results = pool.map(_ensure_many, [(config.path, master, owners, barrier)] * n)
    assert all(r == [1] * (2 * len(owners)) for r in results)
    store = SqliteKeyStore(config)
    assert len(store.versions()) == 2 * len(owners)
    assert all(store.current(o, "content").version == 1 for o in owners)


def test_shred_writes_an_audit_intent_before_destroying(config, tmp_path):
    from ccpipe.controlplane import audit, keys
    from ccpipe.controlplane.db import open_control_plane

    ops = audit.Actor("ops", "operator")
    store = SqliteKeyStore(config, create=True)
    cp = _control_plane(tmp_path, "t1", "t2")
    for t in ("t1", "t2"):
        store.ensure_key(t, "content")
        store.ensure_key(t, "pseudonym")
    seen = []
    real_destroy = store.destroy

    def destroy(owner, purpose, before=None):
        # What another connection sees at the moment of destruction: the intent is already committed.
        other = open_control_plane(cp.url)
        seen.append([(e["action"], e["outcome"], e["tenant_id"]) for e in audit.entries(other)][-1])
        other.close()
        if owner == "t2":
            raise KeyUnavailableError("key manager failed half-way")
        return real_destroy(owner, purpose, before)

    store.destroy = destroy
    keys.shred(cp, store, "t1", ops, confirm="t1", reason="contract end")
    assert seen[0] == ("keys_shred", "intent", "t1")
    tail = [(e["action"], e["outcome"]) for e in audit.entries(cp)][-2:]
    assert tail == [("keys_shred", "intent"), ("keys_shred", "ok")]
    with pytest.raises(KeyUnavailableError):
        keys.shred(cp, store, "t2", ops, confirm="t2")
    entries = audit.entries(cp)
    assert [(e["outcome"], e["tenant_id"]) for e in entries][-2:] == [("intent", "t2"), ("failed", "t2")]
    import json

    assert json.loads(entries[-1]["details"])["intent"] == entries[-2]["seq"]
