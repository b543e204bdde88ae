"""Dates of birth: a date right after "born", "date of birth", "DOB", "birthday".

A date alone (a flight, an appointment, an invoice) is not personal data; a date of birth is, and
with a name and a postcode it identifies most people. Dates are numeric (``3/14/1962``,
``14.03.1962``, ``1962-03-14``) or written (``March 14, 1962``, ``14th of March 1962``, ``14 Mar 62``).
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
          r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_DAY = r"(?:[0-3]?\d)(?:st|nd|rd|th)?"
DATE = (rf"(?:\d{{1,4}}[/.\-]\d{{1,2}}[/.\-]\d{{2,4}}|{_DAY}(?:\s+of)?\s+{_MONTH},?\s+\d{{2,4}}|"
        rf"{_MONTH}\s+{_DAY},?\s+\d{{2,4}}|{_MONTH}\s+\d{{4}})")
PATTERNS = [
    Pattern(
        "date after a birth word",
        r"(?i)(?<=\b(?:born|birth|dob|d\.o\.b\.?|birthday|birthdate|b-day|bday)\b)"
        rf"(?:[^\w\n]{{0,3}}(?:on|is|was|in|date|:|of|the)){{0,3}}[^\w\n]{{0,3}}\K{DATE}",
        0.85,
    ),
]
CONTEXT = ["born", "birth", "dob", "birthday"]
_HINT = re.compile(r"(?i)\b(born|birth|dob|d\.o\.b|birthday|birthdate|b-day|bday)")


class DateOfBirthRecognizer(CcpipePatternRecognizer):
    """DATE_OF_BIRTH findings."""

    ENTITY = "DATE_OF_BIRTH"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with a birth word."""
        return _HINT.search(text) is not None
