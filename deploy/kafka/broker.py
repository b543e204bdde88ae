"""Start and stop a single-node Kafka broker in KRaft mode, from Maven Central jars, on loopback.

    python deploy/kafka/broker.py fetch                 # jars into .cache/kafka/libs (mvn, once)
    python deploy/kafka/broker.py start [--dir DIR] [--port 19092]
    python deploy/kafka/broker.py start --secure [--dir DIR] [--port 19092]   # SASL_SSL + SCRAM-SHA-256
    python deploy/kafka/broker.py stop [--dir DIR]

No Docker: the broker is ``java kafka.Kafka`` with the jars on the class path. The tests and the
streaming demo use it; it listens on 127.0.0.1 only.

Secured listeners (``protocols``): SSL and SASL_SSL need ``tls`` (a PEM file with the broker's
private key and certificate chain, and the CA that signed it: ``make_tls`` writes both with the
``cryptography`` package); SASL listeners use SCRAM-SHA-256/512 with the credentials in
``scram_users``, created when the storage is formatted (KRaft: ``kafka-storage format
--add-scram``). Passwords go to the formatter through a private Java argument file, never on a
command line; the controller listener (port + 1) stays PLAINTEXT on loopback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import ipaddress
import os
import re
import secrets
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
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
# The broker's own SCRAM user, for its inter-broker listener when that listener is a SASL one.
BROKER_USER = "ccpipe-broker"
_SAFE = re.compile(r"[A-Za-z0-9._~-]{1,128}")


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


def _private_file(path: Path, text: str) -> Path:
    """Write ``text`` to a file only its owner can read (it may hold passwords)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


