"""Kafka in and out of the streaming pipeline: read a topic, commit offsets once records are safe.

``ReadFromKafkaTopic`` is a Beam ``UnboundedSource`` (``apache_beam.io.unbounded_source``) over a
confluent-kafka consumer that is *assigned* the topic's partitions (no group membership) and starts
at the consumer group's committed offsets. It never commits itself: ``CommitKafkaOffsets`` commits
an offset only when every record before it has been written to a sink or dead-lettered, so a job
killed at any moment loses nothing; records after the last commit are read again on restart and
the sinks drop them by record id (at-least-once delivery, exactly-once in the sinks). The commit
itself runs on a background thread (``_OffsetCommitter``) that retries every ``COMMIT_RETRY_SECONDS``
until the broker takes it: after an outage, offsets catch up within that long of the broker
answering again, with or without new records.

Each record's coordinates travel in its ``source``: ``kafka:<topic>:<partition>:<offset>``.

Security (``KafkaConfig``): ``security_protocol`` PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL;
SASL with SCRAM-SHA-256/512 (PLAIN only over TLS); ``ssl_ca_location`` a CA file. Settings come
from the source URL's query (``kafka://H:P/TOPIC?group=G&security_protocol=SASL_SSL&...``), else
``CCPIPE_KAFKA_<SETTING>`` environment variables, else a librdkafka properties file
(``properties_file``). The SASL password is never a setting: it is read, each time a client is
built (on the workers too), from ``sasl_password_file``, the environment variable named by
``sasl_password_env`` (default ``CCPIPE_KAFKA_SASL_PASSWORD``) or the properties file's
``sasl.password``; the config (which is pickled into the pipeline) holds only where to find it.
Fail closed: unknown or contradictory settings are errors, certificates and host names are always
verified, authentication or TLS failures stop the client instead of being retried, and a job
checks at start that the broker answers with these settings (``connect_timeout``).
"""

import logging
import os
import stat
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.io.unbounded_source import CheckpointMark, UnboundedReader, UnboundedSource
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Duration, Timestamp

from ccpipe.errors import CcpipeError, ConfigError
from ccpipe.types import RawInput, WriteResult

_LOG = logging.getLogger(__name__)
SOURCE_PREFIX = "kafka:"

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
ENV_PREFIX = "CCPIPE_KAFKA_"
PASSWORD_ENV = "CCPIPE_KAFKA_SASL_PASSWORD"
# Settings a source URL (and CCPIPE_KAFKA_<NAME>) may carry, and the librdkafka properties they match.
_SETTINGS = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_username": "sasl.username",
    "sasl_password_file": None,
    "sasl_password_env": None,
    "ssl_ca_location": "ssl.ca.location",
    "properties_file": None,
    "connect_timeout": None,
}
_PROPERTIES = {v: k for k, v in _SETTINGS.items() if v} | {"sasl.mechanisms": "sasl_mechanism", "sasl.password": None}
# librdkafka error codes that mean "these credentials or this TLS setup are refused": never retried.
_SECURITY_ERRORS = ("_AUTHENTICATION", "_SSL", "SASL_AUTHENTICATION_FAILED", "ILLEGAL_SASL_STATE",
                    "UNSUPPORTED_SASL_MECHANISM", "TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED",
                    "CLUSTER_AUTHORIZATION_FAILED")


class KafkaConnectionError(CcpipeError):
    """The broker did not answer with the configured settings within ``connect_timeout``."""


class KafkaSecurityError(KafkaConnectionError):
    """The broker refused the credentials, or TLS failed: fail closed, never retried, never plain text."""


def redact_url(url: str) -> str:
    """``url`` without user info and query (which may carry secrets): for messages and logs."""
    parsed = urllib.parse.urlparse(url)
    host = parsed.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunparse((parsed.scheme, host, parsed.path, "", "", ""))


def _read_properties(path: str) -> dict[str, str]:
    """A librdkafka properties file (``key=value`` lines, ``#`` comments), only the keys ccpipe allows.

    Errors name the file, the line number and the key, never a value (it may be a password).
    """
    try:
        text = open(path, encoding="utf-8").read()  # noqa: SIM115 - read at once
    except OSError as err:
        raise ConfigError(f"properties_file {path!r} cannot be read ({err.strerror})") from None
    props: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"properties_file {path!r} line {number}: expected key=value")
        if key not in _PROPERTIES:
            raise ConfigError(
                f"properties_file {path!r} line {number}: key {key!r} is not allowed; allowed: "
                f"{', '.join(sorted(_PROPERTIES))} (ccpipe sets everything else itself and always verifies TLS)"
            )
        if key in props:
            raise ConfigError(f"properties_file {path!r} line {number}: key {key!r} is given twice")
        props[key] = value.strip()
    if "sasl.mechanism" in props and "sasl.mechanisms" in props:
        raise ConfigError(f"properties_file {path!r}: give sasl.mechanism or sasl.mechanisms, not both")
    return props


