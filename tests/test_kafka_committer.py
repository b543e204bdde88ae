"""The offset committer and the commit stage recover from a Kafka client stuck on a stale coordinator.

librdkafka clients that use ``assign()`` can stay pinned to a stale group coordinator after a broker
restart and fail every commit or offset fetch with NOT_COORDINATOR until they are re-created
(librdkafka issues #2630, #2791). The fake client below does exactly that; every later client works.
This is the one failure a real broker cannot be made to produce on demand, hence the stand-in.
"""

from __future__ import annotations

import pytest

import transforms.kafka_io as kafka_io
from transforms.kafka_io import KafkaConfig, _CommitContiguousFn, _OffsetCommitter


class _Clients:
    """Hands out fake consumers; the first ``stuck`` of them fail every call with NOT_COORDINATOR."""

    def __init__(self, stuck: int = 1) -> None:
        self.stuck = stuck
        self.made = 0
        self.commits: list[dict[int, int]] = []

    def __call__(self, config, errors=None):
        self.made += 1
        return _FakeConsumer(self, stuck=self.made <= self.stuck)


class _FakeConsumer:
    def __init__(self, clients: _Clients, stuck: bool) -> None:
        self._clients, self._stuck = clients, stuck

    def _fail_if_stuck(self) -> None:
        from confluent_kafka import KafkaError, KafkaException

        if self._stuck:
            raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))

    def commit(self, offsets, asynchronous):
        self._fail_if_stuck()
        self._clients.commits.append({tp.partition: tp.offset for tp in offsets})

    def committed(self, partitions, timeout):
        from confluent_kafka import TopicPartition

        self._fail_if_stuck()
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in partitions]

    def get_watermark_offsets(self, tp, timeout):
        self._fail_if_stuck()
        return 0, 10

    def poll(self, timeout):
        return None

    def close(self):
        return None


@pytest.fixture()
def clients(monkeypatch):
    made = _Clients()
    monkeypatch.setattr(kafka_io, "_consumer", made)
    monkeypatch.setattr(kafka_io, "COMMIT_RETRY_SECONDS", 0.01)
    return made


CONFIG = KafkaConfig.from_url("kafka://127.0.0.1:1/cc-stuck?group=ccpipe-stuck", environ={})


def test_committer_replaces_a_client_stuck_on_not_coordinator(clients):
    """Before the fix the committer retried on the same client for good and never committed."""
    committer = _OffsetCommitter.acquire("test-stuck", CONFIG)
    try:
        committer.submit(0, 5)
        assert committer.flush(30), "the committer kept retrying on the stuck client"
    finally:
        committer.release("test-stuck")
    assert clients.commits == [{0: 5}]
    assert committer.clients_replaced == 1
    assert clients.made == 2


def test_commit_stage_replaces_a_client_stuck_reading_committed_offsets(clients, monkeypatch):
    """The commit stage reads a partition's committed offset once; a stuck client must not block it."""
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        assert len(waits) < 20, "the commit stage kept retrying on the stuck client"

    monkeypatch.setattr(kafka_io.time, "sleep", sleep)
    clients.stuck = 1
    fn = _CommitContiguousFn(CONFIG)
    fn._errors = kafka_io.ClientErrors(CONFIG)
    fn._consumer = kafka_io._consumer(CONFIG, fn._errors)
    assert fn._low(0) == 7
    assert clients.made == 2


def test_committer_survives_a_client_that_cannot_be_created(clients, monkeypatch):
    """Before: an exception creating the replacement killed the committer thread; commits stopped silently."""
    calls = {"n": 0}
    make = kafka_io._consumer

    def flaky(config, errors=None):
        calls["n"] += 1
        if calls["n"] == 2:  # the first replacement attempt: e.g. the CA file is briefly missing
            raise OSError("ca.pem: No such file or directory")
        return make(config, errors)

    monkeypatch.setattr(kafka_io, "_consumer", flaky)
    clients.stuck = 1
    committer = _OffsetCommitter.acquire("test-flaky", CONFIG)
    try:
        committer.submit(1, 9)
        assert committer.flush(30), "the committer thread died on the failed replacement"
    finally:
        committer.release("test-flaky")
    assert clients.commits == [{1: 9}]
