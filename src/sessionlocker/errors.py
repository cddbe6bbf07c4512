"""Every error sessionlocker raises, under one base.

::

    SessionLockerError
    ├── UsageError (ValueError)      bad argument or misuse; nothing was changed
    │   └── AlreadyOpen              the key is already open in this service
    ├── Conflict                     a conditional write found another revision (stores)
    ├── StoreError                   the store failed; .retryable, .unknown_outcome
    │   └── Throttled                the store asked us to slow down; .retry_after
    ├── LockError
    │   ├── LockUnavailable          the lock could not be had (timeout, cancel, mode)
    │   └── LockLost                 another session holds the lock now
    ├── MessageError                 a remote change's handler raised; .kind, .message_id
    │   └── UnhandledMessage         no handler for the message's kind (it stays queued)
    └── DataError (ValueError)
        ├── CorruptRecord            stored bytes are not a valid record; left untouched
        ├── NewerSchema              written by newer code; .minimum_version can load it
        ├── MigrationError           a migrator or patcher raised; .step names it
        ├── UnstorableData           the data cannot be stored as JSON; .path names where
        ├── InvalidData              the spec's validator refused the data; .path
        └── RecordTooLarge           the record would exceed the size limit; .size

Backends translate their client library's exceptions into ``StoreError`` at their
boundary (``raise StoreError(...) from exc``), so callers never see a driver's own
exception types.
"""

from __future__ import annotations

__all__ = [
    "AlreadyOpen",
    "Conflict",
    "CorruptRecord",
    "DataError",
    "InvalidData",
    "LockError",
    "LockLost",
    "LockUnavailable",
    "MessageError",
    "MigrationError",
    "NewerSchema",
    "RecordTooLarge",
    "SessionLockerError",
    "StoreError",
    "Throttled",
    "UnhandledMessage",
    "UnstorableData",
    "UsageError",
]

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessionlocker.core.protocol import Versioned


class SessionLockerError(Exception):
    """The base of every error raised by sessionlocker."""


class UsageError(SessionLockerError, ValueError):
    """A call was made with a bad argument or at the wrong time; nothing changed."""


class AlreadyOpen(UsageError):
    """The key is already open in this service (one process, one owner)."""


class Conflict(SessionLockerError):
    """A conditional write found a revision other than the one expected.

    ``current`` is what the store holds now (``None`` when the key is absent), so the
    caller can transform it again without another read.
    """

    def __init__(self, key: str, current: Versioned | None) -> None:
        super().__init__(f"revision of {key!r} moved")
        self.key = key
        self.current = current


class StoreError(SessionLockerError):
    """A store call failed.

    ``retryable``: the same call may succeed later (timeout, throttle, lost connection).
    ``unknown_outcome``: the call may have committed although no reply came back; the
    caller must re-read to learn what happened, never assume either way.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, unknown_outcome: bool = False
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.unknown_outcome = unknown_outcome


class Throttled(StoreError):
    """The store refused the call for now and says when to try again."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retryable=True)
        self.retry_after = retry_after


class LockError(SessionLockerError):
    """The lock on a record could not be had or was lost."""


class LockUnavailable(LockError):
    """The lock could not be acquired (timed out, cancelled, or held and mode said stop)."""


class LockLost(LockError):
    """Another session holds the lock now; this locker's unsaved changes were not saved."""


class MessageError(SessionLockerError):
    """A remote change (an inbox message) could not be applied; it stays in the inbox.

    Reported through the locker's ``error`` event, never raised to a caller: ``kind``
    and ``message_id`` name the message.
    """

    def __init__(self, message: str, *, kind: str, message_id: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message_id = message_id


class UnhandledMessage(MessageError):
    """No handler is registered for the message's kind (code that knows it may load later)."""


class DataError(SessionLockerError, ValueError):
    """Data is unreadable or cannot be stored."""


class CorruptRecord(DataError):
    """The stored bytes are not a valid record. They are left byte-for-byte untouched."""


class UnstorableData(DataError):
    """The data cannot be stored as JSON; ``path`` names the offending value."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"cannot store data at {path}: {problem}")
        self.path = path
        self.problem = problem


class NewerSchema(DataError):
    """The record was written by newer code; this code must not load or save it.

    ``minimum_version`` is the oldest version of the spec that may load it.
    """

    def __init__(self, schema: int, *, minimum: int, running: int) -> None:
        super().__init__(
            f"record is at version {schema}; this code is at version {running} "
            f"and loading it needs version {minimum} or newer"
        )
        self.schema = schema
        self.minimum_version = minimum
        self.running_version = running


class MigrationError(DataError):
    """A migrator or patcher raised; nothing was written. ``step`` names it."""

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"{step} failed: {cause!r}")
        self.step = step


class InvalidData(DataError):
    """The spec's validator refused the data; ``path`` names the field when known."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"invalid data at {path}: {problem}")
        self.path = path
        self.problem = problem


class RecordTooLarge(DataError):
    """The record would be ``size`` bytes, over ``limit``; nothing was written."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"record would be {size:,} bytes, over the limit of {limit:,}")
        self.size = size
        self.limit = limit
