"""How the PostgreSQL store turns psycopg's exceptions into ``StoreError``.

- Retryable: a lost or refused connection, a server shutting down or restarting, a
  statement timeout or cancel, a serialization failure or deadlock, a lock timeout,
  exhausted server resources (too many connections), no pool connection in time.
- Not retryable: missing permissions (the message says which), a missing database or
  role, failed authentication, anything else the server refuses.
- A statement with no reply by its client-side deadline (``overrun``) is retryable.
- ``unknown_outcome``: a write whose connection broke, or got no reply in time, after
  it was sent. The server may
  have committed it; the caller must re-read. A statement the server answered with an
  error was rolled back (every statement runs alone in autocommit), so its outcome is
  known.

- A write the server refuses as read-only (``25006``: the connection is to a standby,
  or to a primary demoted since) was not made: retryable, and the store drops that
  connection so the next call connects to the primary.
- ``unreplicated``: a write that returned success but with PostgreSQL's warning
  "canceling wait for synchronous replication" (someone cancelled its wait for the
  synchronous standby): committed on this server, maybe not on the standby that a
  failover would promote. Never an acknowledgement: an unknown outcome.

Messages name the operation, the host, the database and the table, and PostgreSQL's own
words; the password is removed from them in case a server or library ever echoes it.
"""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout

from sessionlocker.errors import StoreError
from sessionlocker.stores.postgresql._sql import Names

__all__ = ["READ_ONLY", "ErrorTranslator", "ReplicationNotices"]


class ReplicationNotices:
    """A notice handler for one statement: did the server warn that its commit's wait
    for the synchronous standby was cancelled (committed here, maybe not replicated)?"""

    __slots__ = ("unreplicated",)

    def __init__(self) -> None:
        self.unreplicated = False

    def __call__(self, notice: psycopg.errors.Diagnostic) -> None:
        if _UNREPLICATED in (notice.message_primary or ""):
            self.unreplicated = True


#: SQLSTATE classes worth retrying: connection exception, transaction rollback
#: (serialization, deadlock), insufficient resources, operator intervention (shutdown,
#: cancel, statement timeout), system error.
_RETRYABLE_CLASSES = ("08", "40", "53", "57", "58")
#: read_only_sql_transaction: a write sent to a standby (or a demoted primary).
READ_ONLY = "25006"
#: Single SQLSTATEs worth retrying: lock_not_available (a lock timeout), a write on a
#: standby (the next connection reaches the primary).
_RETRYABLE_STATES = frozenset({"55P03", READ_ONLY})
#: Words of the warning that ends a commit's wait for the synchronous standby early
#: (the server's messages in English: ``lc_messages``).
_UNREPLICATED = "wait for synchronous replication"
_PERMISSION = "42501"
_UNDEFINED_TABLE = "42P01"
#: Words of libpq connection failures that trying again will not fix.
_PERMANENT_CONNECT = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "no password supplied",
    "password is required",
    "invalid sslmode",
    "certificate",
)


class ErrorTranslator:
    """Builds the ``StoreError`` for one store (``where`` names host, database, table)."""

    def __init__(self, names: Names, where: str, password: str | None) -> None:
        self._names = names
        self._where = where
        self._password = password or None

    def clean(self, text: str) -> str:
        """``text`` on one line, with the password (if any) replaced by ``***``."""
        text = " ".join(text.split())  # PostgreSQL messages span lines (DETAIL, HINT)
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _message(self, operation: str, detail: str) -> str:
        return f"PostgreSQL {operation} on {self._where} failed: {self.clean(detail)}"

    def statement(
        self, exc: psycopg.Error, operation: str, *, writing: bool, broken: bool
    ) -> StoreError:
        """The error for a statement that raised ``exc`` (``broken``: the connection died)."""
        state = exc.sqlstate
        if state == _PERMISSION:
            return StoreError(
                self._message(operation, f"{exc}. {self._permission_hint(operation)}"),
                retryable=False,
            )
        if state == _UNDEFINED_TABLE:
            hint = f"a table of the store {self._names.shown} is missing (was it dropped?)"
            return StoreError(self._message(operation, f"{exc}. {hint}"), retryable=False)
        if state == READ_ONLY:
            hint = "the server is a standby (read-only); the next connection goes to the primary"
            return StoreError(self._message(operation, f"{exc}. {hint}"), retryable=True)
        lost = broken or (state is None and isinstance(exc, psycopg.OperationalError))
        retryable = lost or (
            state is not None
            and (state.startswith(_RETRYABLE_CLASSES) or state in _RETRYABLE_STATES)
        )
        return StoreError(
            self._message(operation, str(exc) or type(exc).__name__),
            retryable=retryable,
            unknown_outcome=writing and (lost or (state or "").startswith(("08", "57P"))),
        )

    def overrun(self, operation: str, *, writing: bool, seconds: float) -> StoreError:
        """The error for a statement with no reply within ``seconds`` (its connection was
        shut down and dropped): retryable, and a write's outcome is unknown."""
        detail = (
            f"no reply within {seconds:g} s (the server or the network is stuck); "
            "the connection was dropped"
        )
        return StoreError(self._message(operation, detail), retryable=True, unknown_outcome=writing)

    def unreplicated(self, operation: str) -> StoreError:
        """The error for a write whose commit stopped waiting for the synchronous standby:
        committed on this server but maybe lost on failover, so not acknowledged."""
        detail = (
            "the commit's wait for the synchronous standby was cancelled (PostgreSQL: "
            "'canceling wait for synchronous replication'); it is committed on this server "
            "but maybe not on the standby, so it is not acknowledged"
        )
        return StoreError(self._message(operation, detail), retryable=True, unknown_outcome=True)

    def connect(self, exc: psycopg.Error, operation: str) -> StoreError:
        """The error for a failed connection attempt (nothing was sent, so nothing written)."""
        text = str(exc)
        permanent = any(words in text for words in _PERMANENT_CONNECT)
        return StoreError(self._message(operation, text), retryable=not permanent)

    def pool_timeout(
        self, exc: PoolTimeout, operation: str, *, wait: float, size: int
    ) -> StoreError:
        """No pooled connection came within ``wait`` seconds: server down or pool busy."""
        detail = (
            f"no connection within {wait:g} s (the server is unreachable, or all {size} "
            f"pooled connections are busy): {exc}"
        )
        return StoreError(self._message(operation, detail), retryable=True)

    def _permission_hint(self, operation: str) -> str:
        name = self._names.shown
        if operation == "table creation":
            return (
                f"The role may not create the store's tables: grant it CREATE on schema "
                f"{self._names.schema} (and CREATE on the database if the schema is missing), "
                "or have an administrator create them once (see docs/backends.md)"
            )
        return (
            f"The role needs SELECT, INSERT, UPDATE and DELETE on {name}, {name}_sessions "
            f"and {name}_history, and USAGE on the sequences {name}_revisions and "
            f"{name}_session_versions"
        )
