"""TagPii: Presidio findings for every free-text field, in batches through spaCy's nlp.pipe.

Presidio is loaded once per worker process (``apache_beam.utils.shared.Shared``) and shared by
every DoFn instance and thread of that process.

Batches are formed one of two ways. Batch pipelines group records by a hash of their id into
``shards`` groups (a GroupByKey) and cut each group into batches as its iterable is read (no sort,
so a worker holds one batch, not the group): it runs the same on every runner,
including Beam's DaskRunner, which drops whatever a DoFn emits from ``finish_bundle`` (where
``beam.BatchElements`` emits each bundle's last batch). Streaming pipelines (``shards=None``) batch
within bundles with ``beam.BatchElements`` and add no shuffle.
"""

import hashlib
import time
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.utils import shared

from ccpipe.errors import ConfigError
from ccpipe.pii.engine import PiiConfig, PiiTagger, TextGroup
from ccpipe.policy import known_values
from ccpipe.schemas import iter_free_text
from ccpipe.types import DeadLetter, RoutedRecord, TaggedRecord
from transforms.route import SideOutput, SplitTagged

DEAD = "dead_letters"
DEFAULT_SHARDS = 64

# One handle for the whole process: pipelines in the same process share the loaded model.
_SHARED_TAGGERS = shared.Shared()


class Tagged(NamedTuple):
    """Records with findings, and the dead letters of the stage."""

    records: PCollection
    dead_letters: PCollection


class _TaggerHolder:
    """A weak-referenceable holder (Shared keeps only weak references)."""

    def __init__(self, tagger: PiiTagger) -> None:
        self.tagger = tagger


def _load_tagger(config: PiiConfig) -> _TaggerHolder:
    return _TaggerHolder(PiiTagger(config))


class _TagPiiFn(beam.DoFn):
    def __init__(self, config: PiiConfig) -> None:
        self._config = config
        self._texts = Metrics.counter("ccpipe.tag_pii", "texts")
        self._findings = Metrics.counter("ccpipe.tag_pii", "findings")
        self._failed = Metrics.counter("ccpipe.tag_pii", "failed")
        self._msec = Metrics.distribution("ccpipe.tag_pii", "msec_per_batch")
        self._holder = None

    def setup(self):
        self._holder = _SHARED_TAGGERS.acquire(lambda: _load_tagger(self._config), tag=repr(self._config))

    def process(self, batch):
        groups, paths = [], []
        for routed in batch:
            record = routed.record
            fields = iter_free_text(record.record_type, record.payload)
            paths.append([path for path, _ in fields])
            known = tuple(known_values(record.record_type, record.payload))
            groups.append(TextGroup(tuple(t for _, t in fields), known, record.tenant_id))
        started = time.monotonic()
        try:
            results = self._holder.tagger.tag_groups(groups)
        except Exception as err:  # noqa: BLE001 - an analyzer failure must not lose the batch
            # Retry one record at a time so a single bad text does not dead-letter its neighbours.
            if len(batch) > 1:
                for routed in batch:
                    yield from self.process([routed])
                return
            self._failed.inc()
            record = batch[0].record
            yield SideOutput(
                DEAD,
                DeadLetter(
                    "pii_tagging_failed", "TagPii", f"analyzer raised {type(err).__name__}", record.raw,
                    record.source, record.tenant_id, record.record_id, batch[0].region, record.event_date,
                ),
            )
            return
        self._msec.update(int((time.monotonic() - started) * 1000))
        for routed, record_paths, findings in zip(batch, paths, results, strict=True):
            self._texts.inc(len(record_paths))
            self._findings.inc(sum(len(f) for f in findings))
            yield TaggedRecord(routed=routed, findings=dict(zip(record_paths, findings, strict=True)))


def _shard_of(routed: RoutedRecord, shards: int) -> tuple[int, RoutedRecord]:
    record = routed.record
    digest = hashlib.sha256(f"{record.tenant_id}\0{record.record_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % shards, routed


def _batches(group, max_batch: int):
    """A shard's records in batches of at most ``max_batch``, in the order the group's iterable gives them.

    Streams: a batch is yielded as soon as it is full, so a worker holds one batch of records (raw
    payloads), never the shard group (a runner may page a large group's iterable in from its shuffle).
    No sort: which records share a batch depends on the runner's order, but findings do not depend
    on a batch's composition (each text is analysed alone; batching only amortises ``nlp.pipe``), and
    the writer sorts output rows by key, so the output is the same whatever the order.
    """
    _shard, records = group
    batch = []
    for routed in records:
        batch.append(routed)
        if len(batch) == max_batch:
            yield batch
            batch = []
    if batch:
        yield batch


class TagPii(beam.PTransform[PCollection[RoutedRecord], Tagged]):
    """Analyse every free-text field with Presidio (offline) and keep the findings beside the record."""

    def __init__(self, config: PiiConfig | None = None, max_batch_size: int = 256,
                 shards: int | None = DEFAULT_SHARDS) -> None:
        """``config``: model and thresholds; ``max_batch_size``: records per analyzer batch.

        ``shards``: groups that records are batched in (their parallelism after the GroupByKey);
        ``None`` batches within bundles instead (``beam.BatchElements``, for streaming: no shuffle, but
        not on runners that drop ``finish_bundle`` output, such as the DaskRunner).
        """
        super().__init__()
        self._config = config or PiiConfig()
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size {max_batch_size!r} must be at least 1")
        if shards is not None and not 1 <= shards <= 65536:
            raise ConfigError(f"shards {shards!r} must be None (batch within bundles) or between 1 and 65536")
        self._max_batch = max_batch_size
        self._shards = shards

    def expand(self, records: PCollection[RoutedRecord]):  # -> Tagged
        """Tagged records and dead letters."""
        if self._shards is None:
            batches = records | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch)
        else:
            batches = (
                records
                | "KeyByShard" >> beam.Map(_shard_of, shards=self._shards)
                | "GroupByShard" >> beam.GroupByKey()
                | "Batch" >> beam.FlatMap(_batches, max_batch=self._max_batch)
            )
        out = (
            batches
            | "Analyze" >> beam.ParDo(_TagPiiFn(self._config))
            | "SplitOutputs" >> SplitTagged((DEAD,), main="records")
        )
        return Tagged(records=out["records"], dead_letters=out[DEAD])
