"""Shared fixtures: the network is blocked for the whole session; one generated corpus; one batch run."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from netguard import ATTEMPTS, block_network

block_network()


def local_test_pipeline() -> TestPipeline:
    """A TestPipeline on the in-process FnApiRunner (never the Prism-downloading default)."""
    return TestPipeline(runner="FnApiRunner", options=PipelineOptions([]))


@pytest.fixture(scope="session", autouse=True)
def _no_network_attempts():
    yield
    assert ATTEMPTS == [], f"code tried to reach the network: {ATTEMPTS}"


@pytest.fixture(scope="session")
def master_key_env():
    os.environ["CCPIPE_MASTER_KEY"] = base64.b64encode(b"k" * 32).decode()
    yield os.environ["CCPIPE_MASTER_KEY"]


@pytest.fixture(scope="session", autouse=True)
def _private_ccpipe_home(tmp_path_factory, master_key_env):
    """$CCPIPE_HOME is a private folder for the session, never the user's ~/.ccpipe.

    Control planes opened without a key manager keep the audit key in the default keystore there,
    so the master key is the session's one from the start (a keystore made before it would not open).
    """
    os.environ["CCPIPE_HOME"] = str(tmp_path_factory.mktemp("ccpipe-home"))
    yield


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    from fixtures.generate import generate

    out = tmp_path_factory.mktemp("corpus")
    generate(out, seed=11, n_tenants=9, n_calls=30, n_chats=30, n_telemetry=30, n_registrations=12)
    return out


def read_truth(corpus: Path) -> list[dict]:
    return [json.loads(line) for line in (corpus / "truth.jsonl").read_text().splitlines()]


def make_config(corpus: Path, output: Path, home: Path, run_id: str):
    from ccpipe.keystore import KeystoreConfig
    from ccpipe.tenants import load_tenants
    from pipelines.batch import BatchConfig
    from transforms.route import SinkConfig

    return BatchConfig(
        inputs=(str(corpus / "input" / "*"), str(corpus / "bad" / "bad.jsonl")),
        tenants=tuple(load_tenants(corpus / "tenants.yaml").values()),
        sinks=SinkConfig(default_root=str(output)),
        keystore=KeystoreConfig(path=str(home / "keystore.db"), master_key_file=str(home / "master.key")),
        run_id=run_id,
    )


@pytest.fixture(scope="session")
def batch_run(corpus, tmp_path_factory, master_key_env):
    """The batch pipeline run once on the corpus (good input + bad slice), in process."""
    from pipelines.batch import pipeline_options, run

    root = tmp_path_factory.mktemp("run")
    config = make_config(corpus, root / "out", root / "home", "run-1")
    manifest = run(config, pipeline_options("FnApiRunner", 1))
    return config, manifest


@pytest.fixture(scope="session")
def pg_server():
    from pgserver import PgServer

    server = PgServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bao_server():
    """A real OpenBao dev server (transit engine mounted) on loopback for the session."""
    from baoserver import BaoServer

    server = BaoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def control_plane_url(request, tmp_path):
    """A fresh, empty control-plane database: SQLite always, and a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'control.db'}"
    return request.getfixturevalue("pg_server").new_database()


def governed_copy(batch_run, corpus: Path, tmp_path: Path, control_plane_url: str):
    """Private copies of the batch run's output and keystore, with its tenants in a fresh control plane.

    Returns (control plane, keystore, output root, tenants). Governance tests mutate all three.
    """
    import shutil

    from ccpipe.controlplane import audit, tenants_repo
    from ccpipe.controlplane.db import open_control_plane
    from ccpipe.keystore import KeystoreConfig, SqliteKeyStore
    from ccpipe.tenants import load_tenants

    config, _ = batch_run
    out = tmp_path / "out"
    shutil.copytree(config.sinks.default_root, out)
    home = tmp_path / "home"
    shutil.copytree(Path(config.keystore.path).parent, home)
    keys = SqliteKeyStore(KeystoreConfig(str(home / "keystore.db"), str(home / "master.key")))
    cp = open_control_plane(control_plane_url)
    tenants = load_tenants(corpus / "tenants.yaml")
    tenants_repo.import_tenants(cp, tenants.values(), audit.Actor("setup", "operator"))
    return cp, keys, out, tenants


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A real Kafka broker (KRaft, Maven Central jars) on loopback for the session."""
    import socket
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "kafka"))
    from broker import Broker

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = Broker(tmp_path_factory.mktemp("kafka"), port)
    broker.start()
    yield broker
    broker.stop()


def strings_in(value) -> list[str]:
    """Every string in a (nested) Parquet value; binary values as latin-1 text."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []
