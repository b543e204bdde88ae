"""Pseudonymize and EncryptContent: keyed pseudonyms, then AES-256-GCM, under the tenant's keys.

Keys come from the keystore, opened once per DoFn instance in ``setup`` from a KeystoreConfig
(no key material travels in the pipeline graph). No key, no write: a record whose key is
missing, destroyed or cannot be unwrapped goes to the dead-letter output.
"""

from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput

from ccpipe import policy
from ccpipe.errors import KeyUnavailableError
from ccpipe.keystore import KeystoreConfig, SqliteKeyStore
from ccpipe.types import DeadLetter, PseudonymizedRecord, TaggedRecord

DEAD = "dead_letters"


class Protected(NamedTuple):
    """The stage's main output and its dead letters."""

    records: PCollection
    dead_letters: PCollection


def _key_dead_letter(step: str, err: Exception, tagged: TaggedRecord) -> TaggedOutput:
    record = tagged.routed.record
    return TaggedOutput(
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
    def process(self, tagged):
        try:
            key = self._store.current(tagged.routed.record.tenant_id, "pseudonym")
        except KeyUnavailableError as err:
            self._no_key.inc()
            yield _key_dead_letter("Pseudonymize", err, tagged)
            return
        self._ok.inc()
        yield policy.pseudonymize_record(tagged, key)


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

    def __init__(self, keystore: KeystoreConfig) -> None:
        """``keystore``: where workers find the keys."""
        super().__init__()
        self._keystore = keystore

    def expand(self, records: PCollection[TaggedRecord]):  # -> Protected
        """PseudonymizedRecords and dead letters."""
        out = records | "Pseudonymize" >> beam.ParDo(
            _PseudonymizeFn(self._keystore, "ccpipe.pseudonymize")
        ).with_outputs(DEAD, main="records")
        return Protected(records=out.records, dead_letters=out[DEAD])


class EncryptContent(beam.PTransform[PCollection[PseudonymizedRecord], Protected]):
    """Encrypt content and recoverable originals; hash passwords; emit rows with no plaintext PII."""

    def __init__(self, keystore: KeystoreConfig) -> None:
        """``keystore``: where workers find the keys."""
        super().__init__()
        self._keystore = keystore

    def expand(self, records: PCollection[PseudonymizedRecord]):  # -> Protected
        """OutputRows and dead letters."""
        out = records | "Encrypt" >> beam.ParDo(
            _EncryptContentFn(self._keystore, "ccpipe.encrypt_content")
        ).with_outputs(DEAD, main="records")
        return Protected(records=out.records, dead_letters=out[DEAD])