def _warn_if_shared(path: str, what: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _LOG.warning("%s %s is readable by other users (mode %o): chmod 600 it", what, path, mode & 0o777)


def _secret_from_file(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.read().rstrip("\r\n")
    except OSError as err:
        raise ConfigError(f"{what} {path!r} cannot be read ({err.strerror})") from None
    if not secret:
        raise ConfigError(f"{what} {path!r} is empty")
    return secret


@dataclass(frozen=True)
class KafkaConfig:
    """Where to read and how to connect: ``kafka://HOST:PORT/TOPIC?group=NAME[&security settings]``.

    Holds no secret: the SASL password is read from ``sasl_password_file``, the environment
    variable ``sasl_password_env`` or ``properties_file`` whenever a client is built.
    """

    bootstrap: str
    topic: str
    group: str
    poll_seconds: float = 0.05
    watermark_lag_seconds: float = 1.0
    # A read bundle hands its records downstream when it ends: short bundles keep latency low.
    bundle_seconds: float = 0.5
    idle_poll_seconds: float = 0.2
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password_file: str | None = None
    sasl_password_env: str | None = None
    ssl_ca_location: str | None = None
    properties_file: str | None = None
    # How long a job (or the fixtures producer) waits at start for the broker to answer; 0: no check.
    connect_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"security_protocol {self.security_protocol!r} must be one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        if not 0 <= self.connect_timeout <= 3600:
            raise ConfigError(f"connect_timeout {self.connect_timeout!r} must be between 0 and 3600 seconds")
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        props = _read_properties(self.properties_file) if self.properties_file else {}
        for key, value in props.items():
            name = _PROPERTIES[key]
            if name is not None and value.upper() != str(getattr(self, name) or "").upper():
                raise ConfigError(
                    f"properties_file {self.properties_file!r} sets {key} but {name} is "
                    f"{getattr(self, name)!r}: they must agree"
                )
        if sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(
                    f"sasl_mechanism {self.sasl_mechanism!r} must be one of {', '.join(SASL_MECHANISMS)} "
                    f"with security_protocol {self.security_protocol}"
                )
            if self.sasl_mechanism == "PLAIN" and not tls:
                raise ConfigError(
                    "sasl_mechanism 'PLAIN' sends the password in clear text: use it only with "
                    "security_protocol SASL_SSL, or use SCRAM-SHA-256 / SCRAM-SHA-512"
                )
            if not self.sasl_username:
                raise ConfigError(f"sasl_username is required with security_protocol {self.security_protocol}")
            sources = [n for n in ("sasl_password_file", "sasl_password_env") if getattr(self, n)]
            if "sasl.password" in props:
                sources.append(f"properties_file {self.properties_file!r} (sasl.password)")
            if len(sources) > 1:
                raise ConfigError(f"the SASL password must come from one place, not {' and '.join(sources)}")
            self.sasl_password()  # present and readable now, not only on the workers
        else:
            given = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password_file", "sasl_password_env")
                     if getattr(self, n)] + (["sasl.password"] if "sasl.password" in props else [])
            if given:
                raise ConfigError(
                    f"{', '.join(given)} given but security_protocol {self.security_protocol!r} does not "
                    "authenticate: use SASL_SSL or SASL_PLAINTEXT"
                )
        if self.ssl_ca_location is not None:
            if not tls:
                raise ConfigError(
                    f"ssl_ca_location given but security_protocol {self.security_protocol!r} does not use TLS: "
                    "use SSL or SASL_SSL"
                )
            if not os.path.isfile(self.ssl_ca_location):
                raise ConfigError(f"ssl_ca_location {self.ssl_ca_location!r} is not an existing file (a PEM CA file)")

    def sasl_password(self) -> str:
        """The SASL password, read now from its file or environment variable (never stored)."""
        if self.sasl_password_file:
            _warn_if_shared(self.sasl_password_file, "sasl_password_file")
            return _secret_from_file(self.sasl_password_file, "sasl_password_file")
        if self.properties_file and "sasl.password" in _read_properties(self.properties_file):
            _warn_if_shared(self.properties_file, "properties_file")
            password = _read_properties(self.properties_file)["sasl.password"]
            if not password:
                raise ConfigError(f"properties_file {self.properties_file!r}: sasl.password is empty")
            return password
        env = self.sasl_password_env or PASSWORD_ENV
        password = os.environ.get(env, "")
        if not password:
            hint = "" if self.sasl_password_env else " (or give sasl_password_file or properties_file)"
            raise ConfigError(f"environment variable {env} (sasl_password_env) is not set or empty{hint}")
        return password

    def client_config(self) -> dict:
        """The librdkafka settings of a client of this broker (with the password: never log them)."""
        conf = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
            "reconnect.backoff.max.ms": 2000,
            "socket.connection.setup.timeout.ms": 5000,
        }
        if self.security_protocol.endswith("SSL"):
            conf["enable.ssl.certificate.verification"] = True
            conf["ssl.endpoint.identification.algorithm"] = "https"
            if self.ssl_ca_location:
                conf["ssl.ca.location"] = self.ssl_ca_location
        if self.security_protocol.startswith("SASL_"):
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password()
        return conf

    @classmethod
    def from_url(cls, url: str, environ: dict[str, str] | None = None) -> "KafkaConfig":
        """Parse a source URL; ConfigError naming what is wrong.

        Security settings: the URL's query, else ``CCPIPE_KAFKA_<NAME>`` in ``environ`` (default
        ``os.environ``), else the librdkafka properties file (``properties_file``).
        """
        environ = os.environ if environ is None else environ
        parsed = urllib.parse.urlparse(url)
        shown = redact_url(url)
        if parsed.scheme != "kafka" or not parsed.netloc or not parsed.path.strip("/"):
            raise ConfigError(f"source {shown!r} must look like kafka://HOST:PORT/TOPIC?group=NAME")
        if "@" in parsed.netloc:
            raise ConfigError(
                f"source {shown!r}: no user or password in the URL; give sasl_username in the query and the "
                f"password in a file (sasl_password_file) or an environment variable ({PASSWORD_ENV})"
            )
        try:
            pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True, strict_parsing=bool(parsed.query))
        except ValueError:
            raise ConfigError(f"source {shown!r}: the query must be NAME=VALUE pairs joined by '&'") from None
        query: dict[str, str] = {}
        for key, value in pairs:
            if key in ("sasl_password", "password", "sasl.password"):
                raise ConfigError(
                    f"source {shown!r}: {key} must not be in the URL (command lines and logs show it); "
                    f"use sasl_password_file=PATH or the environment variable {PASSWORD_ENV}"
                )
            if key != "group" and key not in _SETTINGS:
                raise ConfigError(
                    f"source {shown!r}: unknown query parameter {key!r}; allowed: group, {', '.join(_SETTINGS)}"
                )
            if key in query:
                raise ConfigError(f"source {shown!r}: query parameter {key!r} is given twice")
            query[key] = value
        settings = {}
        for name in _SETTINGS:
            value = query.get(name) or environ.get(ENV_PREFIX + name.upper()) or None
            if value is not None:
                settings[name] = value
        props = _read_properties(settings["properties_file"]) if "properties_file" in settings else {}
        for key, value in props.items():
            name = _PROPERTIES[key]
            if name is not None:
                settings.setdefault(name, value)
        for name in ("security_protocol", "sasl_mechanism"):
            if name in settings:
                settings[name] = settings[name].upper()
        if "connect_timeout" in settings:
            try:
                settings["connect_timeout"] = float(settings["connect_timeout"])
            except ValueError:
                raise ConfigError(
                    f"connect_timeout {settings['connect_timeout']!r} must be a number of seconds"
                ) from None
        return cls(bootstrap=parsed.netloc, topic=parsed.path.strip("/"), group=query.get("group") or "ccpipe",
                   **settings)


