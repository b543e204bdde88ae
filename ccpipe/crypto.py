"""AES-256-GCM envelope encryption, associated data, and password hashing.

Ciphertext layout (one self-describing blob per field)::

    b"CC1" | key version (4 bytes, big-endian) | nonce (12 bytes) | ciphertext + tag

The associated data binds each ciphertext to tenant, region, dataset, record id and field, so a
ciphertext copied to another row, tenant or region fails to decrypt. Passwords are never
encrypted: ``hash_password`` keeps only a salted scrypt hash.
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


# scrypt: N=2**14, r=8, p=1 is the interactive-login cost recommended for scrypt (16 MiB).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A salted scrypt hash in the form ``scrypt$N$r$p$salt$hash`` (base64)."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a ``hash_password`` string in constant time."""
    scheme, n, r, p, salt, digest = encoded.split("$")
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(got, base64.b64decode(digest))
