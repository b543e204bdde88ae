"""Kafka over TLS and SASL/SCRAM: settings validated at construction, a real secured broker.

The broker (``deploy/kafka/broker.py``) has a SASL_SSL listener (SCRAM-SHA-256/512, a CA made here
with ``cryptography``), a SASL_PLAINTEXT one and a PLAINTEXT one. ccpipe's producer, reader and
offset committer round-trip records with the right credentials; wrong credentials, an untrusted
CA, or a security protocol that does not match the listener fail closed with a clear error
within ``FAIL_WITHIN`` seconds, and the password shows up in no URL, command line, log or message.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ccpipe.errors import ConfigError
from fixtures.replay import replay
from transforms.kafka_io import (
    KafkaConfig,
    KafkaConnectionError,
    KafkaSecurityError,
    _CommitContiguousFn,
    _consumer,
    _KafkaReader,
    check_connection,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "kafka"))
from broker import Broker, make_tls  # noqa: E402

CONNECT_TIMEOUT = 6.0  # connect_timeout of the configs that must not get an answer
FAIL_WITHIN = 20.0  # every failure below is reported within this many seconds (no hang)
HUNTER = "hunter2-never-shown"


def _free_ports(count: int) -> int:
    """A port P with P .. P + count - 1 all free on loopback."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for offset in range(1, count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kafka-secure")
    keystore, ca = make_tls(folder / "tls")
    password = secrets.token_urlsafe(18)
    broker = Broker(folder, _free_ports(4), ("SASL_SSL", "SASL_PLAINTEXT", "PLAINTEXT"), {"ccpipe": password},
                    (keystore, ca))
    broker.start()
    try:
        yield SimpleNamespace(
            broker=broker, password=password, ca=ca, folder=folder,
            password_file=_private(folder / "ccpipe.password", password + "\n"),
            ssl=broker.bootstrap_for("SASL_SSL"), sasl_plain=broker.bootstrap_for("SASL_PLAINTEXT"),
            plain=broker.bootstrap_for("PLAINTEXT"),
        )
    finally:
        broker.stop()


def sasl_ssl_url(s, topic: str, **extra: str) -> str:
    query = {"group": "g-" + topic, "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
             "sasl_username": "ccpipe", "sasl_password_file": str(s.password_file), "ssl_ca_location": str(s.ca),
             "connect_timeout": str(CONNECT_TIMEOUT), **extra}
    return f"kafka://{s.ssl}/{topic}?" + "&".join(f"{k}={v}" for k, v in query.items() if v)


def read_back(config: KafkaConfig, count: int, timeout: float = 60) -> list[bytes]:
    """Values read by ccpipe's reader (readers re-created as Beam does per bundle) until ``count``."""
    got: list[bytes] = []
    mark = None
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        reader = _KafkaReader(config, mark)
        try:
            # As Beam's ReadFromUnboundedSource: a record start()/advance() reports is always
            # emitted; the bundle's deadline is checked only between records (start() itself may
            # take longer than a bundle while the group coordinator is loading).
            more = reader.start()
            bundle_end = time.monotonic() + 1
            while len(got) < count:
                if more:
                    got.append(reader.get_current().data)
                if time.monotonic() >= bundle_end or len(got) >= count:
                    break
                more = reader.advance()
            mark = reader.get_checkpoint_mark()
        finally:
            reader.close()
    return got


class _Value:
    """In-memory stand-in for the committer's ReadModifyWrite state."""

    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value


class _Bag:
    """In-memory stand-in for the committer's bag state."""

    def __init__(self):
        self.items = []

    def read(self):
        return list(self.items)

    def add(self, item):
        self.items.append(item)

    def clear(self):
        self.items = []


def committed_total(config: KafkaConfig) -> int:
    from confluent_kafka import TopicPartition

    consumer = _consumer(config)
    try:
        parts = consumer.committed([TopicPartition(config.topic, p) for p in (0, 1)], timeout=10)
        return sum(max(tp.offset, 0) for tp in parts)
    finally:
        consumer.close()


