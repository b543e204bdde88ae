"""National identity numbers of the seven service regions, each checked the way its issuer checks it.

* US SSN ``123-45-6789`` (or 9 digits after "SSN"/"social security"): python-stdnum's rules (no 000,
  666 or 9xx area, no 00 group, no 0000 serial).
* NL BSN (9 digits, the "11-proef") after a BSN / citizen-service word.
* UK National Insurance number ``QQ 12 34 56 C``: HMRC's prefix and suffix letters.
* SG NRIC/FIN ``S1234567D``: the weighted check letter (S/T, F/G and M series).
* HK HKID ``A123456(7)``: the mod-11 check digit.
* AU TFN (8-9 digits) after a TFN / tax file word: the ATO's weighted check.
* BR CPF ``123.456.789-09`` (or 11 digits after "CPF"): the two check digits.

A number of the right shape whose check fails is not reported: these formats collide with phone
numbers and order ids, and the check is what tells them apart.
"""

from __future__ import annotations

import re

import regex
from presidio_analyzer import Pattern, RecognizerResult
from stdnum.au import tfn as au_tfn
from stdnum.br import cpf as br_cpf
from stdnum.nl import bsn as nl_bsn
from stdnum.us import ssn as us_ssn

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

PATTERNS = [
    Pattern("us_ssn", r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])|(?i:(?<=ssn[:# ]{1})|(?<=ssn is )|"
                      r"(?<=social security number:? )|(?<=social security number is ))\d{3}[ -]?\d{2}[ -]?\d{4}\b",
            0.85),
    Pattern("nl_bsn", r"(?i:(?<=bsn[:# ]{1})|(?<=bsn is )|(?<=burgerservicenummer:? )|(?<=citizen service number:? )"
                      r"|(?<=citizen service number is ))\d{4}\.?\d{2}\.?\d{3}\b|\b\d{9}\b", 0.85),
    Pattern("uk_nino", r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
            0.85),
    Pattern("sg_nric", r"\b[STFGM]\d{7}[A-Z]\b", 0.9),
    Pattern("hk_hkid", r"\b[A-Z]{1,2}\d{6}\s?\(?[0-9A]\)?(?!\w)", 0.85),
    Pattern("au_tfn", r"\b\d{3} ?\d{3} ?\d{2,3}\b", 0.85),
    Pattern("br_cpf", r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b|(?i:(?<=cpf[:# ]{1})|(?<=cpf is ))\d{11}\b", 0.9),
]
CONTEXT = ["ssn", "social security", "bsn", "national insurance", "nino", "nric", "fin", "hkid", "identity card",
           "tfn", "tax file", "cpf"]
_DIGITS = re.compile(r"\d")
# Bare 9-digit numbers (BSN) and 8-9 digit numbers (TFN) are only ids next to their own word.
_CUE = {
    "nl_bsn": re.compile(r"(?i)\b(bsn|burgerservicenummer|citizen service number|sofi)\b"),
    "au_tfn": re.compile(r"(?i)\b(tfn|tax file number|tax file no)\b"),
}
_NRIC_WEIGHTS = (2, 7, 6, 5, 4, 3, 2)


def nric_valid(value: str) -> bool:
    """The check letter of a Singapore NRIC/FIN."""
    value = value.upper()
    digits = [int(c) for c in value[1:8]]
    total = sum(d * w for d, w in zip(digits, _NRIC_WEIGHTS, strict=True))
    prefix = value[0]
    if prefix in "TG":
        total += 4
    elif prefix == "M":
        total += 3
    tables = {"ST": "JZIHGFEDCBA", "FG": "XWUTRQPNMLK", "M": "KLJNPQRTUWX"}
    for series, letters in tables.items():
        if prefix in series:
            return letters[total % 11] == value[8]
    return False


def hkid_valid(value: str) -> bool:
    """The check digit of a Hong Kong identity card number."""
    v = re.sub(r"[\s()]", "", value.upper())
    letters, digits, check = v[:-7], v[-7:-1], v[-1]
    if len(letters) == 1:
        letters = " " + letters
    values = [36 if c == " " else ord(c) - 55 for c in letters] + [int(d) for d in digits]
    total = sum(x * w for x, w in zip(values, range(9, 1, -1), strict=True))
    expected = (11 - total % 11) % 11
    return check == ("A" if expected == 10 else str(expected))


_VALID = {
    "us_ssn": lambda v: us_ssn.is_valid(re.sub(r"\D", "", v)),
    "nl_bsn": lambda v: nl_bsn.is_valid(re.sub(r"\D", "", v)),
    "uk_nino": lambda v: True,  # the letters are the check
    "sg_nric": nric_valid,
    "hk_hkid": hkid_valid,
    "au_tfn": lambda v: au_tfn.is_valid(re.sub(r"\D", "", v)),
    "br_cpf": lambda v: br_cpf.is_valid(re.sub(r"\D", "", v)),
}


class NationalIdRecognizer(CcpipePatternRecognizer):
    """NATIONAL_ID findings for checksum-valid ids of the seven service regions."""

    ENTITY = "NATIONAL_ID"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    def __init__(self, supported_language: str = "en") -> None:
        """Build from the module constants, and compile every pattern once (without the base's flags)."""
        super().__init__(supported_language)
        self._compiled = [(pattern, regex.compile(pattern.regex)) for pattern in self.patterns]

    @staticmethod
    def precheck(text: str) -> bool:
        """Six digits at least (every format has them)."""
        return len(_DIGITS.findall(text)) >= 6

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None) -> list[RecognizerResult]:
        """Every pattern's matches, kept when their check passes (and their word is near, for bare numbers)."""
        out = []
        for pattern, compiled in self._compiled:
            cue = _CUE.get(pattern.name)
            for m in compiled.finditer(text):
                if not _VALID[pattern.name](m.group()):
                    continue
                if cue is not None and not cue.search(text[max(0, m.start() - 40) : m.start()]):
                    continue
                out.append(RecognizerResult(self.ENTITY, m.start(), m.end(), pattern.score))
        return out
