"""The same input gives the same dead letters (ids, reasons, ids' files) on every runner and worker count.

Found while comparing runners (issue 13, "same output whichever runner"): how deeply a line nests was
bounded only by Python's recursion limit. ``json.loads`` (parsing, the dead-letter id look-up) and the
dead-letter scrub recurse once or more per level, so where RecursionError struck depended on how deep
the call stack already was, which differs between the in-process FnApiRunner, ``--workers 2`` and the
DaskRunner (and between fused stages). The same line was a ``malformed_json`` dead letter on one runner
and an ``unknown_type`` one (another id, another file name) on another; a valid record nested deeply
enough crashed the run while pickling it. Nesting is now bounded explicitly (``MAX_NESTING``) and
checked iteratively before anything recurses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ccpipe.crypto import DataKey
from ccpipe.deadletter import MAX_NESTING, nesting_exceeds, scrub
from ccpipe.types import DeadLetter, InputRecord, RawInput
from transforms.parse import ParseConfig, _ids_of, _ParseRecordFn

TENANT = "t-deep"
# Extra frames that stand for a runner's deeper call stack (Beam's worker loop, fused stages, Dask).
EXTRA_FRAMES = 300
DEPTHS = (1, 50, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, 150, 250, 300, 400, 500, 600, 700, 800, 850, 900)


def _at_stack_depth(frames: int, fn, *args):
    return fn(*args) if frames == 0 else _at_stack_depth(frames - 1, fn, *args)


def _line(depth: int, record_type: str = "call_recording", record_id: str = "r-1") -> bytes:
    """A call record (compact JSON) with an unknown field nested ``depth`` deep that holds a card number."""
    record = {"type": record_type, "record_id": record_id, "tenant_id": TENANT, "call_id": "c-1",
              "started_at": "2026-10-05T10:00:00+00:00", "wrapup_notes": "pin is 4321"}
    text = json.dumps(record, separators=(",", ":"))[:-1]
    nested = "[" * (depth - 1) + '"card 4111 1111 1111 1111"' + "]" * (depth - 1)  # the record is level 1
    return (text + ',"ext":' + nested + "}").encode()


def _outcome(data: bytes):
    (out,) = list(_ParseRecordFn(ParseConfig()).process(RawInput("deep.jsonl", data)))
    value = getattr(out, "value", out)
    if isinstance(value, InputRecord):
        return ("record", value.record_id)
    assert isinstance(value, DeadLetter)
    return (value.reason, value.error, value.tenant_id, value.record_id)


def test_the_nesting_bound_is_explicit():
    assert not nesting_exceeds('{"a":[[' + "]" * 2 + "}")
    assert not nesting_exceeds('{"a":"' + "[" * 500 + '"}')  # brackets inside strings do not nest
    assert not nesting_exceeds('{"a":"\\"' + "[" * 500 + '"}')  # nor after an escaped quote
    assert nesting_exceeds("[" * (MAX_NESTING + 1))  # truncated lines are counted as far as they go
    assert _outcome(_line(MAX_NESTING)) == ("record", "r-1")
    reason, error, tenant, record_id = _outcome(_line(MAX_NESTING + 1))
    assert (reason, tenant, record_id) == ("malformed_json", TENANT, "r-1")
    assert error == f"malformed JSON: nested deeper than {MAX_NESTING} levels"


@pytest.mark.parametrize("record_type", ["call_recording", "fax"])
def test_parse_outcome_does_not_depend_on_the_call_stack(record_type):
    shallow = {depth: _outcome(_line(depth, record_type)) for depth in DEPTHS}
    deep = {depth: _at_stack_depth(EXTRA_FRAMES, _outcome, _line(depth, record_type)) for depth in DEPTHS}
    assert [d for d in DEPTHS if deep[d] != shallow[d]] == []
    valid = "record" if record_type == "call_recording" else "unknown_type"
    assert {d: o[0] for d, o in shallow.items()} == {d: "malformed_json" if d > MAX_NESTING else valid for d in DEPTHS}


def test_dead_letter_ids_and_scrub_do_not_depend_on_the_call_stack():
    key = DataKey(TENANT, "content", 1, b"k" * 32)
    lines = {depth: _line(depth, "fax") for depth in DEPTHS}
    ids = {d: _ids_of(RawInput("x", raw)) for d, raw in lines.items()}
    scrubbed = {d: scrub(raw, key) for d, raw in lines.items()}
    assert [d for d, raw in lines.items() if _at_stack_depth(EXTRA_FRAMES, _ids_of, RawInput("x", raw)) != ids[d]] == []
    assert [d for d, raw in lines.items() if _at_stack_depth(EXTRA_FRAMES, scrub, raw, key) != scrubbed[d]] == []
    assert set(ids.values()) == {(TENANT, "r-1")}
    assert not any(b"4111" in s or b"4321" in s for s in scrubbed.values())


def _dead_letters(root: Path) -> tuple[list[str], list[tuple]]:
    """Dead-letter file names (relative) and their rows' plaintext columns (ciphertext by length)."""
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet") if "dataset=_deadletter" in str(p))
    rows = []
    for rel in files:
        for row in pq.read_table(root / rel).to_pylist():
            rows.append((rel, row["deadletter_id"], row["reason"], row["step"], row["error"], row["source"],
                         row["tenant_id"], row["record_id"], row["key_id"], len(row["payload_ciphertext"])))
    return files, sorted(rows)


