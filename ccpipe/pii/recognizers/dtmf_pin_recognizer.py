"""Keypad input read out or typed in conversation: DTMF digit strings, PINs, passcodes, security codes.

Digits (4 to 12, optionally spaced, with ``#`` or ``*``) near a keypad context word, and runs of
four or more spoken digits ("four eight two one", "double seven"), which callers use for PINs and
phone numbers alike.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

_DIGIT_WORDS = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple)"
PATTERNS = [
    Pattern(
        "keypad digits after a keypad word",
        r"(?i)(?<=\b(?:pin|code|passcode|password|dtmf|keypad|pressed|entered|digits|press|enter|is|was)[ :]"
        r")[#*]?\d(?:[ -]?[\d#*]){3,11}\b#?",
        0.5,
    ),
    Pattern("spoken digits", rf"(?i)\b{_DIGIT_WORDS}(?:[ ,-]+{_DIGIT_WORDS}){{3,}}\b", 0.6),
    Pattern("keypad digits with a terminator", r"(?<![\w#*])[#*]?\d{4,12}[#*](?!\w)", 0.85),
]
CONTEXT = ["pin", "code", "passcode", "dtmf", "keypad", "pressed", "entered", "digits", "security", "verification"]
_HAS = re.compile(rf"(?i)\d|\b{_DIGIT_WORDS}\b")
_KEYPAD_WORDS = re.compile(r"(?i)\b(pin|code|passcode|password|dtmf|keypad|pressed|entered|digits|press|enter)\b")


class DtmfPinRecognizer(CcpipePatternRecognizer):
    """DTMF findings: keypad digits in context and spoken digit runs."""

    ENTITY = "DTMF"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with a digit or a digit word."""
        return _HAS.search(text) is not None

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        """Pattern results; bare 'is/was <digits>' only counts when a keypad word is in the text."""
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        keypad = _KEYPAD_WORDS.search(text) is not None
        out = []
        for r in results:
            if r.score < 0.55 and not keypad:
                continue
            if keypad:
                r.score = max(r.score, 0.85)
            out.append(r)
        return out
