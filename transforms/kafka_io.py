"""Kafka in and out of the streaming pipeline: read a topic, commit offsets once records are safe.

``ReadFromKafkaTopic`` is a Beam ``UnboundedSource`` (``apache_beam.io.unbounded_source``) over a
confluent-kafka consumer that is *assigned* the topic's partitions (no group membership) and starts
at the consumer group's committed offsets. It never commits itself: ``CommitKafkaOffsets`` commits
an offset only when every record before it has been written to a sink or dead-lettered, so a job
killed at any moment loses nothing; records after the last commit are read again on restart and
the sinks drop them by record id (at-least-once delivery, exactly-once in the sinks).

Each record's coordinates travel in its ``source``: ``kafka:<topic>:<partition>:<offset>``.
"""

import logging
import time
import urllib.parse
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.io.unbounded_source import CheckpointMark, UnboundedReader, UnboundedSource
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Duration, Timestamp

from ccpipe.errors import ConfigError
from ccpipe.types import RawInput, WriteResult

_LOG = logging.getLogger(__name__)
SOURCE_PREFIX = "kafka:"


@dataclass(frozen=True)
class KafkaConfig:
    """Where to read: ``kafka://HOST:PORT/TOPIC?group=NAME``."""

    bootstrap: str
    topic: str
    group: str
    poll_seconds: float = 0.05
    watermark_lag_seconds: float = 1.0
    # A read bundle hands its records downstream when it ends: short bundles keep latency low.
    bundle_seconds: float = 0.5
    idle_poll_seconds: float = 0.2

    @classmethod
    def from_url(cls, url: str) -> "KafkaConfig":
        """Parse a source URL; ConfigError naming what is wrong."""
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "kafka" or not parsed.netloc or not parsed.path.strip("/"):
            raise ConfigError(f"source {url!r} must look like kafka://HOST:PORT/TOPIC?group=NAME")
        group = urllib.parse.parse_qs(parsed.query).get("group", ["ccpipe"])[0]
        return cls(bootstrap=parsed.netloc, topic=parsed.path.strip("/"), group=group)


def source_of(topic: str, partition: int, offset: int) -> str:
    """The ``source`` string of a Kafka record."""
    return f"{SOURCE_PREFIX}{topic}:{partition}:{offset}"


def parse_source(source: str) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of a Kafka source string, else None."""
    if not source.startswith(SOURCE_PREFIX):
        return None
    topic, partition, offset = source[len(SOURCE_PREFIX) :].rsplit(":", 2)
    return topic, int(partition), int(offset)


def _consumer(config: KafkaConfig):
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": config.bootstrap,
            "group.id": config.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "reconnect.backoff.max.ms": 2000,
            "socket.connection.setup.timeout.ms": 5000,
        }
    )


class _OffsetsMark(CheckpointMark):
    """Next offset per partition. Finalizing commits nothing: offsets are committed after the sinks."""

    def __init__(self, positions: dict[int, int]) -> None:
        self.positions = dict(positions)

    def finalize_checkpoint(self) -> None:
        return None


class _KafkaReader(UnboundedReader):
    def __init__(self, config: KafkaConfig, mark: _OffsetsMark | None) -> None:
        self._config = config
        self._mark = mark
        self._consumer = None
        self._positions: dict[int, int] = dict(mark.positions) if mark else {}
        self._current = None
        self._read = Metrics.counter("ccpipe.kafka", "records_read")

    def _assign(self) -> bool:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        consumer = self._consumer
        try:
            metadata = consumer.list_topics(self._config.topic, timeout=2)
        except Exception as err:  # noqa: BLE001 - broker unreachable: try again on the next advance
            _LOG.warning("Kafka metadata unavailable (%s); will retry", type(err).__name__)
            return False
        topic = metadata.topics.get(self._config.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return False
        partitions = sorted(topic.partitions)
        missing = [p for p in partitions if p not in self._positions]
        if missing:
            try:
                committed = consumer.committed([TopicPartition(self._config.topic, p) for p in missing], timeout=10)
            except Exception as err:  # noqa: BLE001 - e.g. the group coordinator is still loading: retry later
                _LOG.warning("Kafka committed offsets unavailable (%s); will retry", err)
                return False
            for tp in committed:
                self._positions[tp.partition] = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.assign([TopicPartition(self._config.topic, p, self._positions[p]) for p in partitions])
        return True

    def start(self) -> bool:
        self._consumer = _consumer(self._config)
        self._assigned = self._assign()
        return self.advance()

    def advance(self) -> bool:
        if not self._assigned:
            self._assigned = self._assign()
            if not self._assigned:
                return False
        message = self._consumer.poll(self._config.poll_seconds)
        if message is None:
            return False
        if message.error() is not None:
            _LOG.warning("Kafka: %s; will retry", message.error().name())
            return False
        self._positions[message.partition()] = message.offset() + 1
        self._current = message
        self._read.inc()
        return True

    def get_current(self) -> RawInput:
        m = self._current
        return RawInput(source=source_of(m.topic(), m.partition(), m.offset()), data=m.value() or b"")

    def get_current_timestamp(self) -> Timestamp:
        # Processing in the pipeline is by arrival time; event time is used where it matters (usage).
        return Timestamp.now()

    def get_watermark(self) -> Timestamp:
        return Timestamp.now() - Duration(seconds=self._config.watermark_lag_seconds)

    def get_checkpoint_mark(self) -> _OffsetsMark:
        return _OffsetsMark(self._positions)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class _KafkaSource(UnboundedSource):
    def __init__(self, config: KafkaConfig) -> None:
        self._config = config

    def split(self, desired_num_splits, options=None):
        return [self]

    def create_reader(self, options, checkpoint_mark):
        return _KafkaReader(self._config, checkpoint_mark)

    def get_checkpoint_mark_coder(self):
        return PickleCoder()


class ReadFromKafkaTopic(beam.PTransform[beam.pvalue.PBegin, PCollection[RawInput]]):
    """Every message of a topic as a RawInput, from the group's committed offsets on."""

    def __init__(self, config: KafkaConfig) -> None:
        """``config``: broker, topic and consumer group."""
        super().__init__()
        self._config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> PCollection[RawInput]:
        """The unbounded stream of messages."""
        from apache_beam.io.unbounded_source import ReadFromUnboundedSource

        return pbegin | "Read" >> ReadFromUnboundedSource(
            _KafkaSource(self._config),
            poll_interval=self._config.idle_poll_seconds,
            max_read_time_seconds=self._config.bundle_seconds,
        )


