"""Progress of long runs: counts only, never values.

Workers count with :class:`Progress` (a log line every few seconds per worker). When the process
that starts a run sets ``$CCPIPE_PROGRESS_DIR`` (``ccpipe batch`` does, to a private temporary
folder), every counter also leaves its cumulative counts there as a small JSON file, replaced by
a daemon thread at most every :data:`PUBLISH_SECONDS`; worker processes inherit the variable. The
console side (:func:`read_counts`, :class:`RunDisplay`) sums those files: it works the same
whether the workers are threads of the run's own process or separate processes (``--workers N``).
Workers that cannot see the folder (a remote cluster) simply publish nothing and the display shows elapsed time only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path

_LOG = logging.getLogger("ccpipe.progress")

ENV = "CCPIPE_PROGRESS_DIR"
PUBLISH_SECONDS = 0.5
PARSED = "read records"  # the counter of transforms.parse: keys valid, invalid
WRITTEN = "written rows"  # the counter of transforms.write: keys are dataset names


class Progress:
    """Cumulative counters of one worker that log themselves every ``interval`` seconds.

    With ``$CCPIPE_PROGRESS_DIR`` set, a daemon thread (started at the first count) also publishes
    the counts there every :data:`PUBLISH_SECONDS` while they change, so the last counts of a
    burst reach the display too.
    """

    def __init__(self, what: str, interval: float = 5.0) -> None:
        """``what`` names the counted thing in the log line."""
        self._what, self._interval = what, interval
        self._counts: dict[str, int] = {}
        self._last = time.monotonic()
        self._publisher: threading.Thread | None = None

    def __getstate__(self) -> dict:
        """Pickled (into workers) without the publishing thread: each copy publishes its own counts."""
        return {**self.__dict__, "_publisher": None}

    def add(self, key: str, n: int) -> None:
        """Count ``n`` more of ``key``; log when the interval has passed."""
        self._counts[key] = self._counts.get(key, 0) + n
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            parts = ", ".join(f"{k}={v}" for k, v in sorted(self._counts.items()))
            _LOG.info("worker %d progress, %s so far: %s", os.getpid(), self._what, parts)
        if self._publisher is None:
            folder = os.environ.get(ENV)
            if folder:
                self._publisher = threading.Thread(target=self._publish, args=(Path(folder),), daemon=True,
                                                   name="ccpipe-progress")
                self._publisher.start()

    def _publish(self, folder: Path) -> None:
        """Replace this counter's file in ``folder`` whenever the counts changed, until the folder is gone."""
        file = folder / f"{os.getpid()}-{uuid.uuid4().hex}.json"
        temp = file.with_suffix(".tmp")
        published: dict[str, int] = {}
        while folder.is_dir():
            counts = dict(self._counts)  # a copy: the worker thread keeps counting
            if counts != published:
                try:
                    temp.write_text(json.dumps({"what": self._what, "counts": counts}), encoding="utf-8")
                    os.replace(temp, file)
                except OSError as err:  # the folder is gone (the run ended) or not visible here
                    _LOG.debug("progress no longer published to %s: %s", folder, type(err).__name__)
                    return
                published = counts
            time.sleep(PUBLISH_SECONDS)


def read_counts(folder: str | os.PathLike) -> dict[str, dict[str, int]]:
    """The counts every worker published to ``folder``, summed: ``{what: {key: n}}``."""
    total: dict[str, dict[str, int]] = {}
    for path in Path(folder).glob("*.json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # replaced or removed while listed: the next poll sees it
            continue
        per = total.setdefault(str(doc.get("what", "")), {})
        for key, value in dict(doc.get("counts", {})).items():
            per[str(key)] = per.get(str(key), 0) + int(value)
    return total


def elapsed_text(seconds: float) -> str:
    """``H:MM:SS`` of a duration."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class RunDisplay:
    """A one-line live display of a running batch (rich renderable): records parsed, rows written, rate, time.

    Each render reads the counts workers published to ``folder`` (:class:`Progress`).
    """

    def __init__(self, folder: str | os.PathLike, label: str, started: float | None = None) -> None:
        """``label`` starts the line (e.g. the run id); ``started`` is a ``time.monotonic()`` value."""
        from rich.spinner import Spinner

        self._folder, self._label = folder, label
        self.started = time.monotonic() if started is None else started
        self._spinner = Spinner("dots", text="")

    def line(self) -> str:
        """The current progress as plain text."""
        counts = read_counts(self._folder)
        parsed = sum(counts.get(PARSED, {}).values())
        written = sum(counts.get(WRITTEN, {}).values())
        seconds = time.monotonic() - self.started
        rate = parsed / seconds if seconds > 0 else 0.0
        return (f"{self._label}: {parsed} records parsed ({rate:.0f} records/s), {written} rows written, "
                f"{elapsed_text(seconds)} elapsed")

    def __rich__(self):
        """The spinner and the current line (rich calls this on every refresh)."""
        from rich.text import Text

        self._spinner.update(text=Text(self.line(), no_wrap=True, overflow="ellipsis"))
        return self._spinner
