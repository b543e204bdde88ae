"""The deployment files parse and agree with the code (versions, paths, flags)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
INSTRUCTIONS = {"FROM", "ARG", "RUN", "COPY", "ENV", "WORKDIR", "ENTRYPOINT", "CMD", "LABEL", "USER", "EXPOSE"}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word, rest))
            pending = ""
    assert not pending, "a continuation line never ends"
    return out


def test_dockerfile():
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    assert {w for w, _ in instructions} <= INSTRUCTIONS
    stages = [rest for w, rest in instructions if w == "FROM"]
    assert len(stages) == 3
    beam = next(
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("apache-beam==")
    )
    assert f"ARG BEAM_VERSION={beam.split('==')[1]}" in (DEPLOY / "Dockerfile").read_text()
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
    text = " ".join(rest for w, rest in instructions if w == "RUN")
    assert "--require-hashes -r requirements-model.txt" in text
    assert "go install github.com/apache/beam/sdks/v2/go/cmd/prism@v${BEAM_VERSION}" in text


def test_flink_files():
    subprocess.run(["bash", "-n", str(DEPLOY / "flink" / "job-server.sh")], check=True)
    conf = yaml.safe_load((DEPLOY / "flink" / "flink-conf.yaml").read_text())
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert int(conf["parallelism.default"]) >= 1


def test_dataflow_template_parameters_are_real_flags():
    metadata = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text())
    spec = json.loads((DEPLOY / "dataflow" / "flex-template.json").read_text())
    assert spec["sdkInfo"]["language"] == "PYTHON" and metadata["streaming"] is True
    help_text = subprocess.run(
        [sys.executable, "-m", "ccpipe.cli", "stream", "--help"], capture_output=True, text=True, check=True
    ).stdout
    flags = set(re.findall(r"--([a-z_]+)", help_text))
    assert {p["name"] for p in metadata["parameters"]} <= flags
    source = next(p for p in metadata["parameters"] if p["name"] == "source")
    assert re.fullmatch(source["regexes"][0], "kafka://broker:9092/contact-center?group=ccpipe")
    assert not re.fullmatch(source["regexes"][0], "http://broker/x")


def test_kafka_pom_and_broker_script():
    import xml.etree.ElementTree as ET

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(DEPLOY / "kafka" / "pom.xml")
    artifacts = {a.text for a in pom.findall(".//m:dependency/m:artifactId", ns)}
    assert "kafka_2.13" in artifacts
    subprocess.run([sys.executable, str(DEPLOY / "kafka" / "broker.py"), "--help"], check=True, capture_output=True)
