"""Keystore: per-tenant, per-purpose, versioned data keys wrapped by a master key (KEK).

The embedded default is a SQLite file under ``$CCPIPE_HOME`` (``keystore.db``). Its master key
comes from the environment variable ``CCPIPE_MASTER_KEY`` (base64 of 32 bytes) or from a key
file (``$CCPIPE_HOME/master.key``, mode 0600), created by ``ccpipe keys init`` or on first use.
A cloud KMS implements the same ``KeyStore`` protocol.

Purposes: ``content`` (AES-256-GCM of customer content and recoverable originals),
``pseudonym`` (HMAC-SHA256 keys for analytics pseudonyms), ``deadletter`` (per-region keys of
the operator that encrypt dead letters, so a record whose tenant key is missing is still kept
safely).
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ccpipe.crypto import KEY_BYTES, DataKey, DecryptionError, unwrap_key, wrap_key
from ccpipe.errors import ConfigError, KeyUnavailableError, MasterKeyError

PURPOSES = ("content", "pseudonym", "deadletter")
TENANT_PURPOSES = ("content", "pseudonym")
MASTER_KEY_ENV = "CCPIPE_MASTER_KEY"
_CHECK_AAD = b"ccpipe/kek-check/v1"


def ccpipe_home() -> Path:
    """The state folder: ``$CCPIPE_HOME`` or ``~/.ccpipe``."""
    return Path(os.environ.get("CCPIPE_HOME") or Path.home() / ".ccpipe")


def deadletter_key_owner(region: str) -> str:
    """The keystore owner id of a region's dead-letter key (not a tenant id)."""
    return f"_deadletter:{region}"


class KeyStore(Protocol):
    """What the pipelines need from a keystore."""

    def current(self, owner: str, purpose: str) -> DataKey:
        """The newest active key of ``owner`` for ``purpose``."""

    def get(self, owner: str, purpose: str, version: int) -> DataKey:
        """A given version (for decrypting older data)."""


@dataclass(frozen=True)
class KeystoreConfig:
    """Where the embedded keystore and its master key live. Holds no key material.

    ``master_key_file`` is used when the environment variable ``master_key_env`` is unset.
    """

    path: str
    master_key_file: str
    master_key_env: str = MASTER_KEY_ENV

    @classmethod
    def default(cls, home: Path | None = None) -> KeystoreConfig:
        """The embedded default under ``$CCPIPE_HOME``."""
        home = home or ccpipe_home()
        return cls(path=str(home / "keystore.db"), master_key_file=str(home / "master.key"))

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("keystore path must not be empty")


