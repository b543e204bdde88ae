"""Key managers: where the per-tenant key-encryption keys (KEKs) live.

The keystore (``ccpipe.keystore``) keeps each tenant's versioned *data* keys, wrapped, in SQLite.
A ``KeyManager`` holds the KEK that wraps them, one per keystore owner (a tenant, a region's
dead-letter owner, the audit log), and is the only thing that can unwrap them. Destroying an
owner's KEK is what crypto-shredding means: every wrapped data key of that owner, in the live
keystore and in every copy or backup of it, becomes noise.

Two backends, chosen with ``--kms``:

``local`` (embedded default, zero set-up)
    KEKs live in a second SQLite file beside the keystore (``keystore-kek.db``), each wrapped
    by the master key (``$CCPIPE_MASTER_KEY`` or ``master.key``). Both files use SQLite
    ``secure_delete``, so a destroyed KEK is overwritten in the file. What a local keystore
    cannot promise: a copy of ``keystore-kek.db`` taken before a shred (a backup, a snapshot,
    a file-system journal, blocks an SSD has not yet erased) *together with* ``master.key``
    still holds the destroyed KEK. A backup of ``keystore.db`` alone is safe.

``openbao://HOST:PORT[/MOUNT]`` (HTTPS) or ``openbao+http://127.0.0.1:PORT[/MOUNT]`` (loopback only)
    KEKs are keys of OpenBao's transit engine (type ``aes256-gcm96``, not exportable), named
    ``<prefix><owner>``. Data keys are wrapped with ``transit/encrypt`` and unwrapped with
    ``transit/decrypt``, with the data key's identity as associated data; no KEK ever leaves
    the server. Shredding an owner deletes its transit key (``deletion_allowed`` is set only at
    that moment); destroying some versions rotates the transit key, re-wraps the survivors and
    trims the old versions. After either, no copy of any ccpipe file can be decrypted.
    Every transit key is read back when ccpipe creates or opens it, before each wrap and before a
    destruction is reported: one that is exportable, allows plaintext backup, was imported or is
    not ``aes256-gcm96`` is refused (``UnsafeKekError``), since a copy of it could undo a shred.
    Query parameters: ``token_file=PATH`` (else ``$BAO_TOKEN`` or ``$VAULT_TOKEN``),
    ``ca_file=PATH``, ``prefix=NAME`` (default ``ccpipe-``), ``namespace=NS``, ``timeout=S``.
    The token never enters the pipeline graph: each worker reads it when it opens the keystore.
    A value carrying credentials (``user:pass@``, ``token=``) is refused, and messages show the
    value with userinfo and query values masked.

Key and token files are opened without following symlinks and checked on the open descriptor
(a regular file of the user running ccpipe, mode 0600 or stricter) before they are read from it.

Errors: ``KeyUnavailableError`` when a KEK is gone or refuses to unwrap (the record is
dead-lettered); ``KmsError`` when the key manager cannot be reached or refuses the token (the
bundle or the command fails; nothing is written).
"""

from __future__ import annotations

import datetime as _dt
import errno
import ipaddress
import os
import re
import sqlite3
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from ccpipe.crypto import KEY_BYTES, DecryptionError, unwrap_key, wrap_key
from ccpipe.errors import CcpipeError, ConfigError, KeyUnavailableError, MasterKeyError

KMS_KINDS = ("local", "openbao")
# The --kms flag's help, the same on every command that takes it.
KMS_FLAG_HELP = ("key manager of the tenant KEKs: local, openbao://HOST:PORT[/MOUNT]?token_file=PATH or "
                 "openbao+http://127.0.0.1:PORT (default: the one the keystore was created with, else local)")
_LOCAL_MAGIC = b"LK1"
_LOCAL_HEADER = struct.Struct(">3sI")
_CHECK_AAD = b"ccpipe/kek-check/v1"
_QUERY_KEYS = ("token_file", "ca_file", "prefix", "namespace", "timeout")
_TOKEN_QUERY_KEYS = ("token", "bao_token", "vault_token", "x_vault_token", "client_token")


