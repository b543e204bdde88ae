"""The sink roots pipeline runs wrote to: every copy of the data a data-subject request must reach.

A run records its roots (the default ``--output`` and every region's own ``--sink``) before it writes
anything, so a crash cannot leave data in a root the control plane does not know.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

from ccpipe.controlplane.db import ControlPlane


def record(cp: ControlPlane, roots: Iterable[str], run_id: str) -> None:
    """Remember roots written by run ``run_id`` (idempotent; keeps the first run that used each)."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    with cp.transaction():
        for root in sorted(set(roots)):
            if cp.one("SELECT root FROM sink_roots WHERE root = ?", (root,)) is None:
                cp.execute("INSERT INTO sink_roots (root, first_run, last_run, last_at) VALUES (?, ?, ?, ?)",
                           (root, run_id, run_id, now))
            else:
                cp.execute("UPDATE sink_roots SET last_run = ?, last_at = ? WHERE root = ?", (run_id, now, root))


def known(cp: ControlPlane) -> list[str]:
    """Every recorded root, sorted."""
    return [r[0] for r in cp.query("SELECT root FROM sink_roots ORDER BY root")]
