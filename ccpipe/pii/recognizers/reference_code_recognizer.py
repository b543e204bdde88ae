"""Identifiers a customer reads out or types: user ids, booking and order codes, account numbers.

"reservation QKX72M", "order 5521907", "my user id is kim_lee_4821", "case #A-20931", "member no.
88120-44". An identifier-shaped token (letters and digits with at least one digit, or five or more
capitals; 4-24 characters; ``-``, ``_`` and ``.`` inside) counts when a cue word precedes it, with
at most a few linking words between ("number", "no.", "#", "id", "code", "is", ":").
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

CUES = (r"user\s?id|user\s?name|login|account|acct|a/c|reservation|booking|order|case|ticket|member(?:ship)?|"
        r"confirmation|reference|ref|customer(?:\s(?:id|number|no))?|client\s(?:id|number)|policy|invoice|"
        r"tracking|pnr|record\slocator|claim|contract|subscriber|subscription|loyalty|frequent\sflyer|"
        r"passport|licen[cs]e|driver'?s?\slicen[cs]e|dl|vehicle\sregistration|plate|serial|imei|employee\sid|"
        r"student\sid|patient\sid|badge")
_LINK = r"(?:number|num|no\.?|nr\.?|#|id|code|is|was|:|=|of|for|under|it's|its)"
PATTERNS = [
    Pattern(
        "identifier after a cue word",
        rf"(?i)(?<=\b(?:{CUES}))(?:[ \t]*{_LINK})*[ \t]*[:#]?[ \t]*\K(?!\d{{1,4}}[/.-]\d{{1,2}}[/.-]\d{{1,4}}\b)"
        r"(?-i:(?=[A-Za-z0-9._-]*\d)[A-Za-z0-9][A-Za-z0-9._-]{2,23}[A-Za-z0-9]|[A-Z0-9]{5,12})(?![\w@])",
        0.7,
    ),
    Pattern(
        "user-name shaped token",  # words joined by _ or . with digits: kim_lee_4821, j.smith88
        r"(?<![\w.@-])[a-z][a-z0-9]*[._][a-z][a-z0-9._]*\d[a-z0-9._]*(?![\w@])",
        0.6,
    ),
]
CONTEXT = ["user", "id", "reservation", "booking", "order", "case", "ticket", "account", "member", "confirmation"]
_HINT = re.compile(rf"(?i)\b(?:{CUES})\b|[a-z][._][a-z]|_")


class ReferenceCodeRecognizer(CcpipePatternRecognizer):
    """ACCOUNT_ID findings for identifiers next to their cue word, and user-name shaped tokens."""

    ENTITY = "ACCOUNT_ID"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with a cue word or a token joined by _ or '.'."""
        return _HINT.search(text) is not None
