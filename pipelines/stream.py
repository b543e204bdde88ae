"""The streaming pipeline: the batch pipeline's stages on an unbounded source, on Prism (or Flink).

    ccpipe stream --source kafka://127.0.0.1:19092/contact-center?group=ccpipe --tenants T --output ROOT
    ccpipe stream --source watch:///landing/folder --tenants T --output ROOT

Stages::

    ReadFromKafkaTopic | WatchFolder -> 2 s windows (arrival time) -> ProcessRecords (shared with batch)
      -> RouteToRegion -> WriteRegionalParquet (files per window; rows already in a partition skipped)
      -> CommitKafkaOffsets (only offsets below which every record is written or dead-lettered)
    pseudonymized records -> AggregateUsageByEventTime (daily event-time windows, allowed lateness)

Prism comes from ``.cache/bin/prism`` (``make prism`` builds it from the Beam Go module) or
``--prism_location``; it is never downloaded at run time. ccpipe starts it itself (``PrismServer``):
in a session of its own, so a terminal's Ctrl-C or a SIGTERM sent to ccpipe's process group reaches
ccpipe only and ccpipe stops Prism after draining; killed with ccpipe when ccpipe dies (Linux
``PR_SET_PDEATHSIG``), so no Prism outlives the job, not even after a SIGKILL.

Ending a stream (``run``): the first SIGINT or SIGTERM drains. The job stops admitting records
(``AdmitUntilStop``: records the source delivers from then on are counted as left unread and not
processed; Kafka commits no offset past them, so the next run reads them), the records already
admitted are written or dead-lettered and, for Kafka, their offsets committed, within
``drain_seconds``; then the job is cancelled, Prism stopped, and a summary printed and written to
``<output>/_manifests/stream-<start time>-<id>.json``. A second signal stops at once.

Exit codes: 0 when a stop signal ended the stream and every admitted record was handled (a stop is
how a stream normally ends, and supervisors such as systemd or Kubernetes take 0 as a clean stop,
where 130/143 would be reported as failures); 3 when ``drain_seconds`` passed with records still in
flight (nothing is lost: they are read again by the next run); 130 (SIGINT) or 143 (SIGTERM) when a
second signal cut the drain short; 1 when the job failed on its own. Configuration errors (a
watched folder that does not exist, a Kafka broker that does not answer) exit 2 before the job starts.

Counts (the periodic status line every ``status_seconds`` on stderr, the summary) come from the
Beam metrics of the running job (Prism's job service, ``GetJobMetrics``, committed values), from
counters of namespace ``ccpipe.stream``: ``records_read`` (records admitted), ``blank_lines``,
``records_left_unread`` (delivered after the stop), ``records_handled`` (record sources the
regional writer reported written, dead-lettered or already present), ``written/<region>/<dataset>``
and ``dead_lettered/<region>/<reason>``. Never a payload value.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from ccpipe.errors import ConfigError
from ccpipe.manifest import PRIMARY
from ccpipe.types import RawInput, WriteResult
from pipelines.stages import ProcessingConfig, ProcessRecords
from transforms.handoff import HandOffFlows
from transforms.kafka_io import (
    CommitKafkaOffsets,
    KafkaConfig,
    ReadFromKafkaTopic,
    flush_offset_commits,
    redact_url,
)
from transforms.read import is_blank
from transforms.route import RouteToRegion
from transforms.usage import AggregateUsageByEventTime
from transforms.write import WriteRegionalParquet

_LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRISM = ROOT / ".cache" / "bin" / "prism"
# Prism experiment: never split a running bundle (see stream_options).
PRISM_NO_SPLIT = "prism_disable_sdf_split"
# Metrics namespace of the stream's own counts (status line and summary).
STREAM_NS = "ccpipe.stream"
# Exit codes of a stream (see the module docstring).
EXIT_STOPPED, EXIT_FAILED, EXIT_IN_FLIGHT = 0, 1, 3
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
# How often the drain looks at the job's counts, and how long it waits for the job and Prism to stop.
_DRAIN_POLL_SECONDS = 0.5
_STOP_BOUND_SECONDS = 15.0
# Beam's portable runner gives the job's state and message streams a deadline of --job_server_timeout
# (default 300 s): a stream outlives it, so unless told otherwise ccpipe sets one of ten years.
STREAM_JOB_SERVER_TIMEOUT = 10 * 365 * 86400


@dataclass(frozen=True)
class StreamConfig:
    """Everything the streaming pipeline needs, validated."""

    source: str
    processing: ProcessingConfig
    window_seconds: float = 2.0
    usage_lateness_seconds: int = 86400
    watch_interval_seconds: float = 2.0
    status_seconds: float = 30.0
    drain_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.source.startswith(("kafka://", "watch://")):
            raise ConfigError(f"source {redact_url(self.source)!r} must be kafka://HOST:PORT/TOPIC?group=G or watch://DIR")
        if self.source.startswith("kafka://"):
            KafkaConfig.from_url(self.source)  # broker and security settings validated now (errors hide secrets)
        if not self.processing.sinks.streaming:
            raise ConfigError("sinks.streaming must be True for the streaming pipeline")
        if not 0.5 <= self.window_seconds <= 3600:
            raise ConfigError(f"window_seconds {self.window_seconds!r} must be between 0.5 and 3600")
        if not (self.status_seconds == 0 or 1 <= self.status_seconds <= 86400):
            raise ConfigError(f"status_seconds {self.status_seconds!r} must be 0 (no status line) or 1 to 86400")
        if not 0 <= self.drain_seconds <= 3600:
            raise ConfigError(f"drain_seconds {self.drain_seconds!r} must be between 0 and 3600")

    @property
    def watch_folder(self) -> str | None:
        """The folder of a ``watch://`` source, else None."""
        return self.source.removeprefix("watch://") if self.source.startswith("watch://") else None


