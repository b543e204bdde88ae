"""The registry of ccpipe's custom recognizers, one per file, Presidio's way.

``CUSTOM_RECOGNIZERS`` lists the classes added to Presidio's predefined set;
``REPLACED_RECOGNIZERS`` names predefined recognizers that a custom one replaces. MAC addresses
come from Presidio's own ``MacAddressRecognizer`` (colon, dash and dotted notations). Class
names must not repeat Presidio's: its loader resolves recognizers by class name.
"""

from __future__ import annotations

from presidio_analyzer import EntityRecognizer

from ccpipe.pii.recognizers.offline_email_recognizer import OfflineEmailRecognizer

CUSTOM_RECOGNIZERS: tuple[type[EntityRecognizer], ...] = (OfflineEmailRecognizer,)
REPLACED_RECOGNIZERS: tuple[str, ...] = ("EmailRecognizer",)


def custom_recognizers(language: str = "en") -> list[EntityRecognizer]:
    """Fresh instances of every custom recognizer for ``language``."""
    return [cls(supported_language=language) for cls in CUSTOM_RECOGNIZERS]
