"""Agent identifiers in free text: ``agt-12345`` and "agent id 12345" / "agent number 4411"."""

from __future__ import annotations

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

PATTERNS = [
    Pattern("agt-prefixed id", r"(?i)\bagt[-_]?\d{3,8}\b", 0.9),
    Pattern("agent id phrase", r"(?i)(?<=\bagent )(?:id |number |no\.? |#)?\d{3,8}\b", 0.7),
]
CONTEXT = ["agent", "operator", "rep", "representative"]


class AgentIdRecognizer(CcpipePatternRecognizer):
    """AGENT_ID findings."""

    ENTITY = "AGENT_ID"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts that mention 'agt' or 'agent'."""
        lowered = text.lower()
        return "agt" in lowered or "agent" in lowered