# --- settings, no broker ----------------------------------------------------------------------------


def test_security_protocol_must_be_one_of_the_four():
    with pytest.raises(ConfigError, match=r"security_protocol 'TLS' must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, "
                                          r"SASL_SSL"):
        KafkaConfig.from_url("kafka://127.0.0.1:1/t?security_protocol=TLS", environ={})
    # lower case, as librdkafka property files often spell it, is accepted
    assert KafkaConfig.from_url("kafka://h:1/t?security_protocol=ssl", environ={}).security_protocol == "SSL"


def test_ca_file_must_exist_and_needs_tls(tmp_path):
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=f"ssl_ca_location '{missing}' is not an existing file"):
        KafkaConfig.from_url(f"kafka://h:1/t?security_protocol=SSL&ssl_ca_location={missing}", environ={})
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match="ssl_ca_location given but security_protocol 'PLAINTEXT' does not use TLS"):
        KafkaConfig.from_url(f"kafka://h:1/t?ssl_ca_location={ca}", environ={})


def test_unknown_or_repeated_query_parameters_are_errors_not_plain_text():
    with pytest.raises(ConfigError, match="unknown query parameter 'security_protocl'; allowed: group, security_prot"):
        KafkaConfig.from_url("kafka://h:1/t?security_protocl=SASL_SSL", environ={})
    with pytest.raises(ConfigError, match="'security_protocol' is given twice"):
        KafkaConfig.from_url("kafka://h:1/t?security_protocol=SSL&security_protocol=PLAINTEXT", environ={})


def test_password_never_accepted_in_the_url_nor_echoed():
    for url in (f"kafka://h:1/t?security_protocol=SASL_SSL&sasl_password={HUNTER}",
                f"kafka://ccpipe:{HUNTER}@h:1/t?security_protocol=SASL_SSL"):
        with pytest.raises(ConfigError, match=r"environment variable \(?CCPIPE_KAFKA_SASL_PASSWORD") as err:
            KafkaConfig.from_url(url, environ={})
        assert HUNTER not in str(err.value)


def test_sasl_rules(tmp_path):
    base = "kafka://h:1/t?security_protocol=SASL_SSL&sasl_username=u"
    env = {"CCPIPE_KAFKA_SASL_PASSWORD": HUNTER}
    with pytest.raises(ConfigError, match="sasl_mechanism None must be one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN"):
        KafkaConfig.from_url(base, environ=env)
    with pytest.raises(ConfigError, match="sasl_mechanism 'PLAIN' sends the password in clear text"):
        KafkaConfig.from_url("kafka://h:1/t?security_protocol=SASL_PLAINTEXT&sasl_mechanism=PLAIN&sasl_username=u",
                             environ=env)
    with pytest.raises(ConfigError, match="sasl_username is required with security_protocol SASL_SSL"):
        KafkaConfig.from_url("kafka://h:1/t?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-256", environ=env)
    with pytest.raises(ConfigError, match=r"environment variable CCPIPE_KAFKA_SASL_PASSWORD \(sasl_password_env\) is "
                                          "not set"):
        KafkaConfig.from_url(base + "&sasl_mechanism=SCRAM-SHA-256", environ={})
    with pytest.raises(ConfigError, match="sasl_username given but security_protocol 'PLAINTEXT' does not authent"):
        KafkaConfig.from_url("kafka://h:1/t?sasl_username=u", environ={})
    empty = _private(tmp_path / "empty", "\n")
    with pytest.raises(ConfigError, match=f"sasl_password_file '{empty}' is empty"):
        KafkaConfig.from_url(base + f"&sasl_mechanism=SCRAM-SHA-256&sasl_password_file={empty}", environ={})
    with pytest.raises(ConfigError, match="must come from one place, not sasl_password_file and sasl_password_env"):
        KafkaConfig.from_url(base + f"&sasl_mechanism=SCRAM-SHA-256&sasl_password_file={empty}"
                             "&sasl_password_env=X", environ={})
    with pytest.raises(ConfigError, match="connect_timeout 'soon' must be a number of seconds"):
        KafkaConfig.from_url("kafka://h:1/t?connect_timeout=soon", environ={})


