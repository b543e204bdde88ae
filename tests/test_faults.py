"""Fault injection for the batch pipeline: a killed worker or run, a full disk, a key manager or keystore
that goes away mid-run, an unreachable control plane. Each test asserts the exact outcome. Runs are the
real CLI: ``ccpipe batch --workers 2`` as a process (killed with SIGKILL once a file is half written,
which a ``sitecustomize`` hook holds for a minute), or in process on the FnApiRunner with the fault
injected in Beam's file system layer or the key manager.

Regressions for defects these faults exposed:

* a temporary file was named ``.tmp-<uuid>.parquet``: DuckDB's ``read_parquet('out/**/*.parquet')`` (the
  README's reader) matches hidden files, so a killed run's temporary file was read as a part file
  (a partial one: an error; a whole one: every row twice). Now ``.tmp-<uuid>.inprogress``.
* a write that failed (ENOSPC) left its temporary file behind; it is now deleted.
* a failed run ended in a Beam traceback (exit 1); now one line ``ccpipe batch: error: run R failed ...``,
  exit 2, and a manifest the run wrote partly before failing (disk full while writing it) is removed.
* a control-plane path below a regular file ended in a FileExistsError traceback, a keystore file that is
  not a keystore in a sqlite3 traceback; now one line each, exit 2, before anything is read.

* a run killed while writing its manifest left a partial manifest under its final name; the manifest
  is now written through a temporary file and a rename too.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import strings_in

from ccpipe.cli import main as cli
from ccpipe.errors import KeyUnavailableError
from ccpipe.kms import KmsError, LocalKeyManager
from ccpipe.schemas import ROW_KEY
from ccpipe.tenants import load_tenants

ROOT = Path(__file__).resolve().parents[1]
# Columns that differ between two runs of the same input under the same keys by design: AES-GCM
# nonces (every *_ciphertext), Argon2id salts (password_hash).
RANDOMIZED = ("_ciphertext", "password_hash")
STRUCTURED_NEVER_PLAIN = {"PHONE_NUMBER", "EMAIL_ADDRESS", "MAC_ADDRESS", "IP_ADDRESS", "CREDIT_CARD", "USERNAME",
                          "AGENT_ID", "PASSWORD", "DTMF"}
FREE_TEXT_NEVER_SURVIVES = {"EMAIL_ADDRESS", "CREDIT_CARD", "IP_ADDRESS", "MAC_ADDRESS"}
BEAM_IMPORT_NOISE = "apitools not found"  # a WARNING Beam logs when it is imported


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    from fixtures.generate import generate

    out = tmp_path_factory.mktemp("fault-corpus")
    generate(out, seed=23, n_tenants=8, n_calls=14, n_chats=14, n_telemetry=14, n_registrations=8)
    return out


def batch_argv(corpus: Path, out: Path, home: Path, run_id: str, *extra: str) -> list[str]:
    return [
        "batch", "--input", str(corpus / "input" / "*"), "--input", str(corpus / "bad" / "bad.jsonl"),
        "--tenants", str(corpus / "tenants.yaml"), "--output", str(out), "--run_id", run_id,
        "--keystore", str(home / "keystore.db"), "--master_key_file", str(home / "master.key"),
        "--control_plane", f"sqlite:///{home / 'control.db'}", *extra,
    ]


def subprocess_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, CCPIPE_HOME=str(home), PYTHONPATH=str(ROOT))
    env.setdefault("CCPIPE_MASTER_KEY", base64.b64encode(b"k" * 32).decode())
    return env


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and BEAM_IMPORT_NOISE not in line]


def reader_files(out: Path) -> list[Path]:
    """What ``read_parquet('<out>/**/*.parquet')`` reads: every file ending in .parquet, hidden or not."""
    return sorted(p for p in out.rglob("*.parquet") if p.is_file())


def assert_readers_see_only_whole_part_files(out: Path) -> None:
    for path in reader_files(out):
        assert path.name.startswith("part-"), f"a reader takes {path} for a part file"
        pq.read_table(path)  # complete: a partial Parquet file has no footer and raises
    for path in out.rglob(".tmp-*"):
        assert path.name.endswith(".inprogress"), path


def snapshot(out: Path) -> dict[str, list[tuple]]:
    """Per visible file (relative path): its rows, without the columns randomized by design."""
    assert_readers_see_only_whole_part_files(out)
    files = {}
    for path in reader_files(out):
        rows = []
        for row in pq.read_table(path).to_pylist():
            rows.append(tuple(sorted((k, repr(v)) for k, v in row.items() if not k.endswith(RANDOMIZED))))
        files[str(path.relative_to(out))] = sorted(rows)
    return files


def row_keys(out: Path) -> Counter:
    keys = Counter()
    for path in reader_files(out):
        dataset = next(p.split("=", 1)[1] for p in path.parts if p.startswith("dataset="))
        for row in pq.read_table(path).to_pylist():
            keys[(dataset, *(str(row[k]) for k in ROW_KEY[dataset]))] += 1
    return keys


def rows_of(out: Path, dataset: str) -> list[dict]:
    return [r for p in reader_files(out) if f"dataset={dataset}" in p.parts for r in pq.read_table(p).to_pylist()]


def manifest_counts(manifest: dict) -> dict:
    keep = ("inputs", "records_read", "records_written", "records_dead_lettered", "reconciled",
            "records_written_by_region", "rows_written_by_region", "dead_letters_by_reason", "files_written")
    return {k: manifest[k] for k in keep}


def planted_values(corpus: Path) -> list[str]:
    """Values that must never be in plain text in any output: structured PII and secrets, and the
    free-text kinds that are always redacted."""
    truth = [json.loads(line) for line in (corpus / "truth.jsonl").read_text().splitlines()]
    values = {t["value"] for t in truth if t["start"] is None and t["entity_type"] in STRUCTURED_NEVER_PLAIN}
    values |= {t["value"] for t in truth if t["start"] is not None and t["entity_type"] in FREE_TEXT_NEVER_SURVIVES}
    assert len(values) > 50
    return sorted(values)


def plaintext_found(out: Path, values: list[str]) -> list[str]:
    """Every planted value found in any file under ``out``: Parquet decoded (every string, nested too,
    binary as latin-1), anything else as raw bytes."""
    texts: list[str] = []
    for path in (p for p in out.rglob("*") if p.is_file()):
        try:
            texts.extend(strings_in(pq.read_table(path).to_pylist()))
        except Exception:  # noqa: BLE001 - not (or not a whole) Parquet file: its bytes
            texts.append(path.read_bytes().decode("latin-1"))
    haystack = "\n".join(texts).lower()
    return [v for v in values if v.lower() in haystack]


@pytest.fixture(scope="module")
def clean(small_corpus, tmp_path_factory):
    """A clean run through the CLI (in process, FnApiRunner): output root, keystore home, manifest."""
    root = tmp_path_factory.mktemp("clean")
    home, out = root / "home", root / "out"
    home.mkdir()
    assert cli(batch_argv(small_corpus, out, home, "clean")) == 0
    manifest = json.loads((out / "_manifests" / "clean.json").read_text())
    assert manifest["reconciled"] and manifest["records_written"] > 40
    return out, home, manifest


def copy_keys(home: Path, to: Path) -> Path:
    """The clean run's keystore (same keys, so the same pseudonyms and file names), a fresh control plane."""
    to.mkdir(parents=True)
    for name in ("keystore.db", "keystore-kek.db"):
        shutil.copy2(home / name, to / name)
    return to


# ------------------------------------------------------------------ a worker or the whole run killed


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        out.extend(kids)
        todo.extend(kids)
    return out


def _sdk_workers(pid: int) -> list[int]:
    workers = []
    for child in _descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"apache_beam.runners.worker.sdk_worker_main" in cmdline:  # the python, not its /bin/sh -c parent
            workers.append(child)
    return workers


# Loaded by every Python process of the killed run (the CLI and its SDK workers) through PYTHONPATH: the
# first data file of the run (SLOW_WRITE_TARGET=data) or its manifest (=manifest) stops half-written for
# a minute, so that the kill lands mid-write (the process that creates the marker file first is the slow
# one; the others write normally).
_SLOW_FIRST_WRITE = """
import os
import time
from apache_beam.io.filesystems import FileSystems

_create, _first = FileSystems.create, []


class _Slow:
    def __init__(self, handle, path):
        self._handle, self._path = handle, path

    def write(self, data):
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        ready = os.environ["SLOW_WRITE_MARKER"] + ".ready"
        with open(ready + ".tmp", "w") as note:
            note.write(self._path)
        os.rename(ready + ".tmp", ready)  # tells the test which file is half written
        time.sleep(60)
        return self._handle.write(data[len(data) // 2:])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def _create_slowly(path, *args, **kwargs):
    handle = _create(path, *args, **kwargs)
    if ("/_manifests/" in path) == (os.environ["SLOW_WRITE_TARGET"] == "manifest") and not _first:
        _first.append(path)
        try:
            os.close(os.open(os.environ["SLOW_WRITE_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return handle
        return _Slow(handle, path)
    return handle


FileSystems.create = staticmethod(_create_slowly)
"""


