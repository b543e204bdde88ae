"""Names people give for themselves or others: "this is Maria Lopez", "my name is maria", "I'm Raj".

NER misses names in lower case and in short chat lines; an introduction phrase is strong evidence.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

_WORD = r"[A-Z][a-zà-ÿ'’]+(?:-[A-Za-zà-ÿ'’]+)*"
_PARTICLE = r"(?:van|von|de|da|das|do|dos|der|den|ter|ten|di|del|la|le|'t)"
# One to four capitalised words, with name particles between them: "Ravi van der Linden-Visser".
FULL_NAME = rf"{_WORD}(?:\s+(?:{_PARTICLE}\s+)*{_WORD}){{0,3}}"
_TITLE = r"(?:(?:Mr|Mrs|Ms|Miss|Mx|Dr|Dra|Sr|Sra|Srta|Prof)\.?\s+)"
_NOT_A_NAME = (
    r"(?!(?:the|a|an|not|calling|about|from|here|just|very|so|still|really|having|trying|looking|going|"
    r"with|your|my|our|in|on|at|for|to|and|but|urgent|fine|good|ok|okay|sure|sorry|afraid|new|back|done|"
    r"interested|unable|able|happy|glad|checking|writing|ringing|phoning|contacting|following|regarding|"
    r"again|everyone|all|there|team|guys|folks)\b)"
)
PATTERNS = [
    Pattern(
        "introduction phrase",
        # One look-behind of alternatives, not alternatives of look-behinds: the same matches, 3x faster.
        r"(?i:(?<=\b(?:my name is|my name's|this is|i am|i'm|i’m|name is|speaking with|speak to|called|it's|it is) ))"
        + _NOT_A_NAME + rf"{_TITLE}?{FULL_NAME}",
        0.7,
    ),
    Pattern(
        # Lower case is a name only after an explicit name phrase ("i'm outside" is not a name).
        "lower-case name after a name phrase",
        r"(?i:(?<=\b(?:my name is|my name's|name is|name's) ))"
        r"[a-zà-ÿ][a-zà-ÿ'’-]+(?:\s+(?!(?:i|and|from|calling|here|speaking|ringing|the|my|about|with)\b)"
        r"[a-zà-ÿ][a-zà-ÿ'’-]+)?",
        0.7,
    ),
    Pattern("title and name", rf"\b{_TITLE}{FULL_NAME}", 0.85),
    Pattern(
        "full name after a role word",
        r"(?<=\b(?:[Cc]ustomer|[Cc]aller|[Cc]lient|[Cc]ardholder|[Aa]ccount holder|[Ss]ubscriber) )"
        rf"{_TITLE}?{_WORD}(?:\s+(?:{_PARTICLE}\s+)*{_WORD}){{1,3}}",
        0.75,
    ),
    Pattern(
        "name after a greeting or thanks",
        r"(?<=\b(?:Thanks|Thank you|Hi|Hello|Dear|Hey|Bye|Goodbye|Cheers|Welcome|Morning|Afternoon|Evening|Sorry)"
        r",? )" + _NOT_A_NAME + rf"{_TITLE}?{FULL_NAME}(?=\s*[,.!?;:]|\s*$)",
        0.75,
    ),
]
CONTEXT = ["name", "called", "speaking"]
_HINT = re.compile(
    r"(?i)\b(name|this is|i am|i'm|i’m|speaking|speak to|called|it's|it is|mr|mrs|ms|miss|dr|mx|sr|sra|srta|dra|prof"
    r"|customer|caller|client|cardholder|account holder|subscriber|thanks|thank you|hi|hello|dear|hey|bye|goodbye"
    r"|cheers|welcome|morning|afternoon|evening|sorry)\b"
)


class SelfIntroductionRecognizer(CcpipePatternRecognizer):
    """PERSON findings from introduction phrases and salutations."""

    ENTITY = "PERSON"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with an introduction phrase or a salutation."""
        return _HINT.search(text) is not None

