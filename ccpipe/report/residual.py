"""The residual-PII check: a second, independent look at a sample of the redacted text a run wrote.

The redacting tagger (ccpipe.pii.engine) is tuned: its own recognizers, allow-lists, a gazetteer
of names, vetoes on NER labels, a 0.3 score threshold. This check deliberately uses none of that:
Presidio's predefined recognizers and the spaCy model's full pipeline as Presidio configures them,
at a lower score threshold (0.2 by default). Whatever it still finds in ``*_redacted`` columns is
counted per entity type, per dataset and column (a finding inside another one, such as the domain
of an email address, is not counted again). Values are never kept: only counts leave here.

The sample is deterministic: per dataset, the ``sample_rows`` rows whose row key (SPEC identity:
tenant id, record id, and the message's seq) has the smallest SHA-256 digest; the same output
always gives the same sample, whatever the file layout.

Two entity types are not counted by default (``ResidualConfig.ignore``): ``DATE_TIME`` and
``ORGANIZATION``. ccpipe keeps dates, times, company and product names on purpose (they are what a
contact-center transcript is about, not who it is about); counting them would bury the signal.
Presidio's email recognizer is swapped for the same patterns validated offline (the original
fetches the public-suffix list from the internet on first use).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ccpipe.errors import ConfigError
from ccpipe.schemas import OUTPUT_SCHEMAS, ROW_KEY

DEFAULT_SAMPLE_ROWS = 200
DEFAULT_SCORE_THRESHOLD = 0.2
NOT_PERSONAL = ("DATE_TIME", "ORGANIZATION")
# A redaction placeholder: ``<PERSON>``, ``<EMAIL_ADDRESS>``...
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class ResidualConfig:
    """How the residual check samples and detects.

    Attributes:
        sample_rows: rows per dataset (0 turns the check off).
        score_threshold: findings scoring below this are ignored (0..1); below the tagger's 0.3.
        model: the installed spaCy model package Presidio's NER runs.
        ignore: entity types not counted (kept on purpose by ccpipe).

    """

    sample_rows: int = DEFAULT_SAMPLE_ROWS
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    model: str = "en_core_web_sm"
    ignore: tuple[str, ...] = NOT_PERSONAL

    def __post_init__(self) -> None:
        if isinstance(self.sample_rows, bool) or not isinstance(self.sample_rows, int) or self.sample_rows < 0:
            raise ConfigError(f"sample_rows {self.sample_rows!r} must be a whole number of rows, 0 or more")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"score_threshold {self.score_threshold!r} must be between 0 and 1")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.model):
            raise ConfigError(f"model {self.model!r} must be an installed spaCy package name")

    def describe(self) -> dict[str, Any]:
        """The configuration as the report states it."""
        return {
            "detector": "Presidio predefined recognizers (email validated offline) + spaCy NER "
                        f"({self.model}, full pipeline); no ccpipe recognizers, allow-lists or gazetteer",
            "score_threshold": self.score_threshold,
            "entity_types_not_counted": sorted(self.ignore),
            "sample": f"per dataset, the {self.sample_rows} rows with the smallest SHA-256 of the row key "
                      "(tenant_id, record_id[, seq])",
            "sample_rows": self.sample_rows,
        }


def redacted_columns(dataset: str) -> tuple[str, ...]:
    """The redacted plain-text columns of a dataset (``*_redacted``); content is ciphertext elsewhere."""
    schema = OUTPUT_SCHEMAS.get(dataset)
    return tuple(f.name for f in schema if f.name.endswith("_redacted")) if schema is not None else ()


def checked_datasets() -> tuple[str, ...]:
    """The datasets that hold redacted text."""
    return tuple(d for d in OUTPUT_SCHEMAS if redacted_columns(d))


def row_digest(dataset: str, row: dict[str, Any]) -> str:
    """The sample order of a row: SHA-256 of its key columns (ccpipe.schemas.ROW_KEY)."""
    key = "\x1f".join(str(row.get(k)) for k in ROW_KEY[dataset])
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def pick_sample(digests: Iterable[tuple[str, Any]], n: int) -> list[Any]:
    """The items of the ``n`` smallest digests (ties broken by the item's position), in digest order."""
    smallest = heapq.nsmallest(n, ((d, i, item) for i, (d, item) in enumerate(digests)))
    return [item for _, _, item in smallest]


def is_residual(text: str, start: int, end: int) -> bool:
    """A finding is residual when something other than redaction placeholders is left in its span."""
    return bool(_WORD.search(_PLACEHOLDER.sub("", text[start:end])))


class PresidioDetector:
    """Presidio's AnalyzerEngine with its predefined recognizers and a spaCy NLP engine, offline."""

    def __init__(self, config: ResidualConfig) -> None:
        """Load the model and the recognizers (a few seconds)."""
        from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        from ccpipe.pii.engine import resolve_model
        from ccpipe.pii.recognizers.offline_email_recognizer import OfflineEmailRecognizer

        self._config = config
        # Presidio warns about every recognizer of another language it skips: noise, not news.
        log = logging.getLogger("presidio-analyzer")
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": resolve_model(config.model)}])
            nlp.load()
            registry = RecognizerRegistry(supported_languages=["en"])
            registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
            registry.remove_recognizer("EmailRecognizer")
            registry.add_recognizer(OfflineEmailRecognizer())
        finally:
            log.setLevel(level)
        engine = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
        self._batch = BatchAnalyzerEngine(engine)

    def detect(self, texts: Sequence[str]) -> list[list[tuple[str, int, int]]]:
        """Per text, its findings as ``(entity_type, start, end)``, above the threshold, not ignored."""
        if not texts:
            return []
        results = self._batch.analyze_iterator(
            list(texts), language="en", batch_size=32, score_threshold=self._config.score_threshold
        )
        ignore = set(self._config.ignore)
        return [[(r.entity_type, r.start, r.end) for r in found if r.entity_type not in ignore] for found in results]


def outermost(found: Iterable[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Findings not inside another one: an address's domain is not a second finding (``URL`` in ``EMAIL``)."""
    kept: list[tuple[str, int, int]] = []
    for entity_type, start, end in sorted(found, key=lambda f: (f[1], -f[2], f[0])):
        if any(s <= start and end <= e for _, s, e in kept):
            continue
        kept.append((entity_type, start, end))
    return kept


def count_residual(texts: Sequence[str], detector: PresidioDetector | Any) -> dict[str, int]:
    """Residual findings in ``texts`` per entity type: outermost spans, placeholders themselves never count."""
    counts: dict[str, int] = {}
    for text, found in zip(texts, detector.detect(texts), strict=True):
        for entity_type, start, end in outermost(found):
            if is_residual(text, start, end):
                counts[entity_type] = counts.get(entity_type, 0) + 1
    return dict(sorted(counts.items()))
