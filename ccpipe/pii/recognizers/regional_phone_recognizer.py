"""Phone numbers of the seven service regions (NL, US, UK, SG, HK, AU, BR), as people type them.

Phone-shaped text is parsed with libphonenumber, with each region as the default for numbers written
without a country code; international numbers (``+``) are found whatever the region. Only texts with at
least seven digits are examined, since nothing shorter is a phone number in these regions.
"""

from __future__ import annotations

import re

import phonenumbers
from presidio_analyzer import EntityRecognizer, RecognizerResult

PATTERNS: list = []  # libphonenumber does the matching; no regex patterns
CONTEXT = ["phone", "number", "call", "mobile", "cell", "tel", "ring", "reach", "whatsapp", "callback"]
REGIONS = ("NL", "US", "GB", "SG", "HK", "AU", "BR")
# libphonenumber compiles its metadata regexes on every use unless its pattern cache is on; re's own
# cache (512 entries, shared with every other pattern of the process) keeps evicting them. The metadata
# is fixed, so the cache is bounded.
phonenumbers.enable_pattern_cache()

_DIGITS = re.compile(r"\d")
_DATE = re.compile(r"^\d{1,4}([./-])\d{1,2}\1\d{1,4}$")
_ESCAPE = re.compile(r"\\[nrt,;]")
_DATE_PREFIX = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b")
_DECIMAL = re.compile(r"^\d+\.\d+$")
_TIME_NEXT = re.compile(r":\d\d")
_TIME_BEFORE = re.compile(r"\d:$")
# Phone-shaped text: an optional + or (area), digit groups joined by spaces, dots, dashes, slashes.
_CANDIDATE = re.compile(
    r"(?<![\w+.,/-])(?:\+ ?)?(?:\(\d{1,5}\) ?)?\d(?:(?: ?[.\-/] ?| |(?<=\)))?\(?\d+\)?){0,8}(?![\w@])"
)
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
        """Valid numbers (0.9, 0.95 with a '+'), and possible ones of 8+ digits right after a phone cue (0.7).

        One pass over the text: phone-shaped candidates are cut out by one regex, and only they
        are parsed, once per region until one numbering plan accepts them (libphonenumber's
        matcher would scan the whole text once per region).
        """
        spans: dict[tuple[int, int], float] = {}
        text = _ESCAPE.sub("  ", text)  # "\\n" pasted as text separates fields (same length: offsets hold)
        for candidate in _CANDIDATE.finditer(text):
            raw = candidate.group().rstrip(" .-/")
            if raw.count(".") >= 3 or _DATE.match(raw) or len(_DIGITS.findall(raw)) < 7:
                continue  # a dotted quad is an IPv4 address and a date is a date, not a phone number
            end = candidate.start() + len(raw)
            if _DATE_PREFIX.match(raw) or _DECIMAL.match(raw) or _TIME_NEXT.match(text, end) or \
                    _TIME_BEFORE.search(text, 0, candidate.start()):
                continue  # "2019-04-27 11:46:27.265391": a timestamp, not "2019-04-27 11" and "27.265391"
            start, end = candidate.start(), candidate.start() + len(raw)
            score = 0.0
            possible = False
            for region in self.regions if not raw.startswith("+") else ("ZZ",):
                try:
                    number = phonenumbers.parse(raw, None if region == "ZZ" else region)
                except phonenumbers.NumberParseException:
                    continue
                if phonenumbers.is_valid_number(number):
                    score = 0.95 if raw.startswith("+") else 0.9
                    break
                possible = possible or phonenumbers.is_possible_number(number)
            if not score and possible and len(_DIGITS.findall(raw)) >= 8 and _CUE.search(text, 0, start):
                score = 0.7
            if score:
                spans[(start, end)] = score
        return [RecognizerResult(self.ENTITY, s, e, score) for (s, e), score in sorted(spans.items())]
