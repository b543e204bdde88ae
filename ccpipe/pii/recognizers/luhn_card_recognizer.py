"""Card numbers of any brand: 13-19 digits, optionally grouped, accepted only when the Luhn check passes.

PCI: a valid card number must never pass, whatever its prefix or grouping (spaces, dashes, dots).
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

PATTERNS = [Pattern("card digits, optionally grouped", r"(?<![\d.,-])\d(?:[ .-]?\d){12,18}(?![\d]|[.,-]\d)", 0.5)]
CONTEXT = ["card", "credit", "debit", "visa", "mastercard", "amex", "cc", "pay"]
_DIGITS = re.compile(r"\d")


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
        """Only texts with at least 13 digits can hold a card number."""
        return len(_DIGITS.findall(text)) >= 13

    def validate_result(self, pattern_text: str) -> bool:
        """Keep only Luhn-valid numbers of a card's length."""
        digits = "".join(_DIGITS.findall(pattern_text))
        return 13 <= len(digits) <= 19 and luhn_valid(digits)
