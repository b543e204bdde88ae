"""RouteToRegion and EncryptDeadLetters: every row and dead letter to its own region's sink only.

Also ``SplitTagged``, how every multi-output stage separates its outputs: a DoFn yields its main
values plain and the others as ``SideOutput(tag, value)`` on its one output, and ``SplitTagged`` selects
each output's values. Beam's DaskRunner (2.77) hands every output of a ``with_outputs`` ParDo (and of
``beam.Partition``) to every consumer, so tagged outputs would mix there; one output per ParDo runs
the same on every runner.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from ccpipe.deadletter import seal as seal_dead_letter
from ccpipe.errors import ConfigError
from ccpipe.keystore import KeystoreConfig, SqliteKeyStore
from ccpipe.types import QUARANTINE_REGION, REGIONS, DeadLetter, OutputRow, Tenant


@dataclass(frozen=True)
class SinkConfig:
    """Where each region's data goes.

    Attributes:
        default_root: root of every region without an override, and of the quarantine sink.
        region_roots: ``(region, root)`` overrides; a root is any Beam filesystem URI.
        regions: the regions that have a sink; a record of any other region is dead-lettered.
        shards: hash shards (by record id) of each (region, dataset, day) partition, written in
            parallel; each shard that holds rows is one file or more.
        max_rows_per_file: the most rows one Parquet file holds (1 to 10,000,000). A larger shard is
            split into several files; the rows of one record (a chat's messages) always stay in one
            file, so only a single record with more rows than this can make a file exceed it.
            Batch writers hold about this many rows in memory at once, whatever the input size.

    """

    default_root: str
    region_roots: tuple[tuple[str, str], ...] = ()
    regions: frozenset[str] = frozenset(REGIONS)
    shards: int = 1
    streaming: bool = False
    max_rows_per_file: int = 50_000

    def __post_init__(self) -> None:
        if not self.default_root:
            raise ConfigError("default_root must not be empty")
        for region, _root in self.region_roots:
            if region not in self.regions:
                raise ConfigError(
                    f"region_roots names region {region!r}, which is not in regions {sorted(self.regions)}"
                )
        unknown = set(self.regions) - set(REGIONS)
        if unknown:
            raise ConfigError(f"regions {sorted(unknown)} are not service regions; allowed: {list(REGIONS)}")
        if not 1 <= self.shards <= 1024:
            raise ConfigError(f"shards {self.shards!r} must be between 1 and 1024")
        if (isinstance(self.max_rows_per_file, bool) or not isinstance(self.max_rows_per_file, int)
                or not 1 <= self.max_rows_per_file <= 10_000_000):
            raise ConfigError(
                f"max_rows_per_file {self.max_rows_per_file!r} must be a whole number between 1 and 10000000"
            )

    def root(self, region: str) -> str:
        """The sink root of a region (or of the quarantine)."""
        return dict(self.region_roots).get(region, self.default_root)


class SideOutput(NamedTuple):
    """A value for one of a stage's secondary outputs (a dead letter, a flow); main values go plain."""

    tag: str
    value: Any


def _select(element: Any, tag: str, tags: frozenset[str], has_main: bool = True):
    if isinstance(element, SideOutput):
        if element.tag not in tags:  # a stage's own bug: never drop an element silently
            raise ValueError(f"output tag {element.tag!r} is not one of {sorted(tags)}")
        if element.tag == tag:
            yield element.value
    elif tag == "":
        yield element
    elif not has_main:  # nowhere to go: a stage's own bug, never dropped silently (the type only, no value)
        raise ValueError(
            f"a plain {type(element).__name__} value reached SplitTagged without a main output "
            f"(tags {sorted(tags)}): wrap it in SideOutput(tag, value) or give main"
        )


class SplitTagged(beam.PTransform):
    """Split a stage's one output: plain values to ``main``, each ``SideOutput`` to its tag's PCollection.

    Every element goes to exactly one output; a ``SideOutput`` with an undeclared tag fails the run,
    and so does a plain value when there is no ``main`` output (never dropped silently).
    """

    def __init__(self, tags: Iterable[str], main: str | None = None) -> None:
        """``tags``: the secondary outputs' tags; ``main``: the name of the plain values' output, if any."""
        super().__init__()
        self._tags = tuple(dict.fromkeys(tags))
        self._main = main
        if not self._tags and main is None:
            raise ConfigError("tags must name at least one output, or main must be given")
        if main is not None and (not main or main in self._tags):
            raise ConfigError(f"main {main!r} must be a non-empty name other than the tags {list(self._tags)}")

    def expand(self, pcoll: PCollection):  # -> dict[str, PCollection]
        """Output name -> its values."""
        known = frozenset(self._tags)
        has_main = self._main is not None
        out = {
            tag: pcoll | f"Select_{tag}" >> beam.FlatMap(_select, tag=tag, tags=known, has_main=has_main)
            for tag in self._tags
        }
        if self._main is not None:
            out[self._main] = pcoll | f"Select_{self._main}" >> beam.FlatMap(_select, tag="", tags=known)
        return out


def _check_region(row: OutputRow, regions: frozenset[str]) -> OutputRow:
    # ResolveTenants already dead-lettered records without a sink; a row reaching here with another
    # region is a bug, and writing it anywhere would break residency, so fail the run loudly.
    if row.region not in regions:
        raise RuntimeError(f"row of dataset {row.dataset} has region {row.region!r} without a sink")
    Metrics.counter("ccpipe.route", f"rows_{row.region}").inc()
    return row


class RouteToRegion(beam.PTransform[PCollection[OutputRow], PCollection[OutputRow]]):
    """Check every row's region against the configured sinks (residency guard before the write)."""

    def __init__(self, sinks: SinkConfig) -> None:
        """``sinks``: the sink configuration."""
        super().__init__()
        self._regions = frozenset(sinks.regions) | {QUARANTINE_REGION}

    def expand(self, rows: PCollection[OutputRow]) -> PCollection[OutputRow]:
        """The same rows, verified."""
        return rows | "CheckRegion" >> beam.Map(_check_region, regions=self._regions)


class _EncryptDeadLetterFn(beam.DoFn):
    def __init__(self, keystore: KeystoreConfig, tenants: tuple[Tenant, ...], regions: frozenset[str]) -> None:
        self._keystore_config = keystore
        self._regions = {t.tenant_id: t.region for t in tenants if t.region in regions}
        self._known = frozenset(t.tenant_id for t in tenants)  # their dead letters: sealed under their key
        self._store = None

    def setup(self):
        self._store = SqliteKeyStore(self._keystore_config)

    def teardown(self):
        if self._store is not None:
            self._store.close()

    def process(self, dead: DeadLetter):
        region = dead.region or self._regions.get(dead.tenant_id or "", QUARANTINE_REGION)
        Metrics.counter("ccpipe.dead_letters", dead.reason).inc()
        # No fallback: if the dead-letter key (or its key manager) is unavailable this raises and the
        # bundle fails, because the only alternatives would be dropping the record or writing it in
        # plain text. The key's row is read per dead letter (see ccpipe.keystore: freshness).
        # Secrets are scrubbed first; a known tenant's key seals its dead letters (if it is shredded,
        # the line is withheld, never sealed under another key): ccpipe.deadletter.
        row, how = seal_dead_letter(dead, region, self._store, self._known)
        Metrics.counter("ccpipe.dead_letters", f"sealed_{how}").inc()
        yield row


class EncryptDeadLetters(beam.PTransform[PCollection[DeadLetter], PCollection[OutputRow]]):
    """Scrub secrets from each dead letter and seal it: a known tenant's under its key, others under the region's."""

    def __init__(self, keystore: KeystoreConfig, tenants: tuple[Tenant, ...], sinks: SinkConfig) -> None:
        """``tenants`` decide the region of a dead letter whose stage did not know it."""
        super().__init__()
        self._fn = _EncryptDeadLetterFn(keystore, tuple(tenants), frozenset(sinks.regions))

    def expand(self, dead: PCollection[DeadLetter]) -> PCollection[OutputRow]:
        """Dead-letter rows."""
        return dead | "Encrypt" >> beam.ParDo(self._fn)
