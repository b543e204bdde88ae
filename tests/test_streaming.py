"""Streaming end to end on real parts: a Kafka broker, Prism, ``ccpipe stream`` as a process.

Every produced record must appear exactly once in the regional sinks (datasets or dead letters),
also across a SIGKILL of the job and a broker outage; consumer-group offsets end at the number of
records produced.

The tests wait on conditions, never on fixed sleeps, each with a generous bound for a loaded 2-core
machine (the bounds below): the job commits an offset about ``COMMIT_RETRY_SECONDS`` (2 s) after the
record and all before it are written while the broker answers; ``COMMIT_BOUND`` allows far more.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ccpipe.jsonl import read_lines
from fixtures.generate import generate
from fixtures.replay import replay

ROOT = Path(__file__).resolve().parents[1]
PRISM = ROOT / ".cache" / "bin" / "prism"
# Bounds (seconds) for the conditions the tests wait on: generous, for a busy machine.
SINK_BOUND = 240  # every produced record in the sinks, from the moment the last one is produced
COMMIT_BOUND = 90  # offsets committed up to the last record, from the moment it is in the sinks
NOTICE_BOUND = 60  # the job reports that the broker is gone, from the moment it is stopped
OUTAGE_SECONDS = 10  # the shortest broker outage the outage test injects (a fault parameter, not a wait)


@pytest.fixture(scope="module")
def stream_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream-corpus")
    generate(out, seed=21, n_tenants=8, n_calls=25, n_chats=25, n_telemetry=25, n_registrations=5)
    return out


def produced_ids(corpus: Path, with_bad: bool) -> list[str]:
    ids = []
    for path in sorted((corpus / "input").iterdir()):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        ids += [json.loads(line)["record_id"] for line in data.splitlines() if line.strip()]
    return ids


def sink_counts(out: Path) -> Counter:
    """How many times each record appears across datasets and dead letters (chats: once per record)."""
    seen = Counter()
    for path in out.glob("region=*/dataset=*/dt=*/part-*.parquet"):
        dataset = path.parent.parent.name.split("=", 1)[1]
        if dataset == "usage_daily":
            continue
        for row in pq.read_table(path).to_pylist():
            if dataset == "chat_messages" and row["seq"] != 0:
                continue
            seen[row.get("record_id") or row["deadletter_id"]] += 1
    return seen


def in_sinks(ids, out: Path) -> bool:
    """Every id of ``ids`` is in the sinks (at least once)."""
    return set(ids) <= set(sink_counts(out))


def committed(bootstrap: str, topic: str, group: str) -> int:
    """The group's committed offsets summed over the topic's two partitions; -1 while unknown.

    Unknown: the broker (just restarted) cannot answer yet, e.g. its group coordinator is loading.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        return sum(max(tp.offset, 0) for tp in parts)
    except KafkaException:
        return -1
    finally:
        consumer.close()


def produced(bootstrap: str, topic: str) -> int:
    """How many messages the topic's two partitions hold (high watermarks); -1 while unknown."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ccpipe-test-watermarks"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1))
    except KafkaException:
        return -1
    finally:
        consumer.close()


def wait_committed(bootstrap: str, topic: str, group: str, expected: int, job: StreamJob) -> float:
    """Seconds until the group's offsets reach ``expected`` (at most COMMIT_BOUND), else AssertionError."""
    start = time.monotonic()
    assert wait_for(lambda: committed(bootstrap, topic, group) == expected, COMMIT_BOUND, job), (
        f"offsets {committed(bootstrap, topic, group)} != {expected} records {COMMIT_BOUND} s after the "
        f"last one reached the sinks; see {job.log.name}"
    )
    return time.monotonic() - start


class StreamJob:
    """``ccpipe stream`` in its own process group, so a SIGKILL takes Prism down with it."""

    def __init__(self, corpus: Path, out: Path, home: Path, source: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CCPIPE_MASTER_KEY"}
        env["CCPIPE_HOME"] = str(home)
        env["CCPIPE_PRISM"] = str(PRISM)
        self.log = open(out.parent / f"stream-{time.time_ns()}.log", "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ccpipe.cli",
                "stream",
                "--source",
                source,
                "--tenants",
                str(corpus / "tenants.yaml"),
                "--output",
                str(out),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_size(self) -> int:
        self.log.flush()
        return os.path.getsize(self.log.name)

    def log_since(self, offset: int) -> str:
        with open(self.log.name, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        if not self.log.closed:
            self.log.close()


def wait_for(predicate, timeout: float, job: StreamJob | None = None, poll: float = 1.0) -> bool:
    """True as soon as ``predicate()`` is (checked every ``poll`` s), False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if job is not None and not job.alive():
            raise AssertionError(f"the streaming job died; see {job.log.name}")
        time.sleep(poll)
    return predicate()


def broker_gone_noticed(job: StreamJob, since: int) -> bool:
    """The job's Kafka clients have reported the stopped broker (refused connections) in its log."""
    text = job.log_since(since)
    return "Connection refused" in text or "Disconnected" in text


@pytest.fixture(autouse=True)
def _need_prism():
    assert PRISM.exists(), "build Prism first: make prism (.ci/run does)"


def test_every_record_exactly_once(kafka_broker, stream_corpus, tmp_path):
    topic, group = "cc-once", "ccpipe-once"
    lines = read_lines([str(stream_corpus / "input" / "*"), str(stream_corpus / "bad" / "bad.jsonl")])
    # The producer as a user runs it: the same corpus (same seed) replayed by the CLI, bad slice included.
    sent = subprocess.run(
        [sys.executable, "-m", "ccpipe.cli", "fixtures", "--out", str(tmp_path / "replayed"), "--seed", "21",
         "--tenants", "8", "--calls", "25", "--chats", "25", "--telemetry", "25", "--registrations", "5",
         "--to-kafka", f"kafka://{kafka_broker.bootstrap}/{topic}", "--rate", "400", "--with-bad"],
        capture_output=True, text=True, timeout=120,
    )
    assert sent.returncode == 0, sent.stderr
    assert f"sent {len(lines)} of {len(lines)} records" in sent.stdout
    out = tmp_path / "out"
    job = StreamJob(stream_corpus, out, tmp_path / "home", f"kafka://{kafka_broker.bootstrap}/{topic}?group={group}")
    try:
        ids = produced_ids(stream_corpus, with_bad=False)
        assert wait_for(lambda: in_sinks(ids, out), SINK_BOUND, job), "not every record reached the sinks"
        wait_committed(kafka_broker.bootstrap, topic, group, len(lines), job)
    finally:
        job.kill()
    seen = sink_counts(out)
    assert all(seen[i] == 1 for i in ids)
    # The bad slice: every line dead-lettered once (the duplicate pair: one written, one dead letter).
    dead = [r for p in out.glob("region=*/dataset=_deadletter/*/*.parquet") for r in pq.read_table(p).to_pylist()]
    expected = json.loads((stream_corpus / "bad_expected.json").read_text())
    bad_reasons = Counter(r["reason"] for r in dead if r["record_id"] is None or r["record_id"].startswith("bad-"))
    assert bad_reasons == Counter(e for e in expected if e != "written")


def test_sigkill_and_restart_lose_nothing_and_duplicate_nothing(kafka_broker, stream_corpus, tmp_path):
    topic, group = "cc-kill", "ccpipe-kill"
    lines = read_lines([str(stream_corpus / "input" / "*")])
    ids = produced_ids(stream_corpus, with_bad=False)
    out, home = tmp_path / "out", tmp_path / "home"
    source = f"kafka://{kafka_broker.bootstrap}/{topic}?group={group}"
    first = StreamJob(stream_corpus, out, home, source)
    half = len(lines) // 2
    assert replay(lines[:half], kafka_broker.bootstrap, topic, rate=100) == half
    try:
        assert wait_for(lambda: len(sink_counts(out)) >= 10, 180, first), "the first job wrote nothing"
    finally:
        first.kill()  # mid-run: records read but not yet committed are read again
    before_restart = committed(kafka_broker.bootstrap, topic, group)
    assert before_restart <= half
    assert replay(lines[half:], kafka_broker.bootstrap, topic, rate=200) == len(lines) - half
    second = StreamJob(stream_corpus, out, home, source)
    try:
        assert wait_for(lambda: in_sinks(ids, out), SINK_BOUND, second), "records were lost across the SIGKILL"
        wait_committed(kafka_broker.bootstrap, topic, group, len(lines), second)
    finally:
        second.kill()
    seen = sink_counts(out)
    assert [i for i in ids if seen[i] != 1] == []


def test_broker_outage_the_job_waits_and_resumes(kafka_broker, stream_corpus, tmp_path):
    """The broker stops as soon as the first records are written, so commits are in flight.

    Before the fix, the commit stage waited for the broker inside its bundle; Prism split that slow
    bundle and ran the rest of a partition's offsets in a second bundle at once, one update of the
    partition's state was lost, and the committed offset stopped short for good.
    """
    topic, group = "cc-outage", "ccpipe-outage"
    lines = read_lines([str(stream_corpus / "input" / "*")])
    ids = produced_ids(stream_corpus, with_bad=False)
    half = len(lines) // 2
    first_ids = {json.loads(line)["record_id"] for line in lines[:half]}
    assert replay(lines[:half], kafka_broker.bootstrap, topic, rate=400) == half
    out = tmp_path / "out"
    job = StreamJob(stream_corpus, out, tmp_path / "home", f"kafka://{kafka_broker.bootstrap}/{topic}?group={group}")
    try:
        # The first half is on the topic before the job starts: its first write means it has read it all.
        assert wait_for(lambda: len(sink_counts(out)) >= 1, 180, job, poll=0.05), "the job wrote nothing"
        since = job.log_size()
        kafka_broker.stop()
        down = time.monotonic()
        assert wait_for(lambda: broker_gone_noticed(job, since), NOTICE_BOUND, job), "the job never saw the outage"
        # The rest of the first half is written during the outage, so its commits fall due then.
        assert wait_for(lambda: in_sinks(first_ids, out), SINK_BOUND, job), "records read before the outage lost"
        assert wait_for(lambda: time.monotonic() - down >= OUTAGE_SECONDS, OUTAGE_SECONDS + 1, job)
        assert job.alive(), "the job must survive the outage"
        kafka_broker.start()
        assert replay(lines[half:], kafka_broker.bootstrap, topic, rate=400) == len(lines) - half
        assert wait_for(lambda: in_sinks(ids, out), SINK_BOUND, job), "records were lost across the outage"
        wait_committed(kafka_broker.bootstrap, topic, group, len(lines), job)
    finally:
        job.kill()
    seen = sink_counts(out)
    assert [i for i in ids if seen[i] != 1] == []


def test_watched_folder(stream_corpus, tmp_path):
    """watch://DIR: files landing in a folder are processed as they arrive, each record once."""
    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()
    job = StreamJob(stream_corpus, out, tmp_path / "home", f"watch://{landing}")
    try:
        calls = (stream_corpus / "input" / "calls.jsonl").read_bytes()
        (landing / "calls.jsonl").write_bytes(calls)
        call_ids = [json.loads(line)["record_id"] for line in calls.splitlines()]
        assert wait_for(lambda: set(call_ids) <= set(sink_counts(out)), SINK_BOUND, job)
        chats = (stream_corpus / "input" / "chats.jsonl").read_bytes()
        (landing / "chats.jsonl").write_bytes(chats)
        chat_ids = [json.loads(line)["record_id"] for line in chats.splitlines()]
        assert wait_for(lambda: set(chat_ids) <= set(sink_counts(out)), SINK_BOUND, job)
    finally:
        job.kill()
    seen = sink_counts(out)
    assert [i for i in call_ids + chat_ids if seen[i] != 1] == []
