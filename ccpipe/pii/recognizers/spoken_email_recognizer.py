"""E-mail addresses spoken out in call transcripts: "john dot smith at gmail dot com"."""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

_PART = r"[a-z0-9]+(?:(?:\s+(?:dot|underscore|dash|hyphen|point)\s+|[._-])[a-z0-9]+)*"
PATTERNS = [
    Pattern(
        "spoken address",
        rf"(?i)\b{_PART}\s+(?:at|@)\s+[a-z0-9-]+(?:\s+(?:dot|point)\s+[a-z]{{2,10}})+\b",
        0.8,
    ),
]
CONTEXT = ["email", "e-mail", "mail", "address"]
_HINT = re.compile(r"(?i)\b(?:dot|point)\s+(?:com|net|org|co|edu|gov|io|[a-z]{2})\b")


class SpokenEmailRecognizer(CcpipePatternRecognizer):
    """EMAIL_ADDRESS findings for spelled-out addresses."""

    ENTITY = "EMAIL_ADDRESS"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with a spoken top-level domain ("dot com")."""
        return _HINT.search(text) is not None
