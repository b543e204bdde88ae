"""Streams end cleanly: SIGINT/SIGTERM drain ``ccpipe stream``, stop Prism, print and write a summary.

Real parts: ``ccpipe stream`` as a process on a watched folder, on Prism. Each test waits on
conditions (records in the sinks, the process gone), never on fixed sleeps, with generous bounds
for a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_streaming import PRISM, SINK_BOUND, committed, wait_for

from ccpipe.errors import ConfigError
from fixtures.generate import generate
from fixtures.replay import replay

EXIT_BOUND = 120  # the job gone after the stop signal (drain, cancel, Prism stopped)
START_ERROR_BOUND = 120  # a configuration error reported, from the moment the command starts


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shutdown-corpus")
    generate(out, seed=21, n_tenants=4, n_calls=10, n_chats=5, n_telemetry=5, n_registrations=2)
    return out


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CCPIPE_MASTER_KEY"}
    env["CCPIPE_HOME"] = str(home)
    env["CCPIPE_PRISM"] = str(PRISM)
    return env


def _stream_cmd(source: str, corpus: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ccpipe.cli", "stream", "--source", source,
            "--tenants", str(corpus / "tenants.yaml"), "--output", str(out), *extra]


def _prism_children(pid: int) -> list[int]:
    """Prism processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and cmdline.endswith(b"prism"):
            found.append(int(entry.name))
    return found


def _alive_prism(pid: int) -> str | None:
    """``pid``'s parent when it is still a (non-zombie) Prism process, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return ppid if cmdline.endswith(b"prism") and state != "Z" else None


def _sink_tally(out: Path) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Records per region and dataset, and dead letters per region, as the sinks hold them."""
    written: dict[str, dict[str, set]] = {}
    dead: Counter = Counter()
    for path in out.glob("region=*/dataset=*/dt=*/part-*.parquet"):
        region = path.parent.parent.parent.name.split("=", 1)[1]
        dataset = path.parent.parent.name.split("=", 1)[1]
        if dataset == "usage_daily":
            continue
        rows = pq.read_table(path).to_pylist()
        if dataset == "_deadletter":
            dead[region] += len(rows)
        else:
            written.setdefault(region, {}).setdefault(dataset, set()).update(
                (r["tenant_id"], r["record_id"]) for r in rows
            )
    return {r: {d: len(ids) for d, ids in per.items()} for r, per in written.items()}, dict(dead)


def _handled(out: Path) -> int:
    written, dead = _sink_tally(out)
    return sum(n for per in written.values() for n in per.values()) + sum(dead.values())