def check_source(config: StreamConfig) -> None:
    """ConfigError now, before any job starts, when a watched local folder does not exist.

    (A Kafka source is checked when the pipeline is built: ``ReadFromKafkaTopic`` waits
    ``connect_timeout`` for the broker to answer.)
    """
    folder = config.watch_folder
    if folder is not None and "://" not in folder and not os.path.isdir(folder):
        raise ConfigError(
            f"source {config.source!r}: folder {folder!r} does not exist or is not a folder; "
            "watch:// needs an existing folder"
        )


# Set by the first stop signal. LOOPBACK workers run in this process, so AdmitUntilStop sees it.
_STOPPING = threading.Event()


class _Admitted:
    """Records this process admitted (LOOPBACK workers): the drain waits until the job's metrics show them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1


_ADMITTED = _Admitted()


class _AdmitUntilStopFn(beam.DoFn):
    """Pass records until the stream is stopping; then count them as left unread (the next run reads them)."""

    def __init__(self) -> None:
        self._read = Metrics.counter(STREAM_NS, "records_read")
        self._blank = Metrics.counter(STREAM_NS, "blank_lines")
        self._left = Metrics.counter(STREAM_NS, "records_left_unread")

    def process(self, raw: RawInput):
        if _STOPPING.is_set():
            self._left.inc()  # never processed, so never committed: Kafka delivers it again next run
            return
        _ADMITTED.add()
        (self._read if raw.data.strip() else self._blank).inc()
        yield raw


class AdmitUntilStop(beam.PTransform):
    """Records from the source, until a stop signal asks the stream to drain (see ``run``)."""

    def expand(self, raw):
        """The records admitted before the stop."""
        return raw | "Admit" >> beam.ParDo(_AdmitUntilStopFn())


def _count_written(result: WriteResult) -> None:
    Metrics.counter(STREAM_NS, "records_handled").inc(len(result.sources))
    if result.dataset in PRIMARY and result.records:
        Metrics.counter(STREAM_NS, f"written/{result.region}/{result.dataset}").inc(result.records)
    for reason, n in result.reasons:
        Metrics.counter(STREAM_NS, f"dead_lettered/{result.region}/{reason}").inc(n)


class CountWritten(beam.PTransform):
    """Count what the regional writer reports: records written and dead-lettered, per region."""

    def expand(self, results):
        """Nothing downstream: the counts are Beam metrics."""
        return results | "Count" >> beam.Map(_count_written)


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
        raw = pipeline | "WatchFolder" >> _WatchFolder(config.watch_folder, config.watch_interval_seconds)
    raw = raw | "AdmitUntilStop" >> AdmitUntilStop()
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
    _ = results | "CountWritten" >> CountWritten()
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
    if not any(f.replace("-", "_").startswith("__job_server_timeout") for f in flags):
        flags.append(f"--job_server_timeout={STREAM_JOB_SERVER_TIMEOUT}")
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


@dataclass(frozen=True)
class StreamCounts:
    """What the stream read, wrote and dead-lettered since it started, from the job's Beam metrics."""

    read: int = 0
    blank: int = 0
    left_unread: int = 0
    handled: int = 0
    offsets_committed: int = 0
    written: tuple[tuple[str, str, int], ...] = ()  # (region, dataset, records)
    dead_lettered: tuple[tuple[str, str, int], ...] = ()  # (region, reason, records)

    @classmethod
    def from_counters(cls, counters: dict[tuple[str, str], int]) -> StreamCounts:
        """From ``(namespace, name) -> value`` (namespaces ``ccpipe.stream`` and ``ccpipe.kafka``)."""
        written, dead = [], []
        for (namespace, name), value in counters.items():
            kind, _, rest = name.partition("/")
            region, _, what = rest.partition("/")
            if namespace == STREAM_NS and what and kind == "written":
                written.append((region, what, value))
            elif namespace == STREAM_NS and what and kind == "dead_lettered":
                dead.append((region, what, value))
        return cls(
            read=counters.get((STREAM_NS, "records_read"), 0),
            blank=counters.get((STREAM_NS, "blank_lines"), 0),
            left_unread=counters.get((STREAM_NS, "records_left_unread"), 0),
            handled=counters.get((STREAM_NS, "records_handled"), 0),
            offsets_committed=counters.get(("ccpipe.kafka", "offsets_committed"), 0),
            written=tuple(sorted(written)),
            dead_lettered=tuple(sorted(dead)),
        )

    @property
    def records_written(self) -> int:
        """Records newly written to the primary datasets."""
        return sum(n for *_, n in self.written)

    @property
    def records_dead_lettered(self) -> int:
        """Records dead-lettered."""
        return sum(n for *_, n in self.dead_lettered)

    @property
    def in_flight(self) -> int:
        """Records admitted but not yet written or dead-lettered."""
        return max(0, self.read - self.handled)

    @property
    def already_written(self) -> int:
        """Records the sinks held already (read again after a restart): handled, but written before."""
        return max(0, self.handled - self.records_written - self.records_dead_lettered)

    def line(self) -> str:
        """One console line of counts (never a value of a record)."""
        text = (f"read {self.read}, written {self.records_written}, dead-lettered {self.records_dead_lettered}, "
                f"in flight {self.in_flight}")
        if self.already_written:
            text += f", already in the sinks {self.already_written}"
        parts = []
        if self.written:
            parts.append("written " + ", ".join(f"{r}/{d} {n}" for r, d, n in self.written))
        if self.dead_lettered:
            parts.append("dead-lettered " + ", ".join(f"{r}/{why} {n}" for r, why, n in self.dead_lettered))
        return text + (f" [{'; '.join(parts)}]" if parts else "")

    def as_dict(self, kafka: bool) -> dict:
        """The counts of the summary file (keys as in the batch manifest where they mean the same)."""
        by_region: dict[str, dict[str, int]] = {}
        for region, dataset, n in self.written:
            by_region.setdefault(region, {})[dataset] = n
        dead_by: dict[str, dict[str, int]] = {}
        reasons: dict[str, int] = {}
        for region, reason, n in self.dead_lettered:
            dead_by.setdefault(region, {})[reason] = n
            reasons[reason] = reasons.get(reason, 0) + n
        out = {
            "records_read": self.read,
            "blank_lines_skipped": self.blank,
            "records_written": self.records_written,
            "records_dead_lettered": self.records_dead_lettered,
            "records_already_written": self.already_written,
            "records_in_flight": self.in_flight,
            "records_left_unread": self.left_unread,
            "reconciled": self.read == self.records_written + self.records_dead_lettered + self.already_written,
            "records_written_by_region": by_region,
            "dead_letters_by_reason": dict(sorted(reasons.items())),
            "dead_letters_by_region": {r: sum(v.values()) for r, v in dead_by.items()},
            "dead_letters_by_region_reason": dead_by,
        }
        if kafka:
            out["kafka_offsets_committed"] = self.offsets_committed
        return out