def test_properties_file_and_environment(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    props = _private(tmp_path / "client.properties", "\n".join([
        "# librdkafka style", "security.protocol=sasl_ssl", "sasl.mechanisms=SCRAM-SHA-512", "sasl.username=ccpipe",
        f"sasl.password={HUNTER}", f"ssl.ca.location={ca}", ""]))
    config = KafkaConfig.from_url("kafka://h:1/t", environ={"CCPIPE_KAFKA_PROPERTIES_FILE": str(props)})
    assert (config.security_protocol, config.sasl_mechanism, config.sasl_username) == ("SASL_SSL", "SCRAM-SHA-512",
                                                                                       "ccpipe")
    conf = config.client_config()
    assert conf["sasl.password"] == HUNTER and conf["ssl.ca.location"] == str(ca)
    assert conf["enable.ssl.certificate.verification"] is True and conf["ssl.endpoint.identification.algorithm"]
    # the config travels inside the pipeline: it holds where the password is, never the password
    assert HUNTER not in repr(config) and HUNTER.encode() not in pickle.dumps(config)
    # a URL setting that contradicts the file is an error, not a silent choice
    with pytest.raises(ConfigError, match="sets security.protocol but security_protocol is 'SASL_PLAINTEXT'"):
        KafkaConfig.from_url(f"kafka://h:1/t?security_protocol=SASL_PLAINTEXT&properties_file={props}", environ={})
    # properties that weaken TLS (or anything else ccpipe sets itself) are refused, naming the key only
    weak = _private(tmp_path / "weak.properties", f"enable.ssl.certificate.verification=false\nsasl.password={HUNTER}")
    with pytest.raises(ConfigError, match="line 1: key 'enable.ssl.certificate.verification' is not allowed") as err:
        KafkaConfig.from_url(f"kafka://h:1/t?properties_file={weak}", environ={})
    assert HUNTER not in str(err.value)
    # every setting from the environment, the password from the variable it names
    env = {"CCPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CCPIPE_KAFKA_SASL_MECHANISM": "scram-sha-256",
           "CCPIPE_KAFKA_SASL_USERNAME": "ccpipe", "CCPIPE_KAFKA_SASL_PASSWORD_ENV": "MY_SECRET"}
    os.environ["MY_SECRET"] = HUNTER
    try:
        config = KafkaConfig.from_url("kafka://h:1/t", environ=env)
        assert config.client_config()["sasl.password"] == HUNTER
    finally:
        del os.environ["MY_SECRET"]
    with pytest.raises(ConfigError, match="environment variable MY_SECRET"):
        config.client_config()


# --- a real secured broker ----------------------------------------------------------------------------


def test_sasl_ssl_producer_reader_committer_round_trip(secure):
    from confluent_kafka import TopicPartition

    config = KafkaConfig.from_url(sasl_ssl_url(secure, "tls-rt"), environ={})
    check_connection(config)
    lines = [json.dumps({"n": i}).encode() for i in range(30)]
    assert replay(lines, config.bootstrap, config.topic, rate=500, restamp_times=False, kafka=config) == 30
    assert sorted(read_back(config, 30)) == sorted(lines)
    committer = _CommitContiguousFn(config)
    committer.setup()
    try:
        for partition in (0, 1):
            low = committer._low(partition)
            high = committer._consumer.get_watermark_offsets(TopicPartition(config.topic, partition), timeout=10)[1]
            list(committer.process((partition, list(range(low, high))), next_state=_Value(), done_state=_Bag()))
    finally:
        committer.teardown()
    assert committed_total(config) == 30


def test_sasl_plaintext_with_scram_sha_512_and_password_from_environment(secure, monkeypatch):
    monkeypatch.setenv("CCPIPE_KAFKA_SASL_PASSWORD", secure.password)
    url = (f"kafka://{secure.sasl_plain}/sasl-rt?group=g&security_protocol=SASL_PLAINTEXT"
           "&sasl_mechanism=SCRAM-SHA-512&sasl_username=ccpipe")
    config = KafkaConfig.from_url(url)
    lines = [f"r{i}".encode() for i in range(10)]
    assert replay(lines, config.bootstrap, config.topic, rate=500, restamp_times=False, kafka=config) == 10
    assert sorted(read_back(config, 10)) == sorted(lines)


def test_wrong_password_fails_closed_fast_with_a_clear_error(secure, monkeypatch):
    monkeypatch.setenv("WRONG_PASSWORD", HUNTER)
    config = KafkaConfig.from_url(sasl_ssl_url(secure, "tls-bad", sasl_password_file="",
                                               sasl_password_env="WRONG_PASSWORD"), environ={})
    started = time.monotonic()
    with pytest.raises(KafkaSecurityError, match="refused the connection .*SASL authentication error") as err:
        check_connection(config)
    assert time.monotonic() - started < FAIL_WITHIN and HUNTER not in str(err.value)
    # the reader and the producer (without the start-up check) refuse on their own too
    reader = _KafkaReader(config, None)
    started = time.monotonic()
    with pytest.raises(KafkaSecurityError):
        reader.start()
    reader.close()
    no_check = KafkaConfig.from_url(sasl_ssl_url(secure, "tls-bad", sasl_password_file="",
                                                 sasl_password_env="WRONG_PASSWORD", connect_timeout="0"), environ={})
    with pytest.raises(KafkaSecurityError):
        replay([b"x"], no_check.bootstrap, no_check.topic, rate=10, kafka=no_check)
    assert time.monotonic() - started < 2 * FAIL_WITHIN


@pytest.mark.parametrize("listener", ["ssl", "sasl_plain"])
def test_plaintext_client_on_a_secured_listener_gets_no_answer(secure, listener):
    config = KafkaConfig.from_url(f"kafka://{getattr(secure, listener)}/t?connect_timeout={CONNECT_TIMEOUT}",
                                  environ={})
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError, match="did not answer within 6 s with security_protocol PLAINTEXT"):
        check_connection(config)
    assert time.monotonic() - started < CONNECT_TIMEOUT + 5
    with pytest.raises(KafkaConnectionError):
        replay([b"x"], config.bootstrap, config.topic, rate=10, kafka=config)


