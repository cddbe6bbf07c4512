"""Test doubles for the race tests: a shared true time, skewed clocks, an executor that
can lose replies, and a store wrapper that logs every committed write.

Nothing here changes behaviour of the library; it only observes it or decides when a
store call runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sessionlocker import Locker, Status
from sessionlocker.core.protocol import LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.core.record import Record, decode
from sessionlocker.drivers.mailbox import PREFIX as MAILBOXES
from sessionlocker.errors import StoreError
from sessionlocker.stores import MemoryStore
from sessionlocker.stores.base import Outcome
from sessionlocker.testing import ManualExecutor

T = TypeVar("T")
ENDED = frozenset({Status.IDLE, Status.LOST, Status.FAILED})


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

    def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """The memory store's batch (one lock hold), each committed write logged: the
        race machine's frames send their updates together, as on a real backend."""
        results = self.inner.update_many(updates)
        for update, result in zip(updates, results, strict=True):
            if isinstance(result, Updated) and result.wrote:
                current = result.current
                assert current is not None
                self._logged(update.key, current.value, current.revision)
        return results

    def delete(self, key: str, expected: int | None = None) -> bool:
        if key.startswith(MAILBOXES):  # emptied once read
            return self.inner.delete(key, expected)
        raise AssertionError("the race tests never delete records")

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self.inner.keys(prefix)

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        self.inner.put_lease(lease_id, ttl, info)

    def get_lease(self, lease_id: str) -> LeaseView:
        return self.inner.get_lease(lease_id)

    def drop_lease(self, lease_id: str) -> None:
        self.inner.drop_lease(lease_id)

    def close(self) -> None:
        """Views share the store; closing one view closes nothing."""


@dataclass
class Window:
    """A force request against a loaded holder, from its commit until the lock leaves
    the record (or, after a cooperative handoff, until the holder's locker ends)."""

    holder: str
    taker: str
    #: true time the request committed
    opened: float
    #: The holder or the taker was frozen (true time moved while it ran no frames) or
    #: cut off (a call of theirs lost, held back or hung) since the window opened.
    disturbed: bool = False


@dataclass
class ForceWindows:
    """Checks that every force against a live, driven holder ends in a cooperative
    handoff unless the holder (or the taker, whose notice tells it) was frozen or cut off:
    the holder's own write clears its lock with every change its locker made, and its
    locker then never ends ``lost``.

    ``locker_of(session, store key)`` is that live session's locker for the key (None
    if it has none, or the session is dead); ``made`` maps (session, store
    key) to the tokens its current locker made; ``modes`` to the mode it loads with.
    The machine calls ``disturb`` for each step that freezes or cuts off a session.
    """

    locker_of: Callable[[str, str], Locker | None]
    made: dict[tuple[str, str], list[str]]
    modes: dict[tuple[str, str], str]
    #: true time, and the least true time a taker waits before it forces (its timer may
    #: have started before its request committed: then the holder had less, exempt)
    now: Callable[[], float]
    patience: float
    problems: list[str] = field(default_factory=list)
    #: (store key, holder epoch) -> the force request on it
    open: dict[tuple[str, int], Window] = field(default_factory=dict)
    #: (holder, store key) -> the window its cooperative handoff closed
    handed: dict[tuple[str, str], Window] = field(default_factory=dict)
    #: how many windows ended each way (to show the check is exercised)
    cooperative: int = 0
    undisturbed: int = 0

    def disturb(self, *sessions: str) -> None:
        """``sessions`` (all, if none named) were frozen or cut off just now."""
        for window in [*self.open.values(), *self.handed.values()]:
            if not sessions or window.holder in sessions or window.taker in sessions:
                window.disturbed = True

    def on_commit(self, commit: Commit) -> None:
        rec = decode(commit.value)
        key, lock = commit.key, rec.lock
        for (store_key, epoch), window in list(self.open.items()):
            if store_key != key or (lock is not None and lock.epoch == epoch):
                continue
            del self.open[(store_key, epoch)]
            self._closed(window, commit, rec, epoch)
        if lock is None or not rec.release_requests or commit.writer == lock.session:
            return
        if self.modes.get((commit.writer, key)) != "force" or (key, lock.epoch) in self.open:
            return
        holder = self.locker_of(lock.session, key)
        if holder is not None and holder.token == lock.epoch and holder.status is Status.LOADED:
            self.open[(key, lock.epoch)] = Window(lock.session, commit.writer, self.now())

    def _closed(self, window: Window, commit: Commit, rec: Record, epoch: int) -> None:
        key, holder = commit.key, window.holder
        if rec.lock is None and commit.writer == holder:
            self.cooperative += 1
            self.undisturbed += not window.disturbed
            tokens = rec.data["tokens"]
            missing = [t for t in self.made.get((holder, key), []) if t not in tokens]
            if missing:
                self.problems.append(
                    f"{holder} handed {key} (epoch {epoch}) off without its changes {missing}"
                )
            self.handed[(holder, key)] = window
        elif rec.lock is not None and not window.disturbed:
            if self.now() - window.opened < self.patience:
                return  # the taker's force timeout began before its request committed
            if self.modes.get((commit.writer, key)) == "steal":
                return  # a steal takes without asking, by design
            locker = self.locker_of(holder, key)
            if locker is not None and locker.token == epoch and locker.status not in ENDED:
                self.problems.append(
                    f"{commit.writer} took {key} epoch {epoch} from {holder}, live and "
                    f"driven throughout its force window, without a handoff"
                )

    def ended(self, session: str, store_key: str, name: str) -> None:
        """The locker of ``session`` for ``store_key`` ended with event ``name``."""
        window = self.handed.pop((session, store_key), None)
        if window is not None and name == "lost" and not window.disturbed:
            self.problems.append(f"{session} handed {store_key} off but ended lost")
