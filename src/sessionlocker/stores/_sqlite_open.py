"""Opening a ``SQLiteStore`` connection: busy timeout, WAL mode, and waiting for both.

Why this is its own step: SQLite's busy handler does not cover every lock it takes.
Switching a file into WAL mode (``PRAGMA journal_mode = WAL`` on a new file, or one left
in rollback mode) first reads the header, then upgrades that read to a write to mark the
file as WAL. SQLite never calls the busy handler for an upgrade from a read (waiting
could deadlock two upgraders), so when two connections switch at once, or anyone holds
the write lock, the pragma fails at once with ``SQLITE_BUSY``, whatever the busy
timeout. That is how several threads or processes opening a new file together got
"database is locked" long before their timeout. Here the switch is retried until the
busy timeout has passed, as the busy handler would have waited.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sessionlocker.errors import StoreError

#: SQLite result codes that mean "another connection is busy; try again later".
_TRANSIENT = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PROTOCOL})

#: Longest pause between two tries of the WAL switch, in seconds.
_MAX_PAUSE = 0.025


def is_transient(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means another connection was busy (so a retry may succeed)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _TRANSIENT  # extended codes keep the primary in the low byte
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def open_connection(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``synchronous=NORMAL``.

    It waits up to ``busy_timeout`` seconds for the locks of the WAL switch, then lets
    SQLite's busy error through. A file SQLite cannot put in WAL mode raises a
    permanent ``StoreError``.
    """
    connection = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,  # no implicit transactions: the store says BEGIN itself
        check_same_thread=False,  # only so close() may close it from another thread
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = _use_wal(connection, time.monotonic() + busy_timeout)
        if mode.lower() != "wal":
            raise StoreError(
                f"SQLite database {str(path)!r} could not use WAL journal mode "
                f"(it reports {mode!r})",
                retryable=False,
            )
        connection.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection


def _use_wal(connection: sqlite3.Connection, deadline: float) -> str:
    """Switch to WAL mode, retrying a busy file until ``deadline`` (``time.monotonic``)."""
    pause = 0.001
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            return str(mode)
        except sqlite3.Error as exc:
            remaining = deadline - time.monotonic()
            if not is_transient(exc) or remaining <= 0:
                raise
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _MAX_PAUSE)
