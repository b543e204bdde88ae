"""Progress lines for long runs: per worker, at most one line every few seconds, counts only."""

from __future__ import annotations

import logging
import os
import time

_LOG = logging.getLogger("ccpipe.progress")


class Progress:
    """Cumulative counters of one worker that log themselves every ``interval`` seconds."""

    def __init__(self, what: str, interval: float = 5.0) -> None:
        """``what`` names the counted thing in the log line."""
        self._what, self._interval = what, interval
        self._counts: dict[str, int] = {}
        self._last = time.monotonic()

    def add(self, key: str, n: int) -> None:
        """Count ``n`` more of ``key``; log when the interval has passed."""
        self._counts[key] = self._counts.get(key, 0) + n
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            parts = ", ".join(f"{k}={v}" for k, v in sorted(self._counts.items()))
            _LOG.info("worker %d progress, %s so far: %s", os.getpid(), self._what, parts)
