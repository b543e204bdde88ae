"""Keystore: per-tenant, per-purpose, versioned data keys, wrapped by per-owner key-encryption keys.

The keystore is a SQLite file under ``$CCPIPE_HOME`` (``keystore.db``, mode 0600, folder 0700).
It holds only *wrapped* data keys. Each owner (a tenant, a region's dead-letter owner, the audit
log) has its own key-encryption key (KEK) in a key manager (``ccpipe.kms``): ``local`` (the
embedded default: ``keystore-kek.db`` beside the keystore, wrapped by the master key from
``$CCPIPE_MASTER_KEY`` or ``master.key``) or ``openbao://...`` (OpenBao's transit engine). The
key manager a keystore uses is recorded in it at creation; ``--kms`` must agree with it.

Crypto-shredding destroys KEKs, not just rows: destroying every key of an owner destroys the
owner's KEK; destroying some versions (``--before``, retention) rotates the KEK, re-wraps the
surviving data keys under the new version and destroys the old versions. A copy of
``keystore.db`` taken before the shred (a backup, a snapshot) can then no longer be unwrapped.

Freshness (streaming workers): every ``current``/``get`` reads the key's row from the keystore
(a primary-key lookup, not cached), so a rotation or a shred made with ``ccpipe keys`` or by
retention takes effect at a worker's next record, and nothing new is encrypted under a key once
its shred is committed. Unwrapped key material is cached per process for at most
``KEY_CACHE_TTL_SECONDS`` (30 s; ``KeystoreConfig.cache_ttl_seconds``): a KEK destroyed directly
in the key manager, outside ccpipe, stops new writes within that time.

Purposes: ``content`` (AES-256-GCM of customer content and recoverable originals),
``pseudonym`` (HMAC-SHA256 keys for analytics pseudonyms), ``deadletter`` (per-region keys of
the operator that encrypt dead letters), ``audit`` (the audit log's HMAC key, owner ``_audit``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ccpipe.crypto import KEY_BYTES, DataKey, DecryptionError, unwrap_key
from ccpipe.errors import CcpipeError, ConfigError, KeyUnavailableError, MasterKeyError
from ccpipe.kms import (
    KeyManager,
    KmsConfig,
    check_private_dir,
    create_private_file,
    load_master_key,
    open_key_manager,
    redact_kms,
)

PURPOSES = ("content", "pseudonym", "deadletter", "audit")
TENANT_PURPOSES = ("content", "pseudonym")
MASTER_KEY_ENV = "CCPIPE_MASTER_KEY"
KEY_CACHE_TTL_SECONDS = 30.0
_FORMAT = "2"
_LEGACY_CHECK_AAD = b"ccpipe/kek-check/v1"
_LOG = logging.getLogger(__name__)


def ccpipe_home() -> Path:
    """The state folder: ``$CCPIPE_HOME`` or ``~/.ccpipe``."""
    return Path(os.environ.get("CCPIPE_HOME") or Path.home() / ".ccpipe")


def ensure_home() -> Path:
    """Create ``$CCPIPE_HOME`` private to its owner (0700) when absent; return it.

    An existing home owned by another user or writable by group/others is refused
    (``MasterKeyError``): whoever can write it can swap the key files in it.
    """
    home = ccpipe_home()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_dir(home, "$CCPIPE_HOME")
    return home


def check_tenant_owner(owner: str) -> None:
    """Refuse a tenant id that could name an internal owner: ids starting with '_' are ccpipe's own.

    ``_audit`` (the audit log's key) and ``_deadletter:REGION`` share the keystore and the key
    manager with tenants; a tenant called ``_audit`` would share the audit log's KEK.
    """
    if not owner or owner.startswith("_"):
        raise ConfigError(
            f"tenant id {owner!r} cannot own tenant keys: ids starting with '_' are reserved for ccpipe's own "
            "keys (_audit, _deadletter:REGION); allowed: a non-empty id not starting with '_'"
        )


def prepare_sqlite_url(url: str | None) -> None:
    """Before SQLite creates a state database: its folder 0700 and the file 0600 (not SQLite's 0644).

    ``None`` is the embedded control plane under ``$CCPIPE_HOME``; PostgreSQL URLs are left alone.
    """
    if url is None:
        create_private_file(ensure_home() / "control.db")
    elif url.startswith("sqlite:///") or "://" not in url:
        path = Path(url.removeprefix("sqlite:///"))
        if path.parent.exists():
            create_private_file(path)


def deadletter_key_owner(region: str) -> str:
    """The keystore owner id of a region's dead-letter key (not a tenant id)."""
    return f"_deadletter:{region}"


def parse_cutoff(value: str | _dt.datetime, name: str = "before") -> _dt.datetime:
    """An ISO date or time as an aware UTC datetime; a date or a time without offset is UTC.

    ``2026-01-01`` and ``20260101`` are both midnight UTC of that day.
    """
    if isinstance(value, _dt.datetime):
        moment = value
    else:
        try:
            moment = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(
                f"{name} {value!r} must be an ISO date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM[:SS][+HH:MM])"
            ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=_dt.UTC)).astimezone(_dt.UTC)


class KeyStore(Protocol):
    """What the pipelines need from a keystore."""

    def current(self, owner: str, purpose: str) -> DataKey:
        """The newest active key of ``owner`` for ``purpose``."""

    def get(self, owner: str, purpose: str, version: int) -> DataKey:
        """A given version (for decrypting older data)."""


@dataclass(frozen=True)
class KeystoreConfig:
    """Where the keystore, its key manager and the local master key live. Holds no key material.

    ``kms``: ``local``, ``openbao://HOST:PORT[/MOUNT]?...`` or empty (the one recorded in the
    keystore; ``local`` for a new one). ``kek_path``: the local KEK file (default
    ``<keystore>-kek.db`` beside the keystore). ``master_key_file`` is used by the local key
    manager when the environment variable ``master_key_env`` is unset.
    """

    path: str
    master_key_file: str
    master_key_env: str = MASTER_KEY_ENV
    kms: str = ""
    kek_path: str = ""
    cache_ttl_seconds: float = KEY_CACHE_TTL_SECONDS

    @classmethod
    def default(cls, home: Path | None = None, kms: str = "") -> KeystoreConfig:
        """The embedded default under ``$CCPIPE_HOME``."""
        home = home or ccpipe_home()
        return cls(path=str(home / "keystore.db"), master_key_file=str(home / "master.key"), kms=kms)

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("keystore path must not be empty")
        if self.kms:
            KmsConfig.parse(self.kms)
        if not 0 <= self.cache_ttl_seconds <= 3600:
            raise ConfigError(f"cache_ttl_seconds {self.cache_ttl_seconds!r} must be between 0 and 3600")
        if not self.kek_path:
            path = Path(self.path)
            object.__setattr__(self, "kek_path", str(path.with_name(f"{path.stem}-kek{path.suffix or '.db'}")))


@dataclass(frozen=True)
class KeyVersionInfo:
    """One version of a key, without material."""

    version: int
    state: str
    created_at: _dt.datetime


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class KeystoreOpenError(CcpipeError):
    """The keystore file cannot be opened as a database (a folder, garbage, unreadable)."""


class SqliteKeyStore:
    """The keystore: wrapped data keys in SQLite, KEKs in a key manager. Safe to open from many processes."""

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS data_keys (
        owner TEXT NOT NULL, purpose TEXT NOT NULL, version INTEGER NOT NULL,
        wrapped BLOB, state TEXT NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
        created_at TEXT NOT NULL, destroyed_at TEXT,
        PRIMARY KEY (owner, purpose, version));
    CREATE TABLE IF NOT EXISTS kek_jobs (
        owner TEXT PRIMARY KEY, action TEXT NOT NULL CHECK (action IN ('trim', 'delete')),
        keep_from INTEGER NOT NULL, created_at TEXT NOT NULL);
    """

    def __init__(self, config: KeystoreConfig, *, create: bool = False) -> None:
        """Open the keystore; with ``create`` make it (and, for ``local``, the KEK file and master key)."""
        self._config = config
        path = Path(config.path)
        folder = path.resolve().parent
        if folder.exists():  # before anything is created in it: its files could be swapped by others
            check_private_dir(folder, "keystore folder")
        if not path.exists():
            if not create:
                raise MasterKeyError(f"no keystore at {path}: run 'ccpipe keys init'")
            create_private_file(path)
            check_private_dir(folder, "keystore folder")
        try:
            self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:  # a folder, an unreadable file
            raise KeystoreOpenError(f"cannot open the keystore at {path}: {type(err).__name__}: {err}") from None
        self._km: KeyManager | None = None
        try:
            try:
                self._db.execute("PRAGMA secure_delete = ON")
                self._db.executescript(self._SCHEMA)
            except sqlite3.DatabaseError as err:  # not a database (garbage, another kind of file)
                raise KeystoreOpenError(f"cannot open the keystore at {path}: {type(err).__name__}: {err}") from None
            self._open_key_manager(create)
        except BaseException:
            self.close()
            raise
        self._cache: dict[tuple[str, str, int], tuple[DataKey, bytes, float]] = {}

    # ------------------------------------------------------------------------------ opening

    def _meta(self) -> dict[str, str]:
        return {
            name: value.decode() if isinstance(value, bytes) and name != "kek_check" else value
            for name, value in self._db.execute("SELECT name, value FROM meta")
        }

    def _open_key_manager(self, create: bool) -> None:
        meta = self._meta()
        recorded = meta.get("kms")
        legacy = "kek_check" in meta and "format" not in meta
        kms = KmsConfig.parse(self._config.kms or meta.get("kms_url") or "local")
        if recorded and recorded != kms.identity():
            raise ConfigError(
                f"--kms {redact_kms(self._config.kms)!r} does not match the keystore {self._config.path}, whose "
                f"keys are wrapped by {redact_kms(meta.get('kms_url') or '')!r}; allowed: that key manager (or omit "
                "--kms)"
            )
        self.kms = kms
        self._km = open_key_manager(
            kms, master_key_file=self._config.master_key_file, master_key_env=self._config.master_key_env,
            kek_path=self._config.kek_path, create=(create and recorded is None) or legacy,
            create_master=create and recorded is None and not legacy,
        )
        if legacy:
            self._migrate_legacy(kms)
        elif recorded is None:
            with self._write():
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (_FORMAT,))
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('kms', ?)", (kms.identity(),))
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('kms_url', ?)", (kms.url,))
        if create:
            self._finish_kek_jobs()

    def _migrate_legacy(self, kms: KmsConfig) -> None:
        """Keystores of the first format wrapped every data key with the master key: re-wrap under owner KEKs."""
        master = load_master_key(self._config.master_key_file, self._config.master_key_env, create=False)
        with self._write():
            meta = self._meta()
            if "format" in meta:
                return
            try:
                unwrap_key(master, meta["kek_check"], _LEGACY_CHECK_AAD)
            except DecryptionError:
                raise MasterKeyError(f"the master key does not match the keystore at {self._config.path}") from None
            rows = self._db.execute(
                "SELECT owner, purpose, version, wrapped FROM data_keys WHERE wrapped IS NOT NULL"
            ).fetchall()
            for owner, purpose, version, wrapped in rows:
                aad = self._aad(owner, purpose, version)
                try:
                    material = unwrap_key(master, wrapped, aad)
                except DecryptionError:
                    _LOG.warning("legacy key %s v%d of %s cannot be unwrapped; left as is", purpose, version, owner)
                    continue
                self._km.ensure_kek(owner)
                self._db.execute(
                    "UPDATE data_keys SET wrapped = ? WHERE owner = ? AND purpose = ? AND version = ?",
                    (self._km.wrap(owner, material, aad), owner, purpose, version),
                )
            self._db.execute("DELETE FROM meta WHERE name = 'kek_check'")
            self._db.execute("INSERT INTO meta VALUES ('format', ?)", (_FORMAT,))
            self._db.execute("INSERT INTO meta VALUES ('kms', ?)", (kms.identity(),))
            self._db.execute("INSERT INTO meta VALUES ('kms_url', ?)", (kms.url,))
        _LOG.info("keystore %s upgraded: %d data keys re-wrapped under per-owner KEKs", self._config.path, len(rows))

    def close(self) -> None:
        """Close the database and the key manager."""
        if self._km is not None:
            self._km.close()
            self._km = None
        self._cache = {}
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """A write transaction that takes the write lock up front (no lost update, no IntegrityError)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @staticmethod
    def _aad(owner: str, purpose: str, version: int) -> bytes:
        return f"ccpipe/dk/v1|{owner}|{purpose}|{version}".encode()

    # ------------------------------------------------------------------------------ writing keys

    def _create_locked(self, owner: str, purpose: str) -> DataKey:
        (latest,) = self._db.execute(
            "SELECT COALESCE(MAX(version), 0) FROM data_keys WHERE owner = ? AND purpose = ?", (owner, purpose)
        ).fetchone()
        version = latest + 1
        material = os.urandom(KEY_BYTES)
        self._km.ensure_kek(owner)
        wrapped = self._km.wrap(owner, material, self._aad(owner, purpose, version))
        self._db.execute(
            "UPDATE data_keys SET state = 'retired' WHERE owner = ? AND purpose = ? AND state = 'active'",
            (owner, purpose),
        )
        self._db.execute(
            "INSERT INTO data_keys (owner, purpose, version, wrapped, state, created_at) "
            "VALUES (?, ?, ?, ?, 'active', ?)",
            (owner, purpose, version, wrapped, _now()),
        )
        return DataKey(owner, purpose, version, material)

    @staticmethod
    def _check_purpose(owner: str, purpose: str) -> None:
        if purpose not in PURPOSES:
            raise ConfigError(f"purpose {purpose!r} is not one of {PURPOSES}")
        if purpose in TENANT_PURPOSES:
            check_tenant_owner(owner)

    def create_key(self, owner: str, purpose: str) -> DataKey:
        """Create the next version of a key; older versions stay usable for decryption."""
        self._check_purpose(owner, purpose)
        self._finish_kek_jobs(owner)
        with self._write():
            return self._create_locked(owner, purpose)

    def ensure_key(self, owner: str, purpose: str) -> int:
        """Create version 1 of a key when the owner has none; return the newest version.

        A destroyed key is not re-created: its owner's data is shredded for good. Safe when many
        processes call it at once (the check and the insert share one ``BEGIN IMMEDIATE`` transaction).
        """
        self._check_purpose(owner, purpose)
        row = self._db.execute(
            "SELECT MAX(version) FROM data_keys WHERE owner = ? AND purpose = ?", (owner, purpose)
        ).fetchone()
        if row[0] is not None:
            return int(row[0])
        self._finish_kek_jobs(owner)
        with self._write():
            row = self._db.execute(
                "SELECT MAX(version) FROM data_keys WHERE owner = ? AND purpose = ?", (owner, purpose)
            ).fetchone()
            if row[0] is not None:
                return int(row[0])
            return self._create_locked(owner, purpose).version

    def rotate_kek(self, owner: str) -> int:
        """A new version of the owner's KEK: keys created from now on are wrapped by it."""
        self._km.ensure_kek(owner)
        return self._km.rotate_kek(owner)

    def destroy(self, owner: str, purpose: str, before: str | _dt.datetime | None = None) -> list[int]:
        """Destroy key versions (irreversible): every version, or those created before ``before`` (UTC).

        The data keys' rows stay (state ``destroyed``, wrapped key overwritten) so that nothing
        re-creates them and the history remains. Then the KEK goes: deleted when the owner has no
        live key left; otherwise rotated, the survivors re-wrapped, and the older KEK versions
        destroyed. A crash between the two steps leaves a job that the next write completes.
        With ``before``, a cutoff that would reach the newest (active) version is refused
        (``ConfigError``), checked under the write lock. Returns the versions destroyed.
        """
        cutoff = parse_cutoff(before) if before is not None else None
        self._finish_kek_jobs(owner)
        with self._write():
            rows = self._db.execute(
                "SELECT version, created_at FROM data_keys WHERE owner = ? AND purpose = ? AND state != 'destroyed'",
                (owner, purpose),
            ).fetchall()
            doomed = sorted(v for v, created in rows if cutoff is None or parse_cutoff(created) < cutoff)
            if not doomed:
                return []
            if cutoff is not None:
                # Checked here, under the write lock, so that what is destroyed is what was checked.
                (active, active_created) = self._db.execute(
                    "SELECT version, created_at FROM data_keys WHERE owner = ? AND purpose = ? "
                    "ORDER BY version DESC LIMIT 1", (owner, purpose),
                ).fetchone()
                if active in doomed:
                    raise ConfigError(
                        f"--before {cutoff.isoformat()} would destroy the active {purpose} key v{active} of "
                        f"{owner!r} (created {parse_cutoff(active_created).isoformat()}); allowed: a cutoff at or "
                        "before the active version's creation; to destroy every version use --all"
                    )
            for version in doomed:
                self._db.execute(
                    "UPDATE data_keys SET wrapped = NULL, state = 'destroyed', destroyed_at = ? "
                    "WHERE owner = ? AND purpose = ? AND version = ?",
                    (_now(), owner, purpose, version),
                )
            survivors = self._db.execute(
                "SELECT purpose, version, wrapped FROM data_keys WHERE owner = ? AND wrapped IS NOT NULL",
                (owner,),
            ).fetchall()
            if survivors:
                new_version = self.rotate_kek(owner)
                for s_purpose, s_version, wrapped in survivors:
                    aad = self._aad(owner, s_purpose, s_version)
                    try:
                        material = self._km.unwrap(owner, wrapped, aad)
                    except KeyUnavailableError:
                        _LOG.warning("key %s v%d of %s cannot be unwrapped; not re-wrapped", s_purpose, s_version,
                                     owner)
                        continue
                    self._db.execute(
                        "UPDATE data_keys SET wrapped = ? WHERE owner = ? AND purpose = ? AND version = ?",
                        (self._km.wrap(owner, material, aad), owner, s_purpose, s_version),
                    )
                job = ("trim", new_version)
            else:
                job = ("delete", 0)
            self._db.execute(
                "INSERT OR REPLACE INTO kek_jobs VALUES (?, ?, ?, ?)", (owner, job[0], job[1], _now())
            )
        self._cache = {k: v for k, v in self._cache.items() if k[0] != owner}
        self._finish_kek_jobs(owner)
        return doomed

    def _finish_kek_jobs(self, owner: str | None = None) -> None:
        """Carry out KEK destructions recorded by ``destroy`` (idempotent; retried after a crash)."""
        sql = "SELECT owner, action, keep_from FROM kek_jobs"
        jobs = self._db.execute(sql + (" WHERE owner = ?" if owner else ""), (owner,) if owner else ()).fetchall()
        for job_owner, action, keep_from in jobs:
            if action == "delete":
                self._km.destroy_kek(job_owner)
            else:
                self._km.trim_kek(job_owner, keep_from)
            self._db.execute(
                "DELETE FROM kek_jobs WHERE owner = ? AND action = ? AND keep_from = ?", (job_owner, action, keep_from)
            )

    def pending_kek_jobs(self) -> list[tuple[str, str, int]]:
        """KEK destructions recorded but not yet carried out (owner, action, keep_from)."""
        return self._db.execute("SELECT owner, action, keep_from FROM kek_jobs ORDER BY owner").fetchall()

    # ------------------------------------------------------------------------------ reading keys

    def _material(self, owner: str, purpose: str, version: int, wrapped: bytes | None, state: str) -> DataKey:
        cache_key = (owner, purpose, version)
        if state == "destroyed" or wrapped is None:
            self._cache.pop(cache_key, None)
            raise KeyUnavailableError(f"key {purpose} v{version} of {owner} was destroyed")
        cached = self._cache.get(cache_key)
        now = time.monotonic()
        if cached is not None and cached[1] == wrapped and now < cached[2]:
            return cached[0]
        try:
            material = self._km.unwrap(owner, wrapped, self._aad(owner, purpose, version))
        except KeyUnavailableError as err:
            self._cache.pop(cache_key, None)
            raise KeyUnavailableError(f"key {purpose} v{version} of {owner} cannot be unwrapped: {err}") from None
        key = DataKey(owner, purpose, version, material)
        if self._config.cache_ttl_seconds > 0:
            self._cache[cache_key] = (key, wrapped, now + self._config.cache_ttl_seconds)
        return key

    def current(self, owner: str, purpose: str) -> DataKey:
        """The newest key version; KeyUnavailableError when there is none or it was destroyed."""
        row = self._db.execute(
            "SELECT version, wrapped, state FROM data_keys WHERE owner = ? AND purpose = ? "
            "ORDER BY version DESC LIMIT 1",
            (owner, purpose),
        ).fetchone()
        if row is None:
            raise KeyUnavailableError(f"no {purpose} key for {owner}")
        return self._material(owner, purpose, row[0], row[1], row[2])

    def get(self, owner: str, purpose: str, version: int) -> DataKey:
        """A specific key version."""
        row = self._db.execute(
            "SELECT wrapped, state FROM data_keys WHERE owner = ? AND purpose = ? AND version = ?",
            (owner, purpose, version),
        ).fetchone()
        if row is None:
            raise KeyUnavailableError(f"no {purpose} key v{version} for {owner}")
        return self._material(owner, purpose, version, row[0], row[1])

    def states(self, owner: str, purpose: str) -> dict[int, str]:
        """Version -> state of one key."""
        rows = self._db.execute(
            "SELECT version, state FROM data_keys WHERE owner = ? AND purpose = ? ORDER BY version", (owner, purpose)
        ).fetchall()
        return dict(rows)

    def key_info(self, owner: str, purpose: str) -> list[KeyVersionInfo]:
        """Every version of one key with its state and creation time (UTC)."""
        rows = self._db.execute(
            "SELECT version, state, created_at FROM data_keys WHERE owner = ? AND purpose = ? ORDER BY version",
            (owner, purpose),
        ).fetchall()
        return [KeyVersionInfo(v, s, parse_cutoff(c)) for v, s, c in rows]

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

    def kek_versions(self, owner: str) -> list[int]:
        """The live versions of the owner's KEK in the key manager (empty once shredded)."""
        return self._km.kek_versions(owner)
