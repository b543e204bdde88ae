"""ResolveTenants: attach each record's region; unknown, terminated or sink-less tenants dead-lettered."""

from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from ccpipe.errors import ConfigError, RecordError
from ccpipe.tenants import check_tenant
from ccpipe.types import DeadLetter, InputRecord, RoutedRecord, Tenant
from transforms.route import SideOutput, SplitTagged

DEAD = "dead_letters"


class Resolved(NamedTuple):
    """Records with a region, and the dead letters of the stage."""

    records: PCollection
    dead_letters: PCollection


class _ResolveTenantFn(beam.DoFn):
    def __init__(self, tenants: tuple[Tenant, ...], sink_regions: frozenset[str]) -> None:
        self._tenants = {t.tenant_id: t for t in tenants}
        self._sinks = sink_regions
        self._routed = Metrics.counter("ccpipe.tenants", "routed")

    def process(self, record):
        try:
            region = check_tenant(self._tenants.get(record.tenant_id), record.event_time, self._sinks)
        except RecordError as err:
            Metrics.counter("ccpipe.tenants", err.reason).inc()
            yield SideOutput(
                DEAD,
                DeadLetter(
                    err.reason, "ResolveTenants", str(err), record.raw, record.source,
                    record.tenant_id, record.record_id, event_date=record.event_date,
                ),
            )
            return
        self._routed.inc()
        yield RoutedRecord(record=record, region=region)


class ResolveTenants(beam.PTransform[PCollection[InputRecord], Resolved]):
    """Look each record's tenant up in the registry (a small, static map shipped with the DoFn)."""

    def __init__(self, tenants: tuple[Tenant, ...], sink_regions: frozenset[str]) -> None:
        """``tenants``: the registry; ``sink_regions``: regions that have a configured sink."""
        super().__init__()
        if not sink_regions:
            raise ConfigError("sink_regions must name at least one region")
        self._tenants = tuple(tenants)
        self._sinks = frozenset(sink_regions)

    def expand(self, records: PCollection[InputRecord]):  # -> Resolved
        """Routed records and dead letters."""
        out = (
            records
            | "Resolve" >> beam.ParDo(_ResolveTenantFn(self._tenants, self._sinks))
            | "SplitOutputs" >> SplitTagged((DEAD,), main="records")
        )
        return Resolved(records=out["records"], dead_letters=out[DEAD])
