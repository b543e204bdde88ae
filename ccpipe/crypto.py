"""AES-256-GCM envelope encryption, associated data, and password hashing.

Ciphertext layout (one self-describing blob per field)::

    b"CC1" | key version (4 bytes, big-endian) | nonce (12 bytes) | ciphertext + tag

The associated data binds each ciphertext to tenant, region, dataset, record id and field, so a
ciphertext copied to another row, tenant or region fails to decrypt. Passwords are never
encrypted: ``hash_password`` keeps only a salted Argon2id hash (OWASP's parameters, PHC string).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"CC1"
_HEADER = struct.Struct(">3sI")
NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptionError(Exception):
    """The ciphertext is corrupt, or its key or associated data is not the one it was made with."""


@dataclass(frozen=True, repr=False)
class DataKey:
    """A plaintext 256-bit data key and its version. ``repr`` never shows the key."""

    tenant_id: str
    purpose: str
    version: int
    material: bytes

    def __repr__(self) -> str:
        return f"DataKey(tenant_id={self.tenant_id!r}, purpose={self.purpose!r}, version={self.version})"


def field_aad(tenant_id: str, region: str, dataset: str, record_id: str, field: str) -> bytes:
    """Associated data for one field of one row; JSON so no two contexts can collide."""
    return json.dumps(["ccpipe/v1", tenant_id, region, dataset, record_id, field], separators=(",", ":")).encode()


def encrypt(key: DataKey, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt with AES-256-GCM under a fresh random nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return _HEADER.pack(MAGIC, key.version) + nonce + AESGCM(key.material).encrypt(nonce, plaintext, aad)


def ciphertext_version(blob: bytes) -> int:
    """The key version a ciphertext was made with."""
    if len(blob) < _HEADER.size + NONCE_BYTES + 16:
        raise DecryptionError("ciphertext too short")
    magic, version = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise DecryptionError("not a ccpipe ciphertext")
    return version


def decrypt(key: DataKey, blob: bytes, aad: bytes) -> bytes:
    """Decrypt a blob made by ``encrypt``; raises DecryptionError on any mismatch."""
    if ciphertext_version(blob) != key.version:
        raise DecryptionError("ciphertext was made with another key version")
    nonce = blob[_HEADER.size : _HEADER.size + NONCE_BYTES]
    try:
        return AESGCM(key.material).decrypt(nonce, blob[_HEADER.size + NONCE_BYTES :], aad)
    except InvalidTag:
        raise DecryptionError("authentication failed: wrong key, wrong context or tampered data") from None


def wrap_key(kek: bytes, material: bytes, aad: bytes) -> bytes:
    """Wrap a data key under the key-encryption key (AES-256-GCM, the key's identity as AAD)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, material, aad)


def unwrap_key(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """Unwrap a data key; raises DecryptionError when the KEK or the identity does not match."""
    try:
        return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionError("key unwrap failed") from None


@dataclass(frozen=True)
class PasswordHashParams:
    """Argon2id cost parameters; below OWASP's minimum (19 MiB, 2 passes, 1 lane) they are refused."""

    memory_kib: int = 19 * 1024
    time_cost: int = 2
    parallelism: int = 1
    salt_bytes: int = 16
    hash_bytes: int = 32

    def __post_init__(self) -> None:
        for name, minimum in (("memory_kib", 19 * 1024), ("time_cost", 2), ("parallelism", 1), ("salt_bytes", 16),
                              ("hash_bytes", 32)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"password hash {name} {value!r} must be an integer of at least {minimum}")


# OWASP's Argon2id parameters (m=19 MiB, t=2, p=1), its first choice for password storage. Each guess
# needs more memory than scrypt at N=2**14 (the cost used before, 16 MiB, below OWASP's scrypt minimum of
# N=2**17) and about two thirds of its CPU time (``python -m bench.pii --part cost`` prints both).
PASSWORD_HASH = PasswordHashParams()


def hash_password(password: str, salt: bytes | None = None, params: PasswordHashParams = PASSWORD_HASH) -> str:
    """A salted Argon2id hash in PHC form: ``$argon2id$v=19$m=19456,t=2,p=1$salt$hash``.

    The string names the algorithm and its parameters, so ``verify_password`` checks it whatever
    parameters are current (and the ``scrypt$N$r$p$salt$hash`` strings written before).
    """
    from argon2.low_level import Type, hash_secret

    salt = salt if salt is not None else os.urandom(params.salt_bytes)
    encoded = hash_secret(password.encode(), salt, time_cost=params.time_cost, memory_cost=params.memory_kib,
                          parallelism=params.parallelism, hash_len=params.hash_bytes, type=Type.ID)
    return encoded.decode("ascii")


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a ``hash_password`` string (Argon2id, or the earlier scrypt) in constant time."""
    if encoded.startswith("$argon2id$"):
        from argon2.exceptions import InvalidHashError, VerificationError
        from argon2.low_level import Type, verify_secret

        if not _argon2_params_ok(encoded):
            return False
        try:
            return verify_secret(encoded.encode(), password.encode(), Type.ID)
        except (VerificationError, InvalidHashError):
            return False
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    _scheme, n, r, p, salt, digest = parts
    try:
        n_, r_, p_ = int(n), int(r), int(p)
        if not (2**14 <= n_ <= 2**20 and n_ & (n_ - 1) == 0 and 1 <= r_ <= 32 and 1 <= p_ <= 16):
            return False  # weaker than the cost this project ever stored, or a memory bomb
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True), n=n_, r=r_, p=p_,
                             dklen=32, maxmem=2**31 - 1)
        return hmac.compare_digest(got, base64.b64decode(digest, validate=True))
    except (ValueError, TypeError):  # malformed numbers or base64
        return False


# What a stored Argon2id hash may declare: never below OWASP's minimum, never a memory bomb.
_ARGON2_LIMITS = {"m": (19456, 1 << 21), "t": (2, 16), "p": (1, 16)}


def _argon2_params_ok(encoded: str) -> bool:
    """True when an Argon2id PHC string's m, t and p lie within ``_ARGON2_LIMITS``."""
    parts = encoded.split("$")
    if len(parts) != 6:
        return False
    try:
        params = dict(item.split("=", 1) for item in parts[3].split(","))
        return all(low <= int(params[k]) <= high for k, (low, high) in _ARGON2_LIMITS.items())
    except (ValueError, KeyError):
        return False


def hash_rate(seconds: float = 2.0, params: PasswordHashParams = PASSWORD_HASH) -> float:
    """Password hashes per CPU second of one core at ``params`` (the ones in use by default).

    Hashes for ``seconds`` of this thread's CPU time, so other load on the machine does not skew it.
    """
    import time

    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 < seconds <= 600:
        raise ValueError(f"seconds {seconds!r} must be a number of seconds between 0 (excluded) and 600")
    hash_password("warm-up", params=params)
    count, start = 0, time.thread_time()
    while (elapsed := time.thread_time() - start) < seconds or count == 0:
        hash_password("correct horse battery staple", params=params)
        count += 1
    return count / elapsed