def make_tls(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A fresh CA and a broker certificate for ``host`` (IP or DNS SAN): (keystore PEM, CA PEM).

    The keystore PEM holds the broker's unencrypted PKCS#8 key (mode 0600) and its certificate;
    the CA PEM is what clients pass as ``ssl_ca_location``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ccpipe test CA {secrets.token_hex(4)}")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    try:
        san = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    keystore = _private_file(folder / "broker-keystore.pem", key_pem + cert.public_bytes(pem).decode())
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    return keystore, ca_file


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

    def __init__(
        self,
        folder: Path,
        port: int = 19092,
        protocols: tuple[str, ...] = ("PLAINTEXT",),
        scram_users: dict[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``port``: the first client listener; the controller listens on ``port + 1``.

        ``protocols``: one client listener per security protocol, the first on ``port``, the next
        ones on ``port + 2``, ``port + 3``...; the first is also the inter-broker listener.
        ``scram_users``: name -> password, SCRAM-SHA-256 and -512 credentials (SASL listeners).
        ``tls``: (keystore PEM with key and certificate chain, CA PEM) for SSL listeners.
        """
        self.folder, self.port = Path(folder), port
        protocols = tuple(protocols)
        if not protocols or len(set(protocols)) != len(protocols) or not set(protocols) <= set(PROTOCOLS):
            raise ValueError(f"protocols {protocols!r} must be distinct values among {', '.join(PROTOCOLS)}")
        self.protocols = protocols
        self.ports = {p: port + (0 if i == 0 else i + 1) for i, p in enumerate(protocols)}
        self.scram_users = dict(scram_users or {})
        for name, password in self.scram_users.items():
            if not _SAFE.fullmatch(name) or not _SAFE.fullmatch(password):
                raise ValueError(f"SCRAM user {name!r}: names and passwords must match {_SAFE.pattern}")
        if any(p.startswith("SASL_") for p in protocols) and not self.scram_users:
            raise ValueError(f"protocols {protocols!r} have a SASL listener: scram_users must not be empty")
        if any(p.endswith("SSL") for p in protocols) and tls is None:
            raise ValueError(f"protocols {protocols!r} have an SSL listener: pass tls=(keystore PEM, CA PEM)")
        self.tls = tls
        self.bootstrap = f"127.0.0.1:{port}"

    def bootstrap_for(self, protocol: str) -> str:
        """``HOST:PORT`` of the listener for ``protocol``."""
        return f"127.0.0.1:{self.ports[protocol]}"

    def _broker_password(self) -> str:
        path = self.folder / "broker-scram.password"
        if not path.exists():
            _private_file(path, secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _config(self) -> Path:
        listeners = [f"{p}://127.0.0.1:{port}" for p, port in self.ports.items()]
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.port + 1}",
            f"listeners={','.join(listeners)},CONTROLLER://127.0.0.1:{self.port + 1}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=" + ",".join(f"{p}:{p}" for p in PROTOCOLS) + ",CONTROLLER:PLAINTEXT",
            f"inter.broker.listener.name={self.protocols[0]}",
            f"log.dirs={self.folder / 'data'}",
            "num.partitions=2",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
        ]
        if self.scram_users:
            password = self._broker_password()
            lines += [f"sasl.enabled.mechanisms={','.join(SCRAM_MECHANISMS)}",
                      "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256"]
            for protocol in self.protocols:
                if protocol.startswith("SASL_"):
                    for mechanism in SCRAM_MECHANISMS:
                        module = "org.apache.kafka.common.security.scram.ScramLoginModule required"
                        lines.append(
                            f"listener.name.{protocol.lower()}.{mechanism.lower()}.sasl.jaas.config="
                            f'{module} username="{BROKER_USER}" password="{password}";'
                        )
        if self.tls is not None:
            keystore, ca = self.tls
            lines += [
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={Path(keystore).resolve()}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={Path(ca).resolve()}",
                "ssl.client.auth=none",
                "ssl.endpoint.identification.algorithm=https",
            ]
        return _private_file(self.folder / "server.properties", "\n".join([*lines, ""]))

    def _format(self, config: Path) -> None:
        """Format the storage; SCRAM credentials through a private Java argument file, not argv."""
        args = ["-Xmx512m", "-cp", f"{LIBS}/*", "kafka.tools.StorageTool", "format",
                "-t", uuid.uuid4().hex[:22], "-c", str(config)]
        users = {**self.scram_users, BROKER_USER: self._broker_password()} if self.scram_users else {}
        for name, password in users.items():
            for mechanism in SCRAM_MECHANISMS:
                args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        argfile = _private_file(self.folder / "format.args", "\n".join(f'"{a}"' for a in args) + "\n")
        try:
            subprocess.run(["java", f"@{argfile}"], check=True, capture_output=True, text=True, timeout=120)
        finally:
            argfile.unlink(missing_ok=True)

    def start(self, timeout: float = 90) -> None:
        """Format storage on first start, launch the broker, wait for its port."""
        fetch()
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self._config()
        if not (self.folder / "data" / "meta.properties").exists():
            self._format(config)
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
                try:  # our own child exits as a zombie until reaped: reap it, or wait 20 s for nothing
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        break
                except ChildProcessError:
                    pass  # started by another process: poll until it is gone
                os.kill(pid, 0)
                time.sleep(0.2)
            else:
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
    parser.add_argument("--secure", action="store_true",
                        help="start: a SASL_SSL listener (SCRAM-SHA-256, user 'ccpipe', password and CA in --dir)")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    if args.action == "start" and args.secure:
        folder.mkdir(parents=True, exist_ok=True)
        password_file = folder / "ccpipe.password"
        if not password_file.exists():
            _private_file(password_file, secrets.token_urlsafe(24))
        if not (folder / "ca.pem").exists():
            make_tls(folder)
        tls = (folder / "broker-keystore.pem", folder / "ca.pem")
        broker = Broker(folder, args.port, ("SASL_SSL",), {"ccpipe": password_file.read_text().strip()}, tls)
    else:
        broker = Broker(folder, args.port)
    if args.action == "fetch":
        print(fetch())
    elif args.action == "start":
        broker.start()
        print(f"Kafka broker at {broker.bootstrap} (state in {args.dir})")
        if args.secure:
            print(f"source URL: kafka://{broker.bootstrap}/TOPIC?security_protocol=SASL_SSL"
                  f"&sasl_mechanism=SCRAM-SHA-256&sasl_username=ccpipe&sasl_password_file={password_file}"
                  f"&ssl_ca_location={folder / 'ca.pem'}")
    else:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
