r"""Account, order and ticket ids that a tenant declares as regular expressions (ACCOUNT_ID).

Declared in the PII configuration per tenant, e.g. ``{name: order, regex: 'ORD-\\d{6}'}``.
"""

from __future__ import annotations

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

PATTERNS: list[Pattern] = []  # per tenant, from configuration
CONTEXT = ["account", "order", "ticket", "case", "reference", "booking", "customer number"]


class TenantIdRecognizer(CcpipePatternRecognizer):
    """ACCOUNT_ID findings for one tenant's declared id patterns."""

    ENTITY = "ACCOUNT_ID"
    CONTEXT = CONTEXT

    def __init__(self, patterns: tuple[tuple[str, str], ...], supported_language: str = "en") -> None:
        """``patterns``: ``(name, regex)`` pairs declared by the tenant."""
        self.PATTERNS = [Pattern(name, rx, 0.9) for name, rx in patterns]
        super().__init__(supported_language)
