"""Card numbers of any brand: 13-19 digits (12 for Maestro, next to a card word), optionally grouped.

PCI: a Luhn-valid number never passes, whatever its prefix or grouping (score 1.0). A number of
card length that fails the Luhn check is still redacted when a card word is near it or it is grouped
the way cards are printed (score 0.6):
callers misread card numbers, and a misread card number is one digit away from the real one.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

PATTERNS = [Pattern("card digits, optionally grouped", r"(?<![\d.,+-])\d(?:[ .-]?\d){11,18}(?![\d]|[.,-]\d)", 0.5)]
CONTEXT = ["card", "credit", "debit", "visa", "mastercard", "amex", "cc", "pay"]
_DIGITS = re.compile(r"\d")
# Grouped the way cards are printed (4-4-4-4, 4-6-5): phone numbers and ids never look like this.
_CARD_SHAPE = re.compile(r"\d{4}([ .-])\d{4}\1\d{4}\1\d{4}|\d{4}([ -])\d{6}\2\d{5}")
_CARD_CUE = re.compile(
    r"(?i)\b(card|credit|debit|visa|mastercard|master card|amex|american express|cc|pay(?:ing|ment)?|charge)\b"
)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class LuhnCardRecognizer(CcpipePatternRecognizer):
    """CREDIT_CARD findings (score 1.0) for Luhn-valid 13-19 digit numbers."""

    ENTITY = "CREDIT_CARD"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Only texts with at least 12 digits can hold a card number."""
        return len(_DIGITS.findall(text)) >= 12

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        """Luhn-valid numbers at 1.0; other card-length numbers at 0.6 if card-shaped or near a card word."""
        out = []
        for r in super().analyze(text, entities, nlp_artifacts, regex_flags):
            digits = "".join(_DIGITS.findall(text[r.start : r.end]))
            if len(digits) == 12:  # Maestro numbers can be 12 digits: only with a card word and a valid check
                if luhn_valid(digits) and _CARD_CUE.search(text[max(0, r.start - 60) : r.start]):
                    r.score = 0.9
                    out.append(r)
                continue
            if not 13 <= len(digits) <= 19:
                continue
            if luhn_valid(digits):
                r.score = 1.0
            elif _CARD_SHAPE.fullmatch(text[r.start : r.end]) or _CARD_CUE.search(
                text[max(0, r.start - 60) : r.end + 20]
            ):
                r.score = 0.6
            else:
                continue
            out.append(r)
        return out