def _retrying(call, what: str, seconds: float = 300.0):
    """Call until it succeeds: a broker outage makes the committer wait, never skip a commit."""
    deadline = time.monotonic() + seconds
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - KafkaException of any transient kind
            if time.monotonic() > deadline:
                raise
            _LOG.warning("Kafka: cannot %s (%s); retrying in %.1f s", what, err, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class _CommitContiguousFn(beam.DoFn):
    """Per partition: commit the offset below which every record has been handled."""

    NEXT = ReadModifyWriteStateSpec("next", PickleCoder())
    DONE = BagStateSpec("done", VarIntCoder())

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._consumer = None
        self._committed = Metrics.counter("ccpipe.kafka", "offsets_committed")

    def setup(self):
        self._consumer = _consumer(self._config)

    def teardown(self):
        if self._consumer is not None:
            self._consumer.close()

    def _low(self, partition: int) -> int:
        from confluent_kafka import TopicPartition

        tp = TopicPartition(self._config.topic, partition)
        [got] = _retrying(lambda: self._consumer.committed([tp], timeout=10), "read committed offsets")
        if got.offset >= 0:
            return got.offset
        low, _high = _retrying(lambda: self._consumer.get_watermark_offsets(tp, timeout=10), "read low offsets")
        return low

    def process(self, element, next_state=beam.DoFn.StateParam(NEXT), done_state=beam.DoFn.StateParam(DONE)):  # noqa: B008
        from confluent_kafka import TopicPartition

        partition, offsets = element[0], element[1]
        nxt = next_state.read()
        if nxt is None:
            nxt = self._low(partition)
        done = set(done_state.read()) | {o for o in offsets if o >= nxt}
        start = nxt
        while nxt in done:
            done.discard(nxt)
            nxt += 1
        done_state.clear()
        for o in sorted(done):
            done_state.add(o)
        next_state.write(nxt)
        if nxt > start:
            offsets = [TopicPartition(self._config.topic, partition, nxt)]
            _retrying(lambda: self._consumer.commit(offsets=offsets, asynchronous=False), "commit offsets")
            self._committed.inc(nxt - start)
            yield partition, nxt


def _kafka_offsets(result_or_source) -> list[tuple[int, list[int]]]:
    sources = result_or_source.sources if isinstance(result_or_source, WriteResult) else (result_or_source,)
    per: dict[int, list[int]] = {}
    for source in sources:
        parsed = parse_source(source)
        if parsed is not None:
            per.setdefault(parsed[1], []).append(parsed[2])
    return list(per.items())


class CommitKafkaOffsets(beam.PTransform[PCollection, PCollection]):
    """Commit consumer-group offsets for records that are written or dead-lettered (or blank)."""

    def __init__(self, config: KafkaConfig) -> None:
        """``config``: the same broker, topic and group as the reader."""
        super().__init__()
        self._config = config

    def expand(self, handled: PCollection) -> PCollection:
        """``handled``: WriteResults and the sources of skipped blank messages."""
        return (
            handled
            | "OffsetsPerPartition" >> beam.FlatMap(_kafka_offsets)
            | "GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows())
            | "CommitContiguous" >> beam.ParDo(_CommitContiguousFn(self._config))
        )


def wait_for_broker(bootstrap: str, timeout: float) -> bool:
    """True once the broker answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    deadline = time.time() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap})
    while time.time() < deadline:
        try:
            admin.list_topics(timeout=2)
            return True
        except Exception:  # noqa: BLE001
            time.sleep(0.5)
    return False
