"""Per-record cost (issue 13): patterns compiled once, one libphonenumber cache, one strong hash per registration.

Speed itself is measured by ``python -m bench.pii`` (never timed here); these tests pin what the speed-ups
must keep (identical findings) and the defects they removed (a regex compiled per text and known value,
libphonenumber's pattern cache left off, a pattern looked up in the ``regex`` module's cache per call).
"""

from __future__ import annotations

import base64
import hashlib
import random
import re

import pytest

from bench.pii import reference_find_known_values
from ccpipe import crypto, policy
from ccpipe.crypto import DataKey
from ccpipe.pii import engine
from ccpipe.types import Finding, InputRecord, PseudonymizedRecord, RoutedRecord, TaggedRecord


@pytest.mark.parametrize(
    ("text", "known", "case_sensitive", "expected"),
    [
        # Every value on its own, overlapping others; duplicates reported twice, as before.
        ("Maria Lopez called", [("PERSON", "Maria Lopez"), ("PERSON", "Lopez"), ("USERNAME", "maria")], (),
         [Finding("PERSON", 0, 11, 0.8), Finding("PERSON", 6, 11, 0.8), Finding("USERNAME", 0, 5, 0.8)]),
        ("call 06-1234 5678 or 06-1234 5678", [("PHONE_NUMBER", " 06-1234 5678 "), ("PHONE_NUMBER", "06-1234 5678")],
         (), [Finding("PHONE_NUMBER", 5, 17, 0.8), Finding("PHONE_NUMBER", 21, 33, 0.8),
              Finding("PHONE_NUMBER", 5, 17, 0.8), Finding("PHONE_NUMBER", 21, 33, 0.8)]),
        # Whole words only; non-overlapping per value ("a-a" twice in "a-a-a" is once, as finditer).
        ("bobby bob_x bob", [("PERSON", "bob")], (), [Finding("PERSON", 12, 15, 0.8)]),
        ("aba-aba-aba", [("PERSON", "aba-aba")], (), [Finding("PERSON", 0, 7, 0.8)]),
        # Case-sensitive values only as written; values under three characters ignored.
        ("Orchestra and the orchestra", [("PERSON", "Orchestra"), ("PERSON", "Al")], ("Orchestra",),
         [Finding("PERSON", 0, 9, 0.8)]),
        # Unicode case folding as re's: "i" matches "ı" and "İ", "s" matches "ſ", "k" the Kelvin sign.
        ("Yıldız and YİLDİZ and ſam and \u212aim", [("PERSON", "yildiz"), ("PERSON", "Sam"), ("PERSON", "kim")], (),
         [Finding("PERSON", 0, 6, 0.8), Finding("PERSON", 11, 17, 0.8), Finding("PERSON", 22, 25, 0.8),
          Finding("PERSON", 30, 33, 0.8)]),
        ("José Müller here", [("PERSON", "josé"), ("PERSON", "MÜLLER")], (),
         [Finding("PERSON", 0, 4, 0.8), Finding("PERSON", 5, 11, 0.8)]),
    ],
)
def test_known_values_are_found_exactly_as_before(text, known, case_sensitive, expected):
    got = engine.find_known_values(text, known, 0.8, case_sensitive=frozenset(case_sensitive))
    assert got == expected
    assert got == reference_find_known_values(text, known, 0.8, frozenset(case_sensitive))


@pytest.mark.parametrize("alphabet", ["abAB _-.@1", "abAB _-.@ıİiIsSſkK\u212aé1"])
def test_known_values_match_the_per_value_regexes_on_random_text(alphabet):
    rng = random.Random(13)
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        known = []
        for _ in range(rng.randint(1, 4)):
            if text and rng.random() < 0.7:
                i = rng.randint(0, len(text))
                value = text[i : rng.randint(i, min(len(text), i + 8))]
                value = value.swapcase() if rng.random() < 0.3 else value
            else:
                value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
            known.append((rng.choice(["PERSON", "EMAIL_ADDRESS"]), f" {value} " if rng.random() < 0.2 else value))
        case_sensitive = frozenset(v for _, v in known if rng.random() < 0.3)
        assert engine.find_known_values(text, known, 0.8, case_sensitive) == reference_find_known_values(
            text, known, 0.8, case_sensitive), (text, known, case_sensitive)


