"""Soak benchmark: ``python -m bench.soak`` (``make soak``; not part of ``make test``).

Streams chat transcripts into ``ccpipe stream`` on Prism from a local KRaft broker so that chat
*messages* arrive at ``--rate`` per second (as ``bench.stream`` counts them) for ``--minutes``, and
in the middle injects two faults: a broker outage (at one third: the broker is stopped for
``--outage-seconds`` and started again) and a job restart (at two thirds: the job's process
group, job and Prism, is SIGKILLed and a new job started on the same group and output). Then
prints lost and duplicated records, event-to-sink latency (p50/p99/max; the Parquet file's write
time minus the time the record was sent), the committed offsets against the topic's end, and the
job's resident memory (job process and Prism, summed) after warm-up and at the end of each job.

    python -m bench.soak                        # 200 msgs/s for 10 minutes
    python -m bench.soak --minutes 2 --rate 100
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
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
TOPIC, GROUP = "soak", "soak"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def group_rss_mib(pgid: int) -> float:
    """Resident memory (MiB) of every process in process group ``pgid`` (the job and its Prism)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


class Sinks:
    """What the sinks hold, read incrementally (a file is read again only if it changed)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._files: dict[Path, tuple[float, list[tuple[str, float | None]]]] = {}

    def scan(self) -> tuple[dict[str, int], list[tuple[float, float]]]:
        """(times each record id is held, [(sent at, latency s)] of chat records)."""
        for path in self.out.glob("region=*/dataset=*/dt=*/part-*.parquet"):
            dataset = path.parent.parent.name.split("=", 1)[1]
            if dataset not in ("chat_messages", "_deadletter"):
                continue
            try:
                mtime = path.stat().st_mtime
                if self._files.get(path, (None,))[0] == mtime:
                    continue
                rows = pq.read_table(path).to_pylist()
            except (OSError, ValueError):
                continue  # replaced while reading: next scan
            entries = []
            for row in rows:
                if dataset == "chat_messages":
                    if row["seq"] == 0:
                        sent = _dt.datetime.fromisoformat(row["sent_at"]).timestamp()
                        entries.append((row["record_id"], sent))
                elif row["record_id"]:
                    entries.append((row["record_id"], None))
            self._files[path] = (mtime, entries)
        seen: dict[str, int] = {}
        latencies = []
        for mtime, entries in self._files.values():
            for rid, sent in entries:
                seen[rid] = seen.get(rid, 0) + 1
                if sent is not None:
                    latencies.append((sent, mtime - sent))
        return seen, latencies


class Job:
    """``ccpipe stream`` in its own process group."""

    def __init__(self, work: Path, bootstrap: str, n: int) -> None:
        env = {**os.environ, "CCPIPE_HOME": str(work / "home"), "CCPIPE_PRISM": str(ROOT / ".cache" / "bin" / "prism")}
        env.pop("CCPIPE_MASTER_KEY", None)
        self.log = open(work / f"stream-{n}.log", "wb")  # noqa: SIM115 - closed in kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ccpipe.cli", "stream", "--source", f"kafka://{bootstrap}/{TOPIC}?group={GROUP}",
             "--tenants", str(work / "corpus" / "tenants.yaml"), "--output", str(work / "out")],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def rss(self) -> float:
        """Resident memory of the job's process group, MiB."""
        return group_rss_mib(self.process.pid)

    def alive(self) -> bool:
        """Whether the job process still runs."""
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the job's process group (job and Prism)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=60)
        self.log.close()