def test_fnapirunner_one_and_two_workers_write_the_same_dead_letters(corpus, tmp_path, master_key_env):
    import dataclasses

    from ccpipe.keystore import KeystoreConfig
    from ccpipe.tenants import load_tenants
    from pipelines.batch import BatchConfig, pipeline_options, run
    from transforms.route import SinkConfig

    tenants = load_tenants(corpus / "tenants.yaml")
    tenant = next(t.tenant_id for t in tenants.values() if t.status == "active")
    lines = [_line(d, "fax", f"bad-{d:04d}").replace(TENANT.encode(), tenant.encode()) for d in range(850, 1001, 2)]
    lines += [_line(d, record_id=f"rec-{d:04d}").replace(TENANT.encode(), tenant.encode()) for d in (101, 150)]
    source = tmp_path / "deep.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    config = BatchConfig(
        inputs=(str(source),), tenants=tuple(tenants.values()), sinks=SinkConfig(default_root=str(tmp_path / "w1")),
        keystore=KeystoreConfig(path=str(tmp_path / "home" / "keystore.db"),
                                master_key_file=str(tmp_path / "home" / "master.key")),
        run_id="w1",
    )
    one = run(config, pipeline_options("FnApiRunner", 1))
    two = run(dataclasses.replace(config, sinks=SinkConfig(default_root=str(tmp_path / "w2")), run_id="w2"),
              pipeline_options("FnApiRunner", 2))

    files_one, rows_one = _dead_letters(tmp_path / "w1")
    files_two, rows_two = _dead_letters(tmp_path / "w2")
    assert files_one == files_two
    assert rows_one == rows_two
    assert len(rows_one) == len(lines)
    assert {row[2] for row in rows_one} == {"malformed_json"}
    assert {row[7] for row in rows_one} == {f"bad-{d:04d}" for d in range(850, 1001, 2)} | {"rec-0101", "rec-0150"}
    assert one["reconciled"] is True and two["reconciled"] is True


def test_parquet_rows_become_the_same_line_whatever_the_call_stack():
    from transforms.read import _parquet_row_to_raw

    def row(depth: int) -> dict:
        value: object = "x"
        for _ in range(depth - 1):  # the row itself is level 1
            value = [value]
        return {"type": "call_recording", "ext": value}

    for depth in (2, MAX_NESTING, MAX_NESTING + 1, 400, 800, 900):
        shallow = _parquet_row_to_raw(row(depth), "rows.parquet")
        assert _at_stack_depth(EXTRA_FRAMES, _parquet_row_to_raw, row(depth), "rows.parquet") == shallow, depth
        assert (shallow.data == b'{"_unencodable_row": true}') == (depth > MAX_NESTING), depth
