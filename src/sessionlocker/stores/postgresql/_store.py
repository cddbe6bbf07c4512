"""``PostgreSQLStore``: records, leases, history and wake-ups in PostgreSQL.

Needs the ``postgresql`` extra (psycopg 3 and psycopg_pool). The SQL is in ``_sql``,
the error translation in ``_errors``, connections and the pool in ``_connect``, the
LISTEN thread in ``_watch``; every statement and result is built and read by
``_layout.PostgreSQLLayout``, shared with ``AsyncPostgreSQLStore``.

Every call is one statement in autocommit, so one round trip (``update_many`` writes a
batch of stored keys with one multi-row statement): a conditional write is an
``UPDATE … WHERE key = … AND revision = …`` (an ``INSERT … ON CONFLICT DO NOTHING`` for
an absent key) whose same statement copies the new version to the history, trims it,
sends ``pg_notify`` and, when the revision did not match, returns what is stored for
the ``Conflict``. Revisions come from a sequence, so they are never handed out twice.
Session expiry is judged by the server's ``now()``, so no client clock is involved.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, Unpack

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from sessionlocker.core.protocol import LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.errors import StoreError
from sessionlocker.stores._batch import CasBatch
from sessionlocker.stores._checks import closed_error
from sessionlocker.stores._deadline import DEADLINES
from sessionlocker.stores.base import Attempt, Entry, Outcome, Wake, cas_update
from sessionlocker.stores.postgresql._errors import READ_ONLY, ReplicationNotices
from sessionlocker.stores.postgresql._layout import PAGE, STALE_ROUNDS, Statement, answered
from sessionlocker.stores.postgresql._settings import PostgreSQLOptions, PostgreSQLSettings
from sessionlocker.stores.postgresql._watch import PostgreSQLWatch

__all__ = ["PostgreSQLStore"]

T = TypeVar("T")


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
    - ``timeout``: the server's statement timeout and the TCP timeouts, in seconds; the
      client gives up on a reply one second later (``GRACE``) and drops the connection,
      so a call never hangs on a dead or stopped server or a silent network;
      ``connect_timeout`` bounds a connection attempt and the wait for a pooled
      connection.

    No I/O happens before the first call. The password never appears in ``repr``, in
    logs or in error messages.
    """

    def __init__(self, conninfo: str = "", **options: Unpack[PostgreSQLOptions]) -> None:
        settings = PostgreSQLSettings(conninfo=conninfo, **options)
        self._layout = settings.layout()
        self._pool_size = settings.pool_limit
        self._lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[TupleRow]] | None = None
        self._watches: set[PostgreSQLWatch] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgreSQLStore({self._layout.shown}, history={self._layout.depth})"

    @property
    def history_depth(self) -> int:
        """How many versions of each key ``history`` keeps (0: history is off)."""
        return self._layout.depth

    # Connections.

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
                self._layout.create_tables()
                name = f"sessionlocker {self._layout.names.shown}"
                self._pool = self._layout.connector.pool(size=self._pool_size, name=name)
            return self._pool

    def _execute(self, statement: Statement) -> list[TupleRow]:
        """Run one statement on a pooled connection; its rows (none for a bare write)."""
        pool = self._ready()
        try:
            with pool.connection() as connection:
                return self._run(connection, statement)
        except PoolClosed:
            raise closed_error() from None
        except PoolTimeout as exc:
            raise self._layout.pool_timeout(exc, statement, self._pool_size) from exc

    def _run(
        self, connection: psycopg.Connection[TupleRow], statement: Statement
    ) -> list[TupleRow]:
        """Run ``statement`` on ``connection`` under the deadline (see ``_deadline``).

        A connection whose socket the deadline shut down is closed, so the pool drops it;
        so is one to a standby (a write refused as read-only). A write whose commit did
        not wait for the synchronous standby raises an unknown outcome (``_errors``).
        """
        notices = ReplicationNotices()
        connection.add_notice_handler(notices)
        pending = DEADLINES.start(connection.fileno(), self._layout.connector.deadline)
        try:
            cursor = connection.execute(statement.query, statement.params)
            rows = cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            if DEADLINES.end(pending):
                connection.close()
                raise self._layout.overrun(statement) from exc
            if exc.sqlstate == READ_ONLY:  # a standby: let the pool connect to the primary
                connection.close()
            raise self._layout.failed(exc, statement, broken=connection.broken) from exc
        finally:
            connection.remove_notice_handler(notices)
        if DEADLINES.end(pending):  # the reply came just as the deadline passed
            connection.close()
        if notices.unreplicated:
            raise self._layout.unreplicated(statement)
        return rows

    def _pipeline(self, statements: list[Statement]) -> list[list[TupleRow] | StoreError]:
        """Run ``statements`` in one psycopg pipeline on one pooled connection: one round
        trip. A sync follows each, so each is its own transaction, as alone: one that
        fails is rolled back alone and its error is its result (``_layout.pipelined``).
        Raises only when no connection came (nothing was sent)."""
        if not statements:
            return []
        pool = self._ready()
        try:
            with pool.connection() as connection:
                return self._run_pipeline(connection, statements)
        except PoolClosed:
            raise closed_error() from None
        except PoolTimeout as exc:
            raise self._layout.pool_timeout(exc, statements[0], self._pool_size) from exc

    def _run_pipeline(
        self, connection: psycopg.Connection[TupleRow], statements: list[Statement]
    ) -> list[list[TupleRow] | StoreError]:
        notices = ReplicationNotices()
        connection.add_notice_handler(notices)
        pending = DEADLINES.start(connection.fileno(), self._layout.connector.deadline)
        cursors: list[psycopg.Cursor[TupleRow]] = []
        errors: list[psycopg.Error] = []
        try:
            with connection.pipeline() as pipeline:
                for statement in statements:
                    cursor = connection.cursor()
                    cursors.append(cursor)
                    try:
                        cursor.execute(statement.query, statement.params)
                        pipeline.sync()
                    except psycopg.Error as exc:  # this statement's, or an earlier one's
                        errors.append(exc)
        except psycopg.Error as exc:  # raised as the pipeline ended
            errors.append(exc)
        finally:
            connection.remove_notice_handler(notices)
        overrun = DEADLINES.end(pending)
        if overrun or any(exc.sqlstate == READ_ONLY for exc in errors):
            connection.close()  # shut down, or a standby: the pool connects again
        replies = [_rows(cursor) for cursor in cursors]
        return self._layout.pipelined(
            statements,
            replies,
            errors,
            broken=connection.broken,
            overrun=overrun,
            unreplicated=notices.unreplicated,
        )

    # Records.

    def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the server's time (``now()``) of that write."""
        found = self._layout.version_rows(self._execute(self._layout.read_entry(key)))
        return found[0] if found else None

    def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        return self._layout.read_rows(self._execute(self._layout.read(key)))

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """Write if the stored revision is ``expected`` (``None``: the key must be absent).

        One statement (one round trip). Returns the new revision; raises ``Conflict``
        carrying what is stored now. ``notify=False``: no NOTIFY (a quiet write).
        """
        statement = self._layout.write(key, value, expected, notify=notify)
        for _ in range(STALE_ROUNDS):
            revision = self._layout.write_rows(key, expected, self._execute(statement))
            if revision is not None:
                return revision
        raise self._layout.racing("write")

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """Read (or start from ``known``), transform, write conditionally; retry on conflict.

        With ``known`` an uncontended update is one round trip. A conflict brings back
        what is stored, so each retry is one round trip too. The transform runs outside
        any transaction and may run several times, so it must be pure.
        """
        return cas_update(self, key, transform, known)

    def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """Every update as ``update`` runs it, pipelined (``Batching``): one pipeline of
        reads for those without ``known``, then one of conditional writes per round (a
        conflicted update runs again in the next). The writes to stored keys share one
        statement, so one commit (``_layout.WriteRound``), each row at its own expected
        revision; each update keeps its own write, conflict and error."""
        batch = CasBatch(updates)
        layout = self._layout
        try:
            reads = [layout.read(key) for key in batch.reads()]
            batch.read(
                [
                    rows if isinstance(rows, StoreError) else layout.read_rows(rows)
                    for rows in self._pipeline(reads)
                ]
            )
            while not batch.done:
                writes = batch.writes()
                writing = layout.write_round(writes)
                outcomes = writing.outcomes(self._pipeline(writing.statements))
                batch.wrote([self._settle(w, o) for w, o in zip(writes, outcomes, strict=True)])
        except StoreError as exc:  # no connection for that round: nothing was sent
            batch.fail(exc)
        return batch.results()

    def _settle(
        self, write: tuple[str, Attempt[Any]], outcome: int | Exception | None
    ) -> int | Exception:
        """A pipelined write's outcome; one that lost a hidden race is sent again alone."""
        if outcome is not None:
            return outcome
        key, attempt = write
        try:
            return self.write(key, attempt.value, attempt.expected, notify=attempt.notify)
        except Exception as exc:  # its Conflict or its error
            return exc

    def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key``; True if it existed. Its history stays (see ``history``).

        With ``expected`` the key is removed only at that revision: another revision
        raises ``Conflict`` carrying what is stored. An absent key returns False.
        """
        statement = self._layout.delete(key, expected)
        for _ in range(STALE_ROUNDS):
            deleted = self._layout.delete_rows(key, expected, self._execute(statement))
            if deleted is not None:
                return deleted
        raise self._layout.racing("delete")

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, in code point order, a page at a time.

        The first page (1000 keys) is read now; later pages as the iterator reaches
        them, each a fresh query after the last key seen. So a key present all along is
        listed exactly once, and one written or deleted meanwhile may or may not be.
        """
        stored, end = self._layout.keys_start(prefix)
        first = self._keys_page(stored, end, stored, first=True)
        return self._more_keys(stored, end, first)

    def _keys_page(self, prefix: str, end: str | None, start: str, *, first: bool) -> list[str]:
        statement = self._layout.keys_page(prefix, end, start, first=first)
        return self._layout.page_keys(self._execute(statement))

    def _more_keys(self, prefix: str, end: str | None, page: list[str]) -> Iterator[str]:
        """The keys of ``page`` and of the pages after it, without the store's prefix."""
        strip = len(self._layout.prefix)
        while True:
            for stored in page:
                yield stored[strip:]
            if len(page) < PAGE:
                return
            page = self._keys_page(prefix, end, page[-1], first=False)

    def keys_for_user(self, user_id: str, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix`` whose record lists ``user_id``, sorted.

        One query on the GIN index over the table's ``_user_ids_of(value)``, which
        PostgreSQL keeps up to date in every write's transaction.
        """
        statement = self._layout.keys_for_user(user_id, prefix)
        return self._layout.user_keys(self._execute(statement))

    def history(self, key: str) -> list[Entry]:
        """The last ``history_depth`` versions written to ``key``, newest first.

        The first is the current value, unless the key was deleted since: the history
        of a deleted key stays, to recover a mistaken delete, and is trimmed again when
        the key is written. Empty when history is off (``history=0``).
        """
        statement = self._layout.history(key)
        return [] if statement is None else self._layout.version_rows(self._execute(statement))

    def forget(self, key: str) -> int:
        """Drop every history entry of ``key`` (an erasure); how many were dropped."""
        statement = self._layout.forget(key)
        return 0 if statement is None else len(self._execute(statement))

    # Sessions.

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of the server's clock."""
        self._execute(self._layout.put_lease(lease_id, ttl, info))

    def get_lease(self, lease_id: str) -> LeaseView:
        """What the store knows of a session; expired once the server's ``now()`` reaches it."""
        return self._layout.session_rows(self._execute(self._layout.get_lease(lease_id)))

    def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record; absent is fine."""
        self._execute(self._layout.drop_lease(lease_id))

    # Notifications.

    def watch(self, wake: Wake) -> PostgreSQLWatch:
        """A new, empty watch calling ``wake(key, revision)`` after writes to its keys.

        ``revision`` is the one the write made; ``None`` after a delete, and when the
        watch wakes every key after (re)connecting.

        Each watch holds one connection of its own (outside the pool) and one thread.
        """
        layout = self._layout
        with self._lock:
            if self._closed:
                raise closed_error()
            watch = PostgreSQLWatch(
                wake,
                connect=layout.connector.connect,
                channel=layout.names.channel,
                prefix=layout.prefix,
                on_close=self._forget,
                clean=layout.errors.clean,
                deadline=layout.connector.deadline,
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
            pool.close(timeout=self._layout.connector.connect_timeout)


def _rows(cursor: psycopg.Cursor[TupleRow]) -> list[TupleRow] | None:
    """The rows of a pipelined statement; ``None`` when it got no result (it failed)."""
    if not answered(cursor.pgresult):
        return None
    return cursor.fetchall() if cursor.description is not None else []