def _start_slow_run(corpus: Path, out: Path, home: Path, hooks: Path, target: str) -> subprocess.Popen:
    """``ccpipe batch --workers 2`` in its own process group, with the slow write of ``target``."""
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_SLOW_FIRST_WRITE)
    env = dict(subprocess_env(home), PYTHONPATH=f"{hooks}{os.pathsep}{ROOT}", SLOW_WRITE_MARKER=str(hooks / "slow"),
               SLOW_WRITE_TARGET=target)
    command = [sys.executable, "-m", "ccpipe.cli", *batch_argv(corpus, out, home, "killed", "--workers", "2")]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_half_written(proc: subprocess.Popen, marker: Path) -> Path:
    """A condition, not a sleep: a file is half written (it then stays so for a minute)."""
    deadline = time.monotonic() + 180
    while (partial := _half_written(marker)) is None:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no output within 180 s"
        time.sleep(0.005)
    return partial


def _end(proc: subprocess.Popen) -> str:
    """Wait for the run to end; then kill what is left of its process group. Its stderr."""
    try:
        return proc.communicate(timeout=120)[1]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.returncode is None:
            proc.communicate()


def _half_written(marker: Path) -> Path | None:
    ready = marker.with_name(marker.name + ".ready")
    return Path(ready.read_text()) if ready.exists() else None


def _holder(pids: list[int], path: Path) -> int:
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.path.realpath(os.readlink(fd)) == os.path.realpath(path):
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds {path} open")


@pytest.mark.parametrize("victim", ["one_worker", "whole_run"])
def test_killed_run_then_rerun_equals_a_clean_run(victim, small_corpus, clean, tmp_path):
    """SIGKILL the worker that is writing a file (or the whole run, CLI and workers) mid-write; then run
    again: readers never saw a partial file, and the rerun's output is the clean run's."""
    import duckdb

    clean_out, clean_home, clean_manifest = clean
    home, out = copy_keys(clean_home, tmp_path / "home"), tmp_path / "out"
    proc = _start_slow_run(small_corpus, out, home, tmp_path / "hooks", "data")
    try:
        partial = _wait_half_written(proc, tmp_path / "hooks" / "slow")
        if victim == "one_worker":  # the worker writing it
            workers = _sdk_workers(proc.pid)
            assert len(workers) == 2, workers
            os.kill(_holder(workers, partial), signal.SIGKILL)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        stderr = _end(proc)
    if victim == "one_worker":
        assert proc.returncode == 2, stderr
        assert error_lines(stderr)[-1].startswith("ccpipe batch: error: run killed failed, no manifest written")
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (out / "_manifests" / "killed.json").exists()
    assert partial.exists() and partial.name.startswith(".tmp-")  # the kill left a partial temporary file...
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's error type varies: it is not whole
        pq.read_table(partial)
    assert_readers_see_only_whole_part_files(out)  # ...which no reader takes for a part file
    seen = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true, "
                      "union_by_name = true)").fetchall()[0][0] if reader_files(out) else 0
    assert seen == sum(row_keys(out).values()) < sum(row_keys(clean_out).values())  # cut short, no partial rows

    if victim == "one_worker":  # the same command again
        rerun = subprocess.run(
            [sys.executable, "-m", "ccpipe.cli", *batch_argv(small_corpus, out, home, "rerun", "--workers", "2")],
            cwd=ROOT, env=subprocess_env(home), capture_output=True, text=True, timeout=300,
        )
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert "RECONCILED" in rerun.stdout
    else:  # in process, one worker (cheaper; any rerun of the same input repairs the output)
        assert cli(batch_argv(small_corpus, out, home, "rerun")) == 0
    assert snapshot(out) == snapshot(clean_out)  # same files, same rows
    assert max(row_keys(out).values()) == 1  # no duplicates
    manifest = json.loads((out / "_manifests" / "rerun.json").read_text())
    assert manifest_counts(manifest) == manifest_counts(clean_manifest)


def test_run_killed_while_writing_its_manifest_leaves_no_partial_manifest(small_corpus, clean, tmp_path):
    _, clean_home, _ = clean
    home, out = copy_keys(clean_home, tmp_path / "home"), tmp_path / "out"
    proc = _start_slow_run(small_corpus, out, home, tmp_path / "hooks", "manifest")
    try:
        _wait_half_written(proc, tmp_path / "hooks" / "slow")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        _end(proc)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "_manifests" / "killed.json").exists()


# ------------------------------------------------------------------------ the sink runs out of space


class _FullDisk:
    """A write handle on a disk that fills up: half the bytes land, then ENOSPC."""

    def __init__(self, handle) -> None:
        self._handle = handle

    def write(self, data: bytes) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.mark.parametrize("where", ["part_file", "manifest"])
def test_disk_full_fails_clearly_and_reports_nothing(where, small_corpus, clean, tmp_path, monkeypatch, capsys):
    from apache_beam.io.filesystems import FileSystems

    _, clean_home, _ = clean
    home, out = copy_keys(clean_home, tmp_path / "home"), tmp_path / "out"
    real_create = FileSystems.create
    created = []

    def create(path, *args, **kwargs):
        handle = real_create(path, *args, **kwargs)
        created.append(path)
        full = (".tmp-" in path and len(created) >= 4) if where == "part_file" else "_manifests" in path
        return _FullDisk(handle) if full else handle

    monkeypatch.setattr(FileSystems, "create", staticmethod(create))
    assert cli(batch_argv(small_corpus, out, home, "full")) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith("ccpipe batch: error: run full failed, no manifest written")
    assert line.endswith("[Errno 28] No space left on device [while running 'WriteRegionalParquet/WriteFiles']"
                         if where == "part_file" else
                         "[Errno 28] No space left on device [while running 'WriteManifest/Write']")
    assert_readers_see_only_whole_part_files(out)
    assert list(out.rglob(".tmp-*")) == []  # the failed write cleaned up after itself
    assert not (out / "_manifests" / "full.json").exists()  # not even a partial one
    written = len(reader_files(out))
    assert (written == 3) if where == "part_file" else (written == len(created) - 1)
    # Every data file went through a hidden temporary name that no reader globbing *.parquet matches.
    assert all(Path(p).name.startswith(".tmp-") and not p.endswith(".parquet") for p in created
               if "_manifests" not in p)
    if where == "part_file":  # space freed: the same run again completes, equal to a clean run
        clean_out, _, clean_manifest = clean
        monkeypatch.undo()
        assert cli(batch_argv(small_corpus, out, home, "after")) == 0
        assert snapshot(out) == snapshot(clean_out)
        manifest = json.loads((out / "_manifests" / "after.json").read_text())
        assert manifest_counts(manifest) == manifest_counts(clean_manifest)


# ------------------------------------------------------------------- keys unavailable in the middle


def _input_records(corpus: Path) -> dict[str, dict]:
    import gzip

    records = {}
    for path in (corpus / "input").iterdir():
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for line in data.decode().splitlines():
            obj = json.loads(line)
            records[obj["record_id"]] = obj
    return records


def _no_cache_config(corpus: Path, out: Path, home: Path, run_id: str):
    """The batch config with the key cache off: the key manager is asked for every record."""
    import dataclasses

    from conftest import make_config

    config = make_config(corpus, out, home, run_id)
    return dataclasses.replace(config, keystore=dataclasses.replace(config.keystore, cache_ttl_seconds=0))