def test_known_values_are_compiled_once_per_value_set_not_per_text(monkeypatch):
    compiled = []
    real_compile = re.compile
    monkeypatch.setattr(re, "compile", lambda *a, **k: compiled.append(a[0]) or real_compile(*a, **k))
    known = [("PERSON", "Maria Lopez"), ("PHONE_NUMBER", "06-1234 5678"), ("PERSON", "Zoë")]
    texts = [f"message {i}: Maria Lopez on 06-1234 5678" for i in range(30)]
    texts += [f"Zoë {i}, Maria Lopez" for i in range(30)]
    for text in texts:
        assert engine.find_known_values(text, known)
    # The ASCII values are found by one Aho-Corasick automaton; only "Zoë" (and the ASCII values, once,
    # for the non-ASCII texts) need a regex, compiled once for all sixty texts.
    assert len(compiled) == 3


def test_libphonenumber_keeps_its_compiled_patterns():
    import phonenumbers.re_util

    from ccpipe.pii.recognizers.regional_phone_recognizer import RegionalPhoneRecognizer

    results = RegionalPhoneRecognizer().analyze("call me on 020 7946 0958 please", ["PHONE_NUMBER"])
    assert [(r.start, r.end) for r in results] == [(11, 24)]
    assert phonenumbers.re_util._COMPILED_PATTERNS  # the cache is on and holds the metadata patterns


def test_one_libphonenumber_pass_per_text(monkeypatch):
    import phonenumbers

    from ccpipe.pii.recognizers import load_recognizers

    def no_matcher(*args, **kwargs):
        raise AssertionError("PhoneNumberMatcher scans the whole text once per region")

    parsed = []
    real_parse = phonenumbers.parse
    monkeypatch.setattr(phonenumbers, "PhoneNumberMatcher", no_matcher)
    monkeypatch.setattr(phonenumbers, "parse", lambda *a, **k: parsed.append(a[1]) or real_parse(*a, **k))
    text = "ring 020 7946 0958 or +31 6 12345678"
    found = []
    for recognizer in load_recognizers():
        if recognizer.precheck(text):
            found += [(r.entity_type, r.start, r.end) for r in recognizer.analyze(text, recognizer.supported_entities)]
    assert ("PHONE_NUMBER", 5, 18) in found and ("PHONE_NUMBER", 22, 36) in found
    # One parse per candidate and region until one accepts it: NL then US then GB; "+31" needs no region.
    assert parsed == ["NL", "US", "GB", None]


def test_national_id_patterns_are_compiled_once(monkeypatch):
    import regex

    from ccpipe.pii.recognizers.national_id_recognizer import NationalIdRecognizer

    recognizer = NationalIdRecognizer()

    def no_lookup(*args, **kwargs):
        raise AssertionError("pattern looked up in regex's cache per call")

    monkeypatch.setattr(regex, "finditer", no_lookup)
    monkeypatch.setattr(regex, "compile", no_lookup)
    results = recognizer.analyze("my BSN is 111222333", ["NATIONAL_ID"])
    assert [(r.start, r.end) for r in results] == [(10, 19)]


# --- password hashing -------------------------------------------------------------------------------------------


def test_password_hash_is_argon2id_phc_and_verifies():
    encoded = crypto.hash_password("correct horse", salt=b"\x00" * 16)
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$")
    assert encoded == crypto.hash_password("correct horse", salt=b"\x00" * 16)
    assert crypto.verify_password("correct horse", encoded)
    assert not crypto.verify_password("correct horsE", encoded)
    assert not crypto.verify_password("correct horse", encoded.replace("$argon2id$", "$argon2i$"))
    assert not crypto.verify_password("correct horse", "not a hash")


