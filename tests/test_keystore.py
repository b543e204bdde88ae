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


# ---------------------------------------------------------------- regressions of the key manager review
# (each failed on the code before the fix)


def test_a_home_open_to_others_or_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    import os

    from ccpipe.keystore import ensure_home

    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    monkeypatch.setenv("CCPIPE_HOME", str(home))
    with pytest.raises(MasterKeyError, match=r"writable by group/others \(mode 0777\).*chmod 700"):
        ensure_home()
    with pytest.raises(MasterKeyError, match="writable by group/others"):
        SqliteKeyStore(KeystoreConfig.default(), create=True)
    assert list(home.iterdir()) == []
    home.chmod(0o755)  # readable is fine: the files in it are 0600
    assert ensure_home() == home
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 4242)
    with pytest.raises(MasterKeyError, match=rf"owned by uid {me}, not by the user running ccpipe"):
        ensure_home()


def test_key_and_token_files_must_be_the_users_own_files_not_links(tmp_path, monkeypatch):
    import os

    from ccpipe.kms import KmsConfig, load_master_key, read_token

    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
    real = tmp_path / "real.key"
    key = load_master_key(str(real), "CCPIPE_UNSET", create=True)
    link = tmp_path / "link.key"
    link.symlink_to(real)  # a 0600 file of the user, through a link that another user could re-point
    with pytest.raises(MasterKeyError, match="symbolic link"):
        load_master_key(str(link), "CCPIPE_UNSET", create=False)
    dangling = tmp_path / "dangling.key"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(MasterKeyError, match="symbolic link"):
        load_master_key(str(dangling), "CCPIPE_UNSET", create=True)
    assert not (tmp_path / "nowhere").exists()
    token = tmp_path / "token"
    token.write_text("s.token\n")
    token.chmod(0o600)
    (tmp_path / "token.link").symlink_to(token)
    with pytest.raises(MasterKeyError, match="symbolic link"):
        read_token(KmsConfig.parse(f"openbao://bao.example:8200?token_file={tmp_path / 'token.link'}"))
    assert read_token(KmsConfig.parse(f"openbao://bao.example:8200?token_file={token}")) == "s.token"
    store = SqliteKeyStore(KeystoreConfig(str(tmp_path / "ks" / "keystore.db"), str(real)), create=True)
    kek = store._config.kek_path
    store.close()
    os.rename(kek, kek + ".real")
    os.symlink(kek + ".real", kek)
    with pytest.raises(MasterKeyError, match="key-encryption-key file .* symbolic link"):
        SqliteKeyStore(KeystoreConfig(str(tmp_path / "ks" / "keystore.db"), str(real)))
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 4242)  # as another user: the files are not theirs
    with pytest.raises(MasterKeyError, match=rf"master key file .* owned by uid {me}, not by the user"):
        load_master_key(str(real), "CCPIPE_UNSET", create=False)
    with pytest.raises(MasterKeyError, match=rf"OpenBao token file .* owned by uid {me}"):
        read_token(KmsConfig.parse(f"openbao://bao.example:8200?token_file={token}"))
    monkeypatch.setattr(os, "getuid", lambda: me)
    assert load_master_key(str(real), "CCPIPE_UNSET", create=False) == key


def test_a_key_file_is_read_from_the_descriptor_that_was_checked(tmp_path, monkeypatch):
    """No window between the check and the read: a swap right after the check must not change what is read."""
    import base64
    import os

    from ccpipe.kms import load_master_key

    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
    path = tmp_path / "master.key"
    key = load_master_key(str(path), "CCPIPE_UNSET", create=True)
    other = tmp_path / "other.key"
    other.write_text(base64.b64encode(b"o" * 32).decode() + "\n")
    other.chmod(0o600)
    swapped = []
    real_stat, real_fstat = os.stat, os.fstat

    def swap_once():
        if not swapped:
            swapped.append(True)
            (tmp_path / "swap").symlink_to(other)
            os.replace(tmp_path / "swap", path)

    def stat_then_swap(*args, **kwargs):  # the swap happens as soon as the file has been looked at
        result = real_stat(*args, **kwargs)
        swap_once()
        return result

    def fstat_then_swap(fd):
        result = real_fstat(fd)
        swap_once()
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    monkeypatch.setattr(os, "fstat", fstat_then_swap)
    try:
        assert load_master_key(str(path), "CCPIPE_UNSET", create=False) == key
    except MasterKeyError:
        pass  # refusing is fine too; reading the swapped-in key is not
    assert swapped


def test_shred_before_is_checked_under_the_keystore_lock(config, tmp_path):
    """The active-version guard once ran only in keys.shred, before the keystore's write lock."""
    import datetime as dt

    from ccpipe.controlplane import audit, keys
    from ccpipe.errors import ConfigError

    store = SqliteKeyStore(config, create=True)
    cp = _control_plane(tmp_path, "t1")
    store.ensure_key("t1", "content")
    store._db.execute("UPDATE data_keys SET created_at = '2025-01-01T00:00:00+00:00' WHERE owner = 't1'")
    store.create_key("t1", "content")
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(ConfigError, match=r"would destroy the active content key v2 .*--all"):
        store.destroy("t1", "content", before=tomorrow)
    assert store.states("t1", "content") == {1: "retired", 2: "active"}
    # keys.shred planned on a view that has changed since (here: v2 looked newer than the cutoff): still refused.
    import dataclasses

    v1, v2 = store.key_info("t1", "content")
    stale = [v1, dataclasses.replace(v2, created_at=tomorrow + dt.timedelta(days=1))]
    store.key_info = lambda owner, purpose: stale
    with pytest.raises(ConfigError, match="would destroy the active content key v2"):
        keys.shred(cp, store, "t1", audit.Actor("ops", "operator"), confirm="t1", before=tomorrow.isoformat())
    assert store.states("t1", "content") == {1: "retired", 2: "active"}
    assert store.current("t1", "content").version == 2
    assert store.destroy("t1", "content", before="2025-06-01") == [1]


def test_tenant_ids_starting_with_underscore_cannot_own_tenant_keys(config):
    """A tenant called '_audit' once shared the audit log's KEK (same owner in the key manager)."""
    from ccpipe.errors import ConfigError
    from ccpipe.keystore import deadletter_key_owner

    store = SqliteKeyStore(config, create=True)
    for owner, purpose in (("_audit", "content"), ("_audit", "pseudonym"), ("_deadletter:nl", "content"),
                           ("", "content")):
        with pytest.raises(ConfigError, match="reserved for ccpipe's own keys"):
            store.ensure_key(owner, purpose)
        with pytest.raises(ConfigError, match="reserved for ccpipe's own keys"):
            store.create_key(owner, purpose)
    assert store.versions() == [] and store.kek_versions("_audit") == []
    assert store.ensure_key("_audit", "audit") == 1
    assert store.ensure_key(deadletter_key_owner("nl"), "deadletter") == 1
    assert store.ensure_key("t_1", "content") == 1
