"""Presidio's email recognizer with its public-suffix check made offline.

Presidio's EmailRecognizer validates the domain with ``tldextract.extract``, whose default
extractor fetches the public suffix list from the internet on first use. This one uses the
suffix list snapshot that ships inside tldextract (``suffix_list_urls=()``) and no cache folder.
"""

from __future__ import annotations

import tldextract
from presidio_analyzer.predefined_recognizers import EmailRecognizer

PATTERNS = EmailRecognizer.PATTERNS
CONTEXT = EmailRecognizer.CONTEXT

_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """EMAIL_ADDRESS findings, validated against the bundled public suffix list."""

    def __init__(self, supported_language: str = "en") -> None:
        """Use Presidio's patterns and context under this class's name."""
        super().__init__(supported_language=supported_language, name="OfflineEmailRecognizer")

    @staticmethod
    def precheck(text: str) -> bool:
        """Only texts with an '@' can hold an email address."""
        return "@" in text

    def validate_result(self, pattern_text: str) -> bool:
        """True when the address ends in a known public suffix (offline)."""
        return _EXTRACT(pattern_text).fqdn != ""