class KmsError(CcpipeError):
    """The key manager is unreachable, misconfigured or refused the credentials: fail, write nothing."""


class UnsafeKekError(KmsError):
    """A KEK in the key manager has settings that let its material leave it (exportable, plaintext backup)."""


@dataclass(frozen=True)
class KmsConfig:
    """A parsed ``--kms`` value. Holds no secret (the token is read when the manager is opened)."""

    kind: str
    url: str = ""
    base_url: str = ""
    mount: str = "transit"
    prefix: str = "ccpipe-"
    token_file: str | None = None
    ca_file: str | None = None
    namespace: str | None = None
    timeout: float = 10.0

    @classmethod
    def parse(cls, value: str) -> KmsConfig:
        """``local``, ``openbao://HOST:PORT[/MOUNT][?...]`` or ``openbao+http://LOOPBACK:PORT[/MOUNT][?...]``.

        Messages never echo a credential: they show the value with its userinfo and every query value
        masked (``redact_kms``), and a value carrying credentials is refused before anything else.
        """
        if value in ("", "local"):
            return cls(kind="local", url="local")
        allowed = "'local', 'openbao://HOST:PORT[/MOUNT]' or 'openbao+http://127.0.0.1:PORT[/MOUNT]'"
        shown = redact_kms(value)
        try:
            parts = urlsplit(value)
        except ValueError:
            raise ConfigError(f"--kms {shown!r} is not a valid URL; use {allowed}") from None
        # Credentials first: whatever else is wrong with the value, say this (and never echo them).
        if "@" in parts.netloc:
            raise ConfigError(
                f"--kms {shown!r} must not carry credentials: put the token in a file (mode 0600) and pass "
                "token_file=PATH, or set $BAO_TOKEN"
            )
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        if any(name.lower().replace("-", "_") in _TOKEN_QUERY_KEYS for name in query):
            raise ConfigError(
                f"--kms {shown!r} must not carry the token (a token= parameter ends up in logs, shell history and "
                "the keystore): put it in a file (mode 0600) and pass token_file=PATH, or set $BAO_TOKEN"
            )
        if parts.scheme not in ("openbao", "openbao+http"):
            raise ConfigError(f"--kms {shown!r} is not a key manager: use {allowed}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ConfigError(f"--kms {shown!r} must name HOST:PORT of the OpenBao server; {allowed}")
        plain = parts.scheme == "openbao+http"
        if plain and not _is_loopback(parts.hostname):
            raise ConfigError(
                f"--kms {shown!r}: plain HTTP is allowed only to a loopback address (the token would cross the "
                "network in clear); use openbao://HOST:PORT (HTTPS)"
            )
        unknown = sorted(set(query) - set(_QUERY_KEYS))
        if unknown:
            names = [n if re.fullmatch(r"[a-z_]{1,32}", n) else "***" for n in unknown]
            raise ConfigError(f"--kms {shown!r}: unknown parameter(s) {names}; allowed: {list(_QUERY_KEYS)}")
        one = {k: v[-1] for k, v in query.items()}
        mount = parts.path.strip("/") or "transit"
        segments = mount.split("/")
        if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", mount) or any(seg in ("", ".", "..") for seg in segments):
            raise ConfigError(
                f"--kms {shown!r}: mount {mount!r} must be path segments of letters, digits, '_', '-', '.' "
                "separated by '/' (no empty, '.' or '..' segment)"
            )
        prefix = one.get("prefix", "ccpipe-")
        if not re.fullmatch(r"[A-Za-z0-9_\-]*", prefix):
            raise ConfigError(f"--kms {shown!r}: prefix may hold only letters, digits, '_' and '-'")
        try:
            timeout = float(one.get("timeout", "10"))
        except ValueError:
            raise ConfigError(f"--kms {shown!r}: timeout must be a number of seconds") from None
        if not 0 < timeout <= 300:
            raise ConfigError(f"--kms {shown!r}: timeout must be between 0 and 300 seconds")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls(
            kind="openbao", url=value, base_url=f"{'http' if plain else 'https'}://{host}:{parts.port}",
            mount=mount, prefix=prefix, token_file=one.get("token_file") or None, ca_file=one.get("ca_file") or None,
            namespace=one.get("namespace") or None, timeout=timeout,
        )

    def identity(self) -> str:
        """What must stay the same for a keystore's wrapped keys to be found: kind, mount, prefix."""
        return "local" if self.kind == "local" else f"openbao:{self.mount}:{self.prefix}"


def redact_kms(value: str) -> str:
    """A ``--kms`` value fit for a message or a log: userinfo, every query value and any fragment masked."""
    head, sep, rest = value.partition("://")
    if not sep:
        head, rest = "", value
    rest, hash_sign, _ = rest.partition("#")
    rest, question, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    items = []
    for item in query.split("&") if question else ():
        name, eq, _ = item.partition("=")
        shown_name = name if re.fullmatch(r"[a-z_]{1,32}", name) else "***"
        items.append(f"{shown_name}=***" if eq or name else "")
    return (f"{head}{sep}{authority}{slash}{path}" + (question + "&".join(items) if question else "")
            + ("#***" if hash_sign else ""))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_unless_private(info: os.stat_result, path: Path, what: str) -> None:
    """Refuse what is not a regular file owned by this user and private to it (mode 0600 or stricter)."""
    if not stat.S_ISREG(info.st_mode):
        raise MasterKeyError(f"{what} {path} is not a regular file")
    if info.st_uid != os.getuid():
        raise MasterKeyError(
            f"{what} {path} is owned by uid {info.st_uid}, not by the user running ccpipe (uid {os.getuid()}); "
            f"it must belong to that user: chown {os.getuid()} {path}"
        )
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"{what} {path} is readable or writable by group/others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"it must be private to its owner: chmod 600 {path}"
        )


