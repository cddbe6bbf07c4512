"""Test doubles for the race tests: a shared true time, skewed clocks, an executor that
can lose replies, and a store wrapper that logs every committed write.

Nothing here changes behaviour of the library; it only observes it or decides when a
store call runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from sessionlocker.core.protocol import SessionView, Transform, Update, Updated, Versioned
from sessionlocker.drivers.mailbox import PREFIX as MAILBOXES
from sessionlocker.errors import StoreError
from sessionlocker.stores import MemoryStore
from sessionlocker.testing import ManualExecutor

T = TypeVar("T")


class TrueTime:
    """The one real time of a test run; the store's own clock reads it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class SkewedClock:
    """A service's clock: ``offset + rate * true time`` (skewed and drifting)."""

    true: TrueTime
    offset: float
    rate: float

    def __call__(self) -> float:
        return self.offset + self.rate * self.true()


class LossyExecutor:
    """A ``ManualExecutor`` that can also lose a reply the way a real client does.

    - ``run_next(index)``: run the call, deliver its result.
    - ``time_out(index, execute)``: run the call or not, then deliver an unknown-outcome
      ``StoreError`` (what a store client reports when its reply is lost).
    - ``drop_next(execute, index)``: run the call or not, and never deliver anything
      (a hung connection, or a process that died before reading the reply).
    - ``time_out_late(index)``: deliver the unknown-outcome ``StoreError`` now and hand
      back the call, for the test to run later (a request that reaches the store after
      its client gave up on it).
    """

    def __init__(self) -> None:
        self.inner = ManualExecutor()
        # The calls and their ``done`` callbacks, in the same order as the inner executor's.
        self._calls: list[Callable[[], object]] = []
        self._done: list[Callable[[object], None]] = []

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        self.inner.submit(call, done)
        self._calls.append(call)
        self._done.append(done)

    def shutdown(self) -> None:
        self.run_all()

    @property
    def pending(self) -> int:
        return self.inner.pending

    def run_next(self, index: int = 0) -> object:
        self._calls.pop(index)
        self._done.pop(index)
        return self.inner.run_next(index)

    def run_all(self) -> None:
        while self.pending:
            self.run_next()

    def drop_next(self, *, execute: bool, index: int = 0) -> None:
        self._calls.pop(index)
        self._done.pop(index)
        self.inner.drop_next(execute=execute, index=index)

    def time_out(self, *, execute: bool, index: int = 0) -> None:
        self._calls.pop(index)
        done = self._done.pop(index)
        self.inner.drop_next(execute=execute, index=index)
        done(_lost_reply())

    def is_record_write(self, index: int) -> bool:
        """True if the pending call ``index`` is a transform of a record (not the lease)."""
        return isinstance(getattr(self._calls[index], "request", None), Update)

    def time_out_late(self, index: int = 0) -> Callable[[], object]:
        call = self._calls.pop(index)
        done = self._done.pop(index)
        self.inner.drop_next(execute=False, index=index)
        done(_lost_reply())
        return call


def _lost_reply() -> StoreError:
    return StoreError("timed out: reply lost", retryable=True, unknown_outcome=True)


@dataclass(frozen=True)
class Commit:
    """One committed write: who sent it, where, and the record it wrote."""

    writer: str
    key: str
    revision: int
    value: bytes


@dataclass
class CommitLog:
    """Every committed record write, in commit order (the store is single-threaded here)."""

    commits: list[Commit] = field(default_factory=list)
    listeners: list[Callable[[Commit], None]] = field(default_factory=list)

    def add(self, commit: Commit) -> None:
        self.commits.append(commit)
        for listener in self.listeners:
            listener(commit)


class RecordingStore:
    """One writer's view of a shared ``MemoryStore`` that logs each committed write.

    Each service gets its own view, so the log knows which session sent each write.
    """

    def __init__(self, inner: MemoryStore, log: CommitLog, writer: str) -> None:
        self.inner = inner
        self.log = log
        self.writer = writer

    def _logged(self, key: str, value: bytes, revision: int) -> None:
        if not key.startswith(MAILBOXES):  # a mailbox is a hint, not a record
            self.log.add(Commit(self.writer, key, revision, value))

    def read(self, key: str) -> Versioned | None:
        return self.inner.read(key)

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        revision = self.inner.write(key, value, expected, notify=notify)
        self._logged(key, value, revision)
        return revision

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        result = self.inner.update(key, transform, known)
        if result.wrote:
            current = result.current
            assert current is not None
            self._logged(key, current.value, current.revision)
        return result

    def delete(self, key: str, expected: int | None = None) -> bool:
        if key.startswith(MAILBOXES):  # emptied once read
            return self.inner.delete(key, expected)
        raise AssertionError("the race tests never delete records")

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self.inner.keys(prefix)

    def put_session(self, session_id: str, ttl: float, info: bytes) -> None:
        self.inner.put_session(session_id, ttl, info)

    def get_session(self, session_id: str) -> SessionView:
        return self.inner.get_session(session_id)

    def drop_session(self, session_id: str) -> None:
        self.inner.drop_session(session_id)

    def close(self) -> None:
        """Views share the store; closing one view closes nothing."""
