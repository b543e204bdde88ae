"""Measure PII detection against planted ground truth: ``ccpipe eval-pii``.

Run it on a generated corpus (``ccpipe fixtures``) or on hand-written conversations::

    ccpipe eval-pii --input 'out/fixtures/input/*' --truth out/fixtures/truth.jsonl
    ccpipe eval-pii --marked tests/data/conversations.jsonl
    ccpipe eval-pii --labelled tests/data/dev/pe_en.jsonl --labelled tests/data/dev/pe_multi.jsonl

Each file given is a *set*, reported on its own (never pooled: a figure tuned on one set says little
about another). For each entity type and overall it reports planted values, found (every character
of the value redacted), leaked (the value still verbatim in the redacted text), span recall,
character recall (the share of planted characters redacted), and the precision of the redactions
(the share of redactions that overlap planted personal data), then the worst misses. Records are
tagged exactly as the pipeline tags them (same groups, same record context).

Labelled files (``--labelled``) hold one text (or one conversation) per line, with character offsets::

    {"id": "t-1", "text": "I'm Ann Lee, 22 Elm St", "spans": [{"start": 4, "end": 11, "label": "PERSON"}, ...]}
    {"id": "c-1", "messages": [{"text": "hi, Ann here", "spans": [...]}, {"sender": "agent", "text": ...}]}

``label`` may be any name; common ones map onto ccpipe's types (``LABEL_MAP``: ``STREET_ADDRESS`` and
``ZIP_CODE`` -> ``ADDRESS``, ``US_SSN`` -> ``NATIONAL_ID``...). Labels that are not personal data in
ccpipe's contract (``NOT_PERSONAL``: countries and cities on their own, organisations, job titles,
nationalities, ordinary dates, ages, domains) are not counted as planted, and redacting them counts
against precision. presidio-evaluator's JSON (``full_text`` + ``spans`` with ``start_position``,
``end_position``, ``entity_type``) is read as well. ``bench/devsets.py`` builds the development sets.

Hand-written conversations mark PII inline: ``"Hi, it's [[PERSON:Olivia Bennett]] here"``. These
files are evaluation data: the report prints missed values with their context.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccpipe.jsonl import read_lines
from ccpipe.pii.engine import PiiConfig, PiiTagger, TextGroup, redact
from ccpipe.policy import known_values
from ccpipe.schemas import iter_free_text
from ccpipe.types import Finding

# Misses of these types are the worst: PCI data and direct contact identifiers first.
PRIORITY = ["CREDIT_CARD", "EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "MAC_ADDRESS", "DTMF", "PERSON",
            "ADDRESS", "USERNAME", "AGENT_ID", "ACCOUNT_ID", "LOCATION"]
_MARK = re.compile(r"\[\[([A-Z_]+):(.+?)\]\]")
# Labels of other corpora, as ccpipe's entity types.
LABEL_MAP = {
    "STREET_ADDRESS": "ADDRESS", "ZIP_CODE": "ADDRESS", "POSTCODE": "ADDRESS", "LOC_ADDRESS": "ADDRESS",
    "US_SSN": "NATIONAL_ID", "SSN": "NATIONAL_ID", "NL_BSN": "NATIONAL_ID", "UK_NINO": "NATIONAL_ID",
    "SG_NRIC_FIN": "NATIONAL_ID", "HK_ID": "NATIONAL_ID", "AU_TFN": "NATIONAL_ID", "BR_CPF": "NATIONAL_ID",
    "US_DRIVER_LICENSE": "DRIVER_LICENSE", "IBAN": "IBAN_CODE", "EMAIL": "EMAIL_ADDRESS", "PHONE": "PHONE_NUMBER",
    "PER": "PERSON", "NAME": "PERSON", "CREDIT_CARD_NUMBER": "CREDIT_CARD", "DOB": "DATE_OF_BIRTH",
    "USER_ID": "USERNAME",
}
# Labels that are not personal data by themselves in ccpipe's contract: not planted, and a
# redaction that covers only them is a false redaction.
NOT_PERSONAL = frozenset({"GPE", "LOCATION", "ORGANIZATION", "ORG", "TITLE", "NRP", "DATE_TIME", "AGE",
                          "DOMAIN_NAME", "URL", "HOSPITAL", "RELIGION", "PRODUCT", "EVENT"})


@dataclass
class Report:
    """Counts per planted entity type, plus redaction precision and the misses."""

    planted: Counter = field(default_factory=Counter)
    found: Counter = field(default_factory=Counter)
    leaked: Counter = field(default_factory=Counter)
    chars: Counter = field(default_factory=Counter)
    chars_redacted: Counter = field(default_factory=Counter)
    texts: int = 0
    redactions: int = 0
    true_redactions: int = 0
    false_redactions: Counter = field(default_factory=Counter)
    misses: list[dict[str, Any]] = field(default_factory=list)
    false_examples: list[str] = field(default_factory=list)

    def recall(self, entity: str | None = None) -> float:
        """Found / planted, for one entity type or overall."""
        planted = self.planted[entity] if entity else sum(self.planted.values())
        found = self.found[entity] if entity else sum(self.found.values())
        return found / planted if planted else 1.0

    def char_recall(self, entity: str | None = None) -> float:
        """Planted characters redacted / planted characters."""
        total = self.chars[entity] if entity else sum(self.chars.values())
        done = self.chars_redacted[entity] if entity else sum(self.chars_redacted.values())
        return done / total if total else 1.0

    def leak_rate(self) -> float:
        """Planted values still verbatim in the redacted text / planted values."""
        planted = sum(self.planted.values())
        return sum(self.leaked.values()) / planted if planted else 0.0

    def precision(self) -> float:
        """Redactions that cover planted PII / all redactions."""
        return self.true_redactions / self.redactions if self.redactions else 1.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        types = sorted(self.planted, key=lambda e: (PRIORITY.index(e) if e in PRIORITY else 99, e))
        return {
            "per_type": {
                e: {"planted": self.planted[e], "found": self.found[e], "leaked": self.leaked[e],
                    "recall": round(self.recall(e), 4), "char_recall": round(self.char_recall(e), 4)}
                for e in types
            },
            "overall": {"texts": self.texts, "planted": sum(self.planted.values()),
                        "found": sum(self.found.values()), "leaked": sum(self.leaked.values()),
                        "recall": round(self.recall(), 4), "char_recall": round(self.char_recall(), 4),
                        "leak_rate": round(self.leak_rate(), 4),
                        "redactions": self.redactions, "precision": round(self.precision(), 4)},
            "false_redactions_by_type": dict(self.false_redactions.most_common()),
        }

    def text(self, worst: int = 15) -> str:
        """The report as a table."""
        d = self.as_dict()
        lines = [f"{'entity':<16}{'planted':>8}{'found':>8}{'leaked':>8}{'recall':>9}{'chars':>9}"]
        for e, row in d["per_type"].items():
            lines.append(f"{e:<16}{row['planted']:>8}{row['found']:>8}{row['leaked']:>8}{row['recall']:>9.4f}"
                         f"{row['char_recall']:>9.4f}")
        o = d["overall"]
        lines.append(f"{'OVERALL':<16}{o['planted']:>8}{o['found']:>8}{o['leaked']:>8}{o['recall']:>9.4f}"
                     f"{o['char_recall']:>9.4f}")
        lines.append(f"texts {o['texts']}, span leak {o['leak_rate']:.4f}, "
                     f"redactions {o['redactions']}, precision {o['precision']:.4f}; "
                     f"false redactions by type: {d['false_redactions_by_type']}")
        if self.misses:
            lines.append(f"worst misses ({min(worst, len(self.misses))} of {len(self.misses)}):")
            ranked = sorted(self.misses, key=lambda m: PRIORITY.index(m["entity_type"])
                            if m["entity_type"] in PRIORITY else 99)
            for m in ranked[:worst]:
                lines.append(f"  {m['entity_type']:<13} {m['record_id']}/{m['field']}: {m['context']!r}")
        if self.false_examples:
            lines.append("some false redactions:")
            lines.extend(f"  {x!r}" for x in self.false_examples[:worst])
        return "\n".join(lines)


def read_records(patterns: list[str]) -> list[dict[str, Any]]:
    """Every JSON object with a ``type`` and ``record_id`` from JSONL(.gz) files (bad lines skipped)."""
    out = []
    for line in read_lines(patterns):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "type" in obj and "record_id" in obj:
            out.append(obj)
    return out


def read_marked(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hand-written conversations with ``[[TYPE:value]]`` marks -> chat records and truth."""
    records, truth = [], []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        conv = json.loads(line)
        rid = conv.get("record_id") or f"hw-{n:04d}"
        messages = []
        for seq, (sender, marked) in enumerate(conv["messages"]):
            text, pos = [], 0
            length = 0
            for m in _MARK.finditer(marked):
                plain = marked[pos : m.start()]
                text.append(plain)
                length += len(plain)
                value = m.group(2)
                truth.append({"entity_type": m.group(1), "value": value, "record_id": rid,
                              "field": f"messages[{seq}].text", "start": length, "end": length + len(value)})
                text.append(value)
                length += len(value)
                pos = m.end()
            text.append(marked[pos:])
            messages.append({"seq": seq, "sender": sender, "sent_at": "2026-10-01T10:00:00Z", "text": "".join(text)})
        records.append({"type": "chat_transcript", "record_id": rid, "tenant_id": conv.get("tenant_id", "hand"),
                        "conversation_id": rid, "started_at": "2026-10-01T10:00:00Z", "messages": messages})
    return records, truth


