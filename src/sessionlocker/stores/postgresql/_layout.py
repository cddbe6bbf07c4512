"""What the sync and the async PostgreSQL stores share: everything but the I/O.

``PostgreSQLLayout`` holds one store's settings (table names, key prefix, history depth,
connector, error translator) and, from them, builds every statement with its parameters
and reads every result. ``PostgreSQLStore`` and ``AsyncPostgreSQLStore`` only run what
it builds and hand it the rows, so the two send the same SQL and judge every reply,
conflict and error alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import ExecStatus
from psycopg.rows import TupleRow

from sessionlocker.core.protocol import LeaseView, Versioned
from sessionlocker.core.record import check_user_id
from sessionlocker.errors import Conflict, StoreError
from sessionlocker.stores._checks import (
    check_count,
    check_expected,
    check_key,
    check_lease_id,
    check_prefix,
    check_ttl,
    check_value,
)
from sessionlocker.stores._deadline import DEADLINES
from sessionlocker.stores._trim import trim_now
from sessionlocker.stores.base import Attempt, Entry
from sessionlocker.stores.postgresql._connect import Connector
from sessionlocker.stores.postgresql._errors import ErrorTranslator
from sessionlocker.stores.postgresql._replication import check_replication
from sessionlocker.stores.postgresql._sql import (
    Names,
    Statements,
    create_missing,
    keys_page,
    notify_payload,
    prefix_end,
)

__all__ = ["PAGE", "STALE_ROUNDS", "PostgreSQLLayout", "Statement", "WriteRound"]

#: Keys fetched per page by ``keys()``.
PAGE = 1000
#: The most writes ``update_many`` sends in one statement (``WriteRound``): one commit
#: for all, yet each statement stays short (well under the statement timeout).
GROUP = 1000
#: A conditional write that finds the revision it expected, but only in a snapshot older
#: than a concurrent commit, is sent again; this bounds how often in a row.
STALE_ROUNDS = 100


def _versioned(rows: list[TupleRow]) -> Versioned | None:
    return Versioned(bytes(rows[0][1]), int(rows[0][0])) if rows else None


def answered(result: Any) -> bool:
    """Whether a pipelined statement's ``pgresult`` says it ran (else it failed)."""
    return result is not None and result.status in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK)


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement to run: what it is called in messages, its SQL and parameters."""

    operation: str
    query: bytes
    params: Mapping[str, object]
    writing: bool = False


class PostgreSQLLayout:
    """The settings of one store and every statement and result built from them."""

    def __init__(
        self,
        conninfo: str,
        *,
        table: str,
        schema: str,
        prefix: str,
        history: int,
        timeout: float,
        connect_timeout: float,
        application_name: str,
        connect: Mapping[str, str] | None,
    ) -> None:
        self.names = Names.checked(schema, table)
        self.prefix = check_prefix(prefix)
        self.depth = check_count(history, "history", 0)
        self.connector = Connector.build(
            conninfo,
            connect,
            timeout=timeout,
            connect_timeout=connect_timeout,
            application_name=application_name,
        )
        host, database = self.connector.host, self.connector.database
        self.shown = f"host={host!r}, dbname={database!r}, table={self.names.shown!r}"
        if self.prefix:
            self.shown += f", prefix={self.prefix!r}"
        self.where = f"{host}/{database} (table {self.names.shown})"
        self.errors = ErrorTranslator(self.names, self.where, self.connector.password)
        self.sql = Statements.build(self.names, self.depth > 0)
        self._pages = {
            (first, bounded): keys_page(self.names, first=first, bounded=bounded)
            for first in (True, False)
            for bounded in (True, False)
        }

    def create_tables(self) -> None:
        """Create what is missing, on a connection of its own (blocking: once per store),
        and warn if acknowledgements could be lost on failover (``_replication``)."""
        try:
            connection = self.connector.connect()
        except psycopg.Error as exc:
            raise self.errors.connect(exc, "connect") from exc
        with connection:
            # Several statements, each bounded by the server's timeout: give them as long.
            pending = DEADLINES.start(connection.fileno(), 4 * self.connector.deadline)
            try:
                create_missing(connection, self.names, self.depth > 0)
                check_replication(
                    connection, several_hosts=self.connector.several_hosts, where=self.where
                )
            except psycopg.Error as exc:
                if DEADLINES.end(pending):
                    seconds = 4 * self.connector.deadline
                    raise self.errors.overrun(
                        "table creation", writing=False, seconds=seconds
                    ) from exc
                raise self.errors.statement(
                    exc, "table creation", writing=False, broken=connection.broken
                ) from exc
            DEADLINES.end(pending)

    # Records.

    def read(self, key: str) -> Statement:
        """Read one record (rows: ``value, revision``)."""
        return Statement("read", self.sql.read, {"key": self.prefix + check_key(key)})

    @staticmethod
    def read_rows(rows: list[TupleRow]) -> Versioned | None:
        """The record ``read`` found."""
        return Versioned(bytes(rows[0][0]), int(rows[0][1])) if rows else None

    def read_entry(self, key: str) -> Statement:
        """Read one record with the server's time of its write (rows: value, revision,
        epoch seconds)."""
        params = {"key": self.prefix + check_key(key)}
        return Statement("read", self.sql.read_entry, params)

    @staticmethod
    def version_rows(rows: list[TupleRow]) -> list[Entry]:
        """The dated versions ``read_entry`` or ``history`` found."""
        return [Entry(bytes(row[0]), int(row[1]), float(row[2])) for row in rows]

    def write(
        self, key: str, value: bytes, expected: int | None, *, notify: bool = True
    ) -> Statement:
        """The conditional write: insert when ``expected`` is None, else update; it sends
        NOTIFY unless not ``notify``."""
        stored = self.prefix + check_key(key)
        params = {
            "key": stored,
            "value": check_value(value),
            "expected": check_expected(expected),
            "channel": self.names.channel,
            "payload": notify_payload(stored),
            "notify": notify,
            "keep": max(self.depth - 1, 0),
        }
        if self.depth and trim_now():
            query = self.sql.insert_trimming if expected is None else self.sql.update_trimming
        else:
            query = self.sql.insert if expected is None else self.sql.update
        return Statement("write", query, params, writing=True)

    @staticmethod
    def write_rows(key: str, expected: int | None, rows: list[TupleRow]) -> int | None:
        """The new revision; ``Conflict`` when another revision is stored; ``None`` when
        the write lost a race its snapshot could not show (send it again)."""
        if rows and rows[0][1] is None:
            return int(rows[0][0])
        current = _versioned(rows)
        if (current.revision if current is not None else None) != expected:
            raise Conflict(key, current)
        return None

    def delete(self, key: str, expected: int | None) -> Statement:
        """Delete a record (only at ``expected`` when given)."""
        stored = self.prefix + check_key(key)
        expected = check_expected(expected)
        params = {
            "key": stored,
            "expected": expected,
            "channel": self.names.channel,
            "payload": notify_payload(stored),
        }
        query = self.sql.delete if expected is None else self.sql.delete_expected
        return Statement("delete", query, params, writing=True)

    @staticmethod
    def delete_rows(key: str, expected: int | None, rows: list[TupleRow]) -> bool | None:
        """True when deleted, False when absent, ``Conflict`` on another revision;
        ``None`` when the delete lost a race its snapshot could not show (again)."""
        if rows and rows[0][1] is None:
            return True
        current = _versioned(rows)
        if current is None:
            return False
        if expected is not None and current.revision != expected:
            raise Conflict(key, current)
        return None

    def racing(self, operation: str) -> StoreError:
        """The error after ``STALE_ROUNDS`` lost races in a row."""
        return StoreError(f"{operation} of a key kept racing with other writers on {self.shown}")

    def keys_start(self, prefix: str) -> tuple[str, str | None]:
        """The stored prefix to list and the end of its key range."""
        stored = self.prefix + check_prefix(prefix)
        return stored, prefix_end(stored)

    def keys_page(self, prefix: str, end: str | None, start: str, *, first: bool) -> Statement:
        """One page of stored keys from ``start`` (after it unless ``first``)."""
        query = self._pages[(first, end is not None)]
        params = {"start": start, "end": end, "prefix": prefix, "limit": PAGE}
        return Statement("keys", query, params)

    @staticmethod
    def page_keys(rows: list[TupleRow]) -> list[str]:
        """The stored keys of one page."""
        return [str(row[0]) for row in rows]

    def history(self, key: str) -> Statement | None:
        """The versions of a key, newest first; ``None`` when history is off."""
        params = {"key": self.prefix + check_key(key), "limit": self.depth}
        return Statement("history", self.sql.history, params) if self.depth else None

    def forget(self, key: str) -> Statement | None:
        """Drop a key's versions; ``None`` when history is off."""
        params = {"key": self.prefix + check_key(key)}
        return Statement("forget", self.sql.forget, params, writing=True) if self.depth else None

    def keys_for_user(self, user_id: str, prefix: str) -> Statement:
        """The keys under ``prefix`` whose record lists ``user_id`` (the GIN index)."""
        params = {"user": check_user_id(user_id), "prefix": self.prefix + check_prefix(prefix)}
        return Statement("keys_for_user", self.sql.keys_for_user, params)

    def user_keys(self, rows: list[TupleRow]) -> list[str]:
        """The keys ``keys_for_user`` found, without the store's prefix."""
        return [str(row[0])[len(self.prefix) :] for row in rows]

    # Sessions.

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> Statement:
        """Write a lease that expires by the server's ``now()``."""
        params = {
            "session": check_lease_id(lease_id),
            "ttl": check_ttl(ttl),
            "info": check_value(info, "session info"),
        }
        return Statement("put_lease", self.sql.put_lease, params, writing=True)

    def get_lease(self, lease_id: str) -> Statement:
        """Read a lease, judged by the server's ``now()``."""
        params = {"session": check_lease_id(lease_id)}
        return Statement("get_lease", self.sql.get_lease, params)

    @staticmethod
    def session_rows(rows: list[TupleRow]) -> LeaseView:
        """The lease ``get_lease`` found (none: absent, so expired)."""
        if not rows:
            return LeaseView(exists=False, expired=True, version=0, ttl=None)
        version, ttl, expired = rows[0]
        return LeaseView(exists=True, expired=bool(expired), version=int(version), ttl=float(ttl))

    def drop_lease(self, lease_id: str) -> Statement:
        """Remove a lease record."""
        params = {"session": check_lease_id(lease_id)}
        return Statement("drop_lease", self.sql.drop_lease, params, writing=True)

    def failed(self, exc: psycopg.Error, statement: Statement, *, broken: bool) -> StoreError:
        """The ``StoreError`` for a statement that raised ``exc``."""
        return self.errors.statement(
            exc, statement.operation, writing=statement.writing, broken=broken
        )

    def unreplicated(self, statement: Statement) -> StoreError:
        """``statement`` committed without the synchronous standby (see ``_errors``)."""
        return self.errors.unreplicated(statement.operation)

    def pipelined(
        self,
        statements: list[Statement],
        replies: list[list[TupleRow] | None],
        errors: list[psycopg.Error],
        *,
        broken: bool,
        overrun: bool,
        unreplicated: bool = False,
    ) -> list[list[TupleRow] | StoreError]:
        """The rows of each pipelined statement, or its error. A statement without a
        reply (``None``, or none at all: never sent) failed: the errors the pipeline
        raised come in the order of those statements; once they run out (a broken
        connection), the last one stands for every statement left (unknown outcome for
        a write). When some commit of the batch did not wait for the synchronous standby
        (``unreplicated``: the warning does not say which), no write of it counts as
        acknowledged."""
        if unreplicated:
            return [
                self.unreplicated(statement) if statement.writing else result
                for statement, result in zip(
                    statements,
                    self.pipelined(statements, replies, errors, broken=broken, overrun=overrun),
                    strict=True,
                )
            ]
        results: list[list[TupleRow] | StoreError] = []
        replies = replies + [None] * (len(statements) - len(replies))  # never sent: failed
        raised = iter(errors)
        last: psycopg.Error | None = None
        for statement, rows in zip(statements, replies, strict=True):
            if rows is not None:
                results.append(rows)
                continue
            last = next(raised, last)
            if overrun or last is None:
                results.append(self.overrun(statement))
            else:
                results.append(self.failed(last, statement, broken=broken))
        return results

    def write_round(self, writes: Sequence[tuple[str, Attempt[Any]]]) -> WriteRound:
        """One round of ``update_many``'s conditional writes (see ``WriteRound``)."""
        return WriteRound(self, writes)

    def overrun(self, statement: Statement) -> StoreError:
        """``statement`` got no reply by its deadline; its connection was shut down."""
        return self.errors.overrun(
            statement.operation, writing=statement.writing, seconds=self.connector.deadline
        )

    def pool_timeout(self, exc: Any, statement: Statement, size: int) -> StoreError:
        """No pooled connection came in time."""
        wait = self.connector.connect_timeout
        return self.errors.pool_timeout(exc, statement.operation, wait=wait, size=size)


