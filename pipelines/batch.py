"""The batch pipeline: SPEC §1 input files to encrypted, regional, Hive-partitioned Parquet.

Stages::

    ReadInputs -> ProcessRecords (ParseRecords -> DeduplicateRecords -> ResolveTenants -> TagPii
      -> Pseudonymize -> EncryptContent; dead letters -> EncryptDeadLetters) (+ AggregateUsage)
      -> RouteToRegion -> WriteRegionalParquet -> WriteManifest

Run it with ``ccpipe batch --input 'data/*.jsonl' --tenants tenants.yaml --output out``; the
runner is explicit (``--runner``, default ``FnApiRunner``, which never downloads anything), and
``--workers N`` runs N local worker processes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from ccpipe.errors import CcpipeError, ConfigError
from ccpipe.flows import FlowConfig
from ccpipe.keystore import (
    TENANT_PURPOSES,
    KeystoreConfig,
    KeystoreOpenError,
    SqliteKeyStore,
    deadletter_key_owner,
    prepare_sqlite_url,
)
from ccpipe.kms import KMS_FLAG_HELP
from ccpipe.pii.engine import PiiConfig
from ccpipe.types import QUARANTINE_REGION, REGIONS, Tenant
from pipelines.stages import ProcessingConfig, ProcessRecords
from transforms.handoff import HandOffFlows
from transforms.manifest import WriteManifest, manifest_path, metrics_path
from transforms.parse import ParseConfig
from transforms.read import ReadInputs
from transforms.route import RouteToRegion, SinkConfig
from transforms.usage import AggregateUsage
from transforms.write import WriteRegionalParquet, write_atomically

_LOG = logging.getLogger(__name__)
LOCAL_RUNNERS = ("FnApiRunner", "PrismRunner")
# glibc keeps large freed blocks (a 19 MiB Argon2id hash, Beam's 10 MiB data chunks) in per-thread
# arenas once its mmap threshold has risen; fixing the threshold returns them to the system. Measured
# on a 16x corpus, a worker's peak RSS went from 708 to 521 MiB. Set for worker processes started by
# the run (the launching process's own allocator is already initialised); Dask workers: deploy/dask.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_ARENA_MAX": "2"}


class BatchOptions(PipelineOptions):
    """Runtime flags of ``ccpipe batch`` (Beam's own flags, such as --runner, pass through)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", action="append", default=[], help="input file or glob (repeatable)")
        parser.add_argument("--tenants", help="tenants registry (YAML or JSON); default: the control plane's")
        parser.add_argument(
            "--control_plane", help="control-plane URL (sqlite:///path or postgresql://...); default under $CCPIPE_HOME"
        )
        parser.add_argument("--output", help="default sink root (local folder or Beam filesystem URI)")
        parser.add_argument("--sink", action="append", default=[], help="REGION=URI: a region's own sink root")
        parser.add_argument(
            "--sink_regions", default=",".join(REGIONS), help="comma-separated regions that have a sink"
        )
        parser.add_argument("--keystore", help="keystore file (default $CCPIPE_HOME/keystore.db)")
        parser.add_argument("--master_key_file", help="master key file of --kms local (default in $CCPIPE_HOME)")
        parser.add_argument(
            "--kms", default="",
            help=KMS_FLAG_HELP,
        )
        parser.add_argument("--model", default="en_core_web_sm", help="installed spaCy model for NER")
        parser.add_argument("--pii_config", help="PII configuration YAML: allow-lists, tenant id patterns, model")
        parser.add_argument("--shards", type=int, default=1, help="Parquet files per partition")
        parser.add_argument("--max_rows_per_file", type=int, default=50_000,
                            help="most rows in one Parquet file (a record's rows are never split)")
        parser.add_argument("--subprocessor_sink", action="append", default=[],
                            help="NAME=URI: sink root of a sub-processor hand-off (transcription, recording_archive, "
                            "email_service); written only for tenants that opted in")
        parser.add_argument("--us_monitoring_sink", default="",
                            help="URI: sink root of the pseudonymized security/system telemetry copy (USA)")
        parser.add_argument("--workers", type=int, default=1, help="local worker processes")
        parser.add_argument("--run_id", help="manifest name (default: UTC time + random suffix)")


@dataclass(frozen=True)
class BatchConfig:
    """Everything the batch pipeline's transforms need, validated."""

    inputs: tuple[str, ...]
    tenants: tuple[Tenant, ...]
    sinks: SinkConfig
    keystore: KeystoreConfig
    run_id: str
    pii: PiiConfig = field(default_factory=PiiConfig)
    parse: ParseConfig = field(default_factory=ParseConfig)
    restricted: frozenset[tuple[str, str]] = frozenset()
    flows: FlowConfig = FlowConfig()

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("inputs must name at least one file or glob")
        if not self.run_id or "/" in self.run_id:
            raise ConfigError(f"run_id {self.run_id!r} must be a non-empty name without '/'")


def new_run_id() -> str:
    """A sortable, unique run id."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def processing_config(config: BatchConfig) -> ProcessingConfig:
    """The shared stages' part of a batch configuration."""
    return ProcessingConfig(config.tenants, config.sinks, config.keystore, config.pii, config.parse, config.restricted,
                            config.flows)


def build(pipeline: beam.Pipeline, config: BatchConfig, extra: dict | None = None) -> None:
    """Add the batch pipeline's stages to ``pipeline``."""
    inputs = pipeline | "ReadInputs" >> ReadInputs(config.inputs)
    processed = inputs.lines | "ProcessRecords" >> ProcessRecords(processing_config(config))
    usage = processed.pseudonymized | "AggregateUsage" >> AggregateUsage()
    results = (
        (processed.rows, usage, processed.dead_rows)
        | "FlattenRows" >> beam.Flatten()
        | "RouteToRegion" >> RouteToRegion(config.sinks)
        | "WriteRegionalParquet" >> WriteRegionalParquet(config.sinks)
    )
    if config.flows.enabled:  # permitted flows, each to its own root (ccpipe.flows)
        flows = processed.rows | "HandOffFlows" >> HandOffFlows(config.flows, config.tenants)
        results = (results, flows) | "FlattenResults" >> beam.Flatten()
        opt_ins: dict[str, list[str]] = {}
        for tenant in config.tenants:
            for name, on in tenant.subprocessors:
                if on:
                    opt_ins.setdefault(name, []).append(tenant.tenant_id)
        extra = {**(extra or {}), "flow_opt_ins": opt_ins}
    sources = inputs.lines | "SourceOfLine" >> beam.Map(lambda raw: raw.source)
    _ = (sources, inputs.blank_lines, results) | "WriteManifest" >> WriteManifest(
        config.sinks.default_root, config.run_id, extra
    )


def prepare_keys(tenants: tuple[Tenant, ...], sinks: SinkConfig, keystore: KeystoreConfig) -> None:
    """Create the keystore and any missing keys before workers start (workers only read keys).

    Tenants get ``content`` and ``pseudonym`` keys; every sink region and the quarantine get a
    ``deadletter`` key. Destroyed (shredded) keys are not re-created.
    """
    store = SqliteKeyStore(keystore, create=True)
    try:
        for tenant in tenants:
            for purpose in TENANT_PURPOSES:
                store.ensure_key(tenant.tenant_id, purpose)
        for region in (*sorted(sinks.regions), QUARANTINE_REGION):
            store.ensure_key(deadletter_key_owner(region), "deadletter")
    finally:
        store.close()


def pipeline_options(runner: str, workers: int, extra_flags: list[str] | None = None) -> PipelineOptions:
    """Beam options for an explicit runner; local multi-process execution with ``workers`` > 1.

    ``DaskRunner`` (Beam's, on a dask.distributed cluster: ``--dask_client_address HOST:PORT`` or
    ``--dask_scheduler_file``; without either Dask starts a local cluster) takes ``workers`` 1 only:
    its workers are the cluster's ``dask worker`` processes (deploy/dask/README.md). Unless
    ``--dask_npartitions`` or ``--dask_partition_size`` is given, each input range is its own Dask
    partition. Build DaskRunner options with this function (benchmarks and programs too): Beam's own
    default of 128 elements per partition puts a run of fewer than 129 input ranges in one partition,
    and every GroupByKey keeps its input's partition count, so the whole run up to the writer is one
    chain of tasks on one worker, however many workers the cluster has.
    """
    if workers < 1:
        raise ConfigError(f"workers {workers!r} must be at least 1")
    options = PipelineOptions(list(extra_flags or []))
    dask_runner = "apache_beam.runners.dask.dask_runner.DaskRunner"  # Beam knows it by this name only
    if runner in ("DaskRunner", dask_runner):
        if workers != 1:
            raise ConfigError(f"workers {workers!r} must be 1 with the DaskRunner: the cluster's dask worker "
                              "processes are its workers (start more of them to scale out)")
        from apache_beam.runners.dask.dask_runner import DaskOptions

        dask = options.view_as(DaskOptions)
        if dask.npartitions is None and dask.partition_size is None:
            dask.partition_size = 1
        runner = dask_runner
    options.view_as(StandardOptions).runner = runner
    if runner == "FnApiRunner" and workers > 1:
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = workers
        direct.direct_running_mode = "multi_processing"
    return options


def run(config: BatchConfig, options: PipelineOptions) -> dict:
    """Prepare keys, run the pipeline to completion and return the manifest.

    Raises KeystoreOpenError before anything is read when the keystore cannot be opened, and
    RunFailedError (one line naming the cause) when the pipeline fails; a failed run leaves no manifest.
    """
    import json

    try:
        prepare_keys(config.tenants, config.sinks, config.keystore)
    except (sqlite3.Error, OSError) as err:  # not a keystore (corrupt, a folder, ...): stop before reading
        raise KeystoreOpenError(
            f"cannot open the keystore at {config.keystore.path}: {type(err).__name__}: {err}"
        ) from None
    runner = options.view_as(StandardOptions).runner
    _LOG.info("run %s on %s: %d input pattern(s)", config.run_id, runner, len(config.inputs))
    extra = {"runner": runner, "started_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    path = manifest_path(config.sinks.default_root, config.run_id)
    started = time.time()
    result = None
    for name, value in WORKER_MALLOC_ENV.items():  # inherited by the local worker processes this run starts
        os.environ.setdefault(name, value)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, extra)  # a ConfigError here (an input that matches no file): nothing ran yet
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as err:
        # A failed run (a full disk, a key manager gone, a worker killed) reports no manifest: one
        # written by this run before the failure (e.g. the disk filled up while writing it) is removed.
        _remove_own_manifest(path, started)
        raise RunFailedError(
            f"run {config.run_id} failed, no manifest written (re-running the same input replaces the files "
            f"written so far): {_cause(err)}"
        ) from err
    finally:
        if getattr(result, "client", None) is not None:  # Beam's DaskRunner leaves its dask Client open
            result.client.close()
    with FileSystems.open(path) as handle:
        manifest = json.loads(handle.read())
    try:
        _write_metrics(config.sinks.default_root, config.run_id, result, time.time() - started)
    except OSError as err:  # the run is complete and reconciled: a missing metrics file only thins the report
        _LOG.warning("run %s: metrics not saved (%s: %s)", config.run_id, type(err).__name__, err.strerror or err)
    return manifest


def metric_value(item):
    """A queried Beam metric's committed value where the runner reports one, else its attempted value."""
    return item.committed if item.committed is not None else item.attempted


def _write_metrics(root: str, run_id: str, result, seconds: float) -> None:
    """Save the run's Beam counters and distributions (names and numbers only, never values).

    A runner that keeps no metrics (or fails to report them) leaves an empty list: the run itself
    succeeded, and the report says what it lacks.
    """
    import json

    counters, distributions = [], []
    try:
        queried = result.metrics().query()
    except Exception as err:  # noqa: BLE001 - e.g. a runner without metrics support
        _LOG.warning("run %s: the runner reported no metrics (%s)", run_id, type(err).__name__)
        queried = {}
    for item in queried.get("counters", []):
        counters.append({"step": item.key.step, "namespace": item.key.metric.namespace,
                         "name": item.key.metric.name, "value": int(metric_value(item) or 0)})
    for item in queried.get("distributions", []):
        value = metric_value(item)
        if value is None:
            continue
        distributions.append({"step": item.key.step, "namespace": item.key.metric.namespace,
                              "name": item.key.metric.name, "count": value.count, "sum": value.sum,
                              "min": value.min, "max": value.max})
    try:  # per-transform execution time: FnApiRunner's monitoring infos (a runner without them: none)
        monitored = result.monitoring_metrics().query()
    except Exception:  # noqa: BLE001 - the report then says time per stage is not recorded
        monitored = {}
    for item in monitored.get("counters", []):
        if item.key.step and item.key.metric.name.endswith("ptransform_execution_time:total_msecs:v1"):
            counters.append({"step": item.key.step, "namespace": "beam",
                             "name": "ptransform_execution_time:total_msecs", "value": int(metric_value(item) or 0)})
    doc = {"run_id": run_id, "seconds": round(seconds, 3), "counters": counters, "distributions": distributions}
    write_atomically(metrics_path(root, run_id), json.dumps(doc, indent=1, sort_keys=True).encode())


class RunFailedError(CcpipeError):
    """The pipeline failed while running; the message is one line naming the cause."""


def _cause(err: BaseException) -> str:
    """One line naming what failed: the last line of a runner's (possibly remote, multi-line) error."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if not last:
        return type(err).__name__
    return last if re.match(r"^[\w.]*(Error|Exception|Exit)\b", last) else f"{type(err).__name__}: {last}"


def _remove_own_manifest(path: str, started: float) -> None:
    try:
        match = FileSystems.match([path])[0].metadata_list
    except Exception:  # noqa: BLE001 - no such file (Beam raises), or a file system that cannot list: nothing to do
        return
    if match and match[0].last_updated_in_seconds >= started - 1:
        try:
            FileSystems.delete([path])
        except Exception:  # noqa: BLE001 - the run's own failure is what to report
            _LOG.warning("could not remove the manifest %s of the failed run", path)


def common_from_options(options: BatchOptions, streaming: bool = False, run_label: str = "") -> ProcessingConfig:
    """Sinks, keystore, tenants, restrictions, flows and PII settings from flags (errors name the flag).

    Records the run's sink roots in the control plane (``run_label`` names the run) before anything
    is written, so data-subject requests reach every copy.
    """
    from ccpipe.controlplane import dsar, sink_roots, tenants_repo
    from ccpipe.controlplane.db import ControlPlaneError, default_url, open_control_plane
    from ccpipe.tenants import load_tenants

    if not options.output:
        raise ConfigError("--output is required (the sink root)")
    regions = frozenset(r.strip() for r in options.sink_regions.split(",") if r.strip())
    overrides = _named_roots(options.sink, "--sink", "REGION")
    keystore_default = KeystoreConfig.default()
    keystore = KeystoreConfig(
        path=os.path.abspath(options.keystore) if options.keystore else keystore_default.path,
        master_key_file=os.path.abspath(options.master_key_file)
        if options.master_key_file
        else keystore_default.master_key_file,
        kms=options.kms or "",
    )
    output = _root(options.output)
    # The control plane is always consulted for restrictions: a subject who restricted processing
    # must be dead-lettered whichever tenants file a run is given.
    try:
        prepare_sqlite_url(options.control_plane)  # $CCPIPE_HOME 0700, control.db 0600
    except OSError as err:  # a folder on the path is a file, or cannot be created
        why = (f"{err.filename} is not a folder" if isinstance(err, (FileExistsError, NotADirectoryError))
               else f"{err.strerror or err}{f': {err.filename}' if err.filename else ''}")
        raise ControlPlaneError(f"cannot open the control plane at {options.control_plane or default_url()}: {why}") \
            from None
    cp = open_control_plane(options.control_plane)
    try:
        tenants = load_tenants(options.tenants) if options.tenants else tenants_repo.load(cp)
        if not tenants:
            raise ConfigError("no tenants: pass --tenants FILE or import them with 'ccpipe tenants import'")
        store = _open_keystore(keystore)
        try:
            restricted = dsar.restricted_pseudonyms(cp, store)
        finally:
            if store is not None:
                store.close()
        flows = FlowConfig(tuple(_named_roots(options.subprocessor_sink, "--subprocessor_sink", "NAME")),
                           _root(options.us_monitoring_sink) if options.us_monitoring_sink else "")
        roots = {output, *(r for _, r in overrides)}
        sink_roots.record(cp, roots, run_label or ("stream" if streaming else "batch"))
    finally:
        cp.close()
    pii = PiiConfig.from_yaml(options.pii_config, model=options.model) if options.pii_config else PiiConfig(
        model=options.model
    )
    sinks = SinkConfig(default_root=output, region_roots=tuple(overrides), regions=regions, shards=options.shards,
                       max_rows_per_file=options.max_rows_per_file,
                       streaming=streaming)
    return ProcessingConfig(tuple(tenants.values()), sinks, keystore, pii, ParseConfig(), restricted, flows,
                            options.control_plane or default_url())


def _root(uri: str) -> str:
    """A sink root as recorded and used: a Beam filesystem URI as given, a local path made absolute.

    Absolute, the control plane's record of a root means the same folder from any working directory.
    """
    return uri if "://" in uri else os.path.abspath(uri)


def _named_roots(items: list[str], flag: str, what: str) -> list[tuple[str, str]]:
    """``WHAT=URI`` flag values as (what, root) pairs; ConfigError naming the flag otherwise."""
    out = []
    for item in items:
        name, sep, root = item.partition("=")
        if not sep or not root:
            raise ConfigError(f"{flag} {item!r} must be {what}=URI")
        out.append((name, _root(root)))
    return out


def _open_keystore(keystore: KeystoreConfig):
    """The keystore to re-pseudonymize restricted subjects under every usable key version.

    None when it does not exist yet (a first run: the stored pseudonyms are then all there is).
    """
    if not os.path.exists(keystore.path):
        return None
    try:
        return SqliteKeyStore(keystore)
    except Exception:  # noqa: BLE001 - an unusable keystore is reported, clearly, where keys are prepared
        return None


def config_from_options(options: BatchOptions) -> BatchConfig:
    """Turn parsed flags into a validated BatchConfig (errors name the flag)."""
    if not options.input:
        raise ConfigError("--input is required (a file or glob, repeatable)")
    run_id = options.run_id or new_run_id()
    common = common_from_options(options, run_label=run_id)
    return BatchConfig(
        inputs=tuple(options.input),
        tenants=common.tenants,
        restricted=common.restricted,
        flows=common.flows,
        sinks=common.sinks,
        keystore=common.keystore,
        run_id=run_id,
        pii=common.pii,
    )
