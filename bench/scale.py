"""Scaling benchmark: ``python -m bench.scale`` (or ``make bench-scale``).

On generated corpora of two sizes (multiples of the ``ccpipe fixtures`` default of 200 calls, 200
chats, 300 telemetry events and 50 registrations), in one run, it measures records per second and
peak RSS for:

    trivial       read lines, json.loads, one Map, write Parquet (Beam alone, FnApiRunner in process)
    telemetry     ccpipe batch on the telemetry file only (FnApiRunner in process)
    mix-no-reg    ccpipe batch on calls, chats and telemetry (no registrations: no password hashing)
    mix           ccpipe batch on the full mix (FnApiRunner in process, as ``ccpipe batch``)
    local-1       the full mix on 1 local worker process (FnApiRunner multi_processing)
    local-2       the full mix on 2 local worker processes (FnApiRunner multi_processing)
    dask-1        the full mix on a Dask cluster of 1 worker (``dask worker --nthreads 1``)
    dask-2        the full mix on a Dask cluster of 2 workers

then password hashes per second at the parameters ccpipe uses (``ccpipe.crypto.hash_password``),
and the ratios against their targets, each marked PASS or MISS (never asserted).

Every measurement runs in a fresh process; its time excludes process start-up and includes model
loading and Beam. Peak RSS is each process's high-water mark (``VmHWM`` in ``/proc/<pid>/status``,
read with psutil every 0.2 s for the measured process and every process under it, and for Dask
workers); "main" is the process that runs the pipeline (with the in-process FnApiRunner it is also
the worker, and holds the runner's shuffle buffers), "per worker" is the largest worker process.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The fixtures generator's defaults (``ccpipe fixtures``): what size 1 means.
DEFAULT = {"calls": 200, "chats": 200, "telemetry": 300, "registrations": 50}
CONFIGS = ("trivial", "telemetry", "mix-no-reg", "mix", "local-1", "local-2", "dask-1", "dask-2")
MIB = 1024 * 1024


@dataclass
class Measurement:
    """One configuration at one size."""

    config: str
    size: float
    records: int = 0
    seconds: float = 0.0
    main_peak: int = 0  # bytes
    worker_peak: int = 0  # bytes, largest worker process (0: the main process is the worker)
    workers: int = 0
    main_cpu: float = 0.0  # CPU seconds of the process that runs the pipeline (start-up included)
    worker_cpu: list[float] = field(default_factory=list)  # CPU seconds of each worker process
    error: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Records per second (0 when the run failed)."""
        return self.records / self.seconds if self.seconds and not self.error else 0.0

    @property
    def per_worker(self) -> int:
        """Peak RSS of the process that does the work: a worker process, else the main one."""
        return self.worker_peak or self.main_peak