class WriteRound:
    """One round of pipelined conditional writes and how to read their replies.

    The writes to existing keys (the first write of each key, when there are several)
    go in ``update_many`` statements of up to ``GROUP`` rows: one transaction each, so
    one commit (one WAL flush) for all their rows instead of one each, and each row
    still written only at its own expected revision. The others (inserts, a key's
    second write) are one statement each. ``statements`` go in one pipeline, a sync
    after each.

    ``outcomes`` gives each write its revision, ``Conflict`` or error, or ``None`` to
    send it again alone: after a race its snapshot could not show, or when its grouped
    statement failed as a whole without committing (a server error on a live
    connection: PostgreSQL rolled all of it back), so that each write then meets only
    its own fate. When a grouped statement's outcome is unknown (the connection broke,
    the deadline passed), each of its writes is of unknown outcome.
    """

    def __init__(self, layout: PostgreSQLLayout, writes: Sequence[tuple[str, Attempt[Any]]]):
        self._layout = layout
        self._writes = list(writes)
        seen: set[str] = set()
        grouped: list[int] = []
        for index, (key, attempt) in enumerate(self._writes):
            if attempt.expected is not None and key not in seen:
                seen.add(key)
                grouped.append(index)
        if len(grouped) < 2:
            grouped = []
        self._groups = [grouped[start : start + GROUP] for start in range(0, len(grouped), GROUP)]
        alone = set(grouped)
        self._alone = [i for i in range(len(self._writes)) if i not in alone]
        self.statements = [self._group(group) for group in self._groups]
        self.statements += [
            layout.write(k, a.value, a.expected, notify=a.notify)
            for k, a in (self._writes[i] for i in self._alone)
        ]

    def _group(self, group: list[int]) -> Statement:
        layout = self._layout
        stored = [layout.prefix + check_key(self._writes[i][0]) for i in group]
        attempts = [self._writes[i][1] for i in group]
        params = {
            "keys": stored,
            "expected": [check_expected(a.expected) for a in attempts],
            "values": [check_value(a.value) for a in attempts],
            "payloads": [notify_payload(key) for key in stored],
            "notify": [a.notify for a in attempts],
            "trim": [trim_now() for _ in attempts],
            "keep": max(layout.depth - 1, 0),
            "channel": layout.names.channel,
        }
        return Statement("write", layout.sql.update_many, params, writing=True)

    def outcomes(self, results: list[list[TupleRow] | StoreError]) -> list[int | Exception | None]:
        """Each write's outcome, in the order of the writes (see the class)."""
        outcomes: list[int | Exception | None] = [None] * len(self._writes)
        for group, result in zip(self._groups, results, strict=False):
            for index, outcome in zip(group, self._group_outcomes(group, result), strict=True):
                outcomes[index] = outcome
        for index, rows in zip(self._alone, results[len(self._groups) :], strict=True):
            key, attempt = self._writes[index]
            outcomes[index] = self._outcome(key, attempt.expected, rows)
        return outcomes

    def _group_outcomes(
        self, group: list[int], result: list[TupleRow] | StoreError
    ) -> list[int | Exception | None]:
        if isinstance(result, StoreError):
            return [result if result.unknown_outcome else None for _ in group]
        found = {str(row[0]): row[1:] for row in result}
        outcomes: list[int | Exception | None] = []
        for index in group:
            key, attempt = self._writes[index]
            row = found.get(self._layout.prefix + key)
            outcomes.append(self._outcome(key, attempt.expected, [] if row is None else [row]))
        return outcomes

    def _outcome(
        self, key: str, expected: int | None, rows: list[TupleRow] | StoreError
    ) -> int | Exception | None:
        if isinstance(rows, StoreError):
            return rows
        try:
            return self._layout.write_rows(key, expected, rows)
        except Conflict as conflict:
            return conflict
