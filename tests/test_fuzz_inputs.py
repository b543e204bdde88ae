"""Hostile tenants files, PII configuration files and Parquet input rows: a clear error or a dead
letter, never an exception nobody named (issue: one hostile input never fails a whole run).

Property-based (Hypothesis), sized by ``CCPIPE_FUZZ_EXAMPLES`` like ``test_fuzz_parse``; found cases
are kept as plain tests at the end.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.testing.util import assert_that, equal_to
from conftest import local_test_pipeline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccpipe.errors import ConfigError, RecordError
from ccpipe.pii.engine import PiiConfig
from ccpipe.tenants import load_tenants
from transforms.parse import ParseConfig, ParseRecords, parse_line
from transforms.read import ReadInputs, _parquet_row_to_raw

EXAMPLES = int(os.environ.get("CCPIPE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
DOCS = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                    max_leaves=15)
TENANT = st.fixed_dictionaries(
    {"tenant_id": SCALARS | st.sampled_from(["_audit", "t-1", "a" * 300, "t\n1", "../x"]),
     "region": SCALARS | st.sampled_from(["nl", "NL", "mars", "ca", "", "uk"]),
     "status": SCALARS | st.sampled_from(["active", "terminated", "ACTIVE"])},
    optional={"terminated_at": SCALARS | st.sampled_from(["9999-12-31T23:00:00-05:00", "2026-01-01T00:00:00Z"]),
              "subprocessors": DOCS, "name": DOCS},
)


@FUZZ
@given(st.one_of(st.binary(max_size=600).map(lambda b: ("raw", b)),
                 DOCS.map(lambda d: ("yaml", d)),
                 st.lists(TENANT, max_size=4).map(lambda t: ("yaml", {"tenants": t}))),
       st.sampled_from([".yaml", ".json"]))
def test_tenants_files(tmp_path_factory, doc, suffix):
    path = tmp_path_factory.mktemp("t") / f"tenants{suffix}"
    kind, value = doc
    if kind == "raw":
        path.write_bytes(value)
    else:
        path.write_text(json.dumps(value) if suffix == ".json" else yaml.safe_dump(value))
    try:
        tenants = load_tenants(path)
    except ConfigError:
        return
    for tid, tenant in tenants.items():
        assert tid == tenant.tenant_id and not tid.startswith("_") and tenant.region


@FUZZ
@given(st.one_of(st.binary(max_size=400), DOCS.map(lambda d: yaml.safe_dump(d).encode()),
                 st.fixed_dictionaries({}, optional={
                     "allow": DOCS, "tenants": DOCS | st.dictionaries(st.text(max_size=5), DOCS, max_size=2),
                     "score_threshold": SCALARS, "batch_size": SCALARS, "model": SCALARS}).map(
                     lambda d: yaml.safe_dump(d).encode())))
def test_pii_configuration_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("p") / "pii.yaml"
    path.write_bytes(data)
    try:
        PiiConfig.from_yaml(str(path))
    except ConfigError:
        pass


PARQUET_VALUES = (SCALARS | st.binary(max_size=10) | st.decimals(allow_nan=False) | st.dates() | st.datetimes()
                  | st.timedeltas() | st.lists(SCALARS, max_size=3) | st.sampled_from([float("nan"), "\ud800"]))


@FUZZ
@given(st.dictionaries(st.sampled_from(["type", "record_id", "tenant_id", "started_at", "duration_s", "queue", "x"]),
                       PARQUET_VALUES, max_size=6))
def test_parquet_rows_become_lines_that_parse_or_dead_letter(row):
    raw = _parquet_row_to_raw(row, "in.parquet")
    try:
        parse_line(raw, ParseConfig())
    except RecordError:
        pass


def test_hostile_parquet_file_reads_and_every_row_is_accounted_for(tmp_path):
    table = pa.table({
        "type": ["call_recording"] * 4, "record_id": ["r-1", "r-2", "r-3", "r-4"], "tenant_id": ["t-1"] * 4,
        "call_id": ["c"] * 4,
        "started_at": ["2026-10-01T10:00:00Z", "9999-12-31T23:00:00-05:00", "2026-10-01T10:00:00Z", "nope"],
        "duration_s": pa.array([decimal.Decimal("3.5"), decimal.Decimal("1e30"), None, None], pa.decimal128(38, 4)),
        "when": [_dt.date(2026, 1, 1), None, _dt.date(1, 1, 1), None],
    })
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    with local_test_pipeline() as p:
        inputs = p | ReadInputs((str(path),))
        parsed = inputs.lines | ParseRecords()
        assert_that(parsed.dead_letters | "Dead" >> beam.Map(lambda d: (d.record_id, d.reason)),
                    equal_to([("r-2", "invalid_timestamp"), ("r-4", "invalid_timestamp")]),
                    label="Dead")
        assert_that(parsed.records | "Kept" >> beam.Map(lambda r: (r.record_id, r.payload.get("duration_s"))),
                    equal_to([("r-1", 3.5), ("r-3", None)]), label="Kept")


# Found cases, kept as regression tests (each raised an exception nobody named before).
@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (b"\xff\xfe not utf-8", ".yaml", "unreadable"),
        (b"{not json", ".json", "unreadable"),
        (b"tenants: [ {tenant_id: t, region: nl, subprocessors: [a, b]} ]", ".yaml", "subprocessors"),
        (b"- {tenant_id: t-1, region: mars}", ".yaml", "region 'mars'"),
        (b"- {tenant_id: _audit, region: nl}", ".yaml", "reserved"),
        (b"- {tenant_id: t-1, region: nl, status: [x]}", ".yaml", "status"),
        (b"[" * 5000, ".json", "unreadable"),
    ],
)
def test_found_tenants_file_cases(tmp_path, content, suffix, message):
    path = tmp_path / f"t{suffix}"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_tenants(path)


@pytest.mark.parametrize(
    "content",
    [b"- a list", b"tenants: [1, 2]", b"tenants: {t: [x]}", b"tenants: {t: {id_patterns: [{name: x}]}}",
     b"allow: {a: 1}", b"score_threshold: high", b"\xff\xfe"],
)
def test_found_pii_configuration_cases(tmp_path, content):
    path = tmp_path / "pii.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        PiiConfig.from_yaml(str(path))