def source_of(topic: str, partition: int, offset: int) -> str:
    """The ``source`` string of a Kafka record."""
    return f"{SOURCE_PREFIX}{topic}:{partition}:{offset}"


def parse_source(source: str) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of a Kafka source string, else None."""
    if not source.startswith(SOURCE_PREFIX):
        return None
    topic, partition, offset = source[len(SOURCE_PREFIX) :].rsplit(":", 2)
    return topic, int(partition), int(offset)


class ClientErrors:
    """A librdkafka ``error_cb``: remembers the last error and the first security (fatal) one."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self.security: str | None = None
        self.last: str | None = None

    def __call__(self, err) -> None:
        self.last = err.str()
        if err.name() in _SECURITY_ERRORS or err.fatal():
            self.security = self.security or f"{err.name()}: {err.str()}"

    def raise_if_refused(self) -> None:
        """KafkaSecurityError when the broker refused the credentials or TLS failed."""
        if self.security is not None:
            c = self._config
            user = f", sasl_username {c.sasl_username!r}, {c.sasl_mechanism}" if c.sasl_username else ""
            raise KafkaSecurityError(
                f"Kafka at {c.bootstrap} refused the connection (security_protocol {c.security_protocol}{user}): "
                f"{self.security}. Not retried; check the credentials, ssl_ca_location and security_protocol"
            )