def _open_private(path: Path, what: str) -> int:
    """A read descriptor of a key file, opened without following a symlink and checked on the descriptor.

    FileNotFoundError when it does not exist; MasterKeyError when it is a symlink, not a regular file,
    owned by another user or open to group/others. The caller reads from (and closes) the descriptor,
    so what is read is what was checked.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(path):
            raise MasterKeyError(
                f"{what} {path} is a symbolic link; ccpipe opens key files only directly (a link can be "
                f"pointed at another file): use the file itself"
            ) from None
        raise MasterKeyError(f"{what} {path} cannot be opened: {err.strerror}") from None
    try:
        _refuse_unless_private(os.fstat(fd), path, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private_file(path: Path, what: str, limit: int = 1 << 20) -> bytes:
    """The bytes of a key or token file, read from the descriptor whose owner and mode were checked."""
    fd = _open_private(path, what)
    try:
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise MasterKeyError(f"{what} {path} is larger than {limit} bytes: it is not a key file")
    return b"".join(chunks)


def check_private_file(path: Path, what: str) -> os.stat_result:
    """Refuse a key file that is a symlink, another user's, or readable/writable by group/others.

    Returns the checked file's status (compare it with ``same_file`` after opening it by name).
    """
    fd = _open_private(path, what)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def same_file(path: Path, checked: os.stat_result, what: str) -> None:
    """After a library opened ``path`` by name: refuse unless it is still the (non-symlink) file checked."""
    now = os.lstat(path)
    if stat.S_ISLNK(now.st_mode) or (now.st_dev, now.st_ino) != (checked.st_dev, checked.st_ino):
        raise MasterKeyError(f"{what} {path} was replaced while it was being opened; refusing it")


def check_private_dir(path: Path, what: str) -> None:
    """Refuse a state folder owned by another user or writable by group/others (files in it could be swapped)."""
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise MasterKeyError(f"{what} {path} is not a folder")
    if info.st_uid != os.getuid():
        raise MasterKeyError(
            f"{what} {path} is owned by uid {info.st_uid}, not by the user running ccpipe (uid {os.getuid()}): "
            f"whoever owns it can swap the key files in it; use a folder of your own (chown {os.getuid()} {path})"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise MasterKeyError(
            f"{what} {path} is writable by group/others (mode {stat.S_IMODE(info.st_mode):04o}): they could swap "
            f"the key files in it; it must be private to its owner: chmod 700 {path}"
        )


def create_private_file(path: Path) -> None:
    """Create an empty file with mode 0600 (its folder 0700) unless it exists; SQLite accepts it as new."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    except FileExistsError:
        return
    os.close(fd)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class KeyManager(Protocol):
    """Per-owner key-encryption keys. ``aad`` binds a wrapped data key to its identity."""

    kind: str

    def ensure_kek(self, owner: str) -> None:
        """Create the owner's KEK when it has none (idempotent)."""

    def wrap(self, owner: str, material: bytes, aad: bytes) -> bytes:
        """Wrap a data key under the newest version of the owner's KEK."""

    def unwrap(self, owner: str, wrapped: bytes, aad: bytes) -> bytes:
        """Unwrap; KeyUnavailableError when the KEK (version) is gone or the blob does not match."""

    def rotate_kek(self, owner: str) -> int:
        """Add a KEK version; new wraps use it, older wraps still unwrap. Returns the new version."""

    def trim_kek(self, owner: str, keep_from: int) -> None:
        """Destroy every KEK version older than ``keep_from`` (irreversible)."""

    def destroy_kek(self, owner: str) -> None:
        """Destroy the owner's KEK entirely (irreversible); no-op when already gone."""

    def kek_versions(self, owner: str) -> list[int]:
        """The owner's live KEK versions (empty when none or destroyed)."""

    def close(self) -> None:
        """Release connections."""


