"""Hostile input never escapes the parse stage: every line is a record or a named dead letter.

Property-based (Hypothesis): arbitrary bytes, arbitrary JSON, and schema-shaped records with
hostile values (huge and tiny numbers, NaN/Infinity, deep nesting, long strings, every Unicode
plane, lone surrogates, NUL, timestamps at the edges of the calendar with every offset, ``type``
spoofing). The number of examples is ``CCPIPE_FUZZ_EXAMPLES`` (small in ``make test``, large in
``make fuzz``). Cases fuzzing found are kept below as plain regression tests.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccpipe.errors import RecordError
from ccpipe.schemas import INPUT_SCHEMAS
from ccpipe.types import DeadLetter, InputRecord, RawInput
from transforms.parse import ParseConfig, _ParseRecordFn, parse_line

EXAMPLES = int(os.environ.get("CCPIPE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
CONFIG = ParseConfig()

GOOD_CALL = {
    "type": "call_recording", "record_id": "r-1", "tenant_id": "t-1", "call_id": "c-1",
    "started_at": "2026-10-01T10:00:00Z", "duration_s": 300, "transcript": "hello there",
    "direction": "inbound", "calling_number": "+31201234567", "called_number": "+31207654321",
    "agent_id": "a-1", "queue": "billing",
}


FIELD_NAMES = {f.name for schema in INPUT_SCHEMAS.values() for f in schema} | {"type", "messages", "seq"}


def _leaves(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _leaves(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v)
    else:
        yield obj


def outcome(data: bytes, obj=None):
    """What the DoFn yields for one line: exactly one InputRecord or one named DeadLetter."""
    out = list(_ParseRecordFn(CONFIG).process(RawInput("fuzz.jsonl", data)))
    assert len(out) == 1, out
    value = getattr(out[0], "value", out[0])
    assert isinstance(value, InputRecord | DeadLetter), value
    if isinstance(value, DeadLetter):
        assert value.reason and value.step == "ParseRecords"
        # The error names fields and positions, never a value of the line.
        for leaf in _leaves(obj):
            if isinstance(leaf, str) and len(leaf) >= 6 and leaf not in FIELD_NAMES and leaf not in INPUT_SCHEMAS:
                assert leaf not in value.error, (leaf, value.error)
    return value


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data):
    outcome(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(JSON)
def test_arbitrary_json(obj):
    outcome(json.dumps(obj).encode(), obj)


HOSTILE_NUMBERS = st.sampled_from([2**63, -(2**63) - 1, 2**70, 1180591620717411303424, -1, 0, 1e308, -1e308, 5e-324])
HOSTILE_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=64) | st.sampled_from(
    ["\x00", "\ud800", "a" * 100_000, "\U0010ffff", "\u202e"])
YEARS = st.sampled_from(["0001", "1969", "1970", "2038", "9999"])
OFFSETS = st.sampled_from(["Z", "+00:00", "-05:00", "+14:00", "-12:00", "+23:59", "-23:59", "+24:00", ""])
TIMESTAMPS = st.builds(lambda y, o, d: f"{y}-{d}T23:59:59{o}", YEARS, OFFSETS,
                       st.sampled_from(["01-01", "12-31", "02-29", "13-01"]))


@FUZZ
@given(
    field=st.sampled_from(sorted(GOOD_CALL)),
    value=HOSTILE_NUMBERS | HOSTILE_TEXT | TIMESTAMPS | st.floats() | JSON,
    record_type=st.sampled_from([*sorted(INPUT_SCHEMAS), "CALL_RECORDING", "", 7]),
)
def test_schema_shaped_records_with_hostile_values(field, value, record_type):
    record = {**GOOD_CALL, field: value}
    if field != "type":
        record["type"] = record_type if record_type != 7 else GOOD_CALL["type"]
    try:
        data = json.dumps(record).encode("utf-8", "surrogatepass")
    except ValueError:
        data = json.dumps(record, allow_nan=True).encode()
    result = outcome(data, record)
    if isinstance(result, InputRecord):
        assert result.record_type in INPUT_SCHEMAS


@FUZZ
@given(st.integers(min_value=1, max_value=100_000))
def test_deep_nesting(depth):
    outcome(b"[" * depth + b"]" * depth)
    outcome(b'{"a":' * depth + b"1" + b"}" * depth)


# Cases found by fuzzing and review, kept as regression tests (each crashed the run before).
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"started_at": "9999-12-31T23:00:00-05:00"}, "invalid_timestamp"),  # OverflowError in UTC
        ({"duration_s": 1180591620717411303424}, "invalid_value"),  # ArrowInvalid in the writer
        ({"duration_s": -(2**63) - 1}, "invalid_value"),
        ({"queue": "\ud800"}, "invalid_utf8"),  # lone surrogate: UnicodeEncodeError downstream
        ({"tenant_id": "\udcff"}, "invalid_utf8"),
    ],
)
def test_found_cases_are_dead_lettered(change, reason):
    data = json.dumps({**GOOD_CALL, **change}).encode()
    with pytest.raises(RecordError) as err:
        parse_line(RawInput("x.jsonl", data), CONFIG)
    assert err.value.reason == reason
    assert outcome(data).reason == reason


@pytest.mark.parametrize("spoofed", [[], {}, ["call_recording"], 1.5, None])
def test_a_type_that_is_not_a_string_is_dead_lettered(spoofed):
    data = json.dumps({**GOOD_CALL, "type": spoofed}).encode()
    assert outcome(data).reason in ("unknown_type", "missing_field")


def test_nan_and_infinity_are_not_numbers():
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        data = json.dumps(GOOD_CALL).replace('"duration_s": 300', '"duration_s": 1').encode()
        data = data.replace(b'"duration_s": 1', b'"duration_s": ' + token)
        assert outcome(data).reason in ("invalid_type", "invalid_value")