def job_counts(result) -> StreamCounts | None:
    """The stream's counts from the running job's metrics; None when the runner does not return them."""
    from pipelines.batch import metric_value

    if hasattr(result, "_metrics"):
        result._metrics = None  # PortableRunner's PipelineResult caches its first answer: ask again
    try:
        found = result.metrics().query()["counters"]
    except Exception as err:  # noqa: BLE001 - a runner without metrics, or a job service that is gone
        _LOG.debug("job metrics unavailable (%s)", type(err).__name__)
        return None
    counters: dict[tuple[str, str], int] = {}
    for metric in found:
        name = metric.key.metric
        if name.namespace in (STREAM_NS, "ccpipe.kafka"):
            key = (name.namespace, name.name)
            counters[key] = counters.get(key, 0) + (metric_value(metric) or 0)
    return StreamCounts.from_counters(counters)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class PrismServer:
    """Prism started by ccpipe for one stream, stopped (and reaped) when the stream ends.

    Its own session: a terminal's Ctrl-C or a SIGTERM to ccpipe's process group reaches ccpipe only,
    which drains the job before it stops Prism. On Linux Prism gets SIGKILL when ccpipe dies however
    it dies (``PR_SET_PDEATHSIG``), so it never outlives the job as an orphan.
    """

    def __init__(self, binary: str, startup_seconds: float = 60.0) -> None:
        """``binary``: the Prism executable; ``startup_seconds``: how long it may take to listen."""
        self._binary = binary
        self._startup_seconds = startup_seconds
        self._process: subprocess.Popen | None = None
        self._quiet = False
        self._output: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """Prism's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> str:
        """Start Prism; its job endpoint (``localhost:PORT``) once it listens."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._process = subprocess.Popen(
            [self._binary, "--job_port", str(port), "--log_level", "warn", "--log_kind", "text",
             "--serve_http=false"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        self._output = threading.Thread(target=self._forward, name="ccpipe-prism-log", daemon=True)
        self._output.start()
        deadline = time.monotonic() + self._startup_seconds
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"Prism {self._binary!r} exited with code {self._process.returncode} at start")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return f"localhost:{port}"
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"Prism did not listen on port {port} within {self._startup_seconds:g} s"
                    ) from None
                time.sleep(0.1)

    def _forward(self) -> None:
        """Prism's own log lines, as warnings (debug once the stream is stopping: cancelling is expected)."""
        for raw in self._process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                _LOG.log(logging.DEBUG if self._quiet else logging.WARNING, "prism: %s", line)

    def quiet(self) -> None:
        """From now on Prism's log lines are debug messages (the job is being cancelled)."""
        self._quiet = True

    def stop(self, seconds: float = _STOP_BOUND_SECONDS) -> None:
        """Stop Prism (SIGTERM, SIGKILL after ``seconds``) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        self._quiet = True
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=seconds)
        if self._output is not None:
            self._output.join(timeout=seconds)


class _StopSignals:
    """SIGINT and SIGTERM while a stream runs: the first asks for a drain, a second for an immediate stop."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.forced: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, _frame) -> None:
        # Only plain assignments and Event.set (no lock the main thread could be holding).
        if self.first is None:
            self.first = signum
            _STOPPING.set()
        else:
            self.forced = signum

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNAL_EXIT:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class _JobWaiter:
    """Waits for the job to end in a thread of its own (the main thread keeps signals and status)."""

    def __init__(self, result) -> None:
        self._result = result
        self.done = threading.Event()
        self._asked = 0.0
        threading.Thread(target=self._wait, name="ccpipe-stream-wait", daemon=True).start()

    def ended(self) -> bool:
        """Whether the job has ended: the wait returned and the job service confirms a terminal state.

        (The wait also returns when the job's state stream breaks while the job runs on.)
        """
        if not self.done.is_set() or time.monotonic() - self._asked < 2.0:
            return False
        self._asked = time.monotonic()
        from apache_beam.runners.runner import PipelineState

        try:
            return PipelineState.is_terminal(self._result.state)
        except Exception:  # noqa: BLE001 - the job service is gone: so is the job
            return True

    def _wait(self) -> None:
        try:
            self._result.wait_until_finish()
        except Exception as err:  # noqa: BLE001 - FAILED or CANCELLED; the job's own errors are logged by Beam
            _LOG.debug("the job's wait ended: %s", type(err).__name__)
        finally:
            self.done.set()