def test_scrypt_hashes_written_before_still_verify():
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(b"hunter2", salt=salt, n=2**14, r=8, p=1, dklen=32)
    legacy = f"scrypt$16384$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert crypto.verify_password("hunter2", legacy)
    assert not crypto.verify_password("hunter3", legacy)


@pytest.mark.parametrize(
    ("field", "value", "minimum"),
    [("memory_kib", 4096, 19456), ("time_cost", 1, 2), ("parallelism", 0, 1), ("salt_bytes", 8, 16),
     ("hash_bytes", 16, 32)],
)
def test_password_hash_params_below_owasp_are_refused(field, value, minimum):
    with pytest.raises(ValueError) as err:
        crypto.PasswordHashParams(**{field: value})
    assert str(err.value) == f"password hash {field} {value!r} must be an integer of at least {minimum}"


def test_hash_rate_measures_the_parameters_in_use():
    assert crypto.hash_rate(0.05) > 0
    with pytest.raises(ValueError, match=r"^seconds 0 must be a number of seconds between 0 \(excluded\) and 600$"):
        crypto.hash_rate(0)


def test_a_registration_is_hashed_once():
    payload = {"record_id": "r1", "tenant_id": "t1", "kind": "user", "registered_at": "2026-10-01T10:00:00Z",
               "name": "Ann Lee", "email": "ann@example.com", "password": "s3cret!", "ip_address": "10.1.2.3"}
    record = InputRecord("registration", "t1", "r1", payload["registered_at"], "2026-10-01", payload, "src", b"{}")
    key = DataKey("t1", "content", 1, bytes(32))
    tagged = TaggedRecord(RoutedRecord(record, "nl"))
    psr = PseudonymizedRecord(tagged, {}, {}, 1)
    calls = []
    rows = policy.encrypt_record(psr, key, hash_password=lambda p: calls.append(p) or crypto.hash_password(p))
    assert len(calls) == 1 and len(rows) == 1
    assert crypto.verify_password("s3cret!", rows[0].values["password_hash"])


def test_ner_layers_multiply_with_numpy_not_blis():
    """BLIS's generic kernel (chosen on CPUs it does not know) made NER 1.4x slower than numpy's OpenBLAS."""
    nlp = engine.load_ner("en_core_web_sm")
    layers = list(nlp.get_pipe("ner").model.walk())
    assert layers
    assert {(type(layer.ops).__name__, getattr(layer.ops, "use_blis", None)) for layer in layers} == {
        ("NumpyOps", False)}


def test_ner_entities_are_the_same_with_numpy_ops_as_with_blis():
    from pathlib import Path

    import spacy

    from ccpipe.pii.evaluate import read_labelled

    records, _truth = read_labelled(str(Path(__file__).parent / "data" / "dev" / "pe_en.jsonl"))
    texts = [m["text"] for record in records[:300] for m in record["messages"]]
    blis = spacy.load(engine.resolve_model("en_core_web_sm"),
                      exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter", "tok2vec"])
    ours = engine.load_ner("en_core_web_sm")

    def ents(nlp):
        return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]

    expected = ents(blis)
    assert sum(map(len, expected)) > 300  # the sentences do hold entities
    assert ents(ours) == expected


def test_ner_runs_on_one_blas_thread():
    """OpenBLAS's own threads (one per core, spinning between calls) took the cores of other workers."""
    from threadpoolctl import threadpool_info

    tagger = engine.PiiTagger(engine.PiiConfig())
    seen = []
    pipe = tagger.nlp.pipe

    def watching_pipe(texts, **kwargs):
        seen.append({i["internal_api"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return pipe(texts, **kwargs)

    tagger.nlp.pipe = watching_pipe
    tagger.tag(["Maria Lopez from Rotterdam called about her router."])
    assert seen and seen[0] and set(seen[0].values()) == {1}
