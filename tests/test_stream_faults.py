"""Fault injection on the streaming job, with exact outcomes: a broker restart and a SIGKILL mid-commit.

Each test produces a corpus while the fault happens, then requires every record exactly once in
the sinks and the consumer group's offsets exactly at the topic's end (which holds exactly the
produced records: the producer is idempotent). Waits are on conditions, with the bounds of
``test_streaming`` (SINK_BOUND, COMMIT_BOUND, NOTICE_BOUND), never on fixed sleeps.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from test_streaming import (
    COMMIT_BOUND,
    NOTICE_BOUND,
    PRISM,
    SINK_BOUND,
    StreamJob,
    broker_gone_noticed,
    committed,
    in_sinks,
    produced,
    produced_ids,
    sink_counts,
    wait_committed,
    wait_for,
)

from ccpipe.jsonl import read_lines
from fixtures.generate import generate
from fixtures.replay import replay

RATE = 10  # records per second: the stream lasts ~20 s, long enough to inject a fault in the middle


@pytest.fixture(scope="module")
def fault_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fault-corpus")
    generate(out, seed=33, n_tenants=8, n_calls=60, n_chats=60, n_telemetry=60, n_registrations=10)
    return out


@pytest.fixture(autouse=True)
def _need_prism():
    assert PRISM.exists(), "build Prism first: make prism (.ci/run does)"


class Producer(threading.Thread):
    """``replay`` in the background: produces while the test injects a fault."""

    def __init__(self, lines: list[bytes], bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.lines, self.bootstrap, self.topic = lines, bootstrap, topic
        self.acked: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.acked = replay(self.lines, self.bootstrap, self.topic, rate=RATE)
        except BaseException as err:  # noqa: BLE001 - reported by finish()
            self.error = err

    def finish(self) -> int:
        self.join(timeout=len(self.lines) / RATE + 180)
        assert not self.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error
        return self.acked


def _broker_running(broker) -> bool:
    return (broker.folder / "broker.pid").exists()


def test_broker_restart_mid_stream(kafka_broker, fault_corpus, tmp_path):
    """Stop and start the broker while records are produced, read, written and committed.

    With a single broker there is no failover: the partition leader and group coordinator after the
    restart ("the new leader") are the same broker coming back. Producer, reader and committer must
    all reconnect to it; the job must not die, lose or duplicate a record, or leave offsets behind.
    """
    topic, group = "cc-restart", "ccpipe-restart"
    lines = read_lines([str(fault_corpus / "input" / "*")])
    ids = produced_ids(fault_corpus, with_bad=False)
    out = tmp_path / "out"
    job = StreamJob(fault_corpus, out, tmp_path / "home", f"kafka://{kafka_broker.bootstrap}/{topic}?group={group}")
    producer = Producer(lines, kafka_broker.bootstrap, topic)
    producer.start()
    try:
        # Mid-stream: records written and offsets committed, more records still to come.
        assert wait_for(lambda: committed(kafka_broker.bootstrap, topic, group) > 0, SINK_BOUND, job, poll=0.2)
        assert producer.is_alive(), "the producer finished before the fault: raise the corpus size or lower RATE"
        since = job.log_size()
        kafka_broker.stop()
        assert wait_for(lambda: broker_gone_noticed(job, since), NOTICE_BOUND, job), "the job never saw the outage"
        kafka_broker.start()
        assert producer.finish() == len(lines)
        assert wait_for(lambda: in_sinks(ids, out), SINK_BOUND, job), "records were lost across the restart"
        assert wait_for(lambda: produced(kafka_broker.bootstrap, topic) >= 0, COMMIT_BOUND)
        assert produced(kafka_broker.bootstrap, topic) == len(lines)
        wait_committed(kafka_broker.bootstrap, topic, group, len(lines), job)
        assert job.alive()
    finally:
        job.kill()
        if not _broker_running(kafka_broker):
            kafka_broker.start()
    seen = sink_counts(out)
    assert [i for i in ids if seen[i] != 1] == []


def test_sigkill_during_commits(kafka_broker, fault_corpus, tmp_path):
    """SIGKILL the job's process group (job, Prism) right after an offset commit, records still arriving.

    The kill lands within ~0.2 s of the committed offset advancing while the producer is sending,
    i.e. while the committer is committing. A restarted job reads from the last commit: records
    read but not yet committed are read again and the sinks skip them.
    """
    topic, group = "cc-kill-commit", "ccpipe-kill-commit"
    lines = read_lines([str(fault_corpus / "input" / "*")])
    ids = produced_ids(fault_corpus, with_bad=False)
    out, home = tmp_path / "out", tmp_path / "home"
    source = f"kafka://{kafka_broker.bootstrap}/{topic}?group={group}"
    first = StreamJob(fault_corpus, out, home, source)
    producer = Producer(lines, kafka_broker.bootstrap, topic)
    producer.start()
    seen_commits: list[int] = []

    def committing() -> bool:
        """True once the committed offset has advanced twice in a row, short of the end."""
        now = committed(kafka_broker.bootstrap, topic, group)
        if now > 0 and (not seen_commits or now != seen_commits[-1]):
            seen_commits.append(now)
        return len(seen_commits) >= 2 and seen_commits[-1] < len(lines)

    second = None
    try:
        assert wait_for(committing, SINK_BOUND, first, poll=0.2), f"no commits in progress: {seen_commits}"
        first.kill()
        at_kill = committed(kafka_broker.bootstrap, topic, group)
        assert 0 < at_kill < len(lines), at_kill
        assert producer.is_alive(), "the producer finished before the kill: raise the corpus size or lower RATE"
        second = StreamJob(fault_corpus, out, home, source)
        assert producer.finish() == len(lines)
        assert wait_for(lambda: in_sinks(ids, out), SINK_BOUND, second), "records were lost across the SIGKILL"
        assert produced(kafka_broker.bootstrap, topic) == len(lines)
        wait_committed(kafka_broker.bootstrap, topic, group, len(lines), second)
    finally:
        first.kill()
        if second is not None:
            second.kill()
    seen = sink_counts(out)
    assert [i for i in ids if seen[i] != 1] == []


def test_committer_catches_up_after_an_outage_with_no_new_records(kafka_broker):
    """Offsets handed over while the broker is down are committed once it is back, with nothing new sent.

    The committer retries every ``COMMIT_RETRY_SECONDS`` on its own thread; no record, bundle or
    further offset is needed to trigger the commit.
    """
    from transforms.kafka_io import COMMIT_RETRY_SECONDS, KafkaConfig, _OffsetCommitter

    topic, group = "cc-committer", "ccpipe-committer"
    lines = [json.dumps({"n": i}).encode() for i in range(20)]
    assert replay(lines, kafka_broker.bootstrap, topic, rate=200, restamp_times=False) == len(lines)
    ends = _partition_ends(kafka_broker.bootstrap, topic)
    assert sum(ends.values()) == len(lines)
    config = KafkaConfig.from_url(f"kafka://{kafka_broker.bootstrap}/{topic}?group={group}")
    committer = _OffsetCommitter.acquire("test-committer", config)
    try:
        kafka_broker.stop()
        for partition, end in ends.items():
            committer.submit(partition, end)
        assert not committer.flush(2 * COMMIT_RETRY_SECONDS), "committed while the broker was down?"
        kafka_broker.start()
        assert wait_for(lambda: committed(kafka_broker.bootstrap, topic, group) == len(lines), COMMIT_BOUND, poll=0.5)
    finally:
        if not _broker_running(kafka_broker):
            kafka_broker.start()
        committer.release("test-committer")


def _partition_ends(bootstrap: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ccpipe-test-watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)}
    finally:
        consumer.close()
