"""``AsyncPostgreSQLStore``: the PostgreSQL store on psycopg's async connections.

The same tables, statements, results and error translation as ``PostgreSQLStore``: both
build every statement and read every result with ``_layout.PostgreSQLLayout``,
and differ only in how a statement travels (here through a
``psycopg_pool.AsyncConnectionPool``). So sync and async stores on the same table share
records, revisions, sessions and notifications.

Two things stay blocking, each on a thread so the loop never waits on them: creating
missing tables (once, at the first call) and notifications, which reuse the LISTEN
thread of ``PostgreSQLWatch`` through a sync ``PostgreSQLStore`` twin that opens no
pool (a wake may come from that thread, as ``Notifying`` allows).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar, Unpack

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from sessionlocker.core.protocol import LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.errors import StoreError
from sessionlocker.stores._batch import CasBatch
from sessionlocker.stores._checks import closed_error
from sessionlocker.stores._deadline import Pending, expire
from sessionlocker.stores.base import Attempt, Entry, Outcome, Wake, async_cas_update
from sessionlocker.stores.postgresql._errors import READ_ONLY, ReplicationNotices
from sessionlocker.stores.postgresql._layout import PAGE, STALE_ROUNDS, Statement, answered
from sessionlocker.stores.postgresql._settings import PostgreSQLOptions, PostgreSQLSettings
from sessionlocker.stores.postgresql._store import PostgreSQLStore
from sessionlocker.stores.postgresql._watch import PostgreSQLWatch

__all__ = ["AsyncPostgreSQLStore"]

T = TypeVar("T")


class AsyncPostgreSQLStore:
    """An ``AsyncStore`` (and ``Notifying``) on PostgreSQL; the arguments are
    ``PostgreSQLStore``'s. Use it from one event loop. No I/O before the first call.
    """

    def __init__(self, conninfo: str = "", **options: Unpack[PostgreSQLOptions]) -> None:
        settings = PostgreSQLSettings(conninfo=conninfo, **options)
        self._layout = settings.layout()
        self._watcher = PostgreSQLStore(conninfo, **settings.options(pool_size=1))
        self._pool_size = settings.pool_limit
        self._opening = asyncio.Lock()
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncPostgreSQLStore({self._layout.shown}, history={self._layout.depth})"

    @property
    def history_depth(self) -> int:
        """How many versions of each key ``history`` keeps (0: history is off)."""
        return self._layout.depth

    # Connections.

    async def _ready(self) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
        """The pool, opened on first use after the tables were made sure to exist."""
        if self._closed:
            raise closed_error()
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._closed:
                raise closed_error()
            if self._pool is None:
                await asyncio.to_thread(self._layout.create_tables)
                name = f"sessionlocker {self._layout.names.shown}"
                pool = self._layout.connector.async_pool(size=self._pool_size, name=name)
                await pool.open(wait=False)
                self._pool = pool
            return self._pool

    async def _execute(self, statement: Statement) -> list[TupleRow]:
        """Run one statement on a pooled connection; its rows (none for a bare write)."""
        pool = await self._ready()
        try:
            async with pool.connection() as connection:
                return await self._run(connection, statement)
        except PoolClosed:
            raise closed_error() from None
        except PoolTimeout as exc:
            raise self._layout.pool_timeout(exc, statement, self._pool_size) from exc

    async def _run(
        self, connection: psycopg.AsyncConnection[TupleRow], statement: Statement
    ) -> list[TupleRow]:
        """Run ``statement`` under the deadline: a loop timer shuts the socket down when
        no reply came in time (``_deadline``); the connection is then closed and dropped,
        as is one to a standby. A commit not replicated raises an unknown outcome."""
        pending = Pending(connection.fileno(), 0.0)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._layout.connector.deadline, expire, pending)
        notices = ReplicationNotices()
        connection.add_notice_handler(notices)
        try:
            cursor = await connection.execute(statement.query, statement.params)
            rows = await cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            if pending.expired:
                await connection.close()
                raise self._layout.overrun(statement) from exc
            if exc.sqlstate == READ_ONLY:  # a standby: let the pool connect to the primary
                await connection.close()
            raise self._layout.failed(exc, statement, broken=connection.broken) from exc
        finally:
            timer.cancel()
            connection.remove_notice_handler(notices)
        if pending.expired:  # the reply came just as the deadline passed
            await connection.close()
        if notices.unreplicated:
            raise self._layout.unreplicated(statement)
        return rows

    async def _pipeline(self, statements: list[Statement]) -> list[list[TupleRow] | StoreError]:
        """``PostgreSQLStore._pipeline`` awaited: one pipeline, a sync after each."""
        if not statements:
            return []
        pool = await self._ready()
        try:
            async with pool.connection() as connection:
                return await self._run_pipeline(connection, statements)
        except PoolClosed:
            raise closed_error() from None
        except PoolTimeout as exc:
            raise self._layout.pool_timeout(exc, statements[0], self._pool_size) from exc

    async def _run_pipeline(
        self, connection: psycopg.AsyncConnection[TupleRow], statements: list[Statement]
    ) -> list[list[TupleRow] | StoreError]:
        notices = ReplicationNotices()
        connection.add_notice_handler(notices)
        pending = Pending(connection.fileno(), 0.0)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._layout.connector.deadline, expire, pending)
        cursors: list[psycopg.AsyncCursor[TupleRow]] = []
        errors: list[psycopg.Error] = []
        try:
            async with connection.pipeline() as pipeline:
                for statement in statements:
                    cursor = connection.cursor()
                    cursors.append(cursor)
                    try:
                        await cursor.execute(statement.query, statement.params)
                        await pipeline.sync()
                    except psycopg.Error as exc:  # this statement's, or an earlier one's
                        errors.append(exc)
        except psycopg.Error as exc:  # raised as the pipeline ended
            errors.append(exc)
        finally:
            timer.cancel()
            connection.remove_notice_handler(notices)
        if pending.expired or any(exc.sqlstate == READ_ONLY for exc in errors):
            await connection.close()  # shut down, or a standby: the pool connects again
        replies = [await _rows(cursor) for cursor in cursors]
        return self._layout.pipelined(
            statements,
            replies,
            errors,
            broken=connection.broken,
            overrun=pending.expired,
            unreplicated=notices.unreplicated,
        )

    # Records.

    async def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the server's time (``now()``) of that write."""
        found = self._layout.version_rows(await self._execute(self._layout.read_entry(key)))
        return found[0] if found else None

    async def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        return self._layout.read_rows(await self._execute(self._layout.read(key)))

    async def write(
        self, key: str, value: bytes, expected: int | None, *, notify: bool = True
    ) -> int:
        """Write if the stored revision is ``expected``; ``Conflict`` carries what is stored."""
        statement = self._layout.write(key, value, expected, notify=notify)
        for _ in range(STALE_ROUNDS):
            revision = self._layout.write_rows(key, expected, await self._execute(statement))
            if revision is not None:
                return revision
        raise self._layout.racing("write")

    async def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """``async_cas_update``: with ``known``, one round trip uncontended."""
        return await async_cas_update(self, key, transform, known)

    async def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """``PostgreSQLStore.update_many`` awaited: the same pipelines, the same results."""
        batch = CasBatch(updates)
        layout = self._layout
        try:
            reads = await self._pipeline([layout.read(key) for key in batch.reads()])
            batch.read([r if isinstance(r, StoreError) else layout.read_rows(r) for r in reads])
            while not batch.done:
                writes = batch.writes()
                writing = layout.write_round(writes)
                outcomes = writing.outcomes(await self._pipeline(writing.statements))
                batch.wrote(
                    [await self._settle(w, o) for w, o in zip(writes, outcomes, strict=True)]
                )
        except StoreError as exc:  # no connection for that round: nothing was sent
            batch.fail(exc)
        return batch.results()

    async def _settle(
        self, write: tuple[str, Attempt[Any]], outcome: int | Exception | None
    ) -> int | Exception:
        """A pipelined write's outcome; one that lost a hidden race is sent again alone."""
        if outcome is not None:
            return outcome
        key, attempt = write
        try:
            return await self.write(key, attempt.value, attempt.expected, notify=attempt.notify)
        except Exception as exc:  # its Conflict or its error
            return exc

    async def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key`` (only at revision ``expected`` when given); True if it existed."""
        statement = self._layout.delete(key, expected)
        for _ in range(STALE_ROUNDS):
            deleted = self._layout.delete_rows(key, expected, await self._execute(statement))
            if deleted is not None:
                return deleted
        raise self._layout.racing("delete")

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key starting with ``prefix``, in code point order, a page at a time."""
        stored, end = self._layout.keys_start(prefix)
        strip = len(self._layout.prefix)
        start, first = stored, True
        while True:
            statement = self._layout.keys_page(stored, end, start, first=first)
            page = self._layout.page_keys(await self._execute(statement))
            for key in page:
                yield key[strip:]
            if len(page) < PAGE:
                return
            start, first = page[-1], False

    async def history(self, key: str) -> list[Entry]:
        """The last ``history_depth`` versions written to ``key``, newest first."""
        statement = self._layout.history(key)
        if statement is None:
            return []
        return self._layout.version_rows(await self._execute(statement))

    # Sessions.

    async def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of the server's clock."""
        await self._execute(self._layout.put_lease(lease_id, ttl, info))

    async def get_lease(self, lease_id: str) -> LeaseView:
        """What the store knows of a session; expired once the server's ``now()`` reaches it."""
        rows = await self._execute(self._layout.get_lease(lease_id))
        return self._layout.session_rows(rows)

    async def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record; absent is fine."""
        await self._execute(self._layout.drop_lease(lease_id))

    # Notifications.

    def watch(self, wake: Wake) -> PostgreSQLWatch:
        """A new watch (``PostgreSQLStore.watch``): its own connection and thread."""
        if self._closed:
            raise closed_error()
        return self._watcher.watch(wake)

    async def aclose(self) -> None:
        """Close every watch and the pool; later calls raise ``StoreError``. Idempotent."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:  # first: its first step stops the pool's workers, even if
            # this close is cancelled later (a worker cancelled in a connect would not stop)
            await pool.close(timeout=self._layout.connector.connect_timeout)
        await asyncio.to_thread(self._watcher.close)  # joins the LISTEN threads


async def _rows(cursor: psycopg.AsyncCursor[TupleRow]) -> list[TupleRow] | None:
    """The rows of a pipelined statement; ``None`` when it got no result (it failed)."""
    if not answered(cursor.pgresult):
        return None
    return await cursor.fetchall() if cursor.description is not None else []