@contextmanager
def _stream_job(cmd: list[str], tmp_path: Path):
    """A ``ccpipe stream`` job in its own session, its output in ``stream.log``; killed (group) if still running."""
    log = open(tmp_path / "stream.log", "wb")  # noqa: SIM115 - closed below
    job = subprocess.Popen(cmd, env=_env(tmp_path / "home"), stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        yield job
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
        log.close()


@pytest.fixture(autouse=True)
def _need_prism():
    assert PRISM.exists(), "build Prism first: make prism (.ci/run does)"


@pytest.mark.parametrize(("sig", "to_group"), [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["sigint-to-group", "sigterm-to-process"])
def test_stop_signal_drains_and_summarizes(small_corpus, tmp_path, sig, to_group):
    """A stop signal (Ctrl-C reaches the whole process group; SIGTERM from a supervisor the process).

    Before the fix: ~85 lines of gRPC tracebacks (Ctrl-C), Prism left running with parent 1
    (SIGTERM), no summary at all.
    """
    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()
    with _stream_job(_stream_cmd(f"watch://{landing}", small_corpus, out, "--status_seconds", "1"), tmp_path) as job:
        prisms: list[int] = []
        assert wait_for(lambda: bool(prisms.extend(_prism_children(job.pid)) or prisms), 120), "Prism never started"
        files = [small_corpus / "input" / "calls.jsonl", small_corpus / "bad" / "bad.jsonl"]
        for path in files:
            (landing / path.name).write_bytes(path.read_bytes())
        lines = [line for p in files for line in p.read_bytes().split(b"\n") if line.strip()]
        assert wait_for(lambda: _handled(out) == len(lines), SINK_BOUND), "not every record written; see stream.log"
        if to_group:
            os.killpg(job.pid, sig)
        else:
            job.send_signal(sig)
        code = job.wait(timeout=EXIT_BOUND)
    text = (tmp_path / "stream.log").read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    # No Prism outlives the job, orphaned (parent 1) or otherwise.
    assert wait_for(lambda: all(_alive_prism(p) is None for p in prisms), 30), [_alive_prism(p) for p in prisms]
    written, dead = _sink_tally(out)
    n_written, n_dead = sum(n for per in written.values() for n in per.values()), sum(dead.values())
    assert n_written + n_dead == len(lines) and n_written > 0 and n_dead > 0
    # The status line ran while the job did; the final line counts what was fed.
    assert "ccpipe stream: running " in text
    name = signal.Signals(sig).name
    final = [line for line in text.splitlines() if line.startswith(f"ccpipe stream: stopped by {name} after ")]
    assert len(final) == 1, text[-3000:]
    assert f": read {len(lines)}, written {n_written}, dead-lettered {n_dead}, in flight 0 [" in final[0]
    [summary_path] = (out / "_manifests").glob("stream-*.json")
    assert final[0].endswith(f"; summary {summary_path}")
    summary = json.loads(summary_path.read_text())
    assert {k: summary[k] for k in ("stopped_by", "drained", "exit_code", "counts_from", "reconciled",
                                    "records_read", "records_written", "records_dead_lettered",
                                    "records_in_flight", "records_left_unread", "records_already_written")} == {
        "stopped_by": name, "drained": True, "exit_code": 0, "counts_from": "beam_metrics", "reconciled": True,
        "records_read": len(lines), "records_written": n_written, "records_dead_lettered": n_dead,
        "records_in_flight": 0, "records_left_unread": 0, "records_already_written": 0,
    }
    assert summary["records_written_by_region"] == written
    assert summary["dead_letters_by_region"] == dead
    assert summary["source"] == f"watch://{landing}"


def test_sigint_drains_a_kafka_stream_and_commits_its_offsets(kafka_broker, small_corpus, tmp_path):
    """The drain lets the offset committer flush: the group's offsets end at every record fed, at once."""
    topic, group = "cc-shutdown", "ccpipe-shutdown"
    files = [small_corpus / "input" / "calls.jsonl", small_corpus / "bad" / "bad.jsonl"]
    lines = [line for p in files for line in p.read_bytes().split(b"\n") if line.strip()]
    assert replay(lines, kafka_broker.bootstrap, topic, rate=400) == len(lines)
    out = tmp_path / "out"
    with _stream_job(_stream_cmd(f"kafka://{kafka_broker.bootstrap}/{topic}?group={group}", small_corpus, out),
                     tmp_path) as job:
        assert wait_for(lambda: _handled(out) == len(lines), SINK_BOUND), "not every record written; see stream.log"
        os.killpg(job.pid, signal.SIGINT)
        code = job.wait(timeout=EXIT_BOUND)
    text = (tmp_path / "stream.log").read_text(errors="replace")
    assert code == 0 and "Traceback" not in text, text[-3000:]
    assert committed(kafka_broker.bootstrap, topic, group) == len(lines)  # no wait: flushed before exit
    [summary_path] = (out / "_manifests").glob("stream-*.json")
    summary = json.loads(summary_path.read_text())
    assert (summary["records_read"], summary["kafka_offsets_committed"], summary["drained"]) == (
        len(lines), len(lines), True)
    assert summary["source"] == f"kafka://{kafka_broker.bootstrap}/{topic}"


def test_watch_folder_that_does_not_exist_is_an_error_at_start(small_corpus, tmp_path):
    """Before the fix the stream started and waited silently for files that could never come."""
    missing = tmp_path / "does-not-exist"
    done = subprocess.run(_stream_cmd(f"watch://{missing}", small_corpus, tmp_path / "out"),
                          env=_env(tmp_path / "home"), capture_output=True, text=True, timeout=START_ERROR_BOUND)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ccpipe stream: error:")]
    assert errors == [f"ccpipe stream: error: source 'watch://{missing}': folder '{missing}' does not exist or "
                      "is not a folder; watch:// needs an existing folder"]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "_manifests").exists()


def test_kafka_broker_that_does_not_answer_is_an_error_at_start(small_corpus, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    done = subprocess.run(
        _stream_cmd(f"kafka://127.0.0.1:{port}/t?group=g&connect_timeout=2", small_corpus, tmp_path / "out"),
        env=_env(tmp_path / "home"), capture_output=True, text=True, timeout=START_ERROR_BOUND,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ccpipe stream: error:")]
    assert len(errors) == 1 and f"Kafka at 127.0.0.1:{port} did not answer within 2 s" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - start < START_ERROR_BOUND


def _processing(root: Path):
    from ccpipe.keystore import KeystoreConfig
    from ccpipe.pii.engine import PiiConfig
    from pipelines.stages import ProcessingConfig
    from transforms.parse import ParseConfig
    from transforms.route import SinkConfig

    return ProcessingConfig(
        tenants=(), sinks=SinkConfig(default_root=str(root / "out"), streaming=True),
        keystore=KeystoreConfig(path=str(root / "keystore.db"), master_key_file=str(root / "master.key")),
        pii=PiiConfig(), parse=ParseConfig(),
    )


def test_stream_config_checks_status_and_drain_seconds(tmp_path):
    from pipelines.stream import StreamConfig, check_source

    processing = _processing(tmp_path)
    with pytest.raises(ConfigError, match=r"^status_seconds 0.5 must be 0 \(no status line\) or 1 to 86400$"):
        StreamConfig(source=f"watch://{tmp_path}", processing=processing, status_seconds=0.5)
    with pytest.raises(ConfigError, match=r"^drain_seconds -1 must be between 0 and 3600$"):
        StreamConfig(source=f"watch://{tmp_path}", processing=processing, drain_seconds=-1)
    check_source(StreamConfig(source=f"watch://{tmp_path}", processing=processing))  # exists: fine


def test_stream_jobs_outlive_the_job_service_deadline():
    """Beam gives a portable job's state stream a deadline of --job_server_timeout (300 s by default).

    Before the fix ``ccpipe stream`` waited on that stream and died five minutes after it started.
    """
    from apache_beam.options.pipeline_options import PortableOptions

    from pipelines.stream import STREAM_JOB_SERVER_TIMEOUT, stream_options

    options = stream_options("PrismRunner", str(PRISM))
    assert options.view_as(PortableOptions).job_server_timeout == STREAM_JOB_SERVER_TIMEOUT >= 365 * 86400
    given = stream_options("PrismRunner", str(PRISM), ["--job_server_timeout=60"])
    assert given.view_as(PortableOptions).job_server_timeout == 60


def test_counts_from_metrics_name_no_payload():
    from pipelines.stream import STREAM_NS, StreamCounts

    counts = StreamCounts.from_counters({
        (STREAM_NS, "records_read"): 5, (STREAM_NS, "blank_lines"): 1, (STREAM_NS, "records_handled"): 4,
        (STREAM_NS, "written/nl/calls"): 2, (STREAM_NS, "written/us/chat_messages"): 1,
        (STREAM_NS, "dead_lettered/nl/malformed_json"): 1, ("ccpipe.kafka", "offsets_committed"): 5,
        ("ccpipe.other", "written/xx/yy"): 9,
    })
    assert counts.line() == ("read 5, written 3, dead-lettered 1, in flight 1 "
                             "[written nl/calls 2, us/chat_messages 1; dead-lettered nl/malformed_json 1]")
    summary = counts.as_dict(kafka=True)
    assert summary["records_written_by_region"] == {"nl": {"calls": 2}, "us": {"chat_messages": 1}}
    assert summary["dead_letters_by_region_reason"] == {"nl": {"malformed_json": 1}}
    assert summary["dead_letters_by_region"] == {"nl": 1}
    assert summary["records_in_flight"] == 1 and summary["reconciled"] is False
    assert summary["kafka_offsets_committed"] == 5