def committed_and_end(bootstrap: str) -> tuple[int, int]:
    """(committed offsets of the group, messages in the topic), summed over partitions; -1 if unknown."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        parts = [p for p in consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions]
        tps = [TopicPartition(TOPIC, p) for p in parts]
        done = sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
        end = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)
        return done, end
    except (KafkaException, KeyError):
        return -1, -1
    finally:
        consumer.close()


def corpus_lines(work: Path, seed: int, rate: float, seconds: float) -> tuple[list[bytes], float]:
    """Chat transcripts of active tenants for ``rate`` messages/s over ``seconds``, and messages per record.

    A generated pool of transcripts, cloned under fresh record ids.
    """
    from ccpipe.tenants import load_tenants
    from fixtures.generate import generate

    generate(work / "corpus", seed=seed, n_tenants=8, n_calls=0, n_chats=600, n_telemetry=0, n_registrations=0)
    active = {t.tenant_id for t in load_tenants(work / "corpus" / "tenants.yaml").values() if t.status == "active"}
    pool = [json.loads(line) for line in (work / "corpus" / "input" / "chats.jsonl").read_bytes().splitlines()]
    pool = [record for record in pool if record["tenant_id"] in active]
    per_record = sum(len(record["messages"]) for record in pool) / len(pool)
    lines = []
    for i in range(max(2, int(rate * seconds / per_record))):
        record = dict(pool[i % len(pool)])
        record["record_id"] = f"{record['record_id']}-soak{i:07d}"
        lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True).encode())
    return lines, per_record


def wait_until(predicate, timeout: float, poll: float = 1.0) -> bool:
    """True as soon as ``predicate()`` is (checked every ``poll`` s), False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print its figures; exit status 1 if a record was lost or duplicated."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long records are produced")
    parser.add_argument("--rate", type=float, default=200.0, help="chat messages per second")
    parser.add_argument("--outage-seconds", type=float, default=20.0, help="how long the broker is down")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, output)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "deploy" / "kafka"))
    from broker import Broker

    from fixtures.replay import replay

    work = Path(tempfile.mkdtemp(prefix="ccpipe-soak-"))
    seconds = args.minutes * 60
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = Broker(work / "kafka", port)
    broker.start()
    jobs: list[Job] = []
    rss: list[tuple[str, float]] = []
    events: list[str] = []
    try:
        lines, per_record = corpus_lines(work, args.seed, args.rate, seconds)
        ids = {json.loads(line)["record_id"] for line in lines}
        sinks = Sinks(work / "out")

        # Warm-up: one record through a fresh job (Prism, model), before the timed stream.
        warm, lines = lines[0], lines[1:]
        jobs.append(Job(work, broker.bootstrap, 1))
        replay([warm], broker.bootstrap, TOPIC, rate=10)
        if not wait_until(lambda: len(sinks.scan()[0]) > 0, 300, poll=0.5):
            raise SystemExit(f"the job wrote nothing in 300 s; see {work}/stream-1.log")
        rss.append(("job 1 after warm-up", jobs[0].rss()))

        sent: list[int] = []
        producer = threading.Thread(
            target=lambda: sent.append(replay(lines, broker.bootstrap, TOPIC, rate=args.rate / per_record)),
            daemon=True,
        )
        start = time.time()
        producer.start()

        def at(fraction: float) -> None:
            pause = start + fraction * seconds - time.time()
            if pause > 0:
                time.sleep(pause)

        at(1 / 3)
        events.append(f"+{time.time() - start:.0f} s broker stopped")
        broker.stop()
        down = time.monotonic()
        while time.monotonic() - down < args.outage_seconds:
            time.sleep(0.5)
            if not jobs[-1].alive():
                raise SystemExit(f"the job died during the broker outage; see {jobs[-1].log.name}")
        broker.start()
        events.append(f"+{time.time() - start:.0f} s broker started")

        at(2 / 3)
        rss.append(("job 1 before SIGKILL", jobs[-1].rss()))
        jobs[-1].kill()
        events.append(f"+{time.time() - start:.0f} s job SIGKILLed and restarted")
        jobs.append(Job(work, broker.bootstrap, 2))

        producer.join()
        produced_for = time.time() - start
        rss.append(("job 2 when production ended", jobs[-1].rss()))
        seen, latencies = sinks.scan()
        if not wait_until(lambda: ids <= set(sinks.scan()[0]) or not jobs[-1].alive(), 600, poll=2.0):
            events.append("not every record in the sinks 600 s after production ended")
        drained_at = time.time() - start
        # Offsets are committed ~2 s after the records are written; 120 s is a generous bound.
        wait_until(lambda: committed_and_end(broker.bootstrap)[0] == len(lines) + 1, 120, poll=1.0)
        done, end = committed_and_end(broker.bootstrap)
        rss.append(("job 2 at end", jobs[-1].rss()))
        seen, latencies = sinks.scan()
    finally:
        for job in jobs:
            if not job.log.closed:
                job.kill()
        broker.stop()

    lost = len(ids - set(seen))
    duplicated = sum(1 for rid, n in seen.items() if rid in ids and n > 1)
    timed = [lat for t, lat in latencies if t >= start]
    steady = [lat for t, lat in latencies if start <= t < start + seconds / 3]
    print(
        f"{os.cpu_count()} cores; {len(ids)} transcripts ({per_record:.1f} messages each) at {args.rate:g} msgs/s "
        f"target, produced for {produced_for:.0f} s (acknowledged {sum(sent) + 1}); all in the sinks at "
        f"+{drained_at:.0f} s"
    )
    print("faults: " + "; ".join(events))
    print(f"lost {lost}, duplicated {duplicated} (of {len(ids)} records)")
    print(
        f"latency event->sink: p50 {_percentile(timed, 0.5):.2f} s, p99 {_percentile(timed, 0.99):.2f} s, "
        f"max {max(timed, default=float('nan')):.2f} s over all records; before the faults p99 "
        f"{_percentile(steady, 0.99):.2f} s"
    )
    print(f"offsets: committed {done} of {end} in the topic")
    print("job RSS (job + Prism): " + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in rss))
    if args.keep:
        print(f"work folder: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if lost == 0 and duplicated == 0 and done == end else 1


if __name__ == "__main__":
    raise SystemExit(main())
