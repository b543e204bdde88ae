"""The batch pipeline on a real dask.distributed cluster (Beam's DaskRunner) equals FnApiRunner's run.

A ``dask scheduler`` and two ``dask worker`` processes run on loopback for the module; they import
ccpipe from the same virtualenv and get the session's master key and $CCPIPE_HOME in their
environment, as deploy/dask/README.md asks of every worker machine.

Row comparison: both runs use the same keystore, so pseudonyms, redacted copies, key versions, file
names (a digest of each file's row keys) and every other value are deterministic, except two:
AES-GCM ciphertext (random nonce: compared by length, which is the plaintext's length plus a fixed
overhead) and Argon2 password hashes (random salt: compared by their algorithm and parameters).
Decryption is covered by tests/test_batch_e2e.py; here the point is that both runners compute the
same rows into the same partitions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from ccpipe.errors import ConfigError
from pipelines.batch import metrics_path, pipeline_options, run
from transforms.manifest import manifest_path
from transforms.route import SideOutput, SinkConfig, SplitTagged

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
START_TIMEOUT_S = 120  # a loaded 2-core machine imports Beam and Dask slowly
RUN_SPECIFIC = ("run_id", "runner", "started_at")


def _wait_for(condition, timeout: float, what: str, procs: list[subprocess.Popen]):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args[1]} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.1)  # polling interval of a condition, not a wait for time to pass


def _scheduler_address(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory, master_key_env):
    """(scheduler address, worker processes): a real scheduler and two single-threaded workers on loopback."""
    from distributed import Client

    base = tmp_path_factory.mktemp("dask")
    scheduler_file = base / "scheduler.json"
    dask = str(Path(sys.executable).parent / "dask")
    # CCPIPE_MASTER_KEY and CCPIPE_HOME of the session, as every worker machine needs; and this folder,
    # so that the scheduler and workers can unpickle the DoFns defined in this module.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                      os.environ.get("PYTHONPATH")]))}
    procs: list[subprocess.Popen] = []
    logs = []

    def start(name: str, args: list[str]) -> subprocess.Popen:
        log = open(base / f"{name}.log", "wb")  # closed in the teardown
        logs.append(log)
        proc = subprocess.Popen([dask, *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=base)
        procs.append(proc)
        return proc

    try:
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                            "--scheduler-file", str(scheduler_file)])
        address = _wait_for(lambda: _scheduler_address(scheduler_file), START_TIMEOUT_S, "scheduler", procs)
        workers = [
            start(f"worker{i}", ["worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
                                 "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                                 "--local-directory", str(base / f"w{i}")])
            for i in (1, 2)
        ]
        with Client(address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        yield address, workers
    finally:
        for proc in reversed(procs):  # workers first, then the scheduler
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def _close_dask_client() -> None:
    """Close the client Beam's DaskRunner opened (and left as the process's default) for a run."""
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:  # none
        return
    client.close()


def _snapshot(root: Path) -> dict[str, dict[str, list]]:
    """Partition file (relative path) -> column -> deterministic values (see the module docstring)."""
    out = {}
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        columns = {}
        for name in table.column_names:
            values = table.column(name).to_pylist()
            if pa.types.is_binary(table.column(name).type):
                values = [None if v is None else len(v) for v in values]
            elif name == "password_hash":
                values = [None if v is None else v.rsplit("$", 2)[0] for v in values]  # $argon2id$v=..$m=..,t=..,p=..
            columns[name] = values
        out[str(path.relative_to(root))] = columns
    return out


def _partitions(snapshot: dict) -> set[str]:
    return {rel.rsplit("/", 1)[0] for rel in snapshot}


def _manifest(root: Path, run_id: str) -> dict:
    """The manifest without what names the run (its files are listed relative to the root: comparable as written)."""
    manifest = json.loads(Path(manifest_path(str(root), run_id)).read_text())
    return {k: v for k, v in manifest.items() if k not in RUN_SPECIFIC}


def test_batch_on_dask_equals_fnapirunner(batch_run, dask_cluster, tmp_path):
    address, workers = dask_cluster
    config, local_manifest = batch_run
    local_root = Path(config.sinks.default_root)
    dask_root = tmp_path / "out"
    dask_config = dataclasses.replace(config, sinks=SinkConfig(default_root=str(dask_root)), run_id="dask-1")
    options = pipeline_options("DaskRunner", 1, ["--dask_client_address", address])
    try:
        manifest = run(dask_config, options)  # the same keystore as the FnApiRunner run
    finally:
        _close_dask_client()
    assert all(w.poll() is None for w in workers), "a dask worker died during the run"

    assert manifest["runner"] == DASK_RUNNER and local_manifest["runner"] == "FnApiRunner"
    assert manifest["reconciled"] is True
    assert _manifest(dask_root, "dask-1") == _manifest(local_root, config.run_id)
    local, dask = _snapshot(local_root), _snapshot(dask_root)
    assert _partitions(dask) == _partitions(local)
    assert sorted(dask) == sorted(local)  # the same file names: the same row keys per file
    for rel in sorted(local):
        assert dask[rel] == local[rel], rel
    assert len(local) == manifest["files_written"] > 100

    # Beam 2.77's DaskRunner keeps no metrics (its result's metrics() raises NotImplementedError):
    # the run succeeds and its metrics file says so with empty lists, and still records the wall time.
    dask_metrics = json.loads(Path(metrics_path(str(dask_root), "dask-1")).read_text())
    local_metrics = json.loads(Path(metrics_path(str(local_root), config.run_id)).read_text())
    assert dask_metrics["counters"] == [] and dask_metrics["distributions"] == []
    assert local_metrics["counters"]
    print(f"\nwall time at 1x fixture size (information only): FnApiRunner {local_metrics['seconds']:.1f} s, "
          f"DaskRunner on 2 local workers {dask_metrics['seconds']:.1f} s")


class _Parity(beam.DoFn):
    def process(self, n):
        yield n if n % 2 == 0 else SideOutput("odd", n)


def test_split_tagged_keeps_outputs_apart_on_dask(dask_cluster, tmp_path):
    """Beam's DaskRunner hands every output of a with_outputs ParDo to every consumer; SplitTagged does not."""
    address, _ = dask_cluster
    out = tmp_path / "parity"
    out.mkdir()

    def record(values, name):
        (out / name).write_text(json.dumps(sorted(values)))
        return name

    options = pipeline_options("DaskRunner", 1, ["--dask_client_address", address])
    try:
        with beam.Pipeline(options=options) as p:
            split = p | beam.Create(range(10)) | beam.ParDo(_Parity()) | SplitTagged(("odd",), main="even")
            even = split["even"] | "AllEven" >> beam.combiners.ToList() | "Even" >> beam.Map(record, "even")
            odd = split["odd"] | "AllOdd" >> beam.combiners.ToList() | "Odd" >> beam.Map(record, "odd")
            # Beam's DaskRunner computes only what the last transform depends on: join both branches.
            _ = (even, odd) | beam.Flatten() | "Both" >> beam.combiners.Count.Globally()
    finally:
        _close_dask_client()
    assert json.loads((out / "even").read_text()) == [0, 2, 4, 6, 8]
    assert json.loads((out / "odd").read_text()) == [1, 3, 5, 7, 9]


