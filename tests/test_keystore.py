import base64
import sqlite3

import pytest

from ccpipe.errors import KeyUnavailableError, MasterKeyError
from ccpipe.keystore import KeystoreConfig, SqliteKeyStore


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("CCPIPE_MASTER_KEY", raising=False)
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
