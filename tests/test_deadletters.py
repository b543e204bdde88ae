"""Dead letters: secrets scrubbed before sealing; a known tenant's sealed under its key (ccpipe.deadletter)."""

from __future__ import annotations

import json

import pytest

from ccpipe import crypto
from ccpipe.deadletter import (
    SEALED_REGION,
    SEALED_TENANT,
    WITHHELD,
    is_secret_key,
    scrub,
    seal,
    sealing_owner,
)
from ccpipe.errors import KeyUnavailableError
from ccpipe.keystore import KeystoreConfig, SqliteKeyStore, deadletter_key_owner
from ccpipe.types import DeadLetter, RawInput, Tenant

KEY = crypto.DataKey("tnt-nl-000", "content", 1, b"k" * 32)
PASSWORD, PIN, CARD = "Sup3r-Geheim!", "4821", "4111 1111 1111 1111"

REGISTRATION = json.dumps({
    "type": "registration", "record_id": "r-1", "tenant_id": "tnt-nl-000", "kind": "user",
    "registered_at": "2026-03-10T09:00:00+01:00", "email": "anna@example.com", "phone": "+31612345678",
    "password": PASSWORD, "custom": {"pinCode": PIN, "note": f"pays with {CARD}"}, "ip_address": 7,
}).encode()
CALL = json.dumps({
    "type": "call_recording", "record_id": "c-1", "tenant_id": "tnt-nl-000", "call_id": "x",
    "started_at": "2026-03-10T09:00:00+01:00", "duration_s": "long", "dtmf_digits": f"{PIN}#",
    "transcript": f"my card is {CARD.replace(' ', '-')} and my PIN is {PIN}, password is {PASSWORD} thanks",
}).encode()


def secrets_in(data: bytes) -> list[str]:
    text = data.decode("utf-8", "replace")
    return [s for s in (PASSWORD, PASSWORD[:6], PIN, CARD, CARD.replace(" ", ""), CARD.replace(" ", "-")) if s in text]


@pytest.mark.parametrize("line", [REGISTRATION, CALL], ids=["registration", "call"])
def test_scrub_removes_every_secret_and_keeps_the_rest(line):
    assert secrets_in(line)
    out = scrub(line, KEY)
    assert secrets_in(out) == []
    before, after = json.loads(line), json.loads(out)  # JSON stays JSON
    for field in ("record_id", "tenant_id", "started_at", "registered_at", "email", "phone", "duration_s"):
        assert after.get(field) == before.get(field)
    assert "[redacted:" in out.decode()
    assert scrub(line, KEY) == out  # stable: the same line gives the same dead-letter id on every run


def test_scrub_works_on_lines_that_are_not_json_or_not_utf8():
    lines = [
        REGISTRATION[: REGISTRATION.index(PASSWORD.encode()) + 6],  # truncated in the middle of the password
        b'{"password": "' + PASSWORD.encode() + b'\xff\xfe", "pin": ' + PIN.encode() + b"}",
        f"{{'password': '{PASSWORD}', pin={PIN}, note: 'card {CARD}'}}".encode(),
        f'{{"p\\u0061ssword": "{PASSWORD}", "dtmf_digits": ["{PIN}", "#"]}}'.encode(),
        f'{{"custom": {{"c": {CARD.replace(" ", "")}}}}}'.encode(),
        f'{{"note": "{{\\"password\\": \\"{PASSWORD}\\"}}"}}'.encode(),  # JSON inside a string
    ]
    for line in lines:
        assert secrets_in(line)
        out = scrub(line, KEY)
        assert secrets_in(out) == [], (line, out)


def test_scrub_markers_tell_secrets_apart_without_revealing_them():
    a = scrub(b'{"password": "one"}', KEY)
    b = scrub(b'{"password": "two"}', KEY)
    assert a != b  # two lines differing only in a secret keep distinct dead-letter ids
    other_key = crypto.DataKey("x", "content", 1, b"o" * 32)
    assert scrub(b'{"password": "one"}', other_key) != a  # keyed: nobody without the key can test guesses
    assert scrub(b'{"password": "one"}', None) == b'{"password": "[redacted:secret]"}'


def test_secret_key_names():
    assert all(map(is_secret_key, ["password", "new_password", "pinCode", "PIN", "dtmf_digits", "cvv",
                                   "card-number", "api_key", "accessToken", "securityCode", "authorization",
                                   "Authorization", "bearer", "cookie", "Set-Cookie", "session", "session_cookie",
                                   "credential", "credentials", "private_key", "privateKey", "secret_key", "apikey",
                                   "client_key", "key", "pass", "pw", "passwd", "otp", "token", "refresh_token"]))
    assert not any(map(is_secret_key, ["spin", "shipping", "opinion", "display_name", "tenant_id", "record_id",
                                       "transcript", "calling_number", "duration_s", "key_id", "key_version",
                                       "sort_key", "passenger", "compass", "author", "authority", "monkey"]))


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
SECRET_NAMES = ("cookie", "session", "bearer", "api_key", "secretKey", "secret", "pass", "pw", "passwd", "otp", "token",
                "credential", "key", "private_key", "client_key")


