"""``LockerService``: the frame-loop driver of the core, and the blocking easy API.

One service is one session (one lease) on one store for one ``Spec``. Call
``update()`` every frame from one thread: it feeds finished store calls back to their
lockers, renews the lease when due, and advances only the lockers whose deadline has
come (a heap), so an idle locker costs nothing per frame. Store calls run on a small
thread pool and never block the frame.

``session(key)`` is the blocking convenience for scripts: it drives the service itself
until the locker is loaded, yields it, then saves and releases on exit.

With a store that notifies (``Notifying``: Redis, PostgreSQL, memory), the service
watches the keys of its live lockers, so a holder sees a release request or a remote
change, and a waiter sees a release, as soon as it is written; polling at the usual
periods stays as the fallback, so a lost notification costs only time.

Remote changes: ``on_message(kind, handler)`` says how this service's lockers apply
messages of a kind; ``send(key, kind, body)`` appends one to any record's inbox
without its lock.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, Self, TypeVar

from sessionlocker.core import transforms as tx
from sessionlocker.core.lease import Lease
from sessionlocker.core.locker import Handler, Locker
from sessionlocker.core.modes import LoadMode, Mode
from sessionlocker.core.protocol import Request, Update, Updated, Versioned
from sessionlocker.core.spec import D, Spec, check_key
from sessionlocker.core.states import Status
from sessionlocker.drivers.alerts import HealthAlerts
from sessionlocker.drivers.closing import (
    CLOSE_MARGIN,
    CloseReport,
    exit_error,
    run_within,
    watch_final_save,
)
from sessionlocker.drivers.delivery import Delivery, deliver_now
from sessionlocker.drivers.executor import (
    Executor,
    GuessedCall,
    InlineExecutor,
    StoreBatch,
    StoreCall,
    ThreadExecutor,
    execute,
    sync_store,
)
from sessionlocker.drivers.health import StoreFailure, StoreHealth
from sessionlocker.drivers.last_written import LastWritten
from sessionlocker.drivers.mailbox import Collect, Mail, Tell, addressee
from sessionlocker.drivers.reads import StoreReads
from sessionlocker.drivers.renamed import LeaseIdAlias, lease_id_of
from sessionlocker.drivers.telemetry import Telemetry
from sessionlocker.errors import (
    AlreadyOpen,
    LockUnavailable,
    StoreError,
    UsageError,
)
from sessionlocker.metrics import Metrics
from sessionlocker.stores import AsyncStore, ReadOnlyStore, Store, open_store
from sessionlocker.stores.base import Notifying, Watch, batches, is_async

__all__ = ["LockerService"]

_Owner = Locker[Any] | Lease | str | Tell | Collect
_LIVE = frozenset({Status.LOADING, Status.WAITING, Status.LOADED, Status.RELEASING})
_TICK = 0.05
#: Keys a service keeps watching after their locker ended, for the next session of the
#: same key (a subscription each is all it costs the store).
KEPT_WATCHES = 1024
#: The smallest batch a frame's updates are split into (see ``_parts``).
_MIN_PART = 32
T = TypeVar("T")


class LockerService(HealthAlerts, LeaseIdAlias, StoreReads[D], Generic[D]):
    """Owns the lockers of one ``Spec`` on one store, under one lease.

    Generic in the spec's data type: ``locker()`` and ``session()`` give ``Locker[D]``.

    ``store`` is a ``Store`` or a URL for ``open_store`` (then the service closes it).
    An ``AsyncStore`` is taken only with an ``executor`` that awaits its requests
    (``AsyncExecutor``: what ``AsyncLockerService`` does); the helpers that call the
    store themselves (``send``, ``view``, ``history``, ``keys_for_user``, the lease drop
    of ``close``) then raise ``UsageError``: their awaitable twins are on
    ``AsyncLockerService``.
    With ``read_only`` every write stays in this process (``ReadOnlyStore``): loads,
    migrations and saves run as usual and the store is never changed.
    ``clock`` (monotonic seconds) and ``wall`` (epoch seconds, only for timestamps in
    records) default to the ``time`` module's; tests pass their own.
    ``on_work`` is called, from any thread, whenever a frame has new work (a result, a
    notification, a woken locker): a driver that sleeps between frames (the asyncio
    one) uses it to wake up.
    ``metrics`` receives the service's metrics (``sessionlocker.metrics``); log lines go
    to the ``sessionlocker.service`` and ``sessionlocker.locker`` loggers.
    Store health (``drivers.health``): the service is ``critical`` once
    ``critical_errors`` store calls of its frames failed within ``critical_window``
    seconds, until one succeeds; ``on_critical`` and ``on_store_error`` call back.
    """

    def __init__(
        self,
        store: Store | AsyncStore | str,
        spec: Spec[D],
        lease_id: str | None = None,
        clock: Callable[[], float] | None = None,
        *,
        wall: Callable[[], float] | None = None,
        executor: Executor | None = None,
        workers: int = 4,
        read_only: bool = False,
        on_work: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
        critical_errors: int = 5,
        critical_window: float = 30.0,
        session_id: str | None = None,
    ) -> None:
        lease_id = lease_id_of(lease_id, session_id)
        if not isinstance(spec, Spec):
            raise UsageError(f"spec must be a sessionlocker.Spec, not {type(spec).__name__}")
        self._owns_store = isinstance(store, str)
        #: The store the frames' requests go to: ``store``, sync or async.
        self.target: Store | AsyncStore = open_store(store) if isinstance(store, str) else store
        if read_only:
            self.target = ReadOnlyStore(sync_store(self.target))
        if executor is None and is_async(self.target):
            raise UsageError("an AsyncStore's requests are awaited: use AsyncLockerService")
        self.spec = spec
        self.lease_id = lease_id or _new_lease_id()
        self.clock = clock or time.monotonic
        info = json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode()
        self.wall = wall or time.time
        self.lease = Lease(self.lease_id, spec.lease, info, clock=self.clock, wall=self.wall)
        self._executor = executor or ThreadExecutor(workers)
        # The lease renewal gets a thread of its own: queued behind a burst of lockers'
        # calls it could come too late and lapse the lease (every lock re-checked).
        self._lease_executor = self._executor if executor else ThreadExecutor(1)
        #: Whether a frame's record updates go to the store together (``update_many``);
        #: a store that does not batch (a wrapper) gets them one call each, in parallel.
        self._batches = batches(self.target)
        #: Into how many batches, run side by side, a large frame's updates are split:
        #: one per worker, so a server that runs each connection's statements in turn
        #: (PostgreSQL) works on as many of them at once as without batches.
        self._workers = workers
        #: Where ``run_until`` without a deadline runs the lockers' calls: on its own
        #: thread (a sync store and the default pool only: a given executor decides).
        self._inline: Executor | None = None
        if executor is None and not is_async(self.target):
            self._inline = InlineExecutor()
        #: Whether an update starts from this service's last write (``_call``): on the
        #: default pool, or on an async store (``AsyncExecutor`` awaits a ``GuessedCall``).
        self._guesses = self._inline is not None or is_async(self.target)
        self._lockers: dict[str, Locker[D]] = {}
        self._heap: list[tuple[float, int, Locker[D]]] = []
        self._scheduled: dict[Locker[D], float] = {}
        self._order = itertools.count()
        #: The revision each live locker's record was last written at by its own request
        #: (set by the worker thread before the result is queued): a store's wake-up for
        #: that revision is dropped, as the locker would ignore it anyway (it sees the
        #: revision in the result), and waking the frame loop for it costs a save time.
        self._own_writes: dict[str, Versioned] = {}
        #: What this service wrote last to records it let go (``drivers.last_written``).
        self._last_written = LastWritten()
        self._done: queue.SimpleQueue[tuple[_Owner, object, Request | None]] = queue.SimpleQueue()
        #: Reads this session's mailbox once per lease renewal (see ``drivers.mailbox``).
        self._collect = Collect(self.target, self.lease_id)
        #: Posts to other sessions' mailboxes that failed, sent again at the next renewal.
        self._untold: set[Tell] = set()
        #: Posts of a ``force`` waiter's release request, held back while the store
        #: notifies (``_after_update``): sent if its next look still finds the record held.
        self._held_back: dict[Locker[D], Tell] = {}
        self._watch: Watch | None = None
        #: Keys still watched after their locker ended, oldest first (see ``KEPT_WATCHES``).
        self._kept: dict[str, None] = {}
        if isinstance(self.target, Notifying):
            self._watch = self.target.watch(self._woken)
        self._handlers: dict[str, Handler] = {}
        self.health = StoreHealth(critical_errors, critical_window)
        self._on_critical: list[Callable[[bool], None]] = []
        self._on_store_error: list[Callable[[StoreFailure], None]] = []
        self._signal = threading.Event()
        self._on_work = on_work
        self._inflight = 0
        self._closed = False
        self._report = CloseReport(released=True)
        self._telemetry = Telemetry(metrics, self.lease_id)
        self.metrics = self._telemetry.metrics
        self._telemetry.service_event(
            logging.INFO, "started on %r (%s)", self.target, spec.namespace
        )

    @property
    def store(self) -> Store:
        """The sync store (``target``); ``UsageError`` when the service's store is async."""
        return sync_store(self.target)

    # ------------------------------------------------------------------ lockers

    def locker(self, key: str) -> Locker[D]:
        """A new locker for ``key`` (call ``acquire()`` on it). ``AlreadyOpen`` if one is live."""
        self._check_open()
        check_key(key)
        if key in self._lockers:
            raise AlreadyOpen(f"{key!r} is already open in session {self.lease_id}")
        locker = Locker(key, self.spec, self.lease, host=self, handlers=self._handlers)
        self._telemetry.attach(locker)
        return locker

    def get(self, key: str) -> Locker[D] | None:
        """The live locker for ``key`` (loading, loaded or releasing), if any."""
        return self._lockers.get(key)

    def lockers(self) -> list[Locker[D]]:
        """Every live locker."""
        return list(self._lockers.values())

    def on_message(self, kind: str, handler: Handler) -> None:
        """Apply inbox messages of ``kind`` with ``handler(locker, message)``.

        The handler changes ``locker.data`` (it may also use the locker's credit and
        ``send``); its effect and the message's removal are saved in one write, so each
        message is applied exactly once. A message of a kind with no handler stays in
        the inbox (code that knows the kind may handle it later) and is reported through
        the locker's ``error`` event. One handler per kind; registering again replaces it.
        """
        if not isinstance(kind, str) or not kind:
            raise UsageError(f"a message kind must be a non-empty string, not {kind!r}")
        if not callable(handler):
            raise UsageError(f"a message handler must be callable, not {handler!r}")
        self._handlers[kind] = handler

    def send(
        self, key: str, kind: str, body: Any, *, id: str | None = None, timeout: float = 10.0
    ) -> str:
        """Append a message to ``key``'s inbox now, whoever holds it; returns its id.

        Neither the lock nor the data is touched; the holder (or the next loader)
        applies it once through its ``on_message`` handler. A missing record is created
        with fresh data. Blocks for one store round trip, retrying retryable store
        errors with backoff for up to ``timeout`` seconds; sending the same ``id`` again
        (after an error whose outcome is unknown) never delivers it twice. Safe to call
        from any thread. Raises ``StoreError``, or a ``DataError`` when the record is
        unreadable or would grow over ``Spec.max_record_bytes``.
        """
        self._check_open()
        delivery = Delivery.build(self.spec, key, kind, body, id=id, now=self.wall())
        outcome = deliver_now(self.store, delivery, timeout, self.clock).outcome
        message_id = self.delivered(delivery, outcome)
        tell = self.to_tell(delivery, outcome)
        if tell is not None and isinstance(execute(self.store, tell.request()), StoreError):
            self.untold(tell)
        return message_id

    def delivered(self, delivery: Delivery, outcome: tx.DeliverOutcome) -> str:
        """After a ``send`` committed: its verdict, and a local holder pokes its record."""
        message_id = delivery.verdict(outcome)
        self._woken(delivery.store_key)  # the frame thread pokes a local holder
        return message_id

    def to_tell(self, delivery: Delivery, outcome: tx.DeliverOutcome) -> Tell | None:
        """After a ``send``: the other session holding the record, whose mailbox the
        sender posts the key to (so the holder applies the message soon), if any."""
        holder = addressee(outcome, self.lease_id)
        return None if holder is None else Tell(holder, delivery.store_key)

    def untold(self, tell: Tell) -> None:
        """From any thread: a post to a mailbox failed; the frames send it again."""
        self._done.put((tell, None, None))
        self._work_arrived()

    def opening(self, locker: Locker[D]) -> None:
        """Host hook: register ``locker`` before it acquires (one live locker per key)."""
        self._check_open()
        current = self._lockers.get(locker.key)
        if current is not None and current is not locker:
            raise AlreadyOpen(f"{locker.key!r} is already open in session {self.lease_id}")
        self._lockers[locker.key] = locker
        if self._watch is not None:
            self._kept.pop(locker.store_key, None)
            self._watch.add(locker.store_key)  # nothing to do when the key was kept

    def wake(self, locker: Locker[D]) -> None:
        """Host hook: look at ``locker`` at the next frame."""
        self._telemetry.track(locker)
        self._schedule(locker)
        if self._on_work is not None:
            self._on_work()

    # ------------------------------------------------------------------ frames

    def update(self, now: float | None = None, *, executor: Executor | None = None) -> None:
        """Run one frame: results in, lease renewal, due lockers advanced.

        ``executor``: where this frame's locker calls go instead of the service's own,
        for a caller that awaits them itself (``AsyncLockerService.wait_until``), which
        then ends the frame with ``take_results``."""
        self._frame(executor or self._executor, now)

    def take_results(self) -> None:
        """Take the results that came in: those of a frame whose calls its caller awaited."""
        self._take_results(self.clock())

    def has_work(self, now: float) -> bool:
        """Whether a frame at ``now`` has work: a result came in, or a deadline came."""
        upcoming = self.next_deadline()
        return not self._done.empty() or (upcoming is not None and upcoming <= now)

    @property
    def in_flight(self) -> int:
        """How many store calls of the frames have not been taken back."""
        return self._inflight

    def _frame(self, executor: Executor, now: float | None = None) -> None:
        """One frame, the lockers' store calls run by ``executor``; when it runs them
        on this thread, their results are taken in this same frame."""
        now = self.clock() if now is None else now
        self._take_results(now)
        renewal = self.lease.update(now)
        if renewal is not None:
            self._submit(self.lease, renewal)
            self._check_mail()
        heap = self._heap
        batch: list[tuple[Locker[D], Update[Any]]] = []
        while heap and heap[0][0] <= now:
            due, _, locker = heapq.heappop(heap)
            if self._scheduled.get(locker) != due:
                continue
            del self._scheduled[locker]
            for request in locker.update(now):
                if isinstance(request, Update):
                    batch.append((locker, request))
                else:
                    self._submit(locker, request, executor)
            self._settle(locker)
        if len(batch) > 1 and self._batches:
            for part in _parts(batch, 1 if executor is self._inline else self._workers):
                self._submit_batch(part, executor)
        else:
            for locker, request in batch:
                self._submit(locker, request, executor)
        if executor is self._inline:
            self._take_results(now)

    def next_deadline(self) -> float | None:
        """The earliest time a frame has work (``None``: only I/O results will bring work)."""
        candidates = [
            d
            for d in (self.lease.next_deadline(), self._heap[0][0] if self._heap else None)
            if d is not None
        ]
        return min(candidates) if candidates else None

    def _take_results(self, now: float) -> None:
        while True:
            try:
                owner, result, request = self._done.get_nowait()
            except queue.Empty:
                return
            if isinstance(owner, str):  # a record was written (a notification, or a send)
                self._notice(owner, result if isinstance(result, int) else None)
            elif isinstance(owner, Tell) and result is None:  # a failed post, to send again
                self._tell(owner)
            else:
                self._inflight -= 1
                self._take_result(owner, result, request, now)

    def _take_result(
        self,
        owner: Locker[D] | Lease | Tell | Collect,
        result: object,
        request: Request | None,
        now: float,
    ) -> None:
        if isinstance(owner, Tell):
            self._checked("mailbox", None, result, now)
            if isinstance(result, StoreError):
                self._untold.add(owner)
        elif isinstance(owner, Collect):
            if isinstance(result, Mail):
                for error in result.errors:
                    self._telemetry.failed(error, "reading our mailbox", None)
                    self._checked("mailbox", None, error, now)
                if not result.errors:
                    self._checked("mailbox", None, result, now)
                for store_key in result.keys:
                    self._notice(store_key, None)
        elif isinstance(owner, Lease):
            gaps = owner.gaps
            owner.handle(result if isinstance(result, StoreError) else None, now)
            self._checked("lease", None, result, now)
            if owner.gaps != gaps:  # the lease lapsed: every lock must be checked again
                self._telemetry.service_event(logging.WARNING, "lease lapsed; rechecking locks")
                for locker in list(self._lockers.values()):
                    locker.poke()
        else:
            kind = owner.request_in_flight
            owner.handle(result, now)
            self._checked(kind, owner.key, result, now)
            self._settle(owner)
            if isinstance(request, Update):
                self._after_update(owner, request, result)

    def _after_update(self, locker: Locker[D], request: Update[object], result: object) -> None:
        """Tell another session's process what this result says it must look at, and
        poke a local locker of another record this one delivered to. Where the store
        notifies, a release request's post is held back (the holder hears the
        notification; a post at once competes with the handoff it asks for) and sent if
        the waiter's next poll still finds the record held."""
        outcome = result.outcome if isinstance(result, Updated) else None
        held_back = self._held_back.pop(locker, None)
        if held_back is not None and isinstance(outcome, tx.Held):
            self._tell(held_back)
        told = addressee(outcome, self.lease_id)
        asked = isinstance(outcome, tx.Requested | tx.Held)  # a release request of ours
        if told is not None and asked and self._watch is not None:
            self._held_back[locker] = Tell(told, request.key)
        elif told is not None:
            self._tell(Tell(told, request.key))
        if request.key != locker.store_key:
            self._notice(request.key, None)  # a delivery to another record

    def _check_mail(self) -> None:
        """With each lease renewal: read our mailbox, and post again what failed."""
        self._inflight += 1
        self._lease_executor.submit(self._collect, self._finished(self._collect, None))
        untold, self._untold = self._untold, set()
        for tell in untold:
            self._tell(tell)

    def _tell(self, tell: Tell) -> None:
        """Post ``tell.store_key`` to the mailbox of ``tell.session`` (it must look)."""
        self._inflight += 1
        request = tell.request()
        self._executor.submit(StoreCall(self.target, request), self._finished(tell, request))

    def _finished(self, owner: _Owner, request: Request | None) -> Callable[[object], None]:
        started = self.clock()

        def done(result: object) -> None:
            if request is not None:
                self._telemetry.finished(request, result, self.clock() - started)
            self._done.put((owner, result, request))
            self._work_arrived()

        return done

    def _woken(self, store_key: str, revision: int | None = None) -> None:
        """From any thread: the record at ``store_key`` was written."""
        own = self._own_writes.get(store_key)
        if revision is not None and own is not None and own.revision == revision:
            return  # our own write: its result tells the locker already
        self._last_written.written(store_key, revision)
        if store_key in self._kept:
            return  # no live locker (one opening later reads the record anyway)
        self._done.put((store_key, revision, None))
        # Checked after the put: a locker with a request out gets its result, whose
        # wake-up runs the frame that takes this too (often our own write's echo).
        prefix = f"{self.spec.namespace}/"
        locker = self._lockers.get(store_key[len(prefix) :])
        if not (store_key.startswith(prefix) and locker is not None and locker.request_in_flight):
            self._work_arrived()

    def _work_arrived(self) -> None:
        self._signal.set()
        if self._on_work is not None:
            self._on_work()

    def _notice(self, store_key: str, revision: int | None) -> None:
        """The record changed; if a live locker here has it, it looks again."""
        prefix = f"{self.spec.namespace}/"
        if not store_key.startswith(prefix):
            return
        locker = self._lockers.get(store_key[len(prefix) :])
        if locker is not None:
            locker.notice(revision)
            self._schedule(locker)

    def _submit(
        self, owner: Locker[D] | Lease, request: Request, executor: Executor | None = None
    ) -> None:
        self._inflight += 1
        started = self.clock()

        def done(result: object) -> None:
            self._telemetry.finished(request, result, self.clock() - started)
            self._note_own_write(owner, request, result)
            self._done.put((owner, result, request))
            self._work_arrived()

        if owner is self.lease:
            executor = self._lease_executor
        executor = executor or self._executor
        executor.submit(self._call(request), done)

    def _call(self, request: Request) -> StoreCall | GuessedCall:
        """The call of ``request``: an update of a record this service wrote last
        starts from what it wrote (see ``drivers.last_written``)."""
        if isinstance(request, Update) and request.known is None and self._guesses:
            guess = self._last_written.take(request.key)
            if guess is not None:
                return GuessedCall(self.target, request, guess)
        return StoreCall(self.target, request)

    def _submit_batch(self, batch: list[tuple[Locker[D], Update[Any]]], executor: Executor) -> None:
        """The record updates of one frame, sent to the store together (``StoreBatch``);
        each result is taken as if its request had gone alone."""
        self._inflight += len(batch)
        started = self.clock()

        def done(results: object) -> None:
            seconds = self.clock() - started
            if not isinstance(results, list):  # an executor's error for the whole call
                results = [results] * len(batch)
            for (locker, request), result in zip(batch, results, strict=True):
                self._telemetry.finished(request, result, seconds)
                self._note_own_write(locker, request, result)
                self._done.put((locker, result, request))
            self._work_arrived()

        updates = tuple(request for _, request in batch)
        executor.submit(StoreBatch(self.target, updates), done)

    def _note_own_write(self, owner: Locker[D] | Lease, request: Request, result: object) -> None:
        """From a worker thread: the revision a locker's write of its own record made."""
        if not (isinstance(owner, Locker) and isinstance(request, Update)):
            return
        if not (isinstance(result, Updated) and result.wrote and result.current is not None):
            return
        # A delivery to its own record is left out: the locker learns of the message in
        # its inbox from the wake-up (as ``Locker.handle`` does not count that revision).
        if request.key == owner.store_key and not isinstance(result.outcome, tx.Delivered):
            self._own_writes[request.key] = result.current

    def _settle(self, locker: Locker[D]) -> None:
        self._telemetry.track(locker)
        if locker.status in _LIVE:
            self._schedule(locker)
            return
        if self._scheduled.pop(locker, None) is not None:
            self._compact()
        if self._lockers.get(locker.key) is locker:
            del self._lockers[locker.key]
            last = self._own_writes.pop(locker.store_key, None)
            if last is not None and self._guesses:
                self._last_written.keep(locker.store_key, last)
            self._held_back.pop(locker, None)
            if self._watch is not None:
                self._keep_watch(locker.store_key)

    def _keep_watch(self, store_key: str) -> None:
        """Keep watching a key whose locker ended (on Redis a session then costs no
        SUBSCRIBE, revision read and UNSUBSCRIBE); past ``KEPT_WATCHES``, drop the oldest."""
        self._kept[store_key] = None
        if len(self._kept) > KEPT_WATCHES and self._watch is not None:
            oldest = next(iter(self._kept))
            del self._kept[oldest]
            self._watch.discard(oldest)

    def _schedule(self, locker: Locker[D]) -> None:
        due = locker.next_deadline()
        if due is None:
            self._scheduled.pop(locker, None)
            return
        if self._scheduled.get(locker) == due:
            return
        self._scheduled[locker] = due
        heapq.heappush(self._heap, (due, next(self._order), locker))
        self._compact()

    def _compact(self) -> None:
        """Drop the heap's stale entries (a locker rescheduled or ended leaves its old
        one behind, holding the locker and its data until that time comes: an hour
        for an autosave) once they outnumber the live ones: amortized O(1) per entry."""
        heap = self._heap
        if len(heap) > 2 * len(self._scheduled) + 64:
            scheduled = self._scheduled
            heap[:] = [entry for entry in heap if scheduled.get(entry[2]) == entry[0]]
            heapq.heapify(heap)

    # ------------------------------------------------------------------ blocking helpers

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Drive frames until ``done()`` is true (True) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else self.clock() + timeout
        # Without a deadline the caller waits for the store anyway: the lockers' calls
        # run here (no thread hop, one frame per save). With one, they stay on the pool,
        # so a store that hangs cannot hold the caller past it.
        executor = self._inline if deadline is None and self._inline else self._executor
        while True:
            self._signal.clear()
            self._frame(executor)
            if done():
                return True
            now = self.clock()
            if deadline is not None and now >= deadline:
                return False
            wait = _TICK
            upcoming = self.next_deadline()
            if upcoming is not None:
                wait = min(wait, max(0.0, upcoming - now))
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            self._signal.wait(wait)

    @contextmanager
    def session(
        self, key: str, mode: Mode = LoadMode.REPEAT, timeout: float | None = None
    ) -> Iterator[Locker[D]]:
        """Load ``key``, yield its loaded locker, then save and release it.

        Raises instead of yielding when the load fails: ``LockUnavailable`` on timeout
        or cancel, ``CorruptRecord`` (or another data error) when the record is refused.
        On exit, raises ``LockLost`` if the lock was lost, or the data error that kept
        the final save from being written (the store then keeps its last good value).
        The final save happens also when the body raised. A release request another
        session writes meanwhile is honoured by that final save, not within the block.
        A key already open in this service raises ``AlreadyOpen``: this blocking helper
        does not queue callers (``AsyncLockerService.session`` does).
        """
        if timeout is not None and timeout <= 0:
            raise UsageError(f"timeout must be positive seconds or None, not {timeout!r}")
        if key in self._lockers:
            raise AlreadyOpen(
                f"{key!r} is already open in session {self.lease_id}; the blocking "
                "session() cannot wait for it (one thread drives the service, so a nested "
                "session would wait for itself): AsyncLockerService.session() queues callers"
            )
        locker = self.locker(key)
        locker.defer_release_requests = True  # honoured when the block ends, not within it
        locker.acquire(mode)
        loaded = self.run_until(
            lambda: locker.status not in (Status.LOADING, Status.WAITING), timeout
        )
        if not loaded or locker.status is not Status.LOADED:
            locker.release()
            self.run_until(lambda: locker.status not in _LIVE)
            if not loaded:
                raise LockUnavailable(f"{key!r} could not be loaded within {timeout} s")
            raise locker.error or LockUnavailable(f"{key!r} could not be loaded")
        try:
            yield locker
        finally:
            final = watch_final_save(locker)
            locker.release()
            self.run_until(lambda: locker.status not in _LIVE)
        error = exit_error(locker, final)
        if error is not None:
            raise error

    def close(self, timeout: float = 10.0) -> CloseReport:
        """Save and release every locker within ``timeout`` seconds, then end the lease.

        Returns within ``timeout`` plus ``CLOSE_MARGIN`` (half a second) whatever the
        store does, with a ``CloseReport``: true when every locker was released in time,
        and naming the keys abandoned to the lease and whether the lease was dropped.
        Idempotent: a second call returns the first report.
        """
        if self._closed:
            return self._report
        started = time.monotonic()
        for locker in list(self._lockers.values()):
            locker.release(shutdown=True)
        released = self.run_until(self.drained, timeout)
        abandoned = tuple(sorted(self._lockers))
        self._closed = True
        left = timeout + CLOSE_MARGIN - (time.monotonic() - started)
        dropped = run_within(lambda: self._end(released), left, "close")
        self._report = CloseReport(
            released=released, abandoned=abandoned, lease_dropped=dropped == [True]
        )
        return self._report

    def _end(self, released: bool) -> bool:
        """Drop the lease and stop: ``close`` after the frames (on a thread of its own).
        True when the lease was dropped."""
        request = self.end_lease(released)
        started = self.clock()
        result = execute(self.store, request)
        self.finish_close(request, result, self.clock() - started)
        return not isinstance(result, StoreError)

    def drained(self) -> bool:
        """No live locker and no store call in flight: the frames have nothing left."""
        return not self._lockers and self._inflight == 0

    def end_lease(self, released: bool) -> Request:
        """The first half of ``close`` once the frames are done (``released``: in time):
        the service is closed, nothing is watched; returns the request that drops the
        lease, for the caller to run on the store and hand to ``finish_close``."""
        self._closed = True
        if self.health.critical:  # a closed service is not counted as critical any more
            self.metrics.add("store_critical", -1)
        self._telemetry.service_event(logging.INFO, "closed (every locker released: %s)", released)
        if self._watch is not None:
            self._watch.close()
        return self.lease.close()

    def finish_close(self, request: Request, result: object, seconds: float) -> None:
        """The second half of ``close``: note the lease drop's ``result`` (a failure is
        harmless, the lease expires by itself after one TTL), stop the executor and close
        the store if the service opened it."""
        self._telemetry.finished(request, result, seconds)
        self._executor.shutdown()
        if self._lease_executor is not self._executor:
            self._lease_executor.shutdown()
        if self._owns_store:
            self.store.close()

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"service {self.lease_id} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        live = len(self._lockers)
        return f"<LockerService {self.spec.namespace!r} session={self.lease_id} live={live}>"


def _parts(batch: list[T], count: int) -> list[list[T]]:
    """``batch`` in at most ``count`` parts of about equal size, in order, none smaller
    than ``_MIN_PART`` (a small frame stays one batch)."""
    count = max(1, min(count, len(batch) // _MIN_PART))
    size = -(-len(batch) // count)
    return [batch[start : start + size] for start in range(0, len(batch), size)]


def _new_lease_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