# --------------------------------------------------------------------------------------------- local


def load_master_key(master_key_file: str, env_name: str, create: bool) -> bytes:
    """The local master key: ``$env_name`` (base64 of 32 bytes) or the key file (mode 0600).

    A key file that group/others can read is refused; a file that does not hold a key says so.
    With ``create`` a missing file is made (0600, its folder 0700).
    """
    env_value = os.environ.get(env_name)
    if env_value:
        try:
            key = _b64decode(env_value.strip())
        except ValueError:
            raise MasterKeyError(f"${env_name} is not valid base64 (expected base64 of {KEY_BYTES} bytes)") from None
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"${env_name} must decode to {KEY_BYTES} bytes, got {len(key)}")
        return key
    path = Path(master_key_file)
    try:
        raw = read_private_file(path, "master key file")
    except FileNotFoundError:
        raw = None
    if raw is not None:
        expected = f"one line holding base64 of {KEY_BYTES} random bytes, as 'ccpipe keys init' writes"
        try:
            text = raw.decode("ascii").strip()
            key = _b64decode(text)
        except (UnicodeDecodeError, ValueError):
            raise MasterKeyError(
                f"master key file {path} does not hold a ccpipe master key ({len(raw)} bytes, not base64): "
                f"expected {expected}"
            ) from None
        if len(key) != KEY_BYTES:
            raise MasterKeyError(
                f"master key file {path} holds {len(key)} bytes after base64 decoding; expected {expected}"
            )
        return key
    if not create:
        raise MasterKeyError(f"no master key: set ${env_name} or create {path} (ccpipe keys init)")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = os.urandom(KEY_BYTES)
    import base64

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
    return key


