"""Streaming benchmark: ``python -m bench.stream`` (or ``make bench-stream``).

Starts a Kafka broker (KRaft, loopback) and ``ccpipe stream`` on Prism, produces chat transcripts so
that chat *messages* arrive at ``--rate`` per second for ``--seconds``, and measures, per message,
the event-to-sink latency (the Parquet file's write time minus the event time stamped at send),
then prints sustained messages/s, p50/p99 latency, and whether every record arrived exactly once.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="chat messages per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "deploy" / "kafka"))
    from broker import Broker

    from fixtures.generate import generate
    from fixtures.replay import replay

    work = Path(tempfile.mkdtemp(prefix="ccpipe-bench-stream-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = Broker(work / "kafka", port)
    broker.start()
    n_chats = int(args.rate * args.seconds / 3.5) + 1
    generate(work / "corpus", seed=args.seed, n_tenants=8, n_calls=0, n_chats=n_chats, n_telemetry=0, n_registrations=0)
    from ccpipe.tenants import load_tenants

    active = {t.tenant_id for t in load_tenants(work / "corpus" / "tenants.yaml").values() if t.status == "active"}
    # Only active tenants: a terminated tenant's live records are (rightly) dead-lettered, not timed here.
    lines = [
        line
        for line in (work / "corpus" / "input" / "chats.jsonl").read_bytes().splitlines()
        if json.loads(line)["tenant_id"] in active
    ]
    messages = sum(len(json.loads(line)["messages"]) for line in lines)
    per_record = messages / len(lines)
    # Warm up: the job starts (Prism, model) before the timed stream begins.
    env = {**os.environ, "CCPIPE_HOME": str(work / "home"), "CCPIPE_PRISM": str(ROOT / ".cache" / "bin" / "prism")}
    env.pop("CCPIPE_MASTER_KEY", None)
    out = work / "out"
    log = open(work / "stream.log", "wb")
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ccpipe.cli",
            "stream",
            "--source",
            f"kafka://{broker.bootstrap}/bench?group=bench",
            "--tenants",
            str(work / "corpus" / "tenants.yaml"),
            "--output",
            str(out),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        warm = [lines[0]]
        replay(warm, broker.bootstrap, "bench", rate=10)
        deadline = time.time() + 180
        while time.time() < deadline and not list(out.glob("region=*/dataset=chat_messages/*/*.parquet")):
            time.sleep(0.5)
        start = time.time()
        sent = replay(lines[1:], broker.bootstrap, "bench", rate=args.rate / per_record)
        produced_for = time.time() - start
        ids = {json.loads(line)["record_id"] for line in lines}
        deadline = time.time() + 120
        seen: dict[str, int] = {}
        latencies: list[float] = []
        while time.time() < deadline:
            seen, latencies, last, first, timeline = {}, [], 0.0, float("inf"), []
            for path in out.glob("region=*/dataset=*/dt=*/part-*.parquet"):
                dataset = path.parent.parent.name.split("=", 1)[1]
                if dataset not in ("chat_messages", "_deadletter"):
                    continue
                written = path.stat().st_mtime
                for row in pq.read_table(path).to_pylist():
                    rid = row["record_id"]
                    if dataset == "chat_messages":
                        if row["seq"] == 0:
                            seen[rid] = seen.get(rid, 0) + 1
                        sent_at = _dt.datetime.fromisoformat(row["sent_at"]).timestamp()
                        if sent_at >= start:
                            latencies.append(written - sent_at)
                            timeline.append((sent_at - start, written - sent_at))
                            last = max(last, written)
                            first = min(first, written)
                    elif rid:
                        seen[rid] = seen.get(rid, 0) + 1
            if ids <= set(seen):
                break
            time.sleep(1)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        broker.stop()
    missing = len(ids - set(seen))
    dups = sum(1 for v in seen.values() if v > 1)
    timed_messages = len(latencies)
    # Messages into the sinks per second between the first and the last timed write.
    sustained = timed_messages / max(last - first, 1e-9) if latencies else 0.0
    print(
        f"{os.cpu_count()} cores; produced {sent + 1} transcripts ({messages} messages) at {args.rate:g} msgs/s "
        f"target for {produced_for:.1f} s"
    )
    print(f"first write at +{first - start:.1f} s, last at +{last - start:.1f} s")
    print(
        f"sustained: {sustained:.0f} msgs/s into the sinks; latency event->sink p50 {_percentile(latencies, 0.5):.2f} s"
        f", p99 {_percentile(latencies, 0.99):.2f} s, max {max(latencies):.2f} s"
    )
    buckets: dict[int, list[float]] = {}
    for at, lat in timeline:
        buckets.setdefault(int(at // 10) * 10, []).append(lat)
    print(
        "p50 / p99 latency by send time: "
        + ", ".join(
            f"{b}-{b + 10}s {_percentile(v, 0.5):.1f}/{_percentile(v, 0.99):.1f}" for b, v in sorted(buckets.items())
        )
    )
    print(f"lost {missing}, duplicated {dups} (of {len(ids)} records)")
    return 0 if missing == 0 and dups == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