def _client_config(config: KafkaConfig, errors: ClientErrors, **extra) -> dict:
    return {**config.client_config(), "error_cb": errors, **extra}


def _consumer(config: KafkaConfig, errors: ClientErrors | None = None):
    from confluent_kafka import Consumer

    errors = errors or ClientErrors(config)
    return Consumer(
        _client_config(
            config,
            errors,
            **{
                "group.id": config.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
            },
        )
    )


def check_connection(config: KafkaConfig, timeout: float | None = None) -> None:
    """Return once the broker answers a metadata request with ``config``'s security settings.

    Raises KafkaSecurityError as soon as the broker refuses the credentials or TLS fails, and
    KafkaConnectionError when nothing answers within ``timeout`` (default ``connect_timeout``):
    that is also what a client with the wrong ``security_protocol`` for the listener sees.
    """
    from confluent_kafka.admin import AdminClient

    timeout = config.connect_timeout if timeout is None else timeout
    if config.security_protocol == "SASL_PLAINTEXT":
        _LOG.warning("Kafka at %s: SASL_PLAINTEXT authenticates but records travel unencrypted", config.bootstrap)
    errors = ClientErrors(config)
    log = _LastLog()
    admin = AdminClient(_client_config(config, errors, logger=log))
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            return
        except Exception:  # noqa: BLE001 - KafkaException: look at what error_cb saw
            pass
        admin.poll(0)
        errors.raise_if_refused()
        if time.monotonic() >= deadline:
            last = log.last or errors.last or "no answer"
            raise KafkaConnectionError(
                f"Kafka at {config.bootstrap} did not answer within {timeout:g} s with security_protocol "
                f"{config.security_protocol} (last: {last}). Check that the broker is up and that "
                "security_protocol matches its listener (a plain-text client on a TLS or SASL listener, or "
                "the reverse, looks like this)"
            )


class _LastLog(logging.Logger):
    """A logger for librdkafka that keeps the last warning or error (e.g. why a connection closed)."""

    def __init__(self) -> None:
        super().__init__("transforms.kafka_io.librdkafka")
        self.last: str | None = None

    def log(self, level, msg, *args, **kwargs):
        text = msg % args if args else msg
        if level >= logging.WARNING:
            self.last = text
        _LOG.debug("librdkafka: %s", text)


class _OffsetsMark(CheckpointMark):
    """Next offset per partition. Finalizing commits nothing: offsets are committed after the sinks."""

    def __init__(self, positions: dict[int, int]) -> None:
        self.positions = dict(positions)

    def finalize_checkpoint(self) -> None:
        return None


