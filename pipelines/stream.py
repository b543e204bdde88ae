"""The streaming pipeline: the batch pipeline's stages on an unbounded source, on Prism (or Flink).

    ccpipe stream --source kafka://127.0.0.1:19092/contact-center?group=ccpipe --tenants T --output ROOT
    ccpipe stream --source watch:///landing/folder --tenants T --output ROOT

Stages::

    ReadFromKafkaTopic | WatchFolder -> 2 s windows (arrival time) -> ProcessRecords (shared with batch)
      -> RouteToRegion -> WriteRegionalParquet (files per window; rows already in a partition skipped)
      -> CommitKafkaOffsets (only offsets below which every record is written or dead-lettered)
    pseudonymized records -> AggregateUsageByEventTime (daily event-time windows, allowed lateness)

Prism comes from ``.cache/bin/prism`` (``make prism`` builds it from the Beam Go module) or
``--prism_location``; it is never downloaded at run time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.pipeline_options import PipelineOptions

from ccpipe.errors import ConfigError
from ccpipe.types import RawInput
from pipelines.stages import ProcessingConfig, ProcessRecords
from transforms.handoff import HandOffFlows
from transforms.kafka_io import CommitKafkaOffsets, KafkaConfig, ReadFromKafkaTopic, redact_url
from transforms.read import is_blank
from transforms.route import RouteToRegion
from transforms.usage import AggregateUsageByEventTime
from transforms.write import WriteRegionalParquet

_LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRISM = ROOT / ".cache" / "bin" / "prism"
# Prism experiment: never split a running bundle (see stream_options).
PRISM_NO_SPLIT = "prism_disable_sdf_split"


@dataclass(frozen=True)
class StreamConfig:
    """Everything the streaming pipeline needs, validated."""

    source: str
    processing: ProcessingConfig
    window_seconds: float = 2.0
    usage_lateness_seconds: int = 86400
    watch_interval_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.source.startswith(("kafka://", "watch://")):
            raise ConfigError(f"source {redact_url(self.source)!r} must be kafka://HOST:PORT/TOPIC?group=G or watch://DIR")
        if self.source.startswith("kafka://"):
            KafkaConfig.from_url(self.source)  # broker and security settings validated now (errors hide secrets)
        if not self.processing.sinks.streaming:
            raise ConfigError("sinks.streaming must be True for the streaming pipeline")
        if not 0.5 <= self.window_seconds <= 3600:
            raise ConfigError(f"window_seconds {self.window_seconds!r} must be between 0.5 and 3600")


class _WatchFolder(beam.PTransform):
    """Every line of every file that lands in a folder (``fileio.MatchContinuously``)."""

    def __init__(self, folder: str, interval: float) -> None:
        super().__init__()
        self._pattern = os.path.join(folder, "*.jsonl*")
        self._interval = interval

    def expand(self, pbegin):
        return (
            pbegin
            | "Match" >> fileio.MatchContinuously(self._pattern, interval=self._interval)
            | "Open" >> fileio.ReadMatches()
            | "Lines" >> beam.FlatMap(_lines_of)
        )


def _lines_of(readable) -> list[RawInput]:
    import gzip

    data = readable.read()
    if readable.metadata.path.endswith(".gz"):
        data = gzip.decompress(data)
    return [RawInput(f"{readable.metadata.path}#{i}", line) for i, line in enumerate(data.split(b"\n"), 1) if line]


def build(pipeline: beam.Pipeline, config: StreamConfig) -> None:
    """Add the streaming stages to ``pipeline``."""
    if config.source.startswith("kafka://"):
        kafka = KafkaConfig.from_url(config.source)
        raw = pipeline | "ReadFromKafkaTopic" >> ReadFromKafkaTopic(kafka)
    else:
        kafka = None
        raw = pipeline | "WatchFolder" >> _WatchFolder(
            config.source.removeprefix("watch://"), config.watch_interval_seconds
        )
    windowed = raw | "ArrivalWindows" >> beam.WindowInto(beam.window.FixedWindows(config.window_seconds))
    split = windowed | "SplitBlank" >> beam.Partition(lambda r, _n: 1 if is_blank(r) else 0, 2)
    processing = config.processing
    processed = split[0] | "ProcessRecords" >> ProcessRecords(processing)
    usage = processed.pseudonymized | "AggregateUsage" >> AggregateUsageByEventTime(config.usage_lateness_seconds)
    results = (
        (processed.rows, processed.dead_rows)
        | "FlattenRows" >> beam.Flatten()
        | "RouteToRegion" >> RouteToRegion(processing.sinks)
        | "WriteRegionalParquet" >> WriteRegionalParquet(processing.sinks)
    )
    _ = usage | "RouteUsage" >> RouteToRegion(processing.sinks) | "WriteUsage" >> WriteRegionalParquet(processing.sinks)
    if processing.flows.enabled:
        # Permitted flows, per window like the regional rows; opt-ins re-read from the control plane
        # (an opt-out stops new hand-offs within OPT_IN_TTL_SECONDS). Offsets are committed on the
        # regional writes: a job killed after a commit but before that window's hand-off write
        # leaves those hand-offs unwritten (the records themselves are written).
        _ = processed.rows | "HandOffFlows" >> HandOffFlows(processing.flows, processing.tenants, streaming=True,
                                                              control_plane=processing.control_plane)
    if kafka is not None:
        blank_sources = split[1] | "BlankSources" >> beam.Map(lambda raw: raw.source)
        _ = (results, blank_sources) | "Handled" >> beam.Flatten() | "CommitKafkaOffsets" >> CommitKafkaOffsets(kafka)


def stream_options(runner: str, prism_location: str | None, extra_flags: list[str] | None = None) -> PipelineOptions:
    """Streaming options for an explicit runner; Prism from a local binary, never downloaded."""
    flags = [*(extra_flags or []), f"--runner={runner}", "--streaming"]
    if runner == "PrismRunner":
        location = prism_location or os.environ.get("CCPIPE_PRISM") or str(DEFAULT_PRISM)
        if not Path(location).exists():
            raise ConfigError(f"Prism binary {location!r} not found: run 'make prism' (builds it from the Go module)")
        flags += [f"--prism_location={location}", "--environment_type=LOOPBACK"]
        # Prism (2.77) splits a bundle that makes no progress and hands the rest of its elements to a
        # new bundle while the first still runs. For a stateful stage that is two bundles of one key at
        # once: CommitKafkaOffsets' per-partition state (offsets handled) lost an update and the
        # committed offset stopped short for good (seen when a broker outage made a bundle wait).
        flags += [f"--experiments={PRISM_NO_SPLIT}"]
    return PipelineOptions(flags)


def run(config: StreamConfig, options: PipelineOptions) -> None:
    """Prepare keys, then run until the job is cancelled or the process is stopped."""
    from pipelines.batch import prepare_keys

    processing = config.processing
    prepare_keys(processing.tenants, processing.sinks, processing.keystore)
    _LOG.info("streaming from %s to %s", config.source.split("?")[0], processing.sinks.default_root)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config)
    pipeline.run().wait_until_finish()