def _load_master_key(config: KeystoreConfig, create: bool) -> bytes:
    env_value = os.environ.get(config.master_key_env)
    if env_value:
        try:
            key = base64.b64decode(env_value, validate=True)
        except ValueError:
            raise MasterKeyError(f"${config.master_key_env} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"${config.master_key_env} must decode to {KEY_BYTES} bytes, got {len(key)}")
        return key
    path = Path(config.master_key_file)
    if path.exists():
        key = base64.b64decode(path.read_text().strip())
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"master key file {path} must hold {KEY_BYTES} bytes (base64)")
        return key
    if not create:
        raise MasterKeyError(f"no master key: set ${config.master_key_env} or create {path} (ccpipe keys init)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
    return key


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class SqliteKeyStore:
    """The embedded keystore. Safe to open read-only from many worker processes."""

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS data_keys (
        owner TEXT NOT NULL, purpose TEXT NOT NULL, version INTEGER NOT NULL,
        wrapped BLOB, state TEXT NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
        created_at TEXT NOT NULL, destroyed_at TEXT,
        PRIMARY KEY (owner, purpose, version));
    """

    def __init__(self, config: KeystoreConfig, *, create: bool = False) -> None:
        """Open the keystore; with ``create`` make it (and the master key) when absent."""
        self._config = config
        path = Path(config.path)
        if not path.exists() and not create:
            raise MasterKeyError(f"no keystore at {path}: run 'ccpipe keys init'")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._kek = _load_master_key(config, create=create)
        self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        self._db.executescript(self._SCHEMA)
        self._cache: dict[tuple[str, str, int | None], DataKey] = {}
        row = self._db.execute("SELECT value FROM meta WHERE name = 'kek_check'").fetchone()
        if row is None:
            with self._db:
                self._db.execute(
                    "INSERT INTO meta VALUES ('kek_check', ?)", (wrap_key(self._kek, b"\0" * 32, _CHECK_AAD),)
                )
        else:
            try:
                unwrap_key(self._kek, row[0], _CHECK_AAD)
            except DecryptionError:
                raise MasterKeyError(f"the master key does not match the keystore at {path}") from None

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @staticmethod
    def _aad(owner: str, purpose: str, version: int) -> bytes:
        return f"ccpipe/dk/v1|{owner}|{purpose}|{version}".encode()

    def create_key(self, owner: str, purpose: str) -> DataKey:
        """Create the next version of a key; older versions stay usable for decryption."""
        if purpose not in PURPOSES:
            raise ConfigError(f"purpose {purpose!r} is not one of {PURPOSES}")
        with self._db:
            (latest,) = self._db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM data_keys WHERE owner = ? AND purpose = ?", (owner, purpose)
            ).fetchone()
            version = latest + 1
            material = os.urandom(KEY_BYTES)
            self._db.execute(
                "UPDATE data_keys SET state = 'retired' WHERE owner = ? AND purpose = ? AND state = 'active'",
                (owner, purpose),
            )
            self._db.execute(
                "INSERT INTO data_keys (owner, purpose, version, wrapped, state, created_at) "
                "VALUES (?, ?, ?, ?, 'active', ?)",
                (owner, purpose, version, wrap_key(self._kek, material, self._aad(owner, purpose, version)), _now()),
            )
        self._cache.pop((owner, purpose, None), None)
        return DataKey(owner, purpose, version, material)

    def ensure_key(self, owner: str, purpose: str) -> int:
        """Create version 1 of a key when the owner has none; return the active version.

        A destroyed key is not re-created: its owner's data is shredded for good.
        """
        row = self._db.execute(
            "SELECT MAX(version) FROM data_keys WHERE owner = ? AND purpose = ?",
            (owner, purpose),
        ).fetchone()
        if row[0] is None:
            return self.create_key(owner, purpose).version
        return int(row[0])

    def _unwrap(self, owner: str, purpose: str, version: int, wrapped: bytes | None, state: str) -> DataKey:
        if state == "destroyed" or wrapped is None:
            raise KeyUnavailableError(f"key {purpose} v{version} of {owner} was destroyed")
        try:
            material = unwrap_key(self._kek, wrapped, self._aad(owner, purpose, version))
        except DecryptionError:
            raise KeyUnavailableError(f"key {purpose} v{version} of {owner} cannot be unwrapped") from None
        return DataKey(owner, purpose, version, material)

    def current(self, owner: str, purpose: str) -> DataKey:
        """The active key version; KeyUnavailableError when there is none."""
        cached = self._cache.get((owner, purpose, None))
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT version, wrapped, state FROM data_keys WHERE owner = ? AND purpose = ? "
            "ORDER BY version DESC LIMIT 1",
            (owner, purpose),
        ).fetchone()
        if row is None:
            raise KeyUnavailableError(f"no {purpose} key for {owner}")
        key = self._unwrap(owner, purpose, row[0], row[1], row[2])
        self._cache[(owner, purpose, None)] = key
        return key

    def get(self, owner: str, purpose: str, version: int) -> DataKey:
        """A specific key version."""
        cached = self._cache.get((owner, purpose, version))
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT wrapped, state FROM data_keys WHERE owner = ? AND purpose = ? AND version = ?",
            (owner, purpose, version),
        ).fetchone()
        if row is None:
            raise KeyUnavailableError(f"no {purpose} key v{version} for {owner}")
        key = self._unwrap(owner, purpose, version, row[0], row[1])
        self._cache[(owner, purpose, version)] = key
        return key

    def destroy(self, owner: str, purpose: str, before: str | None = None) -> list[int]:
        """Destroy key material (irreversible): every version, or those created before ``before``.

        Returns the versions destroyed. The row stays (state ``destroyed``) so that nothing
        re-creates the key and the history remains.
        """
        sql = "SELECT version FROM data_keys WHERE owner = ? AND purpose = ? AND state != 'destroyed'"
        params: tuple = (owner, purpose)
        if before:
            sql += " AND created_at < ?"
            params += (before,)
        versions = [r[0] for r in self._db.execute(sql, params).fetchall()]
        with self._db:
            for version in versions:
                self._db.execute(
                    "UPDATE data_keys SET wrapped = NULL, state = 'destroyed', destroyed_at = ? "
                    "WHERE owner = ? AND purpose = ? AND version = ?",
                    (_now(), owner, purpose, version),
                )
        self._cache = {k: v for k, v in self._cache.items() if k[:2] != (owner, purpose)}
        return versions

    def states(self, owner: str, purpose: str) -> dict[int, str]:
        """Version -> state of one key."""
        rows = self._db.execute(
            "SELECT version, state FROM data_keys WHERE owner = ? AND purpose = ? ORDER BY version", (owner, purpose)
        ).fetchall()
        return dict(rows)

    def usable_versions(self, owner: str, purpose: str) -> list[DataKey]:
        """Every version that can still be unwrapped (for decrypting or matching old data)."""
        out = []
        for version, state in self.states(owner, purpose).items():
            if state != "destroyed":
                out.append(self.get(owner, purpose, version))
        return out

    def versions(self) -> list[tuple[str, str, int, str]]:
        """Every key's (owner, purpose, version, state), without material."""
        return self._db.execute(
            "SELECT owner, purpose, version, state FROM data_keys ORDER BY owner, purpose, version"
        ).fetchall()