@dataclass(frozen=True)
class StreamOutcome:
    """How a stream ended: exit code, the summary (also written to ``summary_path``) and its console line."""

    exit_code: int
    summary: dict = field(hash=False)
    summary_path: str
    line: str


def _own_prism(options: PipelineOptions) -> PrismServer | None:
    """A Prism for this stream, unless the runner is not Prism or a job endpoint is given."""
    from apache_beam.options.pipeline_options import PortableOptions, PrismRunnerOptions, StandardOptions

    runner = options.view_as(StandardOptions).runner
    if not str(runner).endswith("PrismRunner") or options.view_as(PortableOptions).job_endpoint:
        return None
    location = options.view_as(PrismRunnerOptions).prism_location or str(DEFAULT_PRISM)
    return PrismServer(location)


def _quiet_worker_shutdown() -> None:
    """After the job is cancelled: the in-process SDK workers' gRPC streams to Prism break, as expected.

    Their threads would print a traceback each (what a Ctrl-C used to show, ~85 lines): such an error
    becomes a debug message. Any other error in any thread is reported as before.
    """
    import grpc

    previous = threading.excepthook

    def hook(args) -> None:
        if isinstance(args.exc_value, grpc.RpcError):
            _LOG.debug("thread %s: worker stream closed at shutdown (%s)",
                       getattr(args.thread, "name", "?"), type(args.exc_value).__name__)
            return
        previous(args)

    threading.excepthook = hook
    logging.getLogger("apache_beam.runners.worker").setLevel(logging.CRITICAL)


def _state_of(result) -> str:
    try:
        return str(result.state)
    except Exception:  # noqa: BLE001 - the job service is gone
        return "UNKNOWN"


def _drained(counts: StreamCounts, kafka: bool) -> bool:
    admitted = counts.read + counts.blank
    return (
        admitted >= _ADMITTED.count  # the metrics include every record this process's workers admitted
        and counts.in_flight == 0
        and (not kafka or counts.offsets_committed >= admitted)
    )


def _status_loop(result, config: StreamConfig, signals: _StopSignals, waiter: _JobWaiter, started: float) -> None:
    """Until a stop signal or the end of the job: a status line every ``status_seconds`` on stderr."""
    every = config.status_seconds
    next_status = time.monotonic() + every
    while signals.first is None and not waiter.ended():
        time.sleep(0.2)  # a signal interrupts the sleep; its handler only sets flags
        if every and time.monotonic() >= next_status:
            counts = job_counts(result)
            text = counts.line() if counts is not None else "counts unavailable from the runner"
            print(f"ccpipe stream: running {time.monotonic() - started:.0f} s: {text}", file=sys.stderr, flush=True)
            next_status += every * max(1, int((time.monotonic() - next_status) // every) + 1)


def _drain(result, config: StreamConfig, signals: _StopSignals, waiter: _JobWaiter) -> tuple[StreamCounts | None, bool]:
    """Let the admitted records be written (and their offsets committed) within ``drain_seconds``."""
    kafka = config.source.startswith("kafka://")
    deadline = time.monotonic() + config.drain_seconds
    if kafka is False and job_counts(result) is None:
        deadline = min(deadline, time.monotonic() + 3 * config.window_seconds)  # no counts: a window or three
    counts, drained = None, False
    while signals.forced is None and not waiter.ended():
        counts = job_counts(result) or counts
        if counts is not None and _drained(counts, kafka):
            drained = True
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(_DRAIN_POLL_SECONDS)
    if kafka and drained:
        # LOOPBACK workers run in this process, so their offset committers are here too.
        drained = flush_offset_commits(max(1.0, deadline - time.monotonic()))
    return counts, drained


def run(config: StreamConfig, options: PipelineOptions) -> StreamOutcome:
    """Prepare keys, then run until a stop signal (drained) or the end of the job; the summary written."""
    from pipelines.batch import prepare_keys
    from transforms.manifest import manifest_path
    from transforms.write import write_atomically

    processing = config.processing
    started_at = _dt.datetime.now(_dt.UTC)
    started = time.monotonic()
    run_id = f"stream-{started_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    _STOPPING.clear()
    with _StopSignals() as signals:
        check_source(config)
        prepare_keys(processing.tenants, processing.sinks, processing.keystore)
        pipeline = beam.Pipeline(options=options)
        build(pipeline, config)  # a Kafka broker that does not answer fails here, before Prism starts
        _LOG.info("streaming from %s to %s", config.watch_folder or redact_url(config.source),
                  processing.sinks.default_root)
        prism = _own_prism(pipeline.options)  # the pipeline's own copy of the options
        try:
            if prism is not None:
                from apache_beam.options.pipeline_options import PortableOptions

                pipeline.options.view_as(PortableOptions).job_endpoint = prism.start()
            result = pipeline.run()
            waiter = _JobWaiter(result)
            _status_loop(result, config, signals, waiter, started)
            counts, drained = (None, False)
            if signals.first is not None:
                counts, drained = _drain(result, config, signals, waiter)
            final = job_counts(result) if signals.forced is None else None
            counts = final or counts
            if prism is not None:
                prism.quiet()
            _quiet_worker_shutdown()
            if not waiter.ended():
                try:
                    result.cancel()
                except Exception as err:  # noqa: BLE001 - the job may have ended meanwhile
                    _LOG.debug("cancel: %s", type(err).__name__)
                waiter.done.wait(_STOP_BOUND_SECONDS)
            state = _state_of(result)
        finally:
            if prism is not None:
                prism.stop()
    if signals.forced is not None:
        code, stopped_by = SIGNAL_EXIT[signals.forced], signal.Signals(signals.first).name
    elif signals.first is not None:
        code, stopped_by = (EXIT_STOPPED if drained else EXIT_IN_FLIGHT), signal.Signals(signals.first).name
    else:
        code, stopped_by = (EXIT_STOPPED if state.endswith("DONE") else EXIT_FAILED), "job_ended"
    kafka = config.source.startswith("kafka://")
    summary = {
        "run_id": run_id,
        "kind": "stream",
        "source": config.source if config.watch_folder is not None else redact_url(config.source),
        "started_at": started_at.isoformat(timespec="seconds"),
        "ended_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "stopped_by": stopped_by,
        "job_state": state,
        "drained": drained,
        "exit_code": code,
        "counts_from": "beam_metrics" if counts is not None else "unavailable",
        **(counts.as_dict(kafka) if counts is not None else {}),
    }
    path = manifest_path(processing.sinks.default_root, run_id)
    write_atomically(path, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    how = {"job_ended": f"job ended ({state})"}.get(stopped_by, f"stopped by {stopped_by}")
    if signals.forced is not None:
        how += f", drain cut short by a second {signal.Signals(signals.forced).name}"
    elif signals.first is not None and not drained:
        how += f", drain bound of {config.drain_seconds:g} s passed (records in flight are read again next run)"
    text = counts.line() if counts is not None else "counts unavailable from the runner"
    line = f"ccpipe stream: {how} after {time.monotonic() - started:.0f} s: {text}; summary {path}"
    return StreamOutcome(exit_code=code, summary=summary, summary_path=path, line=line)