def _hwm(proc) -> int:
    """A process's peak RSS so far in bytes (VmHWM), 0 if it is gone."""
    try:
        with open(f"/proc/{proc.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # not Linux: the current RSS is the best psutil offers
        return proc.memory_info().rss
    except Exception:  # noqa: BLE001 - the process ended between two polls
        return 0


class _Watcher:
    """Poll the peak RSS of a process, every process under it, and extra processes (Dask workers)."""

    def __init__(self, pid: int, extra_pids: tuple[int, ...] = ()) -> None:
        import psutil

        self._psutil = psutil
        self._root = psutil.Process(pid)
        self._extra = [psutil.Process(p) for p in extra_pids]
        self.peaks: dict[int, int] = {}
        self.cpu: dict[int, float] = {}  # user + system CPU seconds at the last reading
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except self._psutil.Error:
            procs = []
        for proc in [*procs, *self._extra]:
            peak = _hwm(proc)
            if peak:
                self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), peak)
                try:
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
                except self._psutil.Error:
                    pass
                if proc.pid not in self.names:
                    try:
                        self.names[proc.pid] = " ".join(proc.cmdline()[:6])
                    except self._psutil.Error:
                        self.names[proc.pid] = "?"

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._poll()

    def stop(self) -> None:
        """Take a last reading and stop."""
        self._poll()
        self._stop.set()
        self._thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _DaskCluster:
    """A local ``dask scheduler`` and ``dask worker --nthreads 1`` processes (no nanny, no dashboard)."""

    def __init__(self, workers: int, work: Path, env: dict[str, str]) -> None:
        self.address = f"127.0.0.1:{_free_port()}"
        bin_dir = Path(sys.executable).parent
        dask = str(bin_dir / "dask") if (bin_dir / "dask").exists() else "dask"
        self._log = open(work / f"dask-{workers}.log", "wb")  # noqa: SIM115 - closed in stop()
        host, port = self.address.split(":")
        self.scheduler = subprocess.Popen(
            [dask, "scheduler", "--host", host, "--port", port, "--no-dashboard", "--no-show"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(work))
        self.workers = [
            subprocess.Popen(
                [dask, "worker", f"tcp://{self.address}", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--memory-limit", "0", "--local-directory", str(work / f"dask-worker-{i}")],
                stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(work))
            for i in range(workers)
        ]
        try:
            from distributed import Client

            with Client(self.address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=120)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the workers, then the scheduler (only the processes this cluster started)."""
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()


def _corpus(work: Path, size: float, seed: int) -> tuple[Path, dict[str, int]]:
    from fixtures.generate import generate

    out = work / f"corpus-{size:g}x"
    counts = {k: max(1, round(v * size)) for k, v in DEFAULT.items()}
    got = generate(out, seed=seed, n_tenants=14, n_calls=counts["calls"], n_chats=counts["chats"],
                   n_telemetry=counts["telemetry"], n_registrations=counts["registrations"])
    return out, got


# --- the child process: one measurement --------------------------------------------------------------------------


def _child_trivial(corpus: Path, out: Path) -> tuple[int, float]:
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.options.pipeline_options import PipelineOptions

    schema = pa.schema([("type", pa.string()), ("record_id", pa.string()), ("tenant_id", pa.string()),
                        ("fields", pa.int64())])
    lines = sum(1 for p in (corpus / "input").iterdir() for _ in _open_lines(p))
    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        _ = (
            p
            | beam.io.ReadFromText(str(corpus / "input" / "*"))
            | beam.Map(json.loads)
            | beam.Map(lambda r: {"type": r.get("type"), "record_id": r.get("record_id"),
                                  "tenant_id": r.get("tenant_id"), "fields": len(r)})
            | beam.io.WriteToParquet(str(out / "trivial" / "part"), schema, file_name_suffix=".parquet")
        )
    return lines, time.perf_counter() - start


def _open_lines(path: Path):
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        yield from (line for line in handle if line.strip())


def _child_ccpipe(spec: dict) -> tuple[int, float]:

    from apache_beam.options.pipeline_options import DirectOptions

    from ccpipe.keystore import KeystoreConfig
    from ccpipe.tenants import load_tenants
    from pipelines.batch import BatchConfig, pipeline_options, run
    from transforms.route import SinkConfig

    corpus, out = Path(spec["corpus"]), Path(spec["out"])
    files = {"telemetry": ["telemetry.jsonl.gz"],
             "mix-no-reg": ["calls.jsonl", "chats.jsonl", "telemetry.jsonl.gz"]}.get(
        spec["config"], ["calls.jsonl", "chats.jsonl", "telemetry.jsonl.gz", "registrations.jsonl"])
    config = BatchConfig(
        inputs=tuple(str(corpus / "input" / f) for f in files),
        tenants=tuple(load_tenants(corpus / "tenants.yaml").values()),
        sinks=SinkConfig(default_root=str(out / "sink")),
        keystore=KeystoreConfig(path=str(out / "home" / "ks.db"), master_key_file=str(out / "home" / "mk")),
        run_id="bench-scale",
    )
    if spec.get("dask"):  # as ccpipe batch --runner DaskRunner: one Dask partition per input range
        options = pipeline_options("DaskRunner", 1, [f"--dask_client_address={spec['dask']}"])
    else:
        options = pipeline_options("FnApiRunner", 1)
        if spec.get("workers"):  # local-N: N worker processes, also for N = 1 (their RSS is what is measured)
            direct = options.view_as(DirectOptions)
            direct.direct_num_workers = spec["workers"]
            direct.direct_running_mode = "multi_processing"
    start = time.perf_counter()
    manifest = run(config, options)
    seconds = time.perf_counter() - start
    if not manifest["reconciled"]:
        raise RuntimeError("the run did not reconcile (records read != written + dead-lettered)")
    return manifest["records_read"], seconds


def _child(spec: dict) -> int:
    import resource

    os.makedirs(spec["out"], exist_ok=True)
    if spec["config"] == "trivial":
        records, seconds = _child_trivial(Path(spec["corpus"]), Path(spec["out"]))
    else:
        records, seconds = _child_ccpipe(spec)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print("BENCH-RESULT " + json.dumps({"records": records, "seconds": seconds, "maxrss": own}), flush=True)
    return 0


# --- the parent: run each measurement in its own process ---------------------------------------------------------


def _measure(config: str, size: float, corpus: Path, work: Path, env: dict[str, str], timeout: float) -> Measurement:
    m = Measurement(config, size)
    out = work / "runs" / f"{config}-{size:g}x"
    spec: dict = {"config": config, "corpus": str(corpus), "out": str(out)}
    cluster = None
    if config.startswith("local-"):
        spec["workers"] = m.workers = int(config.split("-")[1])
    if config.startswith("dask-"):
        m.workers = int(config.split("-")[1])
        try:
            cluster = _DaskCluster(m.workers, work, env)
        except Exception as err:  # noqa: BLE001 - reported in the table, the benchmark goes on
            m.error = f"failed: cluster did not start: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
            return m
        spec["dask"] = cluster.address
    log = work / f"{config}-{size:g}x.log"
    try:
        with open(log, "wb") as handle:
            proc = subprocess.Popen([sys.executable, "-m", "bench.scale", "--child", json.dumps(spec)],
                                    stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
            watcher = _Watcher(proc.pid, tuple(w.pid for w in cluster.workers) if cluster else ())
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
            watcher.stop()
    finally:
        if cluster is not None:
            cluster.stop()
    text = log.read_text(errors="replace")
    result = next((json.loads(line.split(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("BENCH-RESULT ")), None)
    if code != 0 or result is None:
        m.error = "failed: " + (f"timed out after {timeout:.0f} s" if code is None else _last_error(text))
        return m
    m.records, m.seconds = result["records"], result["seconds"]
    m.main_peak = max(result["maxrss"], watcher.peaks.get(proc.pid, 0))
    m.main_cpu = watcher.cpu.get(proc.pid, 0.0)
    if cluster is not None:
        m.worker_peak = max((watcher.peaks.get(w.pid, 0) for w in cluster.workers), default=0)
        m.worker_cpu = [watcher.cpu.get(w.pid, 0.0) for w in cluster.workers]
    elif m.workers:
        others = [pid for pid in watcher.peaks if pid != proc.pid and "python" in watcher.names.get(pid, "")]
        m.worker_peak = max((watcher.peaks[pid] for pid in others), default=0)
        m.worker_cpu = [watcher.cpu.get(pid, 0.0) for pid in others]
        m.extra["worker_processes"] = len(others)
    return m


def _last_error(text: str) -> str:
    """The last line of a failed child's output that names an error (never a payload: errors name causes)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line or "error:" in line:
            return line[:200]
    return lines[-1][:200] if lines else "no output"


def _hash_scheme(encoded: str) -> str:
    """The scheme and cost parameters of a stored hash, as its own text states them (never the salt or hash)."""
    if encoded.startswith("$"):  # PHC form: $argon2id$v=19$m=19456,t=2,p=1$salt$hash
        return " ".join(encoded.split("$")[1:4])
    return " ".join(encoded.split("$")[:4])  # scrypt$N$r$p$salt$hash


def _hash_rate(seconds: float) -> tuple[float, str]:
    from ccpipe import crypto

    params = _hash_scheme(crypto.hash_password("warm up"))  # the parameters in use, from ccpipe itself
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        crypto.hash_password(f"correct horse {n}")
        n += 1
    return n / (time.perf_counter() - start), params


def _mib(n: int) -> str:
    return f"{n / MIB:.0f}" if n else "-"


def _verdict(value: float | None, ok: bool) -> str:
    return "n/a " if value is None else ("PASS" if ok else "MISS")


def _ratio(a: Measurement | None, b: Measurement | None) -> float | None:
    if a is None or b is None or not a.rate or not b.rate:
        return None
    return a.rate / b.rate


def report(results: list[Measurement], sizes: list[float], hashes: tuple[float, str] | None) -> list[str]:
    """The table, the hash rate and the ratios with their targets (PASS/MISS), as lines."""
    lines = [f"{'config':<12}{'size':>6}{'records':>9}{'seconds':>9}{'records/s':>11}"
             f"{'peak RSS main MiB':>19}{'per worker MiB':>16}   CPU s main / workers"]
    for m in results:
        if m.error:
            lines.append(f"{m.config:<12}{m.size:>5g}x   {m.error}")
            continue
        worker = _mib(m.worker_peak) if m.workers else "(main)"
        cpu = f"{m.main_cpu:.0f}" + (" / " + " ".join(f"{c:.0f}" for c in m.worker_cpu) if m.worker_cpu else "")
        lines.append(f"{m.config:<12}{m.size:>5g}x{m.records:>9}{m.seconds:>9.1f}{m.rate:>11.1f}"
                     f"{_mib(m.main_peak):>19}{worker:>16}   {cpu}")
    if hashes is not None:
        lines += ["", f"password hashes/s: {hashes[0]:.1f} ({hashes[1]}; ccpipe.crypto.hash_password, one core)"]
    by = {(m.config, m.size): m for m in results}
    big, small = max(sizes), min(sizes)
    lines += ["", f"ratios at the larger size ({big:g}x):"]
    checks = [
        ("telemetry / trivial", _ratio(by.get(("telemetry", big)), by.get(("trivial", big))), 0.15),
        ("mix-no-reg / trivial", _ratio(by.get(("mix-no-reg", big)), by.get(("trivial", big))), 0.05),
        ("local-2 / local-1", _ratio(by.get(("local-2", big)), by.get(("local-1", big))), 1.8),
        ("dask-2 / dask-1", _ratio(by.get(("dask-2", big)), by.get(("dask-1", big))), 1.6),
    ]
    for name, value, target in checks:
        shown = "-" if value is None else f"{value:.3f}x"
        verdict = _verdict(value, value is not None and value >= target)
        lines.append(f"  {name:<24}{shown:>9}   target >= {target}x   {verdict}")
    if big != small:
        lines.append(f"peak RSS per worker, {big:g}x vs {small:g}x (target within +-15%):")
        for config in CONFIGS:
            a, b = by.get((config, big)), by.get((config, small))
            if a is None or b is None or a.error or b.error or not a.per_worker or not b.per_worker:
                continue
            change = a.per_worker / b.per_worker - 1
            where = "worker process" if a.workers else "main process (in-process runner)"
            lines.append(f"  {config:<12}{_mib(b.per_worker):>6} -> {_mib(a.per_worker):>6} MiB  {change:+7.1%}   "
                         f"{_verdict(change, abs(change) <= 0.15)}   ({where})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run every configuration at both sizes and print the table and the ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4,16", help="corpus sizes as multiples of the fixtures default")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one measurement may take")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each configuration at each size; the fastest is reported (a shared "
                             "machine's speed drifts by 10%% between runs a minute apart)")
    parser.add_argument("--hash-seconds", type=float, default=3.0, help="how long to measure password hashing")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny corpora, trivial and telemetry only, a short hash measurement")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (corpora, outputs, logs)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(json.loads(args.child))

    if args.quick:
        args.sizes, args.configs, args.hash_seconds = "0.1,0.2", "trivial,telemetry", 0.3
    try:
        sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r} must be comma-separated numbers, e.g. 4,16")
    if not sizes or any(s <= 0 for s in sizes):
        parser.error(f"--sizes {args.sizes!r} must name at least one size above 0")
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats} must be at least 1")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"--configs {unknown} unknown; allowed: {','.join(CONFIGS)}")

    work = Path(tempfile.mkdtemp(prefix="ccpipe-bench-scale-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("CCPIPE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    env["CCPIPE_HOME"] = str(work / "ccpipe-home")
    # Every measured process (in-process runs, local and Dask workers) with the allocator settings ccpipe
    # gives its worker processes (pipelines.batch.WORKER_MALLOC_ENV); the trivial pipeline too, alike.
    from pipelines.batch import WORKER_MALLOC_ENV

    for name, value in WORKER_MALLOC_ENV.items():
        env.setdefault(name, value)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, load average {load:.1f} at start; sizes {','.join(f'{s:g}x' for s in sizes)} "
          f"of the fixtures default ({', '.join(f'{v} {k}' for k, v in DEFAULT.items())}); work folder {work}",
          flush=True)
    results: list[Measurement] = []
    try:
        for size in sorted(sizes):
            corpus, counts = _corpus(work, size, args.seed)
            print(f"corpus {size:g}x: " + ", ".join(f"{v} {k}" for k, v in counts.items() if k != "truth"), flush=True)
            for config in configs:
                runs = [_measure(config, size, corpus, work, env, args.timeout) for _ in range(args.repeats)]
                ok = [r for r in runs if not r.error]
                m = min(ok, key=lambda r: r.seconds) if ok else runs[-1]  # the fastest run, with its own RSS
                results.append(m)
                state = m.error or f"{m.records} records in {m.seconds:.1f} s"
                if len(ok) > 1:
                    state += " (best of " + ", ".join(f"{r.seconds:.1f}" for r in ok) + " s)"
                print(f"  {config:<12}{state}", flush=True)
        try:
            hashes = _hash_rate(args.hash_seconds)
        except Exception as err:  # noqa: BLE001 - the table is still worth printing
            hashes = (0.0, f"failed: {type(err).__name__}: {str(err)[:120]}")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print()
        print("\n".join(report(results, sizes, hashes)))
        print(f"\nload average {load:.1f} at the end; peak RSS: VmHWM from /proc/<pid>/status (psutil, every 0.2 s); "
              "figures are from a shared machine unless it was idle")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
