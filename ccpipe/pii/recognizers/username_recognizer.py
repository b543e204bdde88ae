"""Usernames and login names in logs and messages: the token after user/username/login/account name."""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

PATTERNS = [
    Pattern(
        "token after a user keyword",
        # One look-behind of alternatives, not alternatives of look-behinds: the same matches, 3x faster.
        r"(?i:(?<=\b(?:(?:user|username|login)(?: |=|: )|uid=|handle )))"
        r"(?!(?:is|was|not|has|id|name|account|logged|login|ok|failed|the|a|an)\b)[A-Za-z0-9][A-Za-z0-9._@-]{2,63}",
        0.8,
    ),
]
CONTEXT = ["user", "username", "login", "account", "handle"]
_HINT = re.compile(r"(?i)\b(user|username|login|uid|handle)\b")


class UsernameRecognizer(CcpipePatternRecognizer):
    """USERNAME findings."""

    ENTITY = "USERNAME"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with a user keyword."""
        return _HINT.search(text) is not None
