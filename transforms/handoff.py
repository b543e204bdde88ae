"""HandOffFlows: the permitted flows besides the tenant's region, each to its own sink root.

From the protected rows (pseudonyms and ciphertext only) it derives the sub-processor hand-offs of
opted-in tenants and the US monitoring copy (``ccpipe.flows``), writes each flow with the regional
writer to its own root, and returns their WriteResults for the manifest. Flow rows are derived
data: they are counted per flow, never as records written (the run's reconciliation is unchanged).

Opt-ins come from the tenants the run was given; with a control plane URL they are re-read every
``OPT_IN_TTL_SECONDS`` (streaming: an opt-out stops new hand-offs within that bound).
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from ccpipe.flows import DATASETS, SUBPROCESSORS, US_MONITORING, FlowConfig, flow_rows
from ccpipe.types import REGIONS, OutputRow, Tenant, WriteResult
from transforms.route import SideOutput, SinkConfig, SplitTagged
from transforms.write import WriteRegionalParquet

OPT_IN_TTL_SECONDS = 30.0


def opted_in(tenants: tuple[Tenant, ...]) -> dict[str, tuple[str, frozenset[str]]]:
    """Tenant id -> (region, the sub-processors it opted into)."""
    return {t.tenant_id: (t.region, frozenset(n for n, on in t.subprocessors if on)) for t in tenants}


class _HandOffFn(beam.DoFn):
    def __init__(self, config: FlowConfig, tenants: tuple[Tenant, ...], control_plane: str) -> None:
        self._config = config
        self._tenants = opted_in(tenants)
        self._control_plane = control_plane
        self._loaded_at = 0.0
        self._rows = {flow: Metrics.counter("ccpipe.flows", flow) for flow in (*SUBPROCESSORS, US_MONITORING)}

    def _opt_ins(self) -> dict[str, tuple[str, frozenset[str]]]:
        if self._control_plane and time.monotonic() - self._loaded_at > OPT_IN_TTL_SECONDS:
            from ccpipe.controlplane import tenants_repo
            from ccpipe.controlplane.db import open_control_plane

            cp = open_control_plane(self._control_plane)
            try:
                self._tenants = opted_in(tuple(tenants_repo.load(cp).values()))
            finally:
                cp.close()
            self._loaded_at = time.monotonic()
        return self._tenants

    def process(self, row: OutputRow):
        if row.dataset not in ("calls", "registrations", "telemetry"):
            return
        region, chosen = self._opt_ins().get(row.values.get("tenant_id"), (row.region, frozenset()))
        for flow, flow_region, values in flow_rows(row.dataset, row.values, region, chosen, self._config):
            self._rows[flow].inc()
            yield SideOutput(flow, OutputRow(flow_region, DATASETS[flow], row.dt, row.record_id, values,
                                                           row.source))


class HandOffFlows(beam.PTransform[PCollection[OutputRow], PCollection[WriteResult]]):
    """Write each configured flow's rows to its own sink root; WriteResults tagged by flow dataset."""

    def __init__(self, config: FlowConfig, tenants: tuple[Tenant, ...], streaming: bool = False,
                 control_plane: str = "") -> None:
        """``config``: flow sinks; ``tenants``: opt-ins; ``control_plane``: re-read opt-ins (streaming)."""
        super().__init__()
        self._config = config
        self._tenants = tenants
        self._streaming = streaming
        self._control_plane = control_plane

    def expand(self, rows: PCollection[OutputRow]) -> PCollection[WriteResult]:
        """One WriteResult per flow file written."""
        flows = [f for f in (*SUBPROCESSORS, US_MONITORING) if self._config.root(f)]
        if not flows:
            return rows.pipeline | "NoFlows" >> beam.Create([])
        tagged = (
            rows
            | "DeriveFlowRows" >> beam.ParDo(_HandOffFn(self._config, self._tenants, self._control_plane))
            | "SplitFlows" >> SplitTagged(flows)
        )
        results = []
        for flow in flows:
            sinks = SinkConfig(default_root=self._config.root(flow), regions=frozenset(REGIONS),
                               streaming=self._streaming)
            results.append(tagged[flow] | f"Write_{flow}" >> WriteRegionalParquet(sinks))
        return results | "FlattenFlowResults" >> beam.Flatten()