@pytest.mark.parametrize(("line", "secrets"), [
    # Not JSON (no closing brace): the raw-text scrub still finds the key and the credential.
    (b'{"tenant_id":"acme","authorization":"Bearer ' + JWT.encode() + b'"', [JWT, "eyJhbGci"]),
    (json.dumps({"tenant_id": "acme", "headers": {"Authorization": f"Bearer {JWT}"}}).encode(), [JWT, "eyJhbGci"]),
    (json.dumps({"tenant_id": "acme", "note": f"called with bearer {JWT} again"}).encode(), [JWT, "eyJhbGci"]),
    (json.dumps({"tenant_id": "acme", "note": f"jwt={JWT.split('.', 1)[1]}.x{JWT}"}).encode(), ["c2lnbmF0dXJl"]),
    (b'{"tenant_id":"acme","private_key":"-----BEGIN PRIVATE KEY-----' + PEM_BODY.encode() + b'"}', [PEM_BODY]),
    (json.dumps({"tenant_id": "acme", "note": f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n"
                 "-----END RSA PRIVATE KEY-----\nthanks"}).encode(), [PEM_BODY]),
    (b'{"tenant_id":"acme","credentials":{"user":"bob","pass":"hunter2"}}', ["hunter2"]),
    (b'{"tenant_id":"acme","card":"\\u0034111111111111111"}', ["4111111111111111", "111111111111111"]),
    (b'{"tenant_id":"acme","card":"\\u0034111 1111 1111 1111"}', ["1111 1111 1111"]),
    (b'{"tenant_id":"acme","text":"my pw: hunter2, the card 4111/1111/1111/1111"}', ["hunter2", "4111/1111"]),
    (b'{"tenant_id":"acme","session_cookie":"sid=abcdef0123456789"}', ["abcdef0123456789"]),
    (json.dumps({"tenant_id": "acme", **{name: f"s3cr3t-{name}" for name in SECRET_NAMES}}).encode(),
     [f"s3cr3t-{name}" for name in SECRET_NAMES]),
])
def test_scrub_removes_common_secrets(line, secrets):
    out = scrub(line, KEY)
    text = out.decode()
    assert [s for s in secrets if s in text] == [], text
    assert "[redacted:" in text and '"tenant_id"' in text and "acme" in text
    assert scrub(line, KEY) == out  # deterministic under the same key
    if line.endswith(b"}"):
        assert json.loads(out)["tenant_id"] == "acme"  # JSON stays JSON


def test_scrub_json_lines_are_scrubbed_on_decoded_values_and_keep_the_rest():
    line = (b'{"tenant_id": "acme", "n": 4111111111111111, "x": 1.10, "big": 123456789012345678901234567890, '
            b'"d": [1, {"a": 1, "a": 2}], "note": "\\u0070assword: hunter2", "e": "caf\xc3\xa9 \\u00e9", '
            b'"u": "\\ud800", "p\\u0061ss": "hunter3"}')
    out = scrub(line, KEY)
    assert b"hunter" not in out and b"4111111111111111" not in out
    assert out.startswith(b'{"tenant_id": "acme", "n": "[redacted:card:')
    assert b'"x": 1.10, "big": 123456789012345678901234567890, "d": [1, {"a": 1, "a": 2}]' in out  # as written
    assert '"e": "café é", "u": "\\ud800"'.encode() in out
    assert json.loads(out)["pass"].startswith("[redacted:secret:")
    other = scrub(line.replace(b"hunter2", b"hunter9"), KEY)
    assert other != out  # two lines differing only in a secret stay distinct


def test_scrub_leaves_ordinary_text_alone():
    line = json.dumps({"tenant_id": "acme", "transcript": "basic questions about my boarding pass on 10/03/2026",
                       "url": "https://example.com/a.b.c", "sort_key": "x", "key_id": "k-1"}).encode()
    assert scrub(line, KEY) == line


def test_sealing_owner():
    known = {"tnt-nl-000"}
    assert sealing_owner("tnt-nl-000", known, "nl") == ("tnt-nl-000", "content")
    assert sealing_owner("tnt-zz-404", known, "quarantine") == (deadletter_key_owner("quarantine"), "deadletter")
    assert sealing_owner(None, known, "nl") == (deadletter_key_owner("nl"), "deadletter")


@pytest.fixture
def store(tmp_path):
    store = SqliteKeyStore(KeystoreConfig(str(tmp_path / "keystore.db"), str(tmp_path / "master.key")), create=True)
    for owner, purpose in (("tnt-nl-000", "content"), (deadletter_key_owner("nl"), "deadletter"),
                           (deadletter_key_owner("quarantine"), "deadletter")):
        store.ensure_key(owner, purpose)
    yield store
    store.close()


