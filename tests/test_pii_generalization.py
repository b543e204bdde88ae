"""PII kinds that leaked on text this project did not write (issue 9), each as a regression test.

The examples are invented in the shapes the issue lists; the development sets under
``tests/data/dev`` are presidio-evaluator's generator output (``bench/devsets.py``), scored by the
same code as ``ccpipe eval-pii --labelled``. The floors on ``pe_en_check`` (a draw nobody tuned on)
sit below the figures measured when they were set, so a change that costs recall fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccpipe.pii.engine import PiiConfig, PiiTagger, TextGroup, redact
from ccpipe.pii.evaluate import evaluate, read_labelled

DEV = Path(__file__).parent / "data" / "dev"


@pytest.fixture(scope="module")
def tagger():
    return PiiTagger(PiiConfig())


def redacted(tagger, text):
    [[findings]] = tagger.tag_groups([TextGroup((text,))])
    return redact(text, findings)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # International street addresses and their postcodes.
        ("please send it to Hauptstraße 5\n10115 Berlin", "Hauptstraße 5"),
        ("ship to PSC 4115, Box 7815\nAPO AE 41945 thanks", "PSC 4115, Box 7815"),
        ("ship to PSC 4115, Box 7815\nAPO AE 41945 thanks", "APO AE 41945"),
        ("USNS Harper\nFPO AP 20511", "USNS Harper"),
        ("Flat 3\n12 High St\nLEEDS\nLS1 4AB", "LS1 4AB"),
        ("my address is 77 Rue des Lilas\n75011 PARIS\nFrance", "77 Rue des Lilas"),
        ("It's in Tjernveien 150\n Suite 728\n PARADIS\n Norway 25193", "Norway 25193"),
        ("new address: 5014 Apáczai Csere János u. 55., Apt. 177, Buják, Hungary", "Apáczai Csere János u. 55."),
        # Names NER misses.
        ("hey this is kim lee from upstairs", "kim lee"),
        ("I'd like to join accounts with Mr. olsen", "olsen"),
        ("our founders: Svensson, Estrada and Scott.", "Estrada"),
        ("Best regards,\nFortunato Pisano", "Fortunato Pisano"),
        ("Thorkildsen began writing as a teenager", "Thorkildsen"),
        # Phone numbers of any country, extensions, fax suffixes, local numbers after a cue.
        ("reach me on +41 (0)44 123 45 67", "+41 (0)44 123 45 67"),
        ("mobile 0412 34 56 78", "0412 34 56 78"),
        ("appelez le 04.91.23.45.67", "04.91.23.45.67"),
        ("Phone: 494 17 271", "494 17 271"),
        ("(555) 123-4567x204 office", "(555) 123-4567x204"),
        ("42-51-49-67-Fax", "42-51-49-67"),
        # IBAN, national ids with valid checks.
        ("My IBAN is GB09PSNW55154717239888", "GB09PSNW55154717239888"),
        ("Here's my SSN: 173-96-5484", "173-96-5484"),
        ("BSN 123456782", "123456782"),
        ("NINO QQ 12 34 56 C", "QQ 12 34 56 C"),
        ("my NRIC is S1234567D", "S1234567D"),
        ("HKID A123456(3)", "A123456(3)"),
        ("TFN 123 456 782", "123 456 782"),
        ("CPF 529.982.247-25", "529.982.247-25"),
        # Dates of birth.
        ("I was born on 3/14/1962", "3/14/1962"),
        ("my date of birth is March 14, 1962", "March 14, 1962"),
        ("DOB: 14.03.1962", "14.03.1962"),
        # Identifiers read out next to their cue word; user names.
        ("my reservation QKX72M is wrong", "QKX72M"),
        ("order 5521907 never came", "5521907"),
        ("my user id is kim_lee_4821", "kim_lee_4821"),
        ("case #A-20931 please", "A-20931"),
        # Text typed without capitals or punctuation.
        ("hi karp im contacting u about the bill", "karp"),
        ("im irenka majewska originally from gdansk", "irenka majewska"),
        ("mariya is very reliable u know", "mariya"),
        ("barbara shouted at justin what are u doing", "justin"),
        ("my iban is gb09psnw55154717239888 thx", "gb09psnw55154717239888"),
        ("pls send it to 76 rue des lilas 75011 paris", "76 rue des lilas"),
        # Speech-shaped transcripts.
        ("it's john dot smith at gmail dot com", "john dot smith at gmail dot com"),
        ("my number is six one two five five five zero one nine nine", "six one two five five five zero one nine nine"),
    ],
)
def test_leaked_kinds_are_redacted(tagger, text, secret):
    out = redacted(tagger, text)
    assert secret not in out, out


@pytest.mark.parametrize(
    "text",
    [
        "I'm flying to Paris on 12 March, flight BA 304",
        "Will you check the Billing queue for me?",
        "I'm on the Fiber Max plan since January",
        "My flight is on 2026-12-03 at 10:30 and costs 1,234.56 EUR",
        "Hope you are well, May is a busy month",
        "the router model is AX3000 v2",
        "god gave rock and roll to you, can i request you to block it",
        "she moved here from france and studied at the university of roma",
        "the helicoppter landed and the rrestaurant was closed",
    ],
)
def test_travel_products_and_dates_are_left_alone(tagger, text):
    assert redacted(tagger, text) == text


@pytest.mark.parametrize(
    "text",
    ["SSN 000-12-3456", "my NRIC is S1234567A", "HKID A123456(4)", "CPF 529.982.247-26", "BSN 123456789"],
)
def test_national_ids_failing_their_check_are_not_ids(tagger, text):
    [[findings]] = tagger.tag_groups([TextGroup((text,))])
    assert "NATIONAL_ID" not in {f.entity_type for f in findings}


def test_labelled_file_counts_are_exact(tagger, tmp_path):
    path = tmp_path / "l.jsonl"
    rows = [
        {"id": "a", "text": "I'm Ann Lee, card 4111 1111 1111 1111",
         "spans": [{"start": 4, "end": 11, "label": "PERSON"}, {"start": 18, "end": 37, "label": "CREDIT_CARD"}]},
        {"id": "b", "text": "I flew to Lisbon", "spans": [{"start": 10, "end": 16, "label": "GPE"}]},
        {"id": "c", "text": "quiet day, nothing here", "spans": [{"start": 0, "end": 5, "label": "PERSON"}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    records, truth = read_labelled(str(path))
    assert [t["entity_type"] for t in truth] == ["PERSON", "CREDIT_CARD", "PERSON"]  # GPE is not personal
    report = evaluate(tagger, records, truth)
    assert report.texts == 3
    assert (report.planted["PERSON"], report.found["PERSON"], report.leaked["PERSON"]) == (2, 1, 1)
    assert (report.planted["CREDIT_CARD"], report.found["CREDIT_CARD"]) == (1, 1)
    assert report.chars["PERSON"] == 6 + 5 and report.chars_redacted["PERSON"] == 6
    assert report.redactions == 2 and report.precision() == 1.0


def test_a_labelled_conversation_is_tagged_as_one(tagger, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "c", "messages": [
        {"text": "Hi, this is Ann Lee", "spans": [{"start": 12, "end": 19, "label": "PERSON"}]},
        {"sender": "agent", "text": "thanks ann, one moment", "spans": [{"start": 7, "end": 10, "label": "PERSON"}]}]}))
    records, truth = read_labelled(str(path))
    assert [m["sender"] for m in records[0]["messages"]] == ["customer", "agent"]
    assert [t["field"] for t in truth] == ["messages[0].text", "messages[1].text"]
    report = evaluate(tagger, records, truth)
    assert (report.planted["PERSON"], report.found["PERSON"]) == (2, 2)


def test_presidio_evaluator_json_is_read(tmp_path):
    path = tmp_path / "pe.json"
    path.write_text(json.dumps([{"full_text": "My name is Ann", "spans": [
        {"entity_type": "PERSON", "entity_value": "Ann", "start_position": 11, "end_position": 14}]}]))
    records, truth = read_labelled(str(path))
    assert truth[0]["value"] == "Ann" and records[0]["messages"][0]["text"] == "My name is Ann"


def test_cli_reports_each_set_separately():
    done = subprocess.run([sys.executable, "-m", "ccpipe.cli", "eval-pii", "--json",
                           "--labelled", str(DEV / "pe_lower.jsonl"), "--labelled", str(DEV / "pe_multi.jsonl")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert sorted(Path(k).name for k in summary) == ["pe_lower.jsonl", "pe_multi.jsonl"]
    for report in summary.values():
        assert report["overall"]["char_recall"] >= 0.9 and report["overall"]["precision"] >= 0.8


@pytest.mark.parametrize(
    ("name", "char_recall", "precision"),
    [("pe_en_check", 0.95, 0.88), ("pe_multi", 0.93, 0.88), ("pe_lower", 0.91, 0.86), ("pe_chat", 0.93, 0.86),
     ("pe_noisy", 0.9, 0.84)],
)
def test_development_sets_hold_their_floors(tagger, name, char_recall, precision):
    report = evaluate(tagger, *read_labelled(str(DEV / f"{name}.jsonl")))
    assert report.char_recall() >= char_recall, report.text(0)
    assert report.precision() >= precision, report.text(0)
    for entity in ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"):
        assert report.char_recall(entity) >= 0.98, report.text(0)