def test_tenant_key_lost_mid_run_dead_letters_the_rest(small_corpus, clean, tmp_path, monkeypatch):
    """After K records the key manager can no longer unwrap one tenant's content key: its later records
    are dead-lettered ``key_unavailable`` (withheld: sealed under the region's key), none in plain text."""
    from pipelines.batch import pipeline_options, run

    clean_out, clean_home, _ = clean
    home, out = copy_keys(clean_home, tmp_path / "home"), tmp_path / "out"
    bad_tenants = set()  # tenants named in the bad slice (their dead letters would also use the key)
    for line in (small_corpus / "bad" / "bad.jsonl").read_bytes().splitlines():
        try:
            bad_tenants.add(json.loads(line).get("tenant_id"))
        except (ValueError, AttributeError, RecursionError):
            continue
    written_clean = {(r["tenant_id"], r["record_id"]) for ds in ("calls", "telemetry", "chat_messages",
                                                                 "registrations") for r in rows_of(clean_out, ds)}
    per_tenant = Counter(t for t, _ in written_clean if t not in bad_tenants)
    victim, n_victim = max(per_tenant.items(), key=lambda kv: (kv[1], kv[0]))
    assert n_victim >= 6
    assert [r for r in rows_of(clean_out, "_deadletter") if r["tenant_id"] == victim] == []
    k = 3
    real_unwrap = LocalKeyManager.unwrap
    served = Counter()

    def unwrap(self, owner, wrapped, aad):
        if owner == victim and b"|content|" in aad:
            served[owner] += 1
            if served[owner] > k:
                raise KeyUnavailableError(f"the key-encryption key of {owner} is unavailable")
        return real_unwrap(self, owner, wrapped, aad)

    monkeypatch.setattr(LocalKeyManager, "unwrap", unwrap)
    manifest = run(_no_cache_config(small_corpus, out, home, "lost"), pipeline_options("FnApiRunner", 1))

    written = {(r["tenant_id"], r["record_id"]) for ds in ("calls", "telemetry", "chat_messages", "registrations")
               for r in rows_of(out, ds)}
    assert written - {w for w in written if w[0] == victim} == written_clean - {w for w in written_clean
                                                                                 if w[0] == victim}
    victim_written = {rid for t, rid in written if t == victim}
    assert len(victim_written) == k
    dead = [r for r in rows_of(out, "_deadletter") if r["tenant_id"] == victim]
    assert Counter(r["reason"] for r in dead) == Counter({"key_unavailable": n_victim - k})
    assert victim_written | {r["record_id"] for r in dead} == {rid for t, rid in written_clean if t == victim}
    # The tenant's key is gone, so the lines are withheld, sealed under the region's dead-letter key.
    region = load_tenants(small_corpus / "tenants.yaml")[victim].region
    assert {r["key_id"].rsplit("/", 1)[0] for r in dead} == {f"_deadletter:{region}/deadletter"}
    assert manifest["reconciled"]
    assert manifest["dead_letters_by_reason"]["key_unavailable"] == n_victim - k
    planted = planted_values(small_corpus)
    assert plaintext_found(out, planted) == []
    assert len(plaintext_found(small_corpus / "input", planted)) > 50  # the scan does find plain text


def test_key_manager_unreachable_mid_run_fails_clearly_writes_nothing(small_corpus, clean, tmp_path, monkeypatch,
                                                                      capsys):
    """The key manager stops answering after a few unwraps (an OpenBao outage): the run fails with one
    line and exit 2, before anything is written: no Parquet file, no manifest, no plain text."""
    _, clean_home, _ = clean
    home, out = copy_keys(clean_home, tmp_path / "home"), tmp_path / "out"
    real_unwrap = LocalKeyManager.unwrap
    calls = Counter()

    def unwrap(self, owner, wrapped, aad):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KmsError("cannot reach the key manager: connection refused")
        return real_unwrap(self, owner, wrapped, aad)

    monkeypatch.setattr(LocalKeyManager, "unwrap", unwrap)
    assert cli(batch_argv(small_corpus, out, home, "kms-down")) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith("ccpipe batch: error: run kms-down failed, no manifest written")
    assert "KmsError: cannot reach the key manager: connection refused" in line
    assert calls["n"] > 5
    assert [p for p in out.rglob("*") if p.is_file()] == []
    assert plaintext_found(out, planted_values(small_corpus)) == []


