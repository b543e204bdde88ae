"""Phone numbers of any country, as people write them, by shape and context.

libphonenumber (``regional_phone_recognizer``) knows the numbering plans of the service regions but
customers are from everywhere: "+41 (0)44 123 45 67", "0412 34 56 78", "04.91.23.45.67",
"(555) 123-4567x204", "42-51-49-67-Fax", "Phone: 494 17 271". A digit run with phone separators
(spaces, dots, dashes, slashes, brackets), an optional ``+`` or ``00`` prefix and an extension
("x204", "ext. 12") counts when:

* it has 9-15 digits and a ``+``/``00`` prefix, brackets or two or more separators (0.75), or
* it has 6-15 digits and a phone word is near it ("call", "phone", "mobile", "fax", "office",
  "desk", "reach me", "text"...) (0.8).

Dates, times, dotted quads, amounts and version numbers are not phone numbers.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern, RecognizerResult

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

PATTERNS = [
    Pattern(
        "digits with phone separators",
        r"(?<![\w+./-])(?:\+ ?|00)?(?:\(\+?\d{1,4}\) ?)?\(?\d{1,5}\)?(?:(?: ?[.\-/] ?| |(?<=\)))\(?\d{1,6}\)?){0,7}"
        r"(?:[ ]?(?:x|ext\.?|extn\.?|extension|#)[ ]?\d{1,6})?(?![\w@]|[.,]\d)",
        0.5,
    ),
]
CONTEXT = ["phone", "call", "mobile", "cell", "tel", "fax", "office", "desk", "reach", "number", "whatsapp"]
_DIGITS = re.compile(r"\d")
_SEPARATORS = re.compile(r"[ .\-/()]+")
_ESCAPE = re.compile(r"\\[nrt,;]")
_EXT = re.compile(r"(?i)[ ]?(?:x|ext\.?|extn\.?|extension|#)[ ]?\d{1,6}$")
_CUE_BEFORE = re.compile(
    r"(?i)\b(?:call(?:ed)?|phone|ph|tel|telephone|mobile|mob|cell|cellphone|fax|office|desk|work|home|reach|"
    r"ring|text|sms|whatsapp|number|no|contact|landline|direct|line|messages?|dial|dialled|dialed|on|at)\b"
    r"[^\w\n]{0,4}(?:\w+[^\w\n]{1,3}){0,3}$"
)
_CUE_AFTER = re.compile(r"(?i)^[\s\-,(]{0,3}(?:office|fax|mobile|cell|home|work|desk|phone|tel)\b")
_DATE = re.compile(r"^\d{1,4}([./-])\d{1,2}\1\d{1,4}$|^\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"^\d{1,2}[:.]\d{2}(?:[:.]\d{2})?$")
_QUAD = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_AMOUNT = re.compile(r"^\d{1,3}(?:[ .]\d{3})*(?:[.,]\d{1,2})?$")


class InternationalPhoneRecognizer(CcpipePatternRecognizer):
    """PHONE_NUMBER findings for numbers of any country, by shape and phone words."""

    ENTITY = "PHONE_NUMBER"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """At least six digits."""
        return len(_DIGITS.findall(text)) >= 6

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None) -> list[RecognizerResult]:
        """Candidates by shape, kept by digit count, prefix, separators and context."""
        out = []
        # Escaped line breaks pasted as text ("\\n", "\\,") separate fields: read them as spaces
        # (same length, so offsets hold).
        text = _ESCAPE.sub("  ", text)
        for r in super().analyze(text, entities, nlp_artifacts, regex_flags):
            raw = text[r.start : r.end].rstrip(" .-/")
            end = r.start + len(raw)
            core = _EXT.sub("", raw)
            digits = len(_DIGITS.findall(core))
            if not 6 <= digits <= 15 or _DATE.match(core) or _TIME.match(core) or _QUAD.match(core):
                continue
            separators = len(_SEPARATORS.findall(core.strip("()")))
            prefixed = core.startswith(("+", "00", "("))
            cue = _CUE_BEFORE.search(text[max(0, r.start - 40) : r.start]) or _CUE_AFTER.match(text[end : end + 20])
            if cue:
                score = 0.8
            elif digits >= 9 and (prefixed or separators >= 2 or core != raw) and not _AMOUNT.match(core):
                score = 0.75
            elif digits >= 10 and separators == 0 and not core.startswith("0" * 3):
                score = 0.5
            else:
                continue
            out.append(RecognizerResult(self.ENTITY, r.start, end, score))
        return out
