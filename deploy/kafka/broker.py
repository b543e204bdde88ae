"""Start and stop a single-node Kafka broker in KRaft mode, from Maven Central jars, on loopback.

    python deploy/kafka/broker.py fetch                 # jars into .cache/kafka/libs (mvn, once)
    python deploy/kafka/broker.py start [--dir DIR] [--port 19092]
    python deploy/kafka/broker.py stop [--dir DIR]

No Docker: the broker is ``java kafka.Kafka`` with the jars on the class path. The tests and the
streaming demo use it; it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBS = ROOT / ".cache" / "kafka" / "libs"
POM = Path(__file__).with_name("pom.xml")


def fetch() -> Path:
    """Download the broker's jars with Maven (skipped when present)."""
    if (LIBS / ".fetched").exists():
        return LIBS
    LIBS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={LIBS}"],
        check=True,
    )
    (LIBS / ".fetched").touch()
    return LIBS


def _java(*args: str, **kwargs) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = ["java", "-Xmx512m", "-cp", f"{LIBS}/*", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, **kwargs)


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False


class Broker:
    """A broker whose state lives in ``folder`` (data, config, log, pid)."""

    def __init__(self, folder: Path, port: int = 19092) -> None:
        """``port``: the client listener; the controller listens on ``port + 1``."""
        self.folder, self.port = Path(folder), port
        self.bootstrap = f"127.0.0.1:{port}"

    def _config(self) -> Path:
        path = self.folder / "server.properties"
        path.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.port + 1}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.port + 1}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.folder / 'data'}",
                "num.partitions=2",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "",
            ])
        )
        return path

    def start(self, timeout: float = 90) -> None:
        """Format storage on first start, launch the broker, wait for its port."""
        fetch()
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self._config()
        if not (self.folder / "data" / "meta.properties").exists():
            _java("kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22], "-c", str(config))
        log = open(self.folder / "broker.log", "ab")
        process = subprocess.Popen(
            ["java", "-Xmx768m", f"-Dkafka.logs.dir={self.folder}", "-cp", f"{LIBS}/*", "kafka.Kafka", str(config)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        (self.folder / "broker.pid").write_text(str(process.pid))
        if not _wait_port(self.port, timeout):
            self.stop()
            raise RuntimeError(f"Kafka broker did not open port {self.port}; see {self.folder / 'broker.log'}")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 20 s); its data stays for a restart."""
        pid_file = self.folder / "broker.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.2)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: fetch, start, stop."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["fetch", "start", "stop"])
    parser.add_argument("--dir", default=str(ROOT / ".cache" / "kafka" / "broker"))
    parser.add_argument("--port", type=int, default=19092)
    args = parser.parse_args(argv)
    broker = Broker(Path(args.dir), args.port)
    if args.action == "fetch":
        print(fetch())
    elif args.action == "start":
        broker.start()
        print(f"Kafka broker at {broker.bootstrap} (state in {args.dir})")
    else:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
