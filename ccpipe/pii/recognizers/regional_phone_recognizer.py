"""Phone numbers of the seven service regions (NL, US, UK, SG, HK, AU, BR), as people type them.

Uses libphonenumber's matcher with each region as the default for numbers written without a
country code; international numbers (``+``) are found whatever the region. Only texts with at
least seven digits are examined, since nothing shorter is a phone number in these regions.
"""

from __future__ import annotations

import re

import phonenumbers
from presidio_analyzer import EntityRecognizer, RecognizerResult

PATTERNS: list = []  # libphonenumber does the matching; no regex patterns
CONTEXT = ["phone", "number", "call", "mobile", "cell", "tel", "ring", "reach", "whatsapp", "callback"]
REGIONS = ("NL", "US", "GB", "SG", "HK", "AU", "BR")
_DIGITS = re.compile(r"\d")
_DATE = re.compile(r"^\d{1,4}([./-])\d{1,2}\1\d{1,4}$")
# With one of these words just before it, a number that is only *possible* (not in an allocated
# range, e.g. a new or fictional range) still counts: people do give such numbers.
_CUE = re.compile(
    r"(?i)\b(call|ring|phone|number|mobile|cell|reach|text|whatsapp|contact|tel|handphone|on|at)\b[^\d]{0,25}$"
)


class RegionalPhoneRecognizer(EntityRecognizer):
    """PHONE_NUMBER findings for valid numbers of any service region."""

    ENTITY = "PHONE_NUMBER"

    def __init__(self, supported_language: str = "en", regions: tuple[str, ...] = REGIONS) -> None:
        """``regions``: default regions tried for national numbers."""
        self.regions = regions
        super().__init__(
            supported_entities=[self.ENTITY],
            supported_language=supported_language,
            name="RegionalPhoneRecognizer",
            context=CONTEXT,
        )

    def load(self) -> None:
        """Nothing to load."""

    @staticmethod
    def precheck(text: str) -> bool:
        """Only texts with at least seven digits can hold a phone number."""
        return len(_DIGITS.findall(text)) >= 7

    def analyze(self, text: str, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        """Valid numbers (0.9, 0.95 with a '+'), and possible ones of 8+ digits right after a phone cue (0.7)."""
        spans: dict[tuple[int, int], float] = {}
        for region in self.regions:
            for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
                if match.raw_string.count(".") >= 3 or _DATE.match(match.raw_string):
                    continue  # a dotted quad is an IPv4 address and a date is a date, not a phone number
                if phonenumbers.is_valid_number(match.number):
                    score = 0.95 if match.raw_string.startswith("+") else 0.9
                elif len(_DIGITS.findall(match.raw_string)) >= 8 and _CUE.search(text, 0, match.start):
                    score = 0.7
                else:
                    continue
                spans[(match.start, match.end)] = max(score, spans.get((match.start, match.end), 0.0))
        return [RecognizerResult(self.ENTITY, s, e, score) for (s, e), score in sorted(spans.items())]
