"""The base of ccpipe's pattern recognizers: module PATTERNS/CONTEXT, case-sensitive, with a pre-check."""

from __future__ import annotations

import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.pattern_recognizer import REGEX_TIMEOUT_SECONDS


class CcpipePatternRecognizer(PatternRecognizer):
    """A PatternRecognizer configured from class attributes.

    Subclasses set ``ENTITY``, ``PATTERNS`` and ``CONTEXT`` (the module constants) and may
    override ``precheck``: a cheap test that says whether the recognizer can match a text at all,
    so the regexes run only where they can find something. Patterns are case-sensitive unless
    they say ``(?i)`` themselves: Presidio's default is case-insensitive, which would make
    "capitalised word" patterns match everything.

    ``analyze`` gives what Presidio's ``PatternRecognizer.analyze`` gives (the same matches, scores,
    ``validate_result``/``invalidate_result`` and duplicate removal), without what ccpipe never reads
    and a profile showed costs a third of its time: a timing, a debug log call and an explanation
    object per pattern and match.
    """

    ENTITY: str = ""
    PATTERNS: list[Pattern] = []
    CONTEXT: list[str] = []

    def __init__(self, supported_language: str = "en") -> None:
        """Build from the class attributes."""
        super().__init__(
            supported_entity=self.ENTITY,
            patterns=list(self.PATTERNS),
            context=list(self.CONTEXT),
            supported_language=supported_language,
            name=type(self).__name__,
            global_regex_flags=regex.DOTALL | regex.MULTILINE,
        )
        self._compiled = [(p, regex.compile(p.regex, self.global_regex_flags)) for p in self.patterns]

    @staticmethod
    def precheck(text: str) -> bool:
        """Whether the recognizer can match ``text`` at all (default: always)."""
        return True

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None) -> list[RecognizerResult]:
        """Every pattern's matches as Presidio scores them (other flags: Presidio's own code)."""
        if regex_flags and regex_flags != self.global_regex_flags:
            return super().analyze(text, entities, nlp_artifacts, regex_flags)
        entity = self.supported_entities[0]
        metadata = {RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id}
        results = []
        for pattern, compiled in self._compiled:
            try:
                for m in compiled.finditer(text, timeout=REGEX_TIMEOUT_SECONDS):
                    start, end = m.span()
                    if start == end:
                        continue
                    matched = text[start:end]
                    score = pattern.score
                    valid = self.validate_result(matched)
                    if valid is not None:
                        score = EntityRecognizer.MAX_SCORE if valid else EntityRecognizer.MIN_SCORE
                    if self.invalidate_result(matched):
                        score = EntityRecognizer.MIN_SCORE
                    if score > EntityRecognizer.MIN_SCORE:
                        results.append(RecognizerResult(entity, start, end, score, recognition_metadata=dict(metadata)))
            except TimeoutError:  # as Presidio: a pattern that times out is skipped
                continue
        return EntityRecognizer.remove_duplicates(results)
