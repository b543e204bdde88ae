"""IP and MAC addresses: Presidio's recognizers, with pre-checks so they run only where they can match.

One file holds both because each is a thin subclass of a Presidio recognizer (its PATTERNS and
CONTEXT are Presidio's own).
"""

from __future__ import annotations

import re

from presidio_analyzer.predefined_recognizers import IpRecognizer, MacAddressRecognizer

PATTERNS = IpRecognizer.PATTERNS + MacAddressRecognizer.PATTERNS
CONTEXT = sorted(set(IpRecognizer.CONTEXT) | set(MacAddressRecognizer.CONTEXT))
_IP_HINT = re.compile(r"\d\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]|::")
_MAC_HINT = re.compile(r"[0-9A-Fa-f]{2}[:-][0-9A-Fa-f]{2}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}")


class CcpipeIpRecognizer(IpRecognizer):
    """IP_ADDRESS (v4 and v6) findings."""

    def __init__(self, supported_language: str = "en") -> None:
        """Presidio's IP patterns under this class's name."""
        super().__init__(supported_language=supported_language, name="CcpipeIpRecognizer")

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with a dotted digit pair or a colon between hex digits."""
        return _IP_HINT.search(text) is not None


class CcpipeMacRecognizer(MacAddressRecognizer):
    """MAC_ADDRESS findings (colon, dash and dotted notation)."""

    def __init__(self, supported_language: str = "en") -> None:
        """Presidio's MAC patterns under this class's name."""
        super().__init__(supported_language=supported_language, name="CcpipeMacRecognizer")

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with two hex pairs joined by ':' or '-', or a dotted hex quad."""
        return _MAC_HINT.search(text) is not None
