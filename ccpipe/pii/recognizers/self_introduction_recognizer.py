"""Names people give for themselves or others: "this is Maria Lopez", "my name is maria", "I'm Raj".

NER misses names in lower case and in short chat lines; an introduction phrase is strong evidence.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

_NAME = r"[A-Za-zÀ-ÿ][a-zà-ÿ'’-]+(?:\s+(?:van\s+der\s+|van\s+|de\s+|da\s+|dos\s+)?[A-Z][a-zà-ÿ'’-]+){0,3}"
PATTERNS = [
    Pattern(
        "introduction phrase",
        r"(?i:(?<=\bmy name is )|(?<=\bmy name's )|(?<=\bthis is )|(?<=\bi am )|(?<=\bi'm )|(?<=\bi’m )"
        r"|(?<=\bname is )|(?<=\bspeaking with )|(?<=\bspeak to )|(?<=\bcalled )|(?<=\bit's )|(?<=\bit is ))"
        r"(?!(?:the|a|an|not|calling|about|from|here|just|very|so|still|really|having|trying|looking|going|"
        r"with|your|my|our|in|on|at|for|to|and|but|urgent|fine|good|ok|okay|sure|sorry|afraid|new|back|done|"
        r"interested|unable|able|happy|glad|checking|writing|ringing|phoning|contacting|following|regarding)\b)"
        + _NAME,
        0.7,
    ),
    Pattern("salutation", r"(?<=\b(?:Mr|Mrs|Ms|Miss|Dr|Mx)\.? )[A-Z][a-zà-ÿ'’-]+(?:\s+[A-Z][a-zà-ÿ'’-]+)?", 0.85),
]
CONTEXT = ["name", "called", "speaking"]
_HINT = re.compile(r"(?i)\b(name|this is|i am|i'm|i’m|speaking|speak to|called|it's|it is|mr|mrs|ms|miss|dr|mx)\b")


class SelfIntroductionRecognizer(CcpipePatternRecognizer):
    """PERSON findings from introduction phrases and salutations."""

    ENTITY = "PERSON"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with an introduction phrase or a salutation."""
        return _HINT.search(text) is not None

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        """Pattern results; an introduced lower-case single word needs the 'name' phrase."""
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        out = []
        for r in results:
            span = text[r.start : r.end]
            if span[0].islower() and " " not in span and "name" not in text[max(0, r.start - 12) : r.start].lower():
                continue
            out.append(r)
        return out
