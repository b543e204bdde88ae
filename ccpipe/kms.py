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
    Query parameters: ``token_file=PATH`` (else ``$BAO_TOKEN`` or ``$VAULT_TOKEN``),
    ``ca_file=PATH``, ``prefix=NAME`` (default ``ccpipe-``), ``namespace=NS``, ``timeout=S``.
    The token never enters the pipeline graph: each worker reads it when it opens the keystore.

Errors: ``KeyUnavailableError`` when a KEK is gone or refuses to unwrap (the record is
dead-lettered); ``KmsError`` when the key manager cannot be reached or refuses the token (the
bundle or the command fails; nothing is written).
"""

from __future__ import annotations

import datetime as _dt
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
_LOCAL_MAGIC = b"LK1"
_LOCAL_HEADER = struct.Struct(">3sI")
_CHECK_AAD = b"ccpipe/kek-check/v1"
_QUERY_KEYS = ("token_file", "ca_file", "prefix", "namespace", "timeout")


class KmsError(CcpipeError):
    """The key manager is unreachable, misconfigured or refused the credentials: fail, write nothing."""


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
        """``local``, ``openbao://HOST:PORT[/MOUNT][?...]`` or ``openbao+http://LOOPBACK:PORT[/MOUNT][?...]``."""
        if value in ("", "local"):
            return cls(kind="local", url="local")
        allowed = "'local', 'openbao://HOST:PORT[/MOUNT]' or 'openbao+http://127.0.0.1:PORT[/MOUNT]'"
        parts = urlsplit(value)
        if parts.scheme not in ("openbao", "openbao+http"):
            raise ConfigError(f"--kms {value!r} is not a key manager: use {allowed}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ConfigError(f"--kms {value!r} must name HOST:PORT of the OpenBao server; {allowed}")
        if parts.username or parts.password:
            raise ConfigError(f"--kms {_mask(value)!r} must not carry credentials: use token_file= or $BAO_TOKEN")
        plain = parts.scheme == "openbao+http"
        if plain and not _is_loopback(parts.hostname):
            raise ConfigError(
                f"--kms {value!r}: plain HTTP is allowed only to a loopback address (the token would cross the "
                "network in clear); use openbao://HOST:PORT (HTTPS)"
            )
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        unknown = sorted(set(query) - set(_QUERY_KEYS))
        if unknown:
            raise ConfigError(f"--kms {value!r}: unknown parameter(s) {unknown}; allowed: {list(_QUERY_KEYS)}")
        one = {k: v[-1] for k, v in query.items()}
        mount = parts.path.strip("/") or "transit"
        if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", mount):
            raise ConfigError(f"--kms {value!r}: mount {mount!r} may hold only letters, digits, '_', '-', '.', '/'")
        prefix = one.get("prefix", "ccpipe-")
        if not re.fullmatch(r"[A-Za-z0-9_\-]*", prefix):
            raise ConfigError(f"--kms {value!r}: prefix {prefix!r} may hold only letters, digits, '_' and '-'")
        try:
            timeout = float(one.get("timeout", "10"))
        except ValueError:
            raise ConfigError(f"--kms {value!r}: timeout {one['timeout']!r} must be a number of seconds") from None
        if not 0 < timeout <= 300:
            raise ConfigError(f"--kms {value!r}: timeout {timeout} must be between 0 and 300 seconds")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls(
            kind="openbao", url=value, base_url=f"{'http' if plain else 'https'}://{host}:{parts.port}",
            mount=mount, prefix=prefix, token_file=one.get("token_file") or None, ca_file=one.get("ca_file") or None,
            namespace=one.get("namespace") or None, timeout=timeout,
        )

    def identity(self) -> str:
        """What must stay the same for a keystore's wrapped keys to be found: kind, mount, prefix."""
        return "local" if self.kind == "local" else f"openbao:{self.mount}:{self.prefix}"


def _mask(url: str) -> str:
    return re.sub(r"://[^@/]*@", "://***@", url)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_private_file(path: Path, what: str) -> None:
    """Refuse a key file that its group or others can read or write (fail closed, say how to fix it)."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"{what} {path} is readable or writable by group/others (mode {stat.S_IMODE(mode):04o}); "
            f"it must be private to its owner: chmod 600 {path}"
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
    if path.exists():
        if not path.is_file():
            raise MasterKeyError(f"master key file {path} is not a regular file")
        check_private_file(path, "master key file")
        raw = path.read_bytes()
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
        check_private_file(path, "key-encryption-key file")
        self._master = master_key
        self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.executescript(self._SCHEMA)
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
        if not path.is_file():
            raise KmsError(f"--kms token_file {path} does not exist")
        check_private_file(path, "OpenBao token file")
        token = path.read_text(errors="strict").strip()
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

    def ensure_kek(self, owner: str) -> None:
        """Create the transit key (aes256-gcm96, not exportable) unless it exists (needs only create+read)."""
        if self.kek_versions(owner):
            return
        self._call("POST", self._key_path(owner), {"type": "aes256-gcm96", "exportable": False,
                                                    "allow_plaintext_backup": False}, what="create a transit key")

    def wrap(self, owner: str, material: bytes, aad: bytes) -> bytes:
        """transit/encrypt under the newest version; the key must exist (created by ``ensure_kek``)."""
        import base64

        if not self.kek_versions(owner):
            # transit/encrypt would silently create a key: never do that for a destroyed one.
            raise KeyUnavailableError(f"{owner} has no key-encryption key in {self._where}")
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
        """Raise the minimum versions to ``keep_from``, then trim: older versions are deleted for good."""
        self._call("POST", self._key_path(owner, "/config"),
                   {"min_decryption_version": keep_from, "min_encryption_version": keep_from},
                   what="raise a transit key's minimum version")
        self._call("POST", self._key_path(owner, "/trim"), {"min_available_version": keep_from},
                   what="trim a transit key")

    def destroy_kek(self, owner: str) -> None:
        """Allow deletion (only now), then delete the transit key; no-op when it is already gone."""
        if not self.kek_versions(owner):
            return
        self._call("POST", self._key_path(owner, "/config"), {"deletion_allowed": True},
                   what="allow deletion of a transit key")
        self._call("DELETE", self._key_path(owner), what="delete a transit key")
        if self.kek_versions(owner):
            raise KmsError(f"{self._where} still holds the transit key of {owner} after deleting it")

    def kek_versions(self, owner: str) -> list[int]:
        """The transit key's live versions (empty when it does not exist)."""
        data = self._call("GET", self._key_path(owner), what="read a transit key", missing_ok=True)
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
