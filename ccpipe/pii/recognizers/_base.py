"""The base of ccpipe's pattern recognizers: module PATTERNS/CONTEXT, case-sensitive, with a pre-check."""

from __future__ import annotations

import regex
from presidio_analyzer import Pattern, PatternRecognizer


class CcpipePatternRecognizer(PatternRecognizer):
    """A PatternRecognizer configured from class attributes.

    Subclasses set ``ENTITY``, ``PATTERNS`` and ``CONTEXT`` (the module constants) and may
    override ``precheck``: a cheap test that says whether the recognizer can match a text at all,
    so the regexes run only where they can find something. Patterns are case-sensitive unless
    they say ``(?i)`` themselves: Presidio's default is case-insensitive, which would make
    "capitalised word" patterns match everything.
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

    @staticmethod
    def precheck(text: str) -> bool:
        """Whether the recognizer can match ``text`` at all (default: always)."""
        return True