class _KafkaReader(UnboundedReader):
    def __init__(self, config: KafkaConfig, mark: _OffsetsMark | None) -> None:
        self._config = config
        self._mark = mark
        self._consumer = None
        self._positions: dict[int, int] = dict(mark.positions) if mark else {}
        self._current = None
        self._read = Metrics.counter("ccpipe.kafka", "records_read")

    def _assign(self) -> bool:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        consumer = self._consumer
        try:
            metadata = consumer.list_topics(self._config.topic, timeout=2)
        except Exception as err:  # noqa: BLE001 - broker unreachable: try again on the next advance
            consumer.poll(0)  # serves error_cb: refused credentials or TLS are not an outage
            self._errors.raise_if_refused()
            _LOG.warning("Kafka metadata unavailable (%s); will retry", type(err).__name__)
            return False
        topic = metadata.topics.get(self._config.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return False
        partitions = sorted(topic.partitions)
        missing = [p for p in partitions if p not in self._positions]
        if missing:
            try:
                committed = consumer.committed([TopicPartition(self._config.topic, p) for p in missing], timeout=10)
            except Exception as err:  # noqa: BLE001 - e.g. the group coordinator is still loading: retry later
                self._errors.raise_if_refused()
                _LOG.warning("Kafka committed offsets unavailable (%s); will retry", err)
                return False
            for tp in committed:
                self._positions[tp.partition] = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.assign([TopicPartition(self._config.topic, p, self._positions[p]) for p in partitions])
        return True

    def start(self) -> bool:
        self._errors = ClientErrors(self._config)
        self._consumer = _consumer(self._config, self._errors)
        self._assigned = self._assign()
        return self.advance()

    def advance(self) -> bool:
        if not self._assigned:
            self._assigned = self._assign()
            if not self._assigned:
                return False
        message = self._consumer.poll(self._config.poll_seconds)
        self._errors.raise_if_refused()
        if message is None:
            return False
        if message.error() is not None:
            if message.error().name() in _SECURITY_ERRORS:
                self._errors(message.error())
                self._errors.raise_if_refused()
            _LOG.warning("Kafka: %s; will retry", message.error().name())
            return False
        self._positions[message.partition()] = message.offset() + 1
        self._current = message
        self._read.inc()
        return True

    def get_current(self) -> RawInput:
        m = self._current
        return RawInput(source=source_of(m.topic(), m.partition(), m.offset()), data=m.value() or b"")

    def get_current_timestamp(self) -> Timestamp:
        # Processing in the pipeline is by arrival time; event time is used where it matters (usage).
        return Timestamp.now()

    def get_watermark(self) -> Timestamp:
        return Timestamp.now() - Duration(seconds=self._config.watermark_lag_seconds)

    def get_checkpoint_mark(self) -> _OffsetsMark:
        return _OffsetsMark(self._positions)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class _KafkaSource(UnboundedSource):
    def __init__(self, config: KafkaConfig) -> None:
        self._config = config

    def split(self, desired_num_splits, options=None):
        return [self]

    def create_reader(self, options, checkpoint_mark):
        return _KafkaReader(self._config, checkpoint_mark)

    def get_checkpoint_mark_coder(self):
        return PickleCoder()


class ReadFromKafkaTopic(beam.PTransform[beam.pvalue.PBegin, PCollection[RawInput]]):
    """Every message of a topic as a RawInput, from the group's committed offsets on."""

    def __init__(self, config: KafkaConfig) -> None:
        """``config``: broker, topic and consumer group."""
        super().__init__()
        self._config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> PCollection[RawInput]:
        """The unbounded stream of messages; first checks the broker answers (``connect_timeout``)."""
        from apache_beam.io.unbounded_source import ReadFromUnboundedSource

        if self._config.connect_timeout > 0:
            check_connection(self._config)

        return pbegin | "Read" >> ReadFromUnboundedSource(
            _KafkaSource(self._config),
            poll_interval=self._config.idle_poll_seconds,
            max_read_time_seconds=self._config.bundle_seconds,
        )


def _replace_client(holder) -> bool:
    """Give ``holder`` (its ``_config``, ``_consumer``, ``_errors``) a fresh client; False if none can be made.

    A fresh client looks up the group coordinator again (see CLIENT_RESET_FAILURES). When one cannot
    be made (e.g. a CA or password file briefly gone) the old client stays and retrying goes on.
    """
    errors = ClientErrors(holder._config)
    try:
        fresh = _consumer(holder._config, errors)
    except Exception as err:  # noqa: BLE001 - keep retrying on the old client
        _LOG.warning("Kafka: cannot create a new client (%s); retrying on the old one", type(err).__name__)
        return False
    old, holder._consumer, holder._errors = holder._consumer, fresh, errors
    try:
        old.close()
    except Exception as err:  # noqa: BLE001 - closing one of an unreachable broker may fail; it is dropped anyway
        _LOG.debug("Kafka: closing a replaced client failed (%s)", type(err).__name__)
    return True


def _retrying(call, what: str, seconds: float | None = None, refused=None, reset=None):
    """Call until it succeeds: a broker outage makes the committer wait, never skip a commit.

    ``seconds``: give up (raise) after that long; None: retry for as long as the outage lasts.
    ``refused``: called after a failure; raises (KafkaSecurityError) when retrying cannot help.
    ``reset``: called after every ``CLIENT_RESET_FAILURES`` failures in a row (replaces the client).
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    delay = 0.5
    failures = 0
    while True:
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - KafkaException of any transient kind
            if refused is not None:
                refused()
            if deadline is not None and time.monotonic() > deadline:
                raise
            _LOG.warning("Kafka: cannot %s (%s); retrying in %.1f s", what, err, delay)
            failures += 1
            if reset is not None and failures % CLIENT_RESET_FAILURES == 0:
                reset()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


# How long the committer waits between two attempts at a commit the broker did not take: once the
# broker answers again, offsets are committed within this long (plus one commit round trip).
COMMIT_RETRY_SECONDS = 2.0
# After this many failed attempts in a row the committer replaces its Kafka client: librdkafka
# clients that use assign() can stay pinned to a stale group coordinator after a broker restart and
# fail every commit with NOT_COORDINATOR until they are re-created (librdkafka issues #2630, #2791).
CLIENT_RESET_FAILURES = 3


class _OffsetCommitter:
    """Commits the latest safe offset of each partition from a background thread.

    ``_CommitContiguousFn`` only computes the offsets (Beam state) and hands them over: its bundles
    never wait on the broker, and whatever could not be committed (the broker is down) is retried
    every ``COMMIT_RETRY_SECONDS`` until it is, whether or not new records arrive. Offsets only
    grow: a lower target never replaces a higher one. One committer per pipeline and process,
    shared by every instance of the DoFn (``acquire`` / ``release``).
    """

    _shared: dict = {}
    _shared_lock = threading.Lock()

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._errors = ClientErrors(config)
        self._consumer = _consumer(config, self._errors)
        self._cond = threading.Condition()
        self._target: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._failure: BaseException | None = None
        self._closing = False
        self._users = 0
        self.clients_replaced = 0
        self._thread = threading.Thread(target=self._run, name="ccpipe-kafka-committer", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, key: str, config: KafkaConfig) -> "_OffsetCommitter":
        with cls._shared_lock:
            committer = cls._shared.get(key)
            if committer is None:
                committer = cls._shared[key] = cls(config)
            committer._users += 1
            return committer

    def release(self, key: str, flush_seconds: float = 10.0) -> None:
        with self._shared_lock:
            self._users -= 1
            if self._users > 0:
                return
            self._shared.pop(key, None)
        self.flush(flush_seconds)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=flush_seconds)
        if not self._thread.is_alive():
            self._consumer.close()

    def submit(self, partition: int, offset: int) -> None:
        """Commit ``offset`` (and nothing lower) for ``partition`` as soon as the broker takes it."""
        with self._cond:
            if self._failure is not None:
                raise self._failure
            if offset > max(self._target.get(partition, -1), self._committed.get(partition, -1)):
                self._target[partition] = offset
                self._cond.notify_all()

    def flush(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every submitted offset to be committed."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while self._target and self._failure is None and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return not self._target

    def _run(self) -> None:
        from confluent_kafka import TopicPartition

        delay = 0.0
        failures = 0
        while True:
            with self._cond:
                retry_at = time.monotonic() + delay
                while delay and not self._closing and time.monotonic() < retry_at:
                    self._cond.wait(retry_at - time.monotonic())
                while not self._target and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                batch = dict(self._target)
            offsets = [TopicPartition(self._config.topic, p, o) for p, o in sorted(batch.items())]
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            except Exception as err:  # noqa: BLE001 - KafkaException: the broker is down or moving
                try:
                    self._consumer.poll(0)  # serves error_cb (assigned nothing: no records)
                    self._errors.raise_if_refused()
                except KafkaSecurityError as refused:
                    with self._cond:
                        self._failure = refused
                        self._cond.notify_all()
                    return
                _LOG.warning("Kafka: cannot commit offsets (%s); retrying in %.1f s", err, COMMIT_RETRY_SECONDS)
                delay = COMMIT_RETRY_SECONDS
                failures += 1
                if failures % CLIENT_RESET_FAILURES == 0:
                    if _replace_client(self):
                        self.clients_replaced += 1
                continue
            delay = 0.0
            failures = 0
            with self._cond:
                for p, o in batch.items():
                    self._committed[p] = max(o, self._committed.get(p, -1))
                    if self._target.get(p, -1) <= o:
                        self._target.pop(p, None)
                self._cond.notify_all()


def flush_offset_commits(seconds: float) -> bool:
    """Wait up to ``seconds`` until every offset committer of this process has committed what it was given."""
    with _OffsetCommitter._shared_lock:
        committers = list(_OffsetCommitter._shared.values())
    deadline = time.monotonic() + seconds
    return all(c.flush(max(0.0, deadline - time.monotonic())) for c in committers)


class _CommitContiguousFn(beam.DoFn):
    """Per partition: the offset below which every record has been handled, for the committer.

    The commit itself happens in ``_OffsetCommitter`` (background, retried until it succeeds), so a
    bundle of this stateful DoFn never waits for the broker except for the committed offset read
    once per partition when the job starts.
    """

    NEXT = ReadModifyWriteStateSpec("next", PickleCoder())
    DONE = BagStateSpec("done", VarIntCoder())

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        # Identifies this pipeline's committer among the DoFn instances of one worker process.
        self._committer_key = uuid.uuid4().hex
        self._consumer = None
        self._committer = None
        self._committed = Metrics.counter("ccpipe.kafka", "offsets_committed")

    def setup(self):
        self._errors = ClientErrors(self._config)
        self._consumer = _consumer(self._config, self._errors)
        self._committer = _OffsetCommitter.acquire(self._committer_key, self._config)

    def _refused(self) -> None:
        self._consumer.poll(0)  # serves error_cb (the consumer is assigned nothing: no records)
        self._errors.raise_if_refused()

    def teardown(self):
        if self._committer is not None:
            self._committer.release(self._committer_key)
            self._committer = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _low(self, partition: int) -> int:
        from confluent_kafka import TopicPartition

        tp = TopicPartition(self._config.topic, partition)
        [got] = _retrying(lambda: self._consumer.committed([tp], timeout=10), "read committed offsets",
                          refused=self._refused, reset=lambda: _replace_client(self))
        if got.offset >= 0:
            return got.offset
        low, _high = _retrying(lambda: self._consumer.get_watermark_offsets(tp, timeout=10), "read low offsets",
                               refused=self._refused, reset=lambda: _replace_client(self))
        return low

    def process(self, element, next_state=beam.DoFn.StateParam(NEXT), done_state=beam.DoFn.StateParam(DONE)):  # noqa: B008
        partition, offsets = element[0], element[1]
        nxt = next_state.read()
        if nxt is None:
            nxt = self._low(partition)
        done = set(done_state.read()) | {o for o in offsets if o >= nxt}
        start = nxt
        while nxt in done:
            done.discard(nxt)
            nxt += 1
        done_state.clear()
        for o in sorted(done):
            done_state.add(o)
        next_state.write(nxt)
        if nxt > start:
            self._committer.submit(partition, nxt)
            self._committed.inc(nxt - start)
            yield partition, nxt


def _kafka_offsets(result_or_source) -> list[tuple[int, list[int]]]:
    sources = result_or_source.sources if isinstance(result_or_source, WriteResult) else (result_or_source,)
    per: dict[int, list[int]] = {}
    for source in sources:
        parsed = parse_source(source)
        if parsed is not None:
            per.setdefault(parsed[1], []).append(parsed[2])
    return list(per.items())


class CommitKafkaOffsets(beam.PTransform[PCollection, PCollection]):
    """Commit consumer-group offsets for records that are written or dead-lettered (or blank)."""

    def __init__(self, config: KafkaConfig) -> None:
        """``config``: the same broker, topic and group as the reader."""
        super().__init__()
        self._config = config

    def expand(self, handled: PCollection) -> PCollection:
        """``handled``: WriteResults and the sources of skipped blank messages."""
        return (
            handled
            | "OffsetsPerPartition" >> beam.FlatMap(_kafka_offsets)
            | "GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows())
            | "CommitContiguous" >> beam.ParDo(_CommitContiguousFn(self._config))
        )


def wait_for_broker(bootstrap: str, timeout: float, config: KafkaConfig | None = None) -> bool:
    """True once the broker answers a metadata request (with ``config``'s security settings, if given)."""
    from confluent_kafka.admin import AdminClient

    deadline = time.time() + timeout
    admin = AdminClient(config.client_config() if config is not None else {"bootstrap.servers": bootstrap})
    while time.time() < deadline:
        try:
            admin.list_topics(timeout=2)
            return True
        except Exception:  # noqa: BLE001
            time.sleep(0.5)
    return False