def test_tls_client_never_falls_back_to_plain_text(secure):
    url = sasl_ssl_url(secure, "t").replace(secure.ssl, secure.plain)
    with pytest.raises(KafkaConnectionError, match="did not answer within 6 s with security_protocol SASL_SSL"):
        check_connection(KafkaConfig.from_url(url, environ={}))


def test_untrusted_certificate_is_refused(secure, tmp_path):
    _, other_ca = make_tls(tmp_path / "other")
    for ca in (str(other_ca), ""):  # another CA; the system's CAs
        config = KafkaConfig.from_url(sasl_ssl_url(secure, "t", ssl_ca_location=ca), environ={})
        started = time.monotonic()
        with pytest.raises(KafkaSecurityError, match="certificate verify failed"):
            check_connection(config)
        assert time.monotonic() - started < FAIL_WITHIN


def test_the_password_is_on_no_command_line_and_in_no_broker_file_but_its_own(secure):
    pid = int((secure.folder / "broker.pid").read_text())
    assert secure.password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert not (secure.folder / "format.args").exists()
    assert secure.password not in (secure.folder / "broker.log").read_text(errors="replace")
    assert (secure.folder / "server.properties").stat().st_mode & 0o077 == 0


def test_cli_fixtures_producer_and_stream_job_fail_closed_without_leaking(secure, tmp_path):
    """``ccpipe fixtures --to-kafka`` (settings from CCPIPE_KAFKA_*) and ``ccpipe stream``, wrong password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCPIPE_KAFKA_")}
    env |= {"CCPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CCPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "CCPIPE_KAFKA_SASL_USERNAME": "ccpipe", "CCPIPE_KAFKA_SSL_CA_LOCATION": str(secure.ca),
            "CCPIPE_KAFKA_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT), "CCPIPE_KAFKA_SASL_PASSWORD": secure.password}
    fixtures = [sys.executable, "-m", "ccpipe.cli", "fixtures", "--out", str(tmp_path / "fx"), "--tenants", "8",
                "--calls", "5", "--chats", "5", "--telemetry", "5", "--registrations", "2",
                "--to-kafka", f"kafka://{secure.ssl}/cli-topic", "--rate", "500"]
    ok = subprocess.run(fixtures, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "sent " in ok.stdout and " records to cli-topic" in ok.stdout
    bad = subprocess.run(fixtures, env=env | {"CCPIPE_KAFKA_SASL_PASSWORD": HUNTER}, capture_output=True, text=True,
                         timeout=FAIL_WITHIN + 30)
    assert bad.returncode == 2 and "refused the connection" in bad.stderr, bad.stderr
    stream = subprocess.run(
        [sys.executable, "-m", "ccpipe.cli", "stream", "--source", f"kafka://{secure.ssl}/cli-topic?group=g",
         "--tenants", str(tmp_path / "fx" / "tenants.yaml"), "--output", str(tmp_path / "out")],
        env=env | {"CCPIPE_KAFKA_SASL_PASSWORD": HUNTER, "CCPIPE_HOME": str(tmp_path / "home"),
                   "CCPIPE_PRISM": str(ROOT / ".cache" / "bin" / "prism")},
        capture_output=True, text=True, timeout=FAIL_WITHIN + 60,
    )
    assert stream.returncode == 2 and "refused the connection" in stream.stderr, stream.stderr[-3000:]
    for run in (ok, bad, stream):
        assert HUNTER not in run.stdout + run.stderr and secure.password not in run.stdout + run.stderr


def test_stream_job_over_sasl_ssl_writes_every_record_once_and_commits(secure, tmp_path):
    """``ccpipe stream`` on Prism with a SASL_SSL source: records reach the sinks, offsets are committed."""
    from test_streaming import PRISM, StreamJob, produced_ids, sink_counts, wait_for

    from ccpipe.jsonl import read_lines
    from fixtures.generate import generate

    assert PRISM.exists(), "build Prism first: make prism"
    corpus = tmp_path / "corpus"
    generate(corpus, seed=5, n_tenants=8, n_calls=6, n_chats=6, n_telemetry=6, n_registrations=2)
    lines = read_lines([str(corpus / "input" / "*")])
    url = sasl_ssl_url(secure, "tls-stream")
    config = KafkaConfig.from_url(url, environ={})
    assert replay(lines, config.bootstrap, config.topic, rate=400, kafka=config) == len(lines)
    out = tmp_path / "out"
    job = StreamJob(corpus, out, tmp_path / "home", url)
    try:
        ids = produced_ids(corpus, with_bad=False)
        assert wait_for(lambda: set(ids) <= set(sink_counts(out)), 240, job), "not every record reached the sinks"
        assert wait_for(lambda: committed_total(config) == len(lines), 60, job), "offsets were not committed"
    finally:
        job.kill()
    seen = sink_counts(out)
    assert [i for i in ids if seen[i] != 1] == []
    assert secure.password not in Path(job.log.name).read_text(errors="replace")