def dead(raw: bytes, tenant_id: str | None = "tnt-nl-000") -> DeadLetter:
    return DeadLetter("invalid_type", "ParseRecords", "field 'duration_s' must be a number", raw, "in.jsonl",
                      tenant_id, "c-1", event_date="2026-03-10")


def opened(row, store, region) -> bytes:
    owner, purpose, version = row.values["key_id"].rsplit("/", 2)
    key = store.get(owner, purpose, int(version[1:]))
    aad = crypto.field_aad(row.values["tenant_id"] or "", region, "_deadletter", row.values["deadletter_id"],
                           "payload")
    return crypto.decrypt(key, row.values["payload_ciphertext"], aad)


def test_known_tenant_sealed_under_its_key_scrubbed(store):
    row, how = seal(dead(CALL), "nl", store, {"tnt-nl-000"})
    assert how == SEALED_TENANT and row.values["key_id"] == "tnt-nl-000/content/v1"
    plain = opened(row, store, "nl")
    assert plain == scrub(CALL, store.current("tnt-nl-000", "content")) and secrets_in(plain) == []
    assert PASSWORD not in json.dumps({k: v for k, v in row.values.items() if k != "payload_ciphertext"})
    # Shredding the tenant reaches its dead letters.
    store.destroy("tnt-nl-000", "content")
    with pytest.raises(KeyUnavailableError):
        opened(row, store, "nl")


def test_unknown_tenant_sealed_under_the_region_key(store):
    row, how = seal(dead(CALL, "tnt-zz-404"), "quarantine", store, {"tnt-nl-000"})
    assert how == SEALED_REGION and row.values["key_id"] == f"{deadletter_key_owner('quarantine')}/deadletter/v1"
    assert secrets_in(opened(row, store, "quarantine")) == []


def test_shredded_tenant_line_is_withheld_not_resealed(store):
    store.destroy("tnt-nl-000", "content")
    rows = [seal(dead(line), "nl", store, {"tnt-nl-000"}) for line in (CALL, REGISTRATION)]
    assert {how for _, how in rows} == {WITHHELD}
    assert len({row.values["deadletter_id"] for row, _ in rows}) == 2  # still two distinct dead letters
    for row, _ in rows:
        assert row.values["key_id"] == f"{deadletter_key_owner('nl')}/deadletter/v1"
        kept = json.loads(opened(row, store, "nl"))
        assert set(kept) == {"ccpipe_withheld", "line_mac"}  # nothing of the line, under the operator's key
        assert (row.values["reason"], row.values["record_id"]) == ("invalid_type", "c-1")  # still counted


def test_no_region_key_raises_and_writes_nothing(store):
    store.destroy(deadletter_key_owner("nl"), "deadletter")
    with pytest.raises(KeyUnavailableError):
        seal(dead(CALL, None), "nl", store, {"tenant-nl-000"})
    store.destroy("tnt-nl-000", "content")
    with pytest.raises(KeyUnavailableError):  # withholding needs the region key too: no plain-text fallback
        seal(dead(CALL), "nl", store, {"tnt-nl-000"})


def test_a_line_that_cannot_be_scrubbed_is_withheld(store, monkeypatch):
    import ccpipe.deadletter as dl

    def broken(raw, key):
        raise RecursionError("boom")

    monkeypatch.setattr(dl, "scrub", broken)
    row, how = seal(dead(CALL), "nl", store, {"tnt-nl-000"})
    assert how == WITHHELD and set(json.loads(opened(row, store, "nl"))) == {"ccpipe_withheld", "line_mac"}


def test_encrypt_dead_letters_stage_uses_it(tmp_path, store):
    """The Beam stage (transforms/route.py): scrubbed, under the tenant's key."""
    from transforms.route import _EncryptDeadLetterFn

    fn = _EncryptDeadLetterFn(store._config, (Tenant("tnt-nl-000", "NL", "nl"),), frozenset({"nl"}))
    fn.setup()
    try:
        [row] = list(fn.process(dead(REGISTRATION)))
        [unknown] = list(fn.process(dead(REGISTRATION, "tnt-zz-404")))
    finally:
        fn.teardown()
    assert row.region == "nl" and row.values["key_id"] == "tnt-nl-000/content/v1"
    assert unknown.region == "quarantine" and unknown.values["key_id"].startswith("_deadletter:quarantine/")
    for r in (row, unknown):
        assert secrets_in(opened(r, store, r.region)) == []


def test_malformed_line_names_its_tenant():
    from transforms.parse import _ids_of

    line = REGISTRATION[: len(REGISTRATION) // 2]
    assert _ids_of(RawInput("in.jsonl", line)) == ("tnt-nl-000", "r-1")
    assert _ids_of(RawInput("in.jsonl", b'{"tenant_id": "a", "x": 1, "tenant_id": "b"')) == (None, None)
