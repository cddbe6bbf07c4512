"""``PostgreSQLWatch``: LISTEN on a dedicated connection, wake for the watched keys.

Every write of the store runs ``pg_notify(channel, "revision:key")`` in the same
statement (``":key"`` for a delete), so a notification is sent exactly when the write
commits. A watch owns one connection (not a pooled one: LISTEN belongs to a session)
and one daemon thread that waits for notifications and calls ``wake(key, revision)``
for the keys it watches; the revision lets a writer ignore the wake-up of its own
write. Adding or removing a key costs no round trip: the channel is per table and the
filtering is done here.

When the connection is lost (server restart, ``pg_terminate_backend``, network) the
thread connects again with backoff, LISTENs again and then wakes every watched key
(revision ``None``), since notifications sent meanwhile were missed. It does the same
after the first connect, so a write between ``watch()`` and the first LISTEN is not
missed either.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from sessionlocker.stores._deadline import DEADLINES
from sessionlocker.stores.base import Wake
from sessionlocker.stores.postgresql._sql import notify_payload

__all__ = ["PostgreSQLWatch"]

log = logging.getLogger("sessionlocker.stores.postgresql")

#: How long the thread waits for a notification before looking at ``closed`` again.
_POLL = 0.25
_FIRST_DELAY = 0.05
_LONGEST_DELAY = 2.0


class PostgreSQLWatch:
    """A set of watched keys and the thread that wakes for them (see the module doc).

    ``connect`` opens a new autocommit connection; ``prefix`` is the store's key prefix
    (notifications name stored keys, ``wake`` gets them without it); ``on_close``
    tells the store this watch is gone; ``clean`` makes an error text safe to log;
    ``deadline`` bounds the wait for LISTEN's reply (``_deadline``).
    ``connections`` counts the successful LISTENs so far (1 after the first connect, one
    more per reconnect): a figure for monitoring and tests.
    """

    def __init__(
        self,
        wake: Wake,
        *,
        connect: Callable[[], psycopg.Connection[TupleRow]],
        channel: str,
        prefix: str,
        on_close: Callable[[PostgreSQLWatch], None],
        clean: Callable[[str], str],
        deadline: float,
    ) -> None:
        self._wake = wake
        self._connect = connect
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel)).as_bytes(None)
        self._prefix = prefix
        self._on_close = on_close
        self._clean = clean
        self._deadline = deadline
        self._lock = threading.Lock()
        self._keys: dict[str, str] = {}  # notify payload -> key
        self._closed = threading.Event()
        self._connections = 0
        self._thread = threading.Thread(
            target=self._run, name="sessionlocker-postgresql-watch", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"PostgreSQLWatch(keys={len(self._keys)}, closed={self._closed.is_set()})"

    @property
    def connections(self) -> int:
        """How many times the listener has connected and LISTENed."""
        return self._connections

    def add(self, key: str) -> None:
        """Start waking for writes to ``key``."""
        with self._lock:
            self._keys[notify_payload(self._prefix + key)] = key

    def discard(self, key: str) -> None:
        """Stop waking for ``key``; absent is fine."""
        with self._lock:
            self._keys.pop(notify_payload(self._prefix + key), None)

    def close(self) -> None:
        """Stop the thread (within a fraction of a second) and drop its connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=_POLL * 4)
        self._on_close(self)

    # The thread.

    def _run(self) -> None:
        delay = _FIRST_DELAY
        while not self._closed.is_set():
            try:
                connection = self._connect()
            except psycopg.Error as exc:
                log.warning(
                    "watch cannot connect, retrying in %.2f s: %s", delay, self._clean(str(exc))
                )
                self._closed.wait(delay)
                delay = min(delay * 2, _LONGEST_DELAY)
                continue
            try:
                self._listen_on(connection)
                delay = _FIRST_DELAY
            except psycopg.Error as exc:
                if not self._closed.is_set():
                    log.warning(
                        "watch lost its connection, reconnecting: %s", self._clean(str(exc))
                    )
                self._closed.wait(delay)
                delay = min(delay * 2, _LONGEST_DELAY)
            finally:
                connection.close()

    def _listen_on(self, connection: psycopg.Connection[TupleRow]) -> None:
        if self._closed.is_set():  # closed while connecting: no wake-ups after close()
            return
        pending = DEADLINES.start(connection.fileno(), self._deadline)
        try:
            connection.execute(self._listen)
        finally:
            DEADLINES.end(pending)
        self._wake_all()
        self._connections += 1
        while not self._closed.is_set():
            for notify in connection.notifies(timeout=_POLL):
                self._wake_payload(notify.payload)

    def _wake_all(self) -> None:
        with self._lock:
            keys = list(self._keys.values())
        for key in keys:
            self._call(key, None)

    def _wake_payload(self, payload: str) -> None:
        """Wake for ``revision:key`` (a write) or ``:key`` (a delete), if ``key`` is watched."""
        revision, _, named = payload.partition(":")
        with self._lock:
            key = self._keys.get(named)
        if key is not None:
            self._call(key, int(revision) if revision.isdigit() else None)

    def _call(self, key: str, revision: int | None) -> None:
        try:
            self._wake(key, revision)
        except Exception:  # a broken callback must not stop the wake-ups of other keys
            log.exception("key=%s the wake callback failed", key, extra={"key": key})
