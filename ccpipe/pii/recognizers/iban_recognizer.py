"""IBANs: Presidio's predefined recognizer (country formats and the mod-97 check), behind a pre-check."""

from __future__ import annotations

import re

from presidio_analyzer.predefined_recognizers import IbanRecognizer

PATTERNS: list = []  # Presidio's IbanRecognizer brings its own patterns and validation
CONTEXT = ["iban", "bank", "transfer", "account"]
_HINT = re.compile(r"[A-Za-z]{2}\s?\d{2}")


_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class CcpipeIbanRecognizer(IbanRecognizer):
    """IBAN_CODE findings, validated by their check digits (Presidio's IbanRecognizer), in any case."""

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        """Presidio's analysis of the text with ASCII letters upper-cased (offsets unchanged)."""
        return super().analyze(text.translate(_UPPER), entities, nlp_artifacts, regex_flags)

    @staticmethod
    def precheck(text: str) -> bool:
        """Two letters then two digits, somewhere."""
        return _HINT.search(text) is not None