@pytest.mark.parametrize("when", ["at_start", "after_keys_prepared"])
def test_keystore_file_unusable_fails_clearly_writes_nothing(when, small_corpus, clean, tmp_path, monkeypatch,
                                                             capsys):
    """The keystore file is overwritten with garbage: before the run (refused before anything is read),
    or once the driver prepared the keys, before the workers open it (the run fails). One line, exit 2,
    no file written."""
    import pipelines.batch

    _, clean_home, _ = clean
    home, out = copy_keys(clean_home, tmp_path / "home"), tmp_path / "out"
    garbage = os.urandom(4096)
    if when == "at_start":
        (home / "keystore.db").write_bytes(garbage)
    else:
        real_prepare = pipelines.batch.prepare_keys

        def prepare_then_break(*args):
            real_prepare(*args)
            (home / "keystore.db").write_bytes(garbage)

        monkeypatch.setattr(pipelines.batch, "prepare_keys", prepare_then_break)
    assert cli(batch_argv(small_corpus, out, home, "broken-keystore")) == 2
    (line,) = error_lines(capsys.readouterr().err)
    if when == "at_start":
        assert line == (f"ccpipe batch: error: cannot open the keystore at {home / 'keystore.db'}: "
                        "DatabaseError: file is not a database")
    else:
        assert line.startswith("ccpipe batch: error: run broken-keystore failed, no manifest written")
        assert "DatabaseError: file is not a database [while running 'ProcessRecords/" in line
    assert [p for p in out.rglob("*") if p.is_file()] == []


# ------------------------------------------------------------------ the control plane is unreachable


def _untouched(*paths: Path) -> None:
    for path in paths:
        assert not path.exists(), path


def test_control_plane_unreachable_at_start_cli(small_corpus, tmp_path):
    """PostgreSQL refuses the connection: one line, exit 2, nothing read (the input is a FIFO that would
    block a reader) and nothing written (no output root, no keystore)."""
    fifo = tmp_path / "input.jsonl"
    os.mkfifo(fifo)
    home, out = tmp_path / "home", tmp_path / "out"
    argv = ["batch", "--input", str(fifo), "--tenants", str(small_corpus / "tenants.yaml"), "--output", str(out),
            "--keystore", str(home / "keystore.db"), "--control_plane", "postgresql://ccpipe:s3cret@127.0.0.1:1/x"]
    done = subprocess.run([sys.executable, "-m", "ccpipe.cli", *argv], cwd=ROOT, env=subprocess_env(home),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert error_lines(done.stderr) == [
        "ccpipe batch: error: cannot connect to the control plane at postgresql://ccpipe:***@127.0.0.1:1/x: "
        'OperationalError: connection failed: connection to server at "127.0.0.1", port 1 failed: '
        "Connection refused"
    ]
    assert "s3cret" not in done.stderr
    _untouched(out, home)


@pytest.mark.parametrize("kind", ["below_a_file", "a_directory", "not_a_database", "missing_folder"])
def test_control_plane_unusable_sqlite_at_start(kind, small_corpus, tmp_path, monkeypatch, capsys):
    import transforms.read

    def no_read(*args, **kwargs):
        raise AssertionError("the input was read")

    monkeypatch.setattr(transforms.read.ReadInputs, "expand", no_read)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "garbage.db").write_bytes(b"not a database " * 100)
    path, expected = {
        "below_a_file": (tmp_path / "a-file" / "control.db", f"{tmp_path / 'a-file'} is not a folder"),
        "a_directory": (tmp_path / "a-dir", "unable to open database file"),
        "not_a_database": (tmp_path / "garbage.db", "file is not a database"),
        "missing_folder": (tmp_path / "nowhere" / "control.db", f"folder {tmp_path / 'nowhere'} does not exist"),
    }[kind]
    home, out = tmp_path / "home", tmp_path / "out"
    argv = ["batch", "--input", str(small_corpus / "input" / "*"), "--tenants", str(small_corpus / "tenants.yaml"),
            "--output", str(out), "--keystore", str(home / "keystore.db"), "--control_plane", f"sqlite:///{path}"]
    assert cli(argv) == 2
    captured = capsys.readouterr()
    (line,) = error_lines(captured.err)
    assert line.startswith("ccpipe batch: error: ") and expected in line, line
    assert captured.out == ""
    _untouched(out, home)
