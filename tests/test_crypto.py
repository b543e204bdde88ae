import pytest

from ccpipe import crypto
from ccpipe.crypto import DataKey, DecryptionError, hash_password, verify_password

KEY = DataKey("tnt-a", "content", 3, bytes(range(32)))
AAD = crypto.field_aad("tnt-a", "nl", "calls", "r1", "transcript")


def test_round_trip_and_version():
    blob = crypto.encrypt(KEY, b"hello Maria", AAD)
    assert crypto.ciphertext_version(blob) == 3
    assert crypto.decrypt(KEY, blob, AAD) == b"hello Maria"
    assert b"hello" not in blob


def test_nonce_is_fresh():
    assert crypto.encrypt(KEY, b"x", AAD) != crypto.encrypt(KEY, b"x", AAD)


@pytest.mark.parametrize(
    "other",
    [
        ("tnt-b", "nl", "calls", "r1", "transcript"),
        ("tnt-a", "us", "calls", "r1", "transcript"),
        ("tnt-a", "nl", "telemetry", "r1", "transcript"),
        ("tnt-a", "nl", "calls", "r2", "transcript"),
        ("tnt-a", "nl", "calls", "r1", "wrapup_notes"),
    ],
)
def test_other_context_fails(other):
    blob = crypto.encrypt(KEY, b"secret", AAD)
    with pytest.raises(DecryptionError):
        crypto.decrypt(KEY, blob, crypto.field_aad(*other))


def test_flipped_byte_fails_everywhere():
    blob = crypto.encrypt(KEY, b"secret text", AAD)
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionError):
            crypto.decrypt(KEY, bytes(tampered), AAD)


def test_wrong_key_fails():
    blob = crypto.encrypt(KEY, b"secret", AAD)
    with pytest.raises(DecryptionError):
        crypto.decrypt(DataKey("tnt-a", "content", 3, b"\x01" * 32), blob, AAD)


def test_aad_fields_cannot_collide():
    assert crypto.field_aad("a|b", "c", "d", "e", "f") != crypto.field_aad("a", "b|c", "d", "e", "f")


def test_password_hash_is_salted_argon2id_at_owasp_cost():
    first, second = crypto.hash_password("hunter2"), crypto.hash_password("hunter2")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert first != second
    assert "hunter2" not in first
    assert crypto.verify_password("hunter2", first)
    assert not crypto.verify_password("hunter3", first)


def test_datakey_repr_hides_material():
    assert "material" not in repr(KEY) and str(bytes(range(32))) not in repr(KEY)


@pytest.mark.parametrize("encoded", [
    "scrypt$abc$8$1$AAAA$AAAA",  # not a number: raised ValueError before the review
    "scrypt$3$8$1$AAAA$AAAA",  # not a power of two
    "scrypt$1024$8$1$AAAA$AAAA",  # below the cost ever stored
    "scrypt$1073741824$8$1$AAAA$AAAA",  # a memory bomb
    "scrypt$16384$8$1$!!!$AAAA",  # not base64
])
def test_verify_password_refuses_malformed_scrypt_strings(encoded):
    assert verify_password("x", encoded) is False


def test_verify_password_refuses_argon2_hashes_below_the_minimum_cost():
    """A hash declaring t=1, m=8 verified True before the review: parameters were never checked."""
    from argon2.low_level import Type, hash_secret

    weak = hash_secret(b"pw", b"saltsaltsalt", time_cost=1, memory_cost=8, parallelism=1, hash_len=4,
                       type=Type.ID).decode()
    assert verify_password("pw", weak) is False
    assert verify_password("pw", hash_password("pw")) is True
