"""What a batch run shows on the console (progress, summary) and what goes to its log file (the rest).

Before: ``make demo`` printed ~85 lines of Beam worker, gRPC and Presidio logs around the summary.
Now stderr holds one line (the run's figures and where its log is), stdout the summary; every
log line, from this process and from the worker processes, is in ``$CCPIPE_HOME/logs/<run_id>.log``.
No planted value of the fixture corpus appears in any of them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccpipe import progress

ROOT = Path(__file__).resolve().parents[1]
NETBLOCK = str(Path(__file__).parent / "netblock")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CCPIPE_MASTER_KEY", progress.ENV)}
    env.update(CCPIPE_HOME=str(home), CCPIPE_BLOCK_NETWORK="1",
               PYTHONPATH=os.pathsep.join([NETBLOCK, str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from fixtures.generate import generate

    out = tmp_path_factory.mktemp("console-corpus")
    generate(out, seed=11, n_tenants=8, n_calls=12, n_chats=12, n_telemetry=12, n_registrations=6)
    return out


def _batch(corpus: Path, tmp_path: Path, run_id: str, *extra: str) -> subprocess.CompletedProcess:
    argv = ["batch", "--input", str(corpus / "input" / "*"), "--input", str(corpus / "bad" / "bad.jsonl"),
            "--tenants", str(corpus / "tenants.yaml"), "--output", str(tmp_path / "out"), "--workers", "2",
            "--run_id", run_id, *extra]
    return subprocess.run([sys.executable, "-m", "ccpipe.cli", *argv], env=_env(tmp_path / "home"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)


def _planted(corpus: Path) -> list[str]:
    values = {json.loads(line)["value"] for line in (corpus / "truth.jsonl").read_text().splitlines()}
    assert len(values) > 200
    return sorted(values)


def test_console_shows_progress_line_and_summary_the_log_file_the_rest(corpus, tmp_path):
    done = _batch(corpus, tmp_path, "console-1")
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "_manifests" / "console-1.json").read_text())
    log = tmp_path / "home" / "logs" / "console-1.log"
    # stderr: exactly the run's one line (no Beam, gRPC or Presidio chatter).
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert re.fullmatch(rf"run console-1: {manifest['records_read']} records in \d+:\d\d:\d\d "
                        rf"\(\d+ records/s\); log: {re.escape(str(log))}", lines[0]), lines[0]
    # stdout: the summary, nothing else.
    assert done.stdout.splitlines()[0] == "run console-1: RECONCILED"
    assert done.stdout.splitlines()[-2:] == [f"  manifest: {tmp_path / 'out' / '_manifests' / 'console-1.json'}",
                                             f"  report: {tmp_path / 'out' / '_reports' / 'console-1.html'}"]
    assert not [line for line in done.stdout.splitlines() if re.search(r"INFO|WARNING|sdk_worker|presidio", line)]
    # The log: this process's lines (buffered from before the file existed) and the worker processes'.
    text = log.read_text(errors="replace")
    assert "apitools not found" in text  # Beam's import notice, logged before the run id was known
    assert "INFO pipelines.batch: run console-1 on FnApiRunner" in text
    assert text.count("Python sdk harness starting") == 2  # each of the two worker processes
    assert "presidio-analyzer" in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    # No planted value anywhere the run wrote text for people.
    haystack = "\n".join([text, done.stdout, done.stderr]).lower()
    assert [v for v in _planted(corpus) if v.lower() in haystack] == []


def test_verbose_brings_the_log_back_to_the_console(corpus, tmp_path):
    done = _batch(corpus, tmp_path, "console-v", "-v")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("Python sdk harness starting") == 2
    assert "INFO pipelines.batch: run console-v on FnApiRunner" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("run console-v: ")
    assert not (tmp_path / "home" / "logs").exists()
    haystack = (done.stdout + done.stderr).lower()
    assert [v for v in _planted(corpus) if v.lower() in haystack] == []


# ---------------------------------------------------------------------------------- progress counts


def _wait_for(condition, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return value


def test_progress_publishes_the_last_counts_of_a_burst(tmp_path, monkeypatch):
    """Counts added faster than the publishing interval still reach the display (they used not to)."""
    monkeypatch.setenv(progress.ENV, str(tmp_path))
    parsed, written = progress.Progress(progress.PARSED), progress.Progress(progress.WRITTEN)
    for _ in range(500):
        parsed.add("valid", 1)
    parsed.add("invalid", 3)
    written.add("calls", 7)
    written.add("chat_messages", 2)
    expected = {progress.PARSED: {"valid": 500, "invalid": 3}, progress.WRITTEN: {"calls": 7, "chat_messages": 2}}
    assert _wait_for(lambda: progress.read_counts(tmp_path) == expected)


def test_progress_counts_of_many_workers_are_summed(tmp_path, monkeypatch):
    monkeypatch.setenv(progress.ENV, str(tmp_path))
    workers = [progress.Progress(progress.PARSED) for _ in range(3)]
    for n, worker in enumerate(workers, 1):
        worker.add("valid", n)
    assert _wait_for(lambda: progress.read_counts(tmp_path) == {progress.PARSED: {"valid": 6}})
    display = progress.RunDisplay(tmp_path, "run r1", started=time.monotonic() - 3)
    assert re.fullmatch(r"run r1: 6 records parsed \(2 records/s\), 0 rows written, 0:00:0[34] elapsed",
                        display.line())


def test_progress_without_a_folder_only_logs(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    counter = progress.Progress(progress.PARSED)
    counter.add("valid", 1)
    assert counter._publisher is None
    assert list(tmp_path.iterdir()) == []


def test_progress_pickles_into_workers_without_its_thread(tmp_path, monkeypatch):
    monkeypatch.setenv(progress.ENV, str(tmp_path))
    counter = progress.Progress(progress.WRITTEN)
    counter.add("calls", 1)
    copy = pickle.loads(pickle.dumps(counter))
    assert copy._publisher is None
    copy.add("calls", 1)  # its own file: both copies count
    assert _wait_for(lambda: progress.read_counts(tmp_path) == {progress.WRITTEN: {"calls": 3}})


def test_progress_stops_publishing_when_the_folder_is_gone(tmp_path, monkeypatch):
    folder = tmp_path / "progress"
    folder.mkdir()
    monkeypatch.setenv(progress.ENV, str(folder))
    counter = progress.Progress(progress.PARSED)
    counter.add("valid", 1)
    _wait_for(lambda: progress.read_counts(folder))
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    counter._publisher.join(timeout=30)
    assert not counter._publisher.is_alive()


def test_elapsed_text():
    assert progress.elapsed_text(0) == "0:00:00"
    assert progress.elapsed_text(3725.9) == "1:02:05"


# ---------------------------------------------------------------------------------- console logging


def test_quiet_logging_shows_own_warnings_and_buffers_the_rest(tmp_path):
    from rich.console import Console

    from ccpipe.cli import batch

    class FakeConsole:
        file = io.StringIO()
        rich = Console(file=file, highlight=False, soft_wrap=True)

    root, own = logging.getLogger(), logging.getLogger("ccpipe")
    saved, level = list(root.handlers), own.level
    own.setLevel(logging.INFO)  # as the dispatcher sets it
    try:
        buffer = batch._quiet_logging(FakeConsole())
        logging.getLogger("ccpipe.keystore").warning("key %s rotated late", "k1")
        logging.getLogger("apache_beam.runners").warning("chatter")
        logging.getLogger("ccpipe.keystore").info("only in the log")
        assert FakeConsole.file.getvalue() == "WARNING ccpipe.keystore: key k1 rotated late\n"
        assert [r.getMessage() for r in buffer.buffer] == ["key k1 rotated late", "chatter", "only in the log"]
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        own.setLevel(level)


def test_log_file_flag_names_the_file(tmp_path, monkeypatch):
    from ccpipe.cli.batch import log_path

    monkeypatch.setenv("CCPIPE_HOME", str(tmp_path / "home"))
    assert log_path(str(tmp_path / "run.log"), "r1") == tmp_path / "run.log"
    assert log_path(None, "r1") == tmp_path / "home" / "logs" / "r1.log"
    assert stat.S_IMODE((tmp_path / "home" / "logs").stat().st_mode) == 0o700