def _b64decode(text: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as err:
        raise ValueError(str(err)) from None


class LocalKeyManager:
    """KEKs in ``kek_path`` (SQLite, secure_delete), each wrapped by the master key.

    Wrapped data key layout: ``b"LK1" | KEK version (4 bytes) | nonce | AES-256-GCM(data key)``.
    """

    kind = "local"
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS keks (
        owner TEXT NOT NULL, version INTEGER NOT NULL, wrapped BLOB NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (owner, version));
    """

    def __init__(self, kek_path: str, master_key: bytes, *, create: bool) -> None:
        """Open (with ``create``, make) the KEK file; refuse a master key that does not match it."""
        path = Path(kek_path)
        if not path.exists():
            if not create:
                raise MasterKeyError(
                    f"no key-encryption-key file at {path}: the keystore's keys cannot be unwrapped without it "
                    "(a new keystore is made by 'ccpipe keys init')"
                )
            create_private_file(path)
        checked = check_private_file(path, "key-encryption-key file")
        self._master = master_key
        self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.executescript(self._SCHEMA)
            same_file(path, checked, "key-encryption-key file")  # SQLite opened the file that was checked
        except BaseException:
            self._db.close()
            raise
        self._cache: dict[tuple[str, int], bytes] = {}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT value FROM meta WHERE name = 'kek_check'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('kek_check', ?)", (wrap_key(master_key, b"\0" * 32,
                                                                                      _CHECK_AAD),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if row is not None:
            try:
                unwrap_key(master_key, row[0], _CHECK_AAD)
            except DecryptionError:
                raise MasterKeyError(f"the master key does not match the keystore (KEK file {path})") from None

    @staticmethod
    def _aad(owner: str, version: int) -> bytes:
        return f"ccpipe/kek/v1|{owner}|{version}".encode()

    def _create_version(self, owner: str) -> int:
        (latest,) = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM keks WHERE owner = ?", (owner,)).fetchone()
        version = latest + 1
        kek = os.urandom(KEY_BYTES)
        self._db.execute(
            "INSERT INTO keks VALUES (?, ?, ?, ?)", (owner, version, wrap_key(self._master, kek, self._aad(owner,
                                                                                                      version)), _now())
        )
        return version

    def _tx(self, fn):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = fn()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return result

    def ensure_kek(self, owner: str) -> None:
        """Create version 1 unless the owner has a KEK."""
        if self.kek_versions(owner):
            return

        def create():
            if not self._db.execute("SELECT 1 FROM keks WHERE owner = ?", (owner,)).fetchone():
                self._create_version(owner)

        self._tx(create)

    def _kek(self, owner: str, version: int) -> bytes:
        row = self._db.execute("SELECT wrapped FROM keks WHERE owner = ? AND version = ?", (owner, version)).fetchone()
        if row is None:
            self._cache.pop((owner, version), None)
            raise KeyUnavailableError(f"the key-encryption key v{version} of {owner} was destroyed")
        cached = self._cache.get((owner, version))
        if cached is not None:
            return cached
        try:
            kek = unwrap_key(self._master, row[0], self._aad(owner, version))
        except DecryptionError:
            raise KeyUnavailableError(f"the key-encryption key v{version} of {owner} cannot be unwrapped") from None
        self._cache[(owner, version)] = kek
        return kek

    def wrap(self, owner: str, material: bytes, aad: bytes) -> bytes:
        """Wrap under the newest KEK version."""
        versions = self.kek_versions(owner)
        if not versions:
            raise KeyUnavailableError(f"{owner} has no key-encryption key")
        version = versions[-1]
        return _LOCAL_HEADER.pack(_LOCAL_MAGIC, version) + wrap_key(self._kek(owner, version), material, aad)

    def unwrap(self, owner: str, wrapped: bytes, aad: bytes) -> bytes:
        """Unwrap with the KEK version named in the blob."""
        if len(wrapped) < _LOCAL_HEADER.size or wrapped[:3] != _LOCAL_MAGIC:
            raise KeyUnavailableError(f"a key of {owner} is not wrapped by the local key manager")
        _, version = _LOCAL_HEADER.unpack_from(wrapped)
        try:
            return unwrap_key(self._kek(owner, version), wrapped[_LOCAL_HEADER.size:], aad)
        except DecryptionError:
            raise KeyUnavailableError(f"a key of {owner} cannot be unwrapped by its key-encryption key") from None

    def rotate_kek(self, owner: str) -> int:
        """A new KEK version."""
        return self._tx(lambda: self._create_version(owner))

    def trim_kek(self, owner: str, keep_from: int) -> None:
        """Delete (overwrite, secure_delete) the KEK versions below ``keep_from``."""
        self._tx(lambda: self._db.execute("DELETE FROM keks WHERE owner = ? AND version < ?", (owner, keep_from)))
        self._cache = {k: v for k, v in self._cache.items() if not (k[0] == owner and k[1] < keep_from)}

    def destroy_kek(self, owner: str) -> None:
        """Delete every KEK version of the owner (overwritten in the file by secure_delete)."""
        self._tx(lambda: self._db.execute("DELETE FROM keks WHERE owner = ?", (owner,)))
        self._cache = {k: v for k, v in self._cache.items() if k[0] != owner}

    def kek_versions(self, owner: str) -> list[int]:
        """Live KEK versions."""
        return [r[0] for r in self._db.execute("SELECT version FROM keks WHERE owner = ? ORDER BY version", (owner,))]

    def close(self) -> None:
        """Close the KEK file."""
        self._cache.clear()
        self._db.close()


# ------------------------------------------------------------------------------------------- openbao


def transit_key_name(prefix: str, owner: str) -> str:
    """A transit key name for an owner: ``[A-Za-z0-9_-]`` kept, anything else as ``.XX`` (reversible)."""
    return prefix + re.sub(r"[^A-Za-z0-9_\-]", lambda m: "".join(f".{b:02x}" for b in m.group().encode()), owner)


def read_token(config: KmsConfig) -> str:
    """The OpenBao token: ``token_file`` (mode 0600), else ``$BAO_TOKEN`` or ``$VAULT_TOKEN``."""
    if config.token_file:
        path = Path(config.token_file)
        try:
            raw = read_private_file(path, "OpenBao token file")
        except FileNotFoundError:
            raise KmsError(f"--kms token_file {path} does not exist") from None
        try:
            token = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise KmsError(f"--kms token_file {path} does not hold an OpenBao token (not ASCII text)") from None
        if not token:
            raise KmsError(f"--kms token_file {path} is empty")
        return token
    token = os.environ.get("BAO_TOKEN") or os.environ.get("VAULT_TOKEN")
    if not token:
        raise KmsError("no OpenBao token: set $BAO_TOKEN or pass token_file=PATH in --kms")
    return token


class OpenBaoKeyManager:
    """KEKs in an OpenBao transit engine. Wrapped data keys are transit ciphertexts (``vault:vN:...``)."""

    kind = "openbao"

    def __init__(self, config: KmsConfig) -> None:
        """Connect and check the token; KmsError naming the server when that fails."""
        import hvac

        self._config = config
        self._where = f"OpenBao at {config.base_url} (mount {config.mount!r})"
        verify: bool | str = config.ca_file or True
        self._client = hvac.Client(
            url=config.base_url, token=read_token(config), verify=verify, timeout=config.timeout,
            namespace=config.namespace,
        )
        self._call("GET", "auth/token/lookup-self", what="check the token")

    def _call(self, method: str, path: str, json: dict | None = None, *, what: str, owner: str | None = None,
              missing_ok: bool = False):
        import hvac.exceptions as hx
        import requests

        try:
            response = self._client.adapter.request(method, f"/v1/{path}", json=json)
        except hx.InvalidPath as err:
            if missing_ok:
                return None
            if owner is not None:
                raise KeyUnavailableError(f"{self._where} cannot {what} for {owner}: {_first(err)}") from None
            raise KmsError(f"{self._where} cannot {what}: {_first(err)}") from None
        except hx.InvalidRequest as err:
            # 400/404 on a key: it is gone, trimmed, or the blob does not match: the key is unavailable.
            if owner is not None:
                raise KeyUnavailableError(f"{self._where} cannot {what} for {owner}: {_first(err)}") from None
            raise KmsError(f"{self._where} refused to {what}: {_first(err)}") from None
        except (hx.Unauthorized, hx.Forbidden) as err:
            raise KmsError(f"{self._where} refused the token to {what}: {_first(err)}") from None
        except hx.VaultError as err:
            raise KmsError(f"{self._where} failed to {what}: {type(err).__name__}: {_first(err)}") from None
        except requests.exceptions.RequestException as err:
            raise KmsError(f"cannot reach {self._where} to {what}: {type(err).__name__}") from None
        if isinstance(response, dict):
            return response.get("data") or {}
        return {}

    def _key_path(self, owner: str, suffix: str = "") -> str:
        return f"{self._config.mount}/keys/{transit_key_name(self._config.prefix, owner)}{suffix}"

    def _read_key(self, owner: str) -> dict | None:
        """The transit key's settings and versions (``transit/keys/NAME``); None when it does not exist."""
        return self._call("GET", self._key_path(owner), what="read a transit key", missing_ok=True)

    def _unsafe_settings(self, data: dict) -> list[str]:
        """What makes a transit key unfit to be a KEK: any setting that lets its material leave OpenBao."""
        bad = [f"{setting}={str(data.get(setting)).lower()}" for setting in ("exportable", "allow_plaintext_backup")
               if data.get(setting) is not False]  # absent counts as unsafe: fail closed
        if data.get("imported_key"):
            bad.append("imported_key=true")
        if data.get("type") != "aes256-gcm96":
            bad.append(f"type={data.get('type')}")
        return bad

    def _refuse_unsafe(self, owner: str, data: dict, doing: str) -> None:
        """Fail closed on a transit key that can be exported, backed up in plaintext or was imported."""
        bad = self._unsafe_settings(data)
        if bad:
            raise UnsafeKekError(
                f"{self._where}: the transit key {transit_key_name(self._config.prefix, owner)!r} of {owner} has "
                f"{', '.join(bad)}; ccpipe refuses to {doing}: a key-encryption key must be type aes256-gcm96, "
                "exportable=false, allow_plaintext_backup=false and not imported, else a copy of it (an export "
                "or a plaintext backup) can undo a shred. ccpipe never makes such a key: find out who made or "
                "changed it"
            )

    def ensure_kek(self, owner: str) -> None:
        """Create the transit key (aes256-gcm96, not exportable) unless it exists (needs only create+read).

        Either way the key is read back and refused (``UnsafeKekError``) unless it is aes256-gcm96,
        not exportable, without plaintext backup and not imported: a key someone else made with those
        settings could be copied out of OpenBao, and a shred would not be one.
        """
        data = self._read_key(owner)
        if data is None:
            self._call("POST", self._key_path(owner), {"type": "aes256-gcm96", "exportable": False,
                                                        "allow_plaintext_backup": False}, what="create a transit key")
            data = self._read_key(owner)
            if data is None:
                raise KmsError(f"{self._where} did not keep the transit key it created for {owner}")
        self._refuse_unsafe(owner, data, "use it as a key-encryption key")

    def wrap(self, owner: str, material: bytes, aad: bytes) -> bytes:
        """transit/encrypt under the newest version; the key must exist (created by ``ensure_kek``) and be safe."""
        import base64

        data = self._read_key(owner)
        if not data or not data.get("keys"):
            # transit/encrypt would silently create a key: never do that for a destroyed one.
            raise KeyUnavailableError(f"{owner} has no key-encryption key in {self._where}")
        self._refuse_unsafe(owner, data, "wrap a data key under it")
        data = self._call(
            "POST", f"{self._config.mount}/encrypt/{transit_key_name(self._config.prefix, owner)}",
            {"plaintext": base64.b64encode(material).decode(), "associated_data": base64.b64encode(aad).decode()},
            what="wrap a data key", owner=owner,
        )
        return data["ciphertext"].encode()

    def unwrap(self, owner: str, wrapped: bytes, aad: bytes) -> bytes:
        """transit/decrypt with the data key's identity as associated data."""
        import base64

        if not wrapped.startswith(b"vault:v"):
            raise KeyUnavailableError(f"a key of {owner} is not wrapped by OpenBao transit")
        data = self._call(
            "POST", f"{self._config.mount}/decrypt/{transit_key_name(self._config.prefix, owner)}",
            {"ciphertext": wrapped.decode("ascii"), "associated_data": base64.b64encode(aad).decode()},
            what="unwrap a data key", owner=owner,
        )
        material = base64.b64decode(data.get("plaintext") or "")
        if len(material) != KEY_BYTES:
            raise KeyUnavailableError(f"{self._where} returned a key of {len(material)} bytes for {owner}")
        return material

    def rotate_kek(self, owner: str) -> int:
        """transit/keys/NAME/rotate."""
        data = self._call("POST", self._key_path(owner, "/rotate"), {}, what="rotate a transit key")
        if not data:
            data = self._call("GET", self._key_path(owner), what="read a transit key")
        return int(data["latest_version"])

    def trim_kek(self, owner: str, keep_from: int) -> None:
        """Raise the minimum versions to ``keep_from``, then trim: older versions are deleted for good.

        ``UnsafeKekError`` after trimming when the key could have been exported or backed up: the
        trimmed versions may survive in such a copy, so the shred is not reported as done.
        """
        data = self._read_key(owner)
        self._call("POST", self._key_path(owner, "/config"),
                   {"min_decryption_version": keep_from, "min_encryption_version": keep_from},
                   what="raise a transit key's minimum version")
        self._call("POST", self._key_path(owner, "/trim"), {"min_available_version": keep_from},
                   what="trim a transit key")
        if data is not None:
            self._refuse_unsafe(owner, data, "report its old versions destroyed")

    def destroy_kek(self, owner: str) -> None:
        """Allow deletion (only now), then delete the transit key; no-op when it is already gone.

        The key's settings are read first: when they let its material leave OpenBao the key is still
        deleted, but ``UnsafeKekError`` says that a copy may survive (the KEK is not reported
        destroyed). When the delete fails, ``deletion_allowed`` is set back to false (best effort) and
        the error says whether that worked.
        """
        data = self._read_key(owner)
        if data is None or not data.get("keys"):
            return
        self._call("POST", self._key_path(owner, "/config"), {"deletion_allowed": True},
                   what="allow deletion of a transit key")
        try:
            self._call("DELETE", self._key_path(owner), what="delete a transit key")
        except CcpipeError as err:
            try:
                self._call("POST", self._key_path(owner, "/config"), {"deletion_allowed": False},
                           what="forbid deletion of a transit key again")
                undone = "deletion_allowed was set back to false"
            except CcpipeError as undo_err:
                undone = (f"deletion_allowed could NOT be set back to false ({undo_err}); set it by hand: "
                          f"bao write {self._key_path(owner, '/config')} deletion_allowed=false")
            raise type(err)(f"{err}; {undone}") from None
        if self.kek_versions(owner):
            raise KmsError(f"{self._where} still holds the transit key of {owner} after deleting it")
        self._refuse_unsafe(owner, data, "report it destroyed (it was deleted, but a copy may exist)")

    def kek_versions(self, owner: str) -> list[int]:
        """The transit key's live versions (empty when it does not exist)."""
        data = self._read_key(owner)
        if data is None:
            return []
        return sorted(int(v) for v in (data.get("keys") or {}))

    def close(self) -> None:
        """Close the HTTP session."""
        try:
            self._client.adapter.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _first(err: Exception) -> str:
    errors = getattr(err, "errors", None)
    text = " ".join(str(errors[0] if errors else err).replace("1 error occurred:", "").replace("* ", "").split())
    return text[:200] or type(err).__name__


def open_key_manager(config: KmsConfig, *, master_key_file: str, master_key_env: str, kek_path: str,
                     create: bool, create_master: bool | None = None) -> KeyManager:
    """The key manager of a ``--kms`` value; ``create`` makes a missing local KEK file (and master key)."""
    if config.kind == "local":
        master = load_master_key(master_key_file, master_key_env, create=create if create_master is None
                                 else create_master)
        return LocalKeyManager(kek_path, master, create=create)
    return OpenBaoKeyManager(config)
