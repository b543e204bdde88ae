"""The console script, as a user runs it: separate processes, two local workers, network blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

CCPIPE = [sys.executable, "-m", "ccpipe.cli"]
NETBLOCK = str(Path(__file__).parent / "netblock")


def blocked_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CCPIPE_MASTER_KEY"}
    env.update(
        CCPIPE_HOME=str(home),
        CCPIPE_BLOCK_NETWORK="1",
        PYTHONPATH=os.pathsep.join([NETBLOCK, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def test_network_guard_is_active_in_subprocesses(tmp_path):
    probe = "import socket; socket.create_connection(('192.0.2.1', 443), timeout=2)"
    done = subprocess.run([sys.executable, "-c", probe], env=blocked_env(tmp_path), capture_output=True, text=True)
    assert done.returncode != 0
    assert "network blocked in tests" in done.stderr


@pytest.mark.parametrize("command", [[], ["fixtures"], ["batch"], ["keys"]])
def test_help(command):
    done = subprocess.run([*CCPIPE, *command, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_batch_with_two_workers_offline(tmp_path):
    env = blocked_env(tmp_path / "home")
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    gen = subprocess.run(
        [*CCPIPE, "fixtures", "--out", str(corpus), "--seed", "3", "--tenants", "8", "--calls", "12",
         "--chats", "12", "--telemetry", "12"],
        env=env, capture_output=True, text=True,
    )
    assert gen.returncode == 0, gen.stderr
    done = subprocess.run(
        [*CCPIPE, "batch", "--input", str(corpus / "input" / "*"), "--input", str(corpus / "bad" / "bad.jsonl"),
         "--tenants", str(corpus / "tenants.yaml"), "--output", str(out), "--workers", "2", "--run_id", "cli-1"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RECONCILED" in done.stdout
    manifest = json.loads((out / "_manifests" / "cli-1.json").read_text())
    assert manifest["reconciled"] is True
    assert manifest["records_read"] == 12 + 12 + 12 + 4 + 13
    assert manifest["runner"] == "FnApiRunner"
    assert (tmp_path / "home" / "keystore.db").exists()
    assert (tmp_path / "home" / "master.key").exists()
    written = sum(pq.read_table(p).num_rows for p in out.rglob("dataset=calls/*/*.parquet"))
    assert written == sum(per.get("calls", 0) for per in manifest["records_written_by_region"].values())


def test_batch_errors_are_clear(tmp_path):
    done = subprocess.run(
        [*CCPIPE, "batch", "--input", str(Path(__file__).resolve().parents[1] / "fixtures" / "sample" / "input" / "*"),
         "--tenants", str(tmp_path / "missing.yaml"), "--output", "o"],
        env=blocked_env(tmp_path), capture_output=True, text=True,
    )
    assert done.returncode == 2
    assert "tenants file" in done.stderr and "does not exist" in done.stderr


def test_batch_on_prism(tmp_path):
    """The batch pipeline also runs on Prism (the same runner as streaming), offline."""
    prism = Path(__file__).resolve().parents[1] / ".cache" / "bin" / "prism"
    assert prism.exists(), "build Prism first: make prism (.ci/run does)"
    env = blocked_env(tmp_path / "home")
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    subprocess.run([*CCPIPE, "fixtures", "--out", str(corpus), "--seed", "5", "--tenants", "8", "--calls", "8",
                    "--chats", "8", "--telemetry", "8"], env=env, check=True, capture_output=True)
    done = subprocess.run(
        [*CCPIPE, "batch", "--input", str(corpus / "input" / "*"), "--input", str(corpus / "bad" / "bad.jsonl"),
         "--tenants", str(corpus / "tenants.yaml"), "--output", str(out), "--run_id", "prism-1",
         "--runner", "PrismRunner", "--prism_location", str(prism)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "_manifests" / "prism-1.json").read_text())
    assert manifest["runner"] == "PrismRunner" and manifest["reconciled"] is True
    assert manifest["records_read"] == 8 + 8 + 8 + 4 + 13


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--wokers", "2"], "unrecognized argument '--wokers'; did you mean --workers?"),
        (["--pii-confg", "p.yaml"], "did you mean --pii_config?"),
        # The other spelling of a flag is the same flag.
        (["--pii-config", "missing.yaml"], "PII configuration 'missing.yaml' is unreadable"),
        (["--shards=x"], "invalid int value"),
    ],
)
def test_mistyped_flags_are_errors_not_ignored(tmp_path, flags, message):
    """A mistyped flag used to be logged as 'Unparseable argument' and the run went on without it."""
    corpus = Path(__file__).resolve().parents[1] / "fixtures" / "sample"
    argv = ["batch", "--input", str(corpus / "input" / "calls.jsonl"), "--tenants", str(corpus / "tenants.yaml"),
            "--output", str(tmp_path / "out"), "--keystore", str(tmp_path / "k.db"), *flags]
    done = subprocess.run([sys.executable, "-m", "ccpipe.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr
    assert not (tmp_path / "out").exists()  # nothing ran


def test_version():
    done = subprocess.run([sys.executable, "-m", "ccpipe.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("ccpipe 0.")


@pytest.mark.parametrize(
    ("pipeline", "depth", "labels"),
    [
        ("batch", "1", ["ReadInputs", "ProcessRecords", "RouteToRegion", "WriteRegionalParquet", "WriteManifest"]),
        ("batch", "2", ["ReadInputs", "ProcessRecords", "ParseRecords", "TagPii", "EncryptContent",
                        "RouteToRegion", "WriteRegionalParquet"]),
        ("stream", "1", ["ReadFromKafkaTopic", "ProcessRecords", "RouteToRegion", "WriteRegionalParquet",
                         "CommitKafkaOffsets"]),
    ],
)
def test_graph_writes_the_pipeline_as_svg(tmp_path, pipeline, depth, labels):
    """``ccpipe graph`` builds the real pipeline (no run, no network, nothing under $CCPIPE_HOME) and draws it."""
    import xml.etree.ElementTree as ET

    out = tmp_path / f"{pipeline}.svg"
    done = subprocess.run([*CCPIPE, "graph", pipeline, "--out", str(out), "--depth", depth],
                          env=blocked_env(tmp_path / "home"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == f"wrote {out}\n"
    assert done.stderr == ""
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert set(labels) <= texts, sorted(texts)
    assert not (tmp_path / "home").exists()


def test_graph_dot_edges_follow_the_pipeline(tmp_path):
    """The DOT text links each step to the steps that consume its output (top level of the batch)."""
    import re

    out = tmp_path / "batch.dot"
    done = subprocess.run([*CCPIPE, "graph", "batch", "--out", str(out)], env=blocked_env(tmp_path / "home"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    names = dict(re.findall(r'^(n\d+) \[label="?([^",]+)"?', text, re.M))
    edges = {(names[a], names[b]) for a, b in re.findall(r"^(n\d+) -> (n\d+);", text, re.M)}
    assert edges == {
        ("ReadInputs", "ProcessRecords"), ("ProcessRecords", "AggregateUsage"), ("ProcessRecords", "FlattenRows"),
        ("AggregateUsage", "FlattenRows"), ("FlattenRows", "RouteToRegion"), ("RouteToRegion", "WriteRegionalParquet"),
        ("ReadInputs", "SourceOfLine"), ("SourceOfLine", "WriteManifest"), ("ReadInputs", "WriteManifest"),
        ("WriteRegionalParquet", "WriteManifest"),
    }
