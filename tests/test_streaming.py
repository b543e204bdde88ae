"""Streaming end to end on real parts: a Kafka broker, Prism, ``ccpipe stream`` as a process.

Every produced record must appear exactly once in the regional sinks (datasets or dead letters),
also across a SIGKILL of the job and a broker outage; consumer-group offsets end at the number of
records produced.
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


def committed(bootstrap: str, topic: str, group: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        return sum(max(tp.offset, 0) for tp in parts)
    finally:
        consumer.close()


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

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.log.close()


def wait_for(predicate, timeout: float, job: StreamJob | None = None) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if job is not None and not job.alive():
            raise AssertionError(f"the streaming job died; see {job.log.name}")
        time.sleep(1)
    return predicate()


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
        assert wait_for(lambda: set(ids) <= set(sink_counts(out)), 240, job), "not every record reached the sinks"
        assert wait_for(lambda: committed(kafka_broker.bootstrap, topic, group) == len(lines), 60, job)
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
        assert wait_for(lambda: set(ids) <= set(sink_counts(out)), 240, second), "records were lost across the SIGKILL"
        assert wait_for(lambda: committed(kafka_broker.bootstrap, topic, group) == len(lines), 60, second)
    finally:
        second.kill()
    seen = sink_counts(out)
    assert [i for i in ids if seen[i] != 1] == []


def test_broker_outage_the_job_waits_and_resumes(kafka_broker, stream_corpus, tmp_path):
    topic, group = "cc-outage", "ccpipe-outage"
    lines = read_lines([str(stream_corpus / "input" / "*")])
    ids = produced_ids(stream_corpus, with_bad=False)
    half = len(lines) // 2
    assert replay(lines[:half], kafka_broker.bootstrap, topic, rate=400) == half
    out = tmp_path / "out"
    job = StreamJob(stream_corpus, out, tmp_path / "home", f"kafka://{kafka_broker.bootstrap}/{topic}?group={group}")
    try:
        assert wait_for(lambda: len(sink_counts(out)) >= half // 2, 180, job)
        kafka_broker.stop()
        time.sleep(8)
        assert job.process.poll() is None, "the job must survive the outage"
        kafka_broker.start()
        assert replay(lines[half:], kafka_broker.bootstrap, topic, rate=400) == len(lines) - half
        assert wait_for(lambda: set(ids) <= set(sink_counts(out)), 240, job), "records were lost across the outage"
        assert wait_for(lambda: committed(kafka_broker.bootstrap, topic, group) == len(lines), 60, job)
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
        assert wait_for(lambda: set(call_ids) <= set(sink_counts(out)), 180, job)
        chats = (stream_corpus / "input" / "chats.jsonl").read_bytes()
        (landing / "chats.jsonl").write_bytes(chats)
        chat_ids = [json.loads(line)["record_id"] for line in chats.splitlines()]
        assert wait_for(lambda: set(chat_ids) <= set(sink_counts(out)), 180, job)
    finally:
        job.kill()
    seen = sink_counts(out)
    assert [i for i in call_ids + chat_ids if seen[i] != 1] == []
