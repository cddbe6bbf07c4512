"""``SQLiteStore``: a store in one SQLite file, safe across threads and processes.

It is meant for one machine: several processes may open the same file, and SQLite's
own file locking keeps their writes apart. It is not meant for a network file system.
Each key's last versions are kept beside it (``history``, default 10), as the
PostgreSQL store does, so a bad save can be undone (``sessionlocker restore``).

Opening a connection (``open_connection``) sets the busy timeout and WAL mode and waits
for both. Why this is its own step: SQLite's busy handler does not cover every lock it takes.
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

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from sessionlocker.core.protocol import Keep, LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.core.record import check_user_id
from sessionlocker.errors import Conflict, StoreError, UsageError
from sessionlocker.stores._checks import (
    check_expected,
    check_key,
    check_lease_id,
    check_prefix,
    check_seconds,
    check_ttl,
    check_value,
    closed_error,
)
from sessionlocker.stores._trim import trim_now
from sessionlocker.stores.base import Entry, Outcome

__all__ = ["SQLiteStore"]


T = TypeVar("T")


#: A record's ``"user_ids"`` as compact JSON writes it, when there is at least one: the
#: triggers parse only records holding it, so a record without users costs one byte scan.
_USERS_MARK = "X'22757365725f696473223a5b22'"


def _user_rows(row: str, *, scan: bool = False) -> str:
    """(user id, key) rows of the record ``row`` (``NEW``, ``OLD`` or, with ``scan``, every
    row of ``records``); none from a value that is not JSON."""
    text = f"CAST({row}.value AS TEXT)"
    source = "records, " if scan else ""
    return (
        f"SELECT j.value, {row}.key FROM {source}json_each(CASE WHEN json_valid({text})"
        f" THEN {text} ELSE '{{}}' END, '$.user_ids') AS j WHERE j.type = 'text'"
    )


#: The user index (``keys_for_user``): kept by triggers in each write's transaction.
_USER_INDEX = (
    "CREATE TABLE IF NOT EXISTS record_users (user_id TEXT NOT NULL, key TEXT NOT NULL,"
    " PRIMARY KEY (user_id, key)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS record_users_key ON record_users (key)",
    "CREATE TRIGGER IF NOT EXISTS records_users_insert AFTER INSERT ON records"
    f" WHEN instr(NEW.value, {_USERS_MARK}) > 0 BEGIN"
    f" INSERT OR IGNORE INTO record_users (user_id, key) {_user_rows('NEW')}; END",
    "CREATE TRIGGER IF NOT EXISTS records_users_update AFTER UPDATE OF value ON records"
    f" WHEN instr(OLD.value, {_USERS_MARK}) > 0 OR instr(NEW.value, {_USERS_MARK}) > 0 BEGIN"
    " DELETE FROM record_users WHERE key = OLD.key;"
    f" INSERT OR IGNORE INTO record_users (user_id, key) {_user_rows('NEW')}; END",
    "CREATE TRIGGER IF NOT EXISTS records_users_delete AFTER DELETE ON records"
    f" WHEN instr(OLD.value, {_USERS_MARK}) > 0 BEGIN"
    " DELETE FROM record_users WHERE key = OLD.key; END",
)


#: Fills the index from the records of a file made before it existed.
_USER_BACKFILL = (
    "INSERT OR IGNORE INTO record_users (user_id, key) "
    + _user_rows("records", scan=True)
    + f" AND instr(records.value, {_USERS_MARK}) > 0"
)


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records ("
    " key TEXT PRIMARY KEY, revision INTEGER NOT NULL,"
    " value BLOB NOT NULL, updated REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions ("
    " session_id TEXT PRIMARY KEY, expires REAL NOT NULL, version INTEGER NOT NULL,"
    " ttl REAL NOT NULL, info BLOB NOT NULL)",
    # One row: the store-wide revision counter, and one for session versions.
    "CREATE TABLE IF NOT EXISTS counter ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " revision INTEGER NOT NULL, session_version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counter (id, revision, session_version) VALUES (1, 0, 0)",
    *_USER_INDEX,
    # The last versions of each key (see ``SQLiteStore.history``); kept across a delete.
    "CREATE TABLE IF NOT EXISTS history ("
    " key TEXT NOT NULL, revision INTEGER NOT NULL, value BLOB NOT NULL,"
    " updated REAL NOT NULL, PRIMARY KEY (key, revision))",
)


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        with suppress(sqlite3.Error):  # the original error is the one worth reporting
            connection.execute("ROLLBACK")


class SQLiteStore:
    """Records and sessions in the SQLite database file at ``path``.

    - Journal mode is WAL, so readers never wait for the writer. ``synchronous=NORMAL``
      is safe under WAL: a power cut may lose the last commits but never corrupts the
      file, and a process crash loses nothing that was committed.
    - Every write is one ``BEGIN IMMEDIATE`` transaction, which takes the file's write
      lock at once; other writers wait up to ``busy_timeout`` seconds for it, then get
      a retryable ``StoreError``.
    - Each thread gets its own connection, opened on first use and kept until
      ``close()``. Opening waits up to ``busy_timeout`` too, also for the switch of a new
      file to WAL, which SQLite's busy handler does not cover (see ``sqlite``).
      The schema is created on first use if missing.
    - Revisions come from a one-row counter table bumped in the same transaction as
      each write, so they only grow across keys, deletes and processes.
    - Session expiry is judged by this host's wall clock (``time.time()``), which all
      processes on the machine share.
    - Records are indexed by their ``user_ids`` (``keys_for_user``) by triggers that
      parse only records listing at least one user.
    - ``history``: how many versions of each key to keep (0: none), copied in the
      transaction of each write; see ``history()``.

    The parent directory must exist; it is never created silently.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0, history: int = 10
    ) -> None:
        text = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise UsageError("the SQLite database path must be a non-empty str or path")
        if text == ":memory:":
            raise UsageError(
                f"SQLiteStore needs a database file path, not {text!r}; "
                "use MemoryStore for a store in memory"
            )
        self._busy_timeout = check_seconds(busy_timeout, "busy_timeout")
        if not isinstance(history, int) or isinstance(history, bool) or history < 0:
            raise UsageError(f"history must be a whole number >= 0, not {history!r}")
        self._history = history
        self._path = Path(text).absolute()
        directory = self._path.parent
        if not directory.is_dir():
            raise UsageError(
                f"the directory {str(directory)!r} for the SQLite database does not exist; "
                "create it first"
            )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._schema_ready = False
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self._path)!r}, history={self._history})"

    @property
    def path(self) -> Path:
        """The absolute path of the database file."""
        return self._path

    @property
    def history_depth(self) -> int:
        """How many versions of each key ``history`` keeps (0: history is off)."""
        return self._history

    # Connections and transactions.

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise closed_error()
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._open()
            with self._lock:
                if self._closed:
                    connection.close()
                    raise closed_error()
                self._connections.append(connection)
            self._local.connection = connection
        return connection

    def _open(self) -> sqlite3.Connection:
        connection = open_connection(self._path, self._busy_timeout)
        try:
            if not self._schema_ready:  # once per store: later connections skip the write lock
                self._create_schema(connection)
                self._schema_ready = True
        except BaseException:
            connection.close()
            raise
        return connection

    @staticmethod
    def _create_schema(connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            indexed = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'record_users'"
            ).fetchone()
            for statement in _SCHEMA:
                connection.execute(statement)
            if indexed is None:
                connection.execute(_USER_BACKFILL)
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise

    def _error(self, exc: sqlite3.Error, operation: str) -> StoreError:
        # The message names the file and SQLite's own words, never bound values.
        where = f"SQLite {operation} on {str(self._path)!r} failed"
        if is_transient(exc):
            return StoreError(f"{where}: the database is busy ({exc})", retryable=True)
        return StoreError(f"{where}: {exc}", retryable=False)

    @contextmanager
    def _translating(self, operation: str) -> Iterator[None]:
        """Turn every ``sqlite3`` exception into a ``StoreError`` at the boundary."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc, operation) from exc

    @contextmanager
    def _reading(self, operation: str) -> Iterator[sqlite3.Connection]:
        """A connection for one read statement (its own consistent snapshot)."""
        with self._translating(operation):
            yield self._connection()

    @contextmanager
    def _writing(self, operation: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, else rolled back."""
        with self._translating(operation):
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                _rollback(connection)
                raise
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(connection)
                if is_transient(exc):
                    raise  # still open when busy, so the rollback undid it: outcome known
                raise StoreError(
                    f"SQLite {operation} on {str(self._path)!r} failed while committing: {exc}",
                    retryable=False,
                    unknown_outcome=True,
                ) from exc

    @staticmethod
    def _select(connection: sqlite3.Connection, key: str) -> Versioned | None:
        row = connection.execute(
            "SELECT value, revision FROM records WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else Versioned(bytes(row[0]), int(row[1]))

    def _store(self, connection: sqlite3.Connection, key: str, value: bytes) -> int:
        connection.execute("UPDATE counter SET revision = revision + 1 WHERE id = 1")
        (revision,) = connection.execute("SELECT revision FROM counter WHERE id = 1").fetchone()
        row = (key, revision, value, time.time())
        connection.execute(
            "INSERT INTO records (key, revision, value, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET revision = excluded.revision, "
            "value = excluded.value, updated = excluded.updated",
            row,
        )
        if self._history:
            connection.execute("INSERT INTO history VALUES (?, ?, ?, ?)", row)
            if trim_now():  # keep the newest ``history`` rows of the key (see _trim)
                connection.execute(
                    "DELETE FROM history WHERE key = ?1 AND revision <= (SELECT revision FROM"
                    " history WHERE key = ?1 ORDER BY revision DESC LIMIT 1 OFFSET ?2)",
                    (key, self._history),
                )
        return int(revision)

    # Records.

    def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        key = check_key(key)
        with self._reading("read") as connection:
            return self._select(connection, key)

    def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with this host's time (``time.time()``) of that write."""
        key = check_key(key)
        with self._reading("read") as connection:
            row = connection.execute(
                "SELECT value, revision, updated FROM records WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else Entry(bytes(row[0]), int(row[1]), float(row[2]))

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """Write if the stored revision is ``expected`` (``None``: the key must be absent).

        One transaction reads the revision, compares and writes. Returns the new
        revision; raises ``Conflict`` carrying what is stored now. (SQLite does not
        notify, so ``notify`` changes nothing.)
        """
        key = check_key(key)
        value = check_value(value)
        expected = check_expected(expected)
        with self._writing("write") as connection:
            current = self._select(connection, key)
            found = current.revision if current is not None else None
            if found != expected:
                raise Conflict(key, current)
            return self._store(connection, key, value)

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """Read, transform and write in one transaction that holds the write lock.

        Nobody can write in between, so the transform runs exactly once, on what is
        stored, and there is never a conflict to retry. ``known`` is accepted for the
        protocol but not used: reading inside the transaction costs no extra round trip.
        """
        key = check_key(key)
        with self._writing("update") as connection:
            current = self._select(connection, key)
            decision = transform(current)
            if isinstance(decision, Keep):
                return Updated(decision.outcome, current, wrote=False)
            value = check_value(decision.value, "the value a transform puts")
            revision = self._store(connection, key, value)
            return Updated(decision.outcome, Versioned(value, revision), wrote=True)

    def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """Every update as ``update`` runs it, all in one transaction (``Batching``).

        Each runs inside a savepoint of its own, so an update that fails is rolled back
        alone and its error is its result; the others commit together. Only a failing
        commit fails them all (with that commit's error).
        """
        results: list[Outcome] = []
        try:
            with self._writing("update") as connection:
                for update in updates:
                    results.append(self._update_saved(connection, update))
        except StoreError as exc:
            return [exc] * len(updates)
        return results

    def _update_saved(self, connection: sqlite3.Connection, update: Update[Any]) -> Outcome:
        """One update of ``update_many``, in a savepoint: its result, or its error."""
        connection.execute("SAVEPOINT one")
        try:
            key = check_key(update.key)
            current = self._select(connection, key)
            decision = update.transform(current)
            if isinstance(decision, Keep):
                updated: Outcome = Updated(decision.outcome, current, wrote=False)
            else:
                value = check_value(decision.value, "the value a transform puts")
                revision = self._store(connection, key, value)
                updated = Updated(decision.outcome, Versioned(value, revision), wrote=True)
        except Exception as exc:  # this update's own error: undo only its statements
            connection.execute("ROLLBACK TO one")
            updated = self._error(exc, "update") if isinstance(exc, sqlite3.Error) else exc
        connection.execute("RELEASE one")
        return updated

    def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key``; True if it existed.

        With ``expected`` the key is removed only at that revision: another revision
        raises ``Conflict`` carrying what is stored. An absent key returns False.
        """
        key = check_key(key)
        expected = check_expected(expected)
        with self._writing("delete") as connection:
            current = self._select(connection, key)
            if current is None:
                return False
            if expected is not None and current.revision != expected:
                raise Conflict(key, current)
            connection.execute("DELETE FROM records WHERE key = ?", (key,))
            return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, as a snapshot taken now."""
        prefix = check_prefix(prefix)
        with self._reading("keys") as connection:
            rows = connection.execute(
                "SELECT key FROM records WHERE key >= ?1 AND substr(key, 1, ?2) = ?1",
                (prefix, len(prefix)),
            ).fetchall()
        return iter([str(row[0]) for row in rows])

    def history(self, key: str) -> list[Entry]:
        """The last ``history_depth`` versions written to ``key``, newest first, each
        with this host's time of its write.

        The first is the current value, unless the key was deleted since: the history
        outlives a delete (it is the way back from a mistaken one). Empty when history is
        off (``history=0``) or the key was never written.
        """
        key = check_key(key)
        with self._reading("history") as connection:
            rows = connection.execute(
                "SELECT value, revision, updated FROM history WHERE key = ?"
                " ORDER BY revision DESC LIMIT ?",
                (key, self._history),
            ).fetchall()
        return [Entry(bytes(value), int(rev), float(at)) for value, rev, at in rows]

    def forget(self, key: str) -> int:
        """Drop every history entry of ``key`` (an erasure); how many were dropped."""
        key = check_key(key)
        with self._writing("forget") as connection:
            return connection.execute("DELETE FROM history WHERE key = ?", (key,)).rowcount

    def keys_for_user(self, user_id: str, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix`` whose record lists ``user_id``, sorted.

        Answered from the ``record_users`` table, which triggers keep in the transaction
        of every write and delete, so it is never behind the records.
        """
        user_id = check_user_id(user_id)
        prefix = check_prefix(prefix)
        with self._reading("keys_for_user") as connection:
            rows = connection.execute(
                "SELECT key FROM record_users WHERE user_id = ?1 AND key >= ?2"
                " AND substr(key, 1, ?3) = ?2 ORDER BY key",
                (user_id, prefix, len(prefix)),
            ).fetchall()
        return [str(row[0]) for row in rows]

    # Sessions.

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of this host's clock."""
        lease_id = check_lease_id(lease_id)
        ttl = check_ttl(ttl)
        info = check_value(info, "session info")
        with self._writing("put_lease") as connection:
            connection.execute(
                "UPDATE counter SET session_version = session_version + 1 WHERE id = 1"
            )
            (version,) = connection.execute(
                "SELECT session_version FROM counter WHERE id = 1"
            ).fetchone()
            connection.execute(
                "INSERT INTO sessions (session_id, expires, version, ttl, info) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
                "expires = excluded.expires, version = excluded.version, "
                "ttl = excluded.ttl, info = excluded.info",
                (lease_id, time.time() + ttl, version, ttl, info),
            )

    def get_lease(self, lease_id: str) -> LeaseView:
        """What the store knows of a session; expired once ``time.time()`` reaches it."""
        lease_id = check_lease_id(lease_id)
        with self._reading("get_lease") as connection:
            row = connection.execute(
                "SELECT expires, version, ttl FROM sessions WHERE session_id = ?", (lease_id,)
            ).fetchone()
        if row is None:
            return LeaseView(exists=False, expired=True, version=0, ttl=None)
        expires, version, ttl = float(row[0]), int(row[1]), float(row[2])
        return LeaseView(exists=True, expired=time.time() >= expires, version=version, ttl=ttl)

    def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record; absent is fine."""
        lease_id = check_lease_id(lease_id)
        with self._writing("drop_lease") as connection:
            connection.execute("DELETE FROM sessions WHERE session_id = ?", (lease_id,))

    def close(self) -> None:
        """Close the connections of every thread; later calls raise. Idempotent."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            with suppress(sqlite3.Error):  # best effort; the file stays consistent anyway
                connection.close()


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
