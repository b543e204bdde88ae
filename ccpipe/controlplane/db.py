"""A small database layer over sqlite3 and psycopg with one placeholder style (``?``).

``open_control_plane(url, keys=...)`` accepts ``sqlite:///path``, a plain file path, or
``postgresql://...``; it applies pending migrations and returns a ``ControlPlane``. Errors connecting
name the URL (its password masked) and what to check.

``keys`` is the key manager that holds the audit log's HMAC key (``audit``), or the
``KeystoreConfig`` of one (opened when the audit log is first written or verified); without it, the
default keystore under ``$CCPIPE_HOME`` is.
Transactions are write transactions: SQLite's take the database's write lock when they begin
(``BEGIN IMMEDIATE``), so concurrent writers queue (up to the 30 s busy timeout) instead of failing
with "database is locked" when a read lock cannot be upgraded.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ccpipe.errors import CcpipeError
from ccpipe.keystore import ccpipe_home


class ControlPlaneError(CcpipeError):
    """The control-plane database is unreachable or refused an operation."""


def default_url() -> str:
    """The embedded default: SQLite under ``$CCPIPE_HOME``."""
    return f"sqlite:///{ccpipe_home() / 'control.db'}"


def _mask(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


class ControlPlane:
    """A connection with ``execute``/``query`` and a ``transaction`` context."""

    def __init__(self, url: str, keys: Any = None) -> None:
        """Connect; raise ControlPlaneError with a clear message when that fails.

        ``keys``: the key manager holding the audit key (see ``ccpipe.controlplane.audit``).
        """
        self.url = url
        self.keys = keys
        self._owned_keys: Any = None
        if url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            try:
                import psycopg

                self._conn = psycopg.connect(url, connect_timeout=5, autocommit=True)
            except Exception as err:  # noqa: BLE001 - any driver failure is "unreachable" to the user
                raise ControlPlaneError(
                    f"cannot connect to the control plane at {_mask(url)}: {type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}"
                ) from None
        else:
            self.dialect = "sqlite"
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            parent = Path(path).parent
            if not parent.exists():
                raise ControlPlaneError(f"cannot open the control plane at {url}: folder {parent} does not exist")
            try:
                self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
                self._conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as err:
                raise ControlPlaneError(f"cannot open the control plane at {url}: {err}") from None
        self._depth = 0

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""
        try:
            self._conn.execute(self._sql(sql), tuple(params))
        except Exception as err:
            if isinstance(err, CcpipeError):
                raise
            raise ControlPlaneError(f"control plane refused: {type(err).__name__}: {err}") from err

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run a query and return every row."""
        try:
            cursor = self._conn.execute(self._sql(sql), tuple(params))
            return [tuple(r) for r in cursor.fetchall()]
        except Exception as err:
            raise ControlPlaneError(f"control plane refused: {type(err).__name__}: {err}") from err

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        """The first row of a query, or None."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[ControlPlane]:
        """All or nothing; nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        # SQLite: take the write lock now; a deferred BEGIN fails with "database is locked" when two
        # writers both read and then try to upgrade. PostgreSQL writers lock what they need.
        self.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.execute("COMMIT")

    @property
    def in_transaction(self) -> bool:
        """True inside ``transaction()`` (nothing done now is committed yet)."""
        return self._depth > 0

    def key_manager(self, create: bool = True) -> Any:
        """The key manager bound to this control plane; the default keystore when none was given.

        ``create``: make the default keystore (and its master key) when absent, as on first use.
        """
        from ccpipe.keystore import KeystoreConfig, SqliteKeyStore

        if self.keys is None or isinstance(self.keys, KeystoreConfig):
            config = self.keys or KeystoreConfig.default()
            self._owned_keys = self.keys = SqliteKeyStore(config, create=create)
        return self.keys

    def close(self) -> None:
        """Close the connection (and the default keystore, if this control plane opened it)."""
        self._conn.close()
        if self._owned_keys is not None:
            self._owned_keys.close()
            self._owned_keys = None


def open_control_plane(url: str | None = None, keys: Any = None) -> ControlPlane:
    """Connect and migrate to the newest schema; ``keys`` holds the audit key (default keystore if None)."""
    from ccpipe.controlplane.migrations import migrate

    cp = ControlPlane(url or default_url(), keys)
    migrate(cp)
    return cp