def test_dask_runner_by_name_with_one_partition_per_input_range():
    """Beam knows the DaskRunner by its qualified name only; ``--runner DaskRunner`` failed before."""
    from apache_beam.runners.dask.dask_runner import DaskOptions

    options = pipeline_options("DaskRunner", 1, ["--dask_client_address", "127.0.0.1:8786"])
    assert options.view_as(StandardOptions).runner == DASK_RUNNER
    dask = options.view_as(DaskOptions)
    assert (dask.address, dask.partition_size, dask.npartitions) == ("127.0.0.1:8786", 1, None)
    chosen = pipeline_options(DASK_RUNNER, 1, ["--dask_npartitions", "8"]).view_as(DaskOptions)
    assert (chosen.partition_size, chosen.npartitions) == (None, 8)


def _dask_partitions(config, options) -> dict[str, int]:
    """Transform label -> Dask partitions of its bag, as Beam's DaskRunner translates the batch graph (nothing runs)."""
    from apache_beam.runners.dask.dask_runner import DaskOptions, DaskRunner
    from apache_beam.runners.dask.overrides import dask_overrides

    from pipelines.batch import build

    pipeline = beam.Pipeline(runner="FnApiRunner", options=options)
    build(pipeline, config)
    pipeline.replace_all(dask_overrides())  # as DaskRunner.run_pipeline, up to the client
    dask = options.view_as(DaskOptions).get_all_options(drop_default=True, current_only=True)
    visitor = DaskRunner.to_dask_bag_visitor(DaskOptions._extract_bag_kwargs(dask))
    pipeline.visit(visitor)
    return {applied.full_label: bag.npartitions for applied, bag in visitor.bags.items() if bag is not None}


def test_work_spreads_over_one_dask_partition_per_input_range(corpus, tmp_path):
    """With ``pipeline_options`` every stage up to the writer has one partition per input range: up to that many
    workers share the work. Options built without it (as ``bench.scale`` did) get Beam's default of 128 ranges
    per partition: the whole run up to the writer is one chain of tasks, on one worker, however many there are."""
    from conftest import make_config

    config = make_config(corpus, tmp_path / "out", tmp_path / "home", "graph")  # 4 input files + bad.jsonl
    stages = ("ReadInputs/ReadRanges", "ProcessRecords/DeduplicateRecords/GroupByRecordId/GroupByKey",
              "ProcessRecords/TagPii/GroupByShard/GroupByKey")
    ours = _dask_partitions(config, pipeline_options("DaskRunner", 1, ["--dask_client_address", "127.0.0.1:8786"]))
    assert [ours[s] for s in stages] == [5, 5, 5]
    bare = PipelineOptions(["--dask_client_address", "127.0.0.1:8786"])
    assert [_dask_partitions(config, bare)[s] for s in stages] == [1, 1, 1]


def test_workers_flag_is_refused_with_dask():
    with pytest.raises(ConfigError, match=r"workers 2 must be 1 with the DaskRunner"):
        pipeline_options("DaskRunner", 2, ["--dask_client_address", "127.0.0.1:8786"])
