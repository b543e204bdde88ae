"""Detection quality targets, measured with the same code as ``ccpipe eval-pii``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccpipe.pii.engine import PiiConfig, PiiTagger
from ccpipe.pii.evaluate import evaluate, read_marked, read_records

DATA = Path(__file__).parent / "data"
CRITICAL = ("CREDIT_CARD", "EMAIL_ADDRESS", "PHONE_NUMBER")


@pytest.fixture(scope="module")
def tagger():
    return PiiTagger(PiiConfig())


def check_targets(report):
    assert report.recall() >= 0.98, report.text()
    for entity in CRITICAL:
        if report.planted[entity]:
            assert report.recall(entity) >= 0.995, report.text()
    assert report.precision() >= 0.90, report.text()
    for entity in ("CREDIT_CARD", "EMAIL_ADDRESS", "IP_ADDRESS", "MAC_ADDRESS"):
        assert report.leaked[entity] == 0, report.text()


@pytest.mark.parametrize("name", ["conversations.jsonl", "heldout_conversations.jsonl"])
def test_hand_written_conversations(tagger, name):
    records, truth = read_marked(str(DATA / name))
    assert len(records) >= (50 if name == "conversations.jsonl" else 20)
    assert {json.loads(line)["variant"] for line in (DATA / name).read_text().splitlines()} >= {
        "en-US", "en-GB", "en-AU", "en-SG", "en-HK", "en-NL", "en-BR", "en-IN"}
    report = evaluate(tagger, records, truth)
    check_targets(report)


@pytest.mark.parametrize("seed", [2, 13])
def test_generated_fixtures(tagger, tmp_path, seed):
    from fixtures.generate import generate

    generate(tmp_path, seed=seed, n_tenants=8, n_calls=40, n_chats=60, n_telemetry=40, n_registrations=0)
    records = read_records([str(tmp_path / "input" / "*")])
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    report = evaluate(tagger, records, truth)
    assert sum(report.planted.values()) > 300
    check_targets(report)


def test_report_counts_are_exact(tagger, tmp_path):
    marked = tmp_path / "m.jsonl"
    marked.write_text(json.dumps({"record_id": "x", "messages": [
        ["customer", "card [[CREDIT_CARD:4111 1111 1111 1111]] and my dog Rex"],
        ["customer", "I am [[PERSON:nobody special]] honestly"]]}) + "\n")
    report = evaluate(tagger, *read_marked(str(marked)))
    assert (report.planted["CREDIT_CARD"], report.found["CREDIT_CARD"], report.leaked["CREDIT_CARD"]) == (1, 1, 0)
    assert (report.planted["PERSON"], report.found["PERSON"], report.leaked["PERSON"]) == (1, 0, 1)
    assert report.misses[0]["record_id"] == "x" and report.misses[0]["field"] == "messages[1].text"


def test_cli(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ccpipe.cli", "eval-pii", "--marked",
                           str(DATA / "heldout_conversations.jsonl"), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["overall"]["planted"] == 36
    assert set(summary["per_type"]) >= {"CREDIT_CARD", "PERSON", "PHONE_NUMBER"}
