"""The processing stages shared by the batch and streaming pipelines (one copy, two pipelines).

``ProcessRecords``: raw input lines -> validated, tenant-resolved, PII-tagged, pseudonymized and
encrypted rows, plus every stage's dead letters, encrypted. Reading, windowing and writing are
the pipelines' own. Every stage has one output per ParDo (``transforms.route.SplitTagged``), no
side inputs, state or ``finish_bundle`` output, so the batch graph also runs on Beam's DaskRunner.
"""

from dataclasses import dataclass
from typing import NamedTuple

import apache_beam as beam
from apache_beam.pvalue import PCollection

from ccpipe.flows import FlowConfig
from ccpipe.keystore import KeystoreConfig
from ccpipe.pii.engine import PiiConfig
from ccpipe.types import RawInput, Tenant
from transforms.parse import DeduplicateRecords, ParseConfig, ParseRecords
from transforms.protect import EncryptContent, Pseudonymize
from transforms.route import EncryptDeadLetters, SinkConfig
from transforms.tag_pii import DEFAULT_SHARDS, TagPii
from transforms.tenants import ResolveTenants


@dataclass(frozen=True)
class ProcessingConfig:
    """What the shared stages need."""

    tenants: tuple[Tenant, ...]
    sinks: SinkConfig
    keystore: KeystoreConfig
    pii: PiiConfig
    parse: ParseConfig
    restricted: frozenset[tuple[str, str]] = frozenset()
    flows: FlowConfig = FlowConfig()
    control_plane: str = ""


class Processed(NamedTuple):
    """Protected rows, encrypted dead-letter rows, and the pseudonymized records (for usage)."""

    rows: PCollection
    dead_rows: PCollection
    pseudonymized: PCollection


class ProcessRecords(beam.PTransform[PCollection[RawInput], Processed]):
    """Parse, de-duplicate, resolve tenants, tag PII, pseudonymize, encrypt; dead letters encrypted."""

    def __init__(self, config: ProcessingConfig) -> None:
        """``config``: tenants, sinks, keys, PII and parse settings, restrictions."""
        super().__init__()
        self._config = config

    def expand(self, lines: PCollection[RawInput]):  # -> Processed
        """Rows ready for RouteToRegion."""
        c = self._config
        parsed = lines | "ParseRecords" >> ParseRecords(c.parse)
        unique = parsed.records | "DeduplicateRecords" >> DeduplicateRecords()
        resolved = unique.records | "ResolveTenants" >> ResolveTenants(c.tenants, c.sinks.regions)
        # Batch: batches per shard of record ids (a GroupByKey: the same on every runner, DaskRunner too);
        # streaming: within bundles (no shuffle). See transforms.tag_pii.
        shards = None if c.sinks.streaming else DEFAULT_SHARDS
        tagged = resolved.records | "TagPii" >> TagPii(c.pii, shards=shards)
        pseudo = tagged.records | "Pseudonymize" >> Pseudonymize(c.keystore, c.restricted)
        encrypted = pseudo.records | "EncryptContent" >> EncryptContent(c.keystore)
        dead_rows = (
            (
                parsed.dead_letters,
                unique.dead_letters,
                resolved.dead_letters,
                tagged.dead_letters,
                pseudo.dead_letters,
                encrypted.dead_letters,
            )
            | "FlattenDeadLetters" >> beam.Flatten()
            | "EncryptDeadLetters" >> EncryptDeadLetters(c.keystore, c.tenants, c.sinks)
        )
        return Processed(rows=encrypted.records, dead_rows=dead_rows, pseudonymized=pseudo.records)
