"""Pseudonymize and EncryptContent: keyed pseudonyms, then AES-256-GCM, under the tenant's keys.

Keys come from the keystore, opened once per DoFn instance in ``setup`` from a KeystoreConfig
(no key material travels in the pipeline graph, nor the key manager's token). No key, no write: a
record whose key is missing, destroyed or cannot be unwrapped goes to the dead-letter output.

Long-running (streaming) workers look the key's row up for every record, so a rotation or a shred
made with ``ccpipe keys`` (or by retention) applies from the next record on; unwrapped material is
cached for at most ``ccpipe.keystore.KEY_CACHE_TTL_SECONDS`` (30 s), which bounds how long a KEK
destroyed directly in the key manager can still be used. A key manager that cannot be reached
(``KmsError``) fails the bundle, which runners that retry bundles (Dataflow, Flink) retry; the local
FnApiRunner fails the run (``ccpipe batch`` exits 2 with one line naming the error). Either way nothing
is written meanwhile (tests/test_faults.py).
"""

from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from ccpipe import policy
from ccpipe.errors import KeyUnavailableError
from ccpipe.keystore import KeystoreConfig, SqliteKeyStore
from ccpipe.types import DeadLetter, PseudonymizedRecord, TaggedRecord
from transforms.route import SideOutput, SplitTagged

DEAD = "dead_letters"


class Protected(NamedTuple):
    """The stage's main output and its dead letters."""

    records: PCollection
    dead_letters: PCollection


def _key_dead_letter(step: str, err: Exception, tagged: TaggedRecord) -> SideOutput:
    record = tagged.routed.record
    return SideOutput(
        DEAD,
        DeadLetter(
            "key_unavailable", step, str(err), record.raw, record.source, record.tenant_id,
            record.record_id, tagged.routed.region, record.event_date,
        ),
    )


class _KeyedFn(beam.DoFn):
    """A DoFn that opens the keystore once per instance."""

    def __init__(self, keystore: KeystoreConfig, namespace: str) -> None:
        self._keystore_config = keystore
        self._store = None
        self._ok = Metrics.counter(namespace, "records")
        self._no_key = Metrics.counter(namespace, "key_unavailable")

    def setup(self):
        self._store = SqliteKeyStore(self._keystore_config)

    def teardown(self):
        if self._store is not None:
            self._store.close()


class _PseudonymizeFn(_KeyedFn):
    def __init__(self, keystore: KeystoreConfig, namespace: str, restricted: frozenset[tuple[str, str]]) -> None:
        super().__init__(keystore, namespace)
        self._restricted = restricted
        self._restricted_count = Metrics.counter(namespace, "restricted")

    def process(self, tagged):
        record = tagged.routed.record
        try:
            key = self._store.current(record.tenant_id, "pseudonym")
        except KeyUnavailableError as err:
            self._no_key.inc()
            yield _key_dead_letter("Pseudonymize", err, tagged)
            return
        psr = policy.pseudonymize_record(tagged, key)
        if self._restricted and any((record.tenant_id, p) in self._restricted for p in psr.pseudonyms.values()):
            # A data subject restricted (or objected to) processing: keep the record, encrypted, aside.
            self._restricted_count.inc()
            yield SideOutput(
                DEAD,
                DeadLetter(
                    "restricted", "Pseudonymize", "the data subject restricted processing", record.raw,
                    record.source, record.tenant_id, record.record_id, tagged.routed.region, record.event_date,
                ),
            )
            return
        self._ok.inc()
        yield psr


class _EncryptContentFn(_KeyedFn):
    def process(self, psr):
        try:
            key = self._store.current(psr.tagged.routed.record.tenant_id, "content")
        except KeyUnavailableError as err:
            self._no_key.inc()
            yield _key_dead_letter("EncryptContent", err, psr.tagged)
            return
        self._ok.inc()
        yield from policy.encrypt_record(psr, key)


class Pseudonymize(beam.PTransform[PCollection[TaggedRecord], Protected]):
    """Replace identifiers by HMAC-SHA256 pseudonyms under the tenant's ``pseudonym`` key."""

    def __init__(self, keystore: KeystoreConfig, restricted: frozenset[tuple[str, str]] = frozenset()) -> None:
        """``keystore``: where workers find the keys; ``restricted``: (tenant, pseudonym) not to process."""
        super().__init__()
        self._keystore = keystore
        self._restricted = frozenset(restricted)

    def expand(self, records: PCollection[TaggedRecord]):  # -> Protected
        """PseudonymizedRecords and dead letters (key unavailable, restricted subject)."""
        out = (
            records
            | "Pseudonymize" >> beam.ParDo(_PseudonymizeFn(self._keystore, "ccpipe.pseudonymize", self._restricted))
            | "SplitOutputs" >> SplitTagged((DEAD,), main="records")
        )
        return Protected(records=out["records"], dead_letters=out[DEAD])


class EncryptContent(beam.PTransform[PCollection[PseudonymizedRecord], Protected]):
    """Encrypt content and recoverable originals; hash passwords; emit rows with no plaintext PII."""

    def __init__(self, keystore: KeystoreConfig) -> None:
        """``keystore``: where workers find the keys."""
        super().__init__()
        self._keystore = keystore

    def expand(self, records: PCollection[PseudonymizedRecord]):  # -> Protected
        """OutputRows and dead letters."""
        out = (
            records
            | "Encrypt" >> beam.ParDo(_EncryptContentFn(self._keystore, "ccpipe.encrypt_content"))
            | "SplitOutputs" >> SplitTagged((DEAD,), main="records")
        )
        return Protected(records=out["records"], dead_letters=out[DEAD])
