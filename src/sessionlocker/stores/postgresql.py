"""``PostgreSQLStore``: records, session leases, history and wake-ups in PostgreSQL.

Needs the ``postgresql`` extra (psycopg 3 and psycopg_pool). The SQL is in ``_pg_sql``,
the error translation in ``_pg_errors``, connections and the pool in ``_pg_connect``, the
LISTEN thread in ``_pg_watch``.

Every call is one statement in autocommit, so one round trip: a conditional write is an
``UPDATE … WHERE key = … AND revision = …`` (an ``INSERT … ON CONFLICT DO NOTHING`` for
an absent key) whose same statement copies the new version to the history, trims it,
sends ``pg_notify`` and, when the revision did not match, returns what is stored for
the ``Conflict``. Revisions come from a sequence, so they are never handed out twice.
Session expiry is judged by the server's ``now()``, so no client clock is involved.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TypeVar

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from sessionlocker.core.protocol import Keep, SessionView, Transform, Updated, Versioned
from sessionlocker.errors import Conflict, StoreError, UsageError
from sessionlocker.stores._checks import (
    check_expected,
    check_key,
    check_prefix,
    check_session_id,
    check_ttl,
    check_value,
    closed_error,
)
from sessionlocker.stores._pg_connect import Connector
from sessionlocker.stores._pg_errors import ErrorTranslator
from sessionlocker.stores._pg_sql import (
    Names,
    Statements,
    create_missing,
    keys_page,
    notify_payload,
    prefix_end,
)
from sessionlocker.stores._pg_watch import PostgreSQLWatch
from sessionlocker.stores.base import Wake

__all__ = ["PostgreSQLStore", "PostgreSQLWatch"]

T = TypeVar("T")

#: Keys fetched per page by ``keys()``.
_PAGE = 1000
#: A conditional write that finds the revision it expected, but only in a snapshot older
#: than a concurrent commit, is sent again; this bounds how often in a row.
_STALE_ROUNDS = 100


def _check_count(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{what} must be a whole number >= {minimum}, not {value!r}")
    return value


def _versioned(rows: list[TupleRow]) -> Versioned | None:
    return Versioned(bytes(rows[0][1]), int(rows[0][0])) if rows else None


class PostgreSQLStore:
    """Records and sessions in PostgreSQL tables, created on first use.

    - ``conninfo``: a libpq connection string or ``postgresql://`` URL; ``connect``
      adds libpq parameters (``password``, ``sslmode``, ...) kept out of the string.
    - ``table`` and ``schema``: where the records live; sessions, history and sequences
      take the table name plus a suffix (``_sessions``, ``_history``, ``_revisions``).
    - ``prefix``: put before every key, so several games or environments can share a
      table; ``keys()`` lists only this prefix and returns keys without it.
    - ``history``: how many versions of each key to keep (0: none).
    - ``pool_size``: the most pooled connections; give at least the driver's workers.
    - ``timeout``: the server's statement timeout and the TCP timeouts, in seconds, so a
      call never hangs on a dead server or network; ``connect_timeout`` bounds a
      connection attempt and the wait for a pooled connection.

    No I/O happens before the first call. The password never appears in ``repr``, in
    logs or in error messages.
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        table: str = "sessionlocker_records",
        schema: str = "public",
        prefix: str = "",
        history: int = 10,
        pool_size: int = 8,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        application_name: str = "sessionlocker",
        connect: Mapping[str, str] | None = None,
    ) -> None:
        self._names = Names.checked(schema, table)
        self._prefix = check_prefix(prefix)
        self._history = _check_count(history, "history", 0)
        self._pool_size = _check_count(pool_size, "pool_size", 1)
        self._connector = Connector.build(
            conninfo,
            connect,
            timeout=timeout,
            connect_timeout=connect_timeout,
            application_name=application_name,
        )
        host, database = self._connector.host, self._connector.database
        self._shown = f"host={host!r}, dbname={database!r}, table={self._names.shown!r}"
        if self._prefix:
            self._shown += f", prefix={self._prefix!r}"
        where = f"{host}/{database} (table {self._names.shown})"
        self._errors = ErrorTranslator(self._names, where, self._connector.password)
        self._sql = Statements.build(self._names, self._history > 0)
        self._pages = {
            (first, bounded): keys_page(self._names, first=first, bounded=bounded)
            for first in (True, False)
            for bounded in (True, False)
        }
        self._lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[TupleRow]] | None = None
        self._watches: set[PostgreSQLWatch] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgreSQLStore({self._shown}, history={self._history})"

    @property
    def history_depth(self) -> int:
        """How many versions of each key ``history`` keeps (0: history is off)."""
        return self._history

    # Connections.

    def _connect(self) -> psycopg.Connection[TupleRow]:
        """A new connection outside the pool (for table creation and for watches)."""
        return self._connector.connect()

    def _ready(self) -> ConnectionPool[psycopg.Connection[TupleRow]]:
        """The pool, opened on first use after the tables were made sure to exist."""
        if self._closed:
            raise closed_error()
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                raise closed_error()
            if self._pool is None:
                self._create_tables()
                name = f"sessionlocker {self._names.shown}"
                self._pool = self._connector.pool(size=self._pool_size, name=name)
            return self._pool

    def _create_tables(self) -> None:
        try:
            connection = self._connect()
        except psycopg.Error as exc:
            raise self._errors.connect(exc, "connect") from exc
        with connection:
            try:
                create_missing(connection, self._names, self._history > 0)
            except psycopg.Error as exc:
                raise self._errors.statement(
                    exc, "table creation", writing=False, broken=connection.broken
                ) from exc

    def _execute(
        self, operation: str, query: bytes, params: Mapping[str, object], *, writing: bool
    ) -> list[TupleRow]:
        """Run one statement on a pooled connection; its rows (none for a bare write)."""
        pool = self._ready()
        try:
            with pool.connection() as connection:
                try:
                    cursor = connection.execute(query, params)
                    return cursor.fetchall() if cursor.description is not None else []
                except psycopg.Error as exc:
                    broken = connection.broken
                    raise self._errors.statement(
                        exc, operation, writing=writing, broken=broken
                    ) from exc
        except PoolClosed:
            raise closed_error() from None
        except PoolTimeout as exc:
            raise self._errors.pool_timeout(
                exc, operation, wait=self._connector.connect_timeout, size=self._pool_size
            ) from exc

    # Records.

    def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        key = check_key(key)
        params = {"key": self._prefix + key}
        rows = self._execute("read", self._sql.read, params, writing=False)
        return Versioned(bytes(rows[0][0]), int(rows[0][1])) if rows else None

    def _write(self, key: str, value: bytes, expected: int | None) -> int:
        stored = self._prefix + key
        params = {
            "key": stored,
            "value": value,
            "expected": expected,
            "channel": self._names.channel,
            "payload": notify_payload(stored),
            "keep": max(self._history - 1, 0),
        }
        query = self._sql.insert if expected is None else self._sql.update
        for _ in range(_STALE_ROUNDS):
            rows = self._execute("write", query, params, writing=True)
            if rows and rows[0][1] is None:
                return int(rows[0][0])
            current = _versioned(rows)
            if (current.revision if current is not None else None) != expected:
                raise Conflict(key, current)
            # The write lost a race that this statement's snapshot cannot show: again.
        raise StoreError(f"write of a key kept racing with other writers on {self._shown}")

    def write(self, key: str, value: bytes, expected: int | None) -> int:
        """Write if the stored revision is ``expected`` (``None``: the key must be absent).

        One statement (one round trip). Returns the new revision; raises ``Conflict``
        carrying what is stored now.
        """
        key = check_key(key)
        value = check_value(value)
        expected = check_expected(expected)
        return self._write(key, value, expected)

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """Read (or start from ``known``), transform, write conditionally; retry on conflict.

        With ``known`` an uncontended update is one round trip. A conflict brings back
        what is stored, so each retry is one round trip too. The transform runs outside
        any transaction and may run several times, so it must be pure.
        """
        key = check_key(key)
        if self._closed:
            raise closed_error()
        current = known if known is not None else self.read(key)
        while True:
            decision = transform(current)
            if isinstance(decision, Keep):
                return Updated(decision.outcome, current, wrote=False)
            value = check_value(decision.value, "the value a transform puts")
            expected = current.revision if current is not None else None
            try:
                revision = self._write(key, value, expected)
            except Conflict as conflict:
                current = conflict.current
                continue
            return Updated(decision.outcome, Versioned(value, revision), wrote=True)

    def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key``; True if it existed. Its history stays (see ``history``).

        With ``expected`` the key is removed only at that revision: another revision
        raises ``Conflict`` carrying what is stored. An absent key returns False.
        """
        key = check_key(key)
        expected = check_expected(expected)
        stored = self._prefix + key
        params = {
            "key": stored,
            "expected": expected,
            "channel": self._names.channel,
            "payload": notify_payload(stored),
        }
        query = self._sql.delete if expected is None else self._sql.delete_expected
        for _ in range(_STALE_ROUNDS):
            rows = self._execute("delete", query, params, writing=True)
            if rows and rows[0][1] is None:
                return True
            current = _versioned(rows)
            if current is None:
                return False
            if expected is not None and current.revision != expected:
                raise Conflict(key, current)
        raise StoreError(f"delete of a key kept racing with other writers on {self._shown}")

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, in code point order, a page at a time.

        The first page (1000 keys) is read now; later pages as the iterator reaches
        them, each a fresh query after the last key seen. So a key present all along is
        listed exactly once, and one written or deleted meanwhile may or may not be.
        """
        prefix = self._prefix + check_prefix(prefix)
        end = prefix_end(prefix)
        first = self._keys_page(prefix, end, prefix, first=True)
        return self._more_keys(prefix, end, first)

    def _keys_page(self, prefix: str, end: str | None, start: str, *, first: bool) -> list[str]:
        query = self._pages[(first, end is not None)]
        params = {"start": start, "end": end, "prefix": prefix, "limit": _PAGE}
        return [str(row[0]) for row in self._execute("keys", query, params, writing=False)]

    def _more_keys(self, prefix: str, end: str | None, page: list[str]) -> Iterator[str]:
        """The keys of ``page`` and of the pages after it, without the store's prefix."""
        strip = len(self._prefix)
        while True:
            for stored in page:
                yield stored[strip:]
            if len(page) < _PAGE:
                return
            page = self._keys_page(prefix, end, page[-1], first=False)

    def history(self, key: str) -> list[Versioned]:
        """The last ``history_depth`` versions written to ``key``, newest first.

        The first is the current value, unless the key was deleted since: the history
        of a deleted key stays, to recover a mistaken delete, and is trimmed again when
        the key is written. Empty when history is off (``history=0``).
        """
        key = check_key(key)
        if self._history == 0:
            return []
        params = {"key": self._prefix + key, "limit": self._history}
        rows = self._execute("history", self._sql.history, params, writing=False)
        return [Versioned(bytes(row[0]), int(row[1])) for row in rows]

    # Sessions.

    def put_session(self, session_id: str, ttl: float, info: bytes) -> None:
        """Write our session record, alive for ``ttl`` seconds of the server's clock."""
        session_id = check_session_id(session_id)
        ttl = check_ttl(ttl)
        info = check_value(info, "session info")
        params = {"session": session_id, "ttl": ttl, "info": info}
        self._execute("put_session", self._sql.put_session, params, writing=True)

    def get_session(self, session_id: str) -> SessionView:
        """What the store knows of a session; expired once the server's ``now()`` reaches it."""
        session_id = check_session_id(session_id)
        params = {"session": session_id}
        rows = self._execute("get_session", self._sql.get_session, params, writing=False)
        if not rows:
            return SessionView(exists=False, expired=True, version=0, ttl=None)
        version, ttl, expired = rows[0]
        return SessionView(exists=True, expired=bool(expired), version=int(version), ttl=float(ttl))

    def drop_session(self, session_id: str) -> None:
        """Remove a session record; absent is fine."""
        session_id = check_session_id(session_id)
        params = {"session": session_id}
        self._execute("drop_session", self._sql.drop_session, params, writing=True)

    # Notifications.

    def watch(self, wake: Wake) -> PostgreSQLWatch:
        """A new, empty watch calling ``wake(key, revision)`` after writes to its keys.

        ``revision`` is the one the write made; ``None`` after a delete, and when the
        watch wakes every key after (re)connecting.

        Each watch holds one connection of its own (outside the pool) and one thread.
        """
        with self._lock:
            if self._closed:
                raise closed_error()
            watch = PostgreSQLWatch(
                wake,
                connect=self._connect,
                channel=self._names.channel,
                prefix=self._prefix,
                on_close=self._forget,
                clean=self._errors.clean,
            )
            self._watches.add(watch)
        return watch

    def _forget(self, watch: PostgreSQLWatch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def close(self) -> None:
        """Close every watch and the pool; later calls raise ``StoreError``. Idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            watches, self._watches = list(self._watches), set()
        for watch in watches:
            watch.close()
        if pool is not None:
            pool.close(timeout=self._connector.connect_timeout)