def read_labelled(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Labelled texts (JSONL, or presidio-evaluator JSON) -> chat records, and truth.

    A line with ``text`` is one single-message chat; a line with ``messages`` (a list of ``{text,
    spans}``) is one conversation, tagged as the pipeline tags a conversation (a name given in one
    message is redacted in all). Labels map onto ccpipe's types through ``LABEL_MAP``;
    ``NOT_PERSONAL`` labels are left out.
    """
    raw = Path(path).read_text(encoding="utf-8")
    try:
        items = json.loads(raw)
        items = items if isinstance(items, list) else [items]
    except ValueError:
        items = [json.loads(line) for line in raw.splitlines() if line.strip()]
    records, truth = [], []
    for n, item in enumerate(items):
        rid = str(item.get("id") or f"{Path(path).stem}-{n:05d}")
        turns = item["messages"] if isinstance(item.get("messages"), list) else [item]
        messages = []
        for seq, turn in enumerate(turns):
            text = turn.get("text", turn.get("full_text"))
            if not isinstance(text, str):
                raise ValueError(f"{path}: item {rid} message {seq} has no 'text' (or 'full_text') string")
            for span in turn.get("spans") or ():
                start = span.get("start", span.get("start_position"))
                end = span.get("end", span.get("end_position"))
                label = str(span.get("label", span.get("entity_type", ""))).upper()
                label = LABEL_MAP.get(label, label)
                if label in NOT_PERSONAL:
                    continue
                if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
                    raise ValueError(f"{path}: item {rid}: span {start}..{end} is outside its text")
                truth.append({"entity_type": label, "value": text[start:end], "record_id": rid,
                              "field": f"messages[{seq}].text", "start": start, "end": end})
            messages.append({"seq": seq, "sender": turn.get("sender", "customer" if seq % 2 == 0 else "agent"),
                             "sent_at": "2026-10-01T10:00:00Z", "text": text})
        records.append({"type": "chat_transcript", "record_id": rid, "tenant_id": "labelled",
                        "conversation_id": rid, "started_at": "2026-10-01T10:00:00Z", "messages": messages})
    return records, truth


def evaluate(tagger: PiiTagger, records: list[dict[str, Any]], truth: list[dict[str, Any]]) -> Report:
    """Tag every free-text field of the records and score the findings against the truth."""
    planted: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in truth:
        if t.get("start") is not None:
            planted.setdefault((t["record_id"], t["field"]), []).append(t)
    groups, keys, texts = [], [], []
    for rec in records:
        fields = iter_free_text(rec["type"], rec)
        if not fields:
            continue
        groups.append(TextGroup(tuple(t for _, t in fields), tuple(known_values(rec["type"], rec)),
                                rec.get("tenant_id", "")))
        keys.append([(rec["record_id"], path) for path, _ in fields])
        texts.append([t for _, t in fields])
    report = Report()
    for group_keys, group_texts, group_findings in zip(keys, texts, tagger.tag_groups(groups), strict=True):
        for key, text, findings in zip(group_keys, group_texts, group_findings, strict=True):
            _score_text(report, key, text, findings, planted.get(key, []))
    return report


def _score_text(report: Report, key: tuple[str, str], text: str, findings: tuple[Finding, ...],
                planted: list[dict[str, Any]]) -> None:
    covered = bytearray(len(text))
    for f in findings:
        covered[f.start : f.end] = b"\1" * (f.end - f.start)
    redacted = redact(text, findings)
    report.texts += 1
    for t in planted:
        entity = t["entity_type"]
        report.planted[entity] += 1
        value_chars = [i for i in range(t["start"], t["end"]) if not text[i].isspace()]
        report.chars[entity] += len(value_chars)
        report.chars_redacted[entity] += sum(1 for i in value_chars if covered[i])
        if all(covered[t["start"] : t["end"]]):
            report.found[entity] += 1
        else:
            lo, hi = max(0, t["start"] - 30), min(len(text), t["end"] + 30)
            report.misses.append({"entity_type": entity, "record_id": key[0], "field": key[1],
                                  "context": text[lo:hi]})
        if t["value"].lower() in redacted.lower():
            report.leaked[entity] += 1
    for f in findings:
        report.redactions += 1
        if any(f.start < t["end"] and t["start"] < f.end for t in planted):
            report.true_redactions += 1
        else:
            report.false_redactions[f.entity_type] += 1
            if len(report.false_examples) < 50:
                report.false_examples.append(f"{f.entity_type}: {text[f.start:f.end]}")


def main(argv: list[str] | None = None) -> int:
    """``ccpipe eval-pii``."""
    parser = argparse.ArgumentParser(prog="ccpipe eval-pii", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", default=[], help="input JSONL(.gz) file or glob (repeatable)")
    parser.add_argument("--truth", help="truth.jsonl written by 'ccpipe fixtures'")
    parser.add_argument("--marked", action="append", default=[], help="hand-written conversations with [[TYPE:value]]")
    parser.add_argument("--labelled", action="append", default=[],
                        help="labelled texts, JSONL {id, text, spans:[{start, end, label}]} (repeatable; one set each)")
    parser.add_argument("--model", default="en_core_web_sm", help="installed spaCy model")
    parser.add_argument("--pii-config", "--pii_config", dest="pii_config",
                        help="PII configuration YAML (allow-lists, tenant id patterns)")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON, one object per set")
    parser.add_argument("--worst", type=int, default=15, help="misses to list")
    args = parser.parse_args(argv)
    if not args.marked and not args.labelled and not (args.input and args.truth):
        parser.error("give --input and --truth, --marked or --labelled")
    sets: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
    if args.input and args.truth:
        truth = [json.loads(line) for line in Path(args.truth).read_text().splitlines()]
        sets.append((args.truth, read_records(args.input), truth))
    sets += [(path, *read_marked(path)) for path in args.marked]
    sets += [(path, *read_labelled(path)) for path in args.labelled]
    config = PiiConfig.from_yaml(args.pii_config, model=args.model) if args.pii_config else PiiConfig(model=args.model)
    tagger = PiiTagger(config)
    reports = {name: evaluate(tagger, records, truth) for name, records, truth in sets}
    if args.json:
        out = {name: r.as_dict() for name, r in reports.items()}
        print(json.dumps(next(iter(out.values())) if len(out) == 1 else out, indent=2))
    else:
        print("\n\n".join(f"== {name}\n{r.text(args.worst)}" for name, r in reports.items()))
    return 0
