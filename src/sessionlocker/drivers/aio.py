"""``AsyncLockerService``: the asyncio driver of the core.

It does not re-implement the frame loop: it owns a ``LockerService`` (the deadline
heap, lease renewal, notifications, ``send`` and ``on_message`` are all there) and
runs its frames from one background task on the event loop instead of from a blocking
``run_until``. With an ``AsyncStore`` (or a URL, opened with ``open_async_store``) the
frames run against the async store itself: their store requests, the mailbox reads,
``send`` and the lease drop at ``aclose`` are awaited on the loop (``AsyncExecutor``);
a sync ``Store``'s calls run on the service's thread pool. A
finished call, a notification or a woken locker wakes the frame task at once through
the service's ``on_work`` hook, and the task otherwise sleeps until the next deadline.

Waiting is frame-driven: a waiter registers its condition and a future, and after
each frame the task checks every registered condition and resolves only the futures
whose condition holds. Checking a condition is a function call; waking a coroutine
is a trip through the event loop, so with 1,000 waiters waking each of them after
every frame made a run quadratic (1,000 sessions on SQLite took minutes, not
seconds). So ``session()``, ``Profile.saved()`` and ``wait_until`` never touch a store
themselves, and a cancelled waiter leaves nothing behind but the intent it declared
(a release), which the frames carry out.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Self

from sessionlocker.core.locker import Handler, Locker
from sessionlocker.core.modes import LoadMode, Mode, check_mode
from sessionlocker.core.snapshot import Snapshot
from sessionlocker.core.spec import D, Spec, check_key
from sessionlocker.core.states import Status
from sessionlocker.drivers.aio_executor import AsyncExecutor, Collected, aexecute
from sessionlocker.drivers.closing import (
    CLOSE_MARGIN,
    CloseReport,
    exit_error,
    thread_within,
    watch_final_save,
)
from sessionlocker.drivers.delivery import Delivery, adeliver
from sessionlocker.drivers.executor import Executor
from sessionlocker.drivers.health import StoreFailure
from sessionlocker.drivers.profile import Profile
from sessionlocker.drivers.reads import snapshot_of
from sessionlocker.drivers.renamed import LeaseIdAlias, lease_id_of
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import (
    AlreadyOpen,
    LockUnavailable,
    SessionLockerError,
    StoreError,
    UsageError,
)
from sessionlocker.history import Moment, PastVersion, past_version, select
from sessionlocker.metrics import Metrics
from sessionlocker.stores import AsyncStore, ReadOnlyStore, Store, open_async_store
from sessionlocker.stores._bridges import BlockingStore, blocking
from sessionlocker.stores.base import AsyncDated, AsyncKeepsHistory
from sessionlocker.stores.user_keys import akeys_for_user

__all__ = ["AsyncLockerService", "Profile"]

log = logging.getLogger("sessionlocker.driver")

_LIVE = frozenset({Status.LOADING, Status.WAITING, Status.LOADED, Status.RELEASING})
_LOADING = frozenset({Status.LOADING, Status.WAITING})
#: The longest the frame task sleeps with nothing due (a fallback: work wakes it at once).
_IDLE = 0.25
#: How many ``session()`` calls may wait for one key behind the one using it, by default.
MAX_WAITERS = 1000


@dataclass(eq=False)
class _Line:
    """The ``session()`` callers of one key waiting behind the one in its block (FIFO).

    A turn is a future: resolved with the loaded locker when the previous user hands it
    on, with ``None`` when the record was released and the waiter must load it."""

    key: str
    waiting: deque[asyncio.Future[Locker[Any] | None]] = field(default_factory=deque)
    #: After a release another session asked for: no load here before this loop time.
    yield_until: float = 0.0
    #: The loaded locker kept for ``Spec.linger`` after the last block, and its timer.
    idle: Locker[Any] | None = None
    timer: asyncio.TimerHandle | None = None


class _TimedOut(Exception):
    """A waiter's turn did not come before its deadline."""


class AsyncLockerService(LeaseIdAlias, Generic[D]):
    """Owns the lockers of one ``Spec`` on one store, driven from the event loop.

    ``store`` is a ``Store``, an ``AsyncStore`` (``open_async_store``), whose requests,
    ``send`` and lease drop are awaited on the loop, or a URL, opened as an ``AsyncStore``
    (then the service closes it in ``aclose``); with ``read_only`` an async store's
    calls run on threads (the writes stay in a ``ReadOnlyStore``);
    ``max_waiters`` bounds the ``session()`` calls waiting for one key (see ``session``);
    the other arguments are ``LockerService``'s (``executor``: where store calls run;
    ``workers``: on an async store, how many record updates are awaited at once, so the
    lease renewal never queues behind them).
    The frame task starts at the first ``session()``, ``start()`` or ``async with``, on
    the running loop; use the service from that loop only (``send`` may be awaited from
    it concurrently).
    """

    def __init__(
        self,
        store: Store | AsyncStore | str,
        spec: Spec[D],
        lease_id: str | None = None,
        *,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] | None = None,
        workers: int = 4,
        read_only: bool = False,
        metrics: Metrics | None = None,
        executor: Executor | None = None,
        critical_errors: int = 5,
        critical_window: float = 30.0,
        max_waiters: int = MAX_WAITERS,
        session_id: str | None = None,
    ) -> None:
        lease_id = lease_id_of(lease_id, session_id)
        if not isinstance(max_waiters, int) or isinstance(max_waiters, bool) or max_waiters < 0:
            raise UsageError(f"max_waiters must be a whole number >= 0, not {max_waiters!r}")
        #: How many ``session()`` calls may wait for one key (``LockUnavailable`` past it).
        self.max_waiters = max_waiters
        #: Per key in use by ``session()``: the callers waiting for it.
        self._lines: dict[str, _Line] = {}
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._work = asyncio.Event()
        #: Conditions waiting for a frame to make them true, each with its waiter's future.
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[bool]]] = []
        self._stopping = False
        self._closed = False
        self._report = CloseReport(released=True)
        #: Tasks a timed-out ``aclose`` left running (kept referenced until they end).
        self._abandoned: set[asyncio.Task[Any]] = set()
        #: The async store given, if any: the frames' requests are awaited on it by an
        #: ``AsyncExecutor`` (no thread hop).
        self.async_store: AsyncStore | None = None
        self._bound: list[BlockingStore | AsyncExecutor] = []
        #: Whether the service opened the async store (from a URL), so closes it.
        self._owns_async_store = isinstance(store, str)
        if isinstance(store, str):
            store = open_async_store(store)
        #: The executor awaiting the frames' requests on ``async_store``, when it does.
        self._native: AsyncExecutor | None = None
        if isinstance(store, AsyncStore) and not isinstance(store, Store):
            self.async_store = store
            if read_only:  # the read-only overlay is a sync store: it reads from threads
                store = blocking(store)
                self._bound.append(store)
            elif executor is None:
                executor = self._native = AsyncExecutor(workers)
                self._bound.append(executor)
        self.frames = LockerService(
            store,
            spec,
            lease_id,
            clock,
            wall=wall,
            workers=workers,
            read_only=read_only,
            on_work=self._on_work,
            metrics=metrics,
            executor=executor,
            critical_errors=critical_errors,
            critical_window=critical_window,
        )
        self.metrics = self.frames.metrics
        #: The store the frames' requests go to (the async store itself, when given).
        self.store: Store | AsyncStore = self.frames.target
        self.spec = spec
        self.lease_id = self.frames.lease_id

    # ------------------------------------------------------------------ lockers

    def locker(self, key: str) -> Locker[D]:
        """A new locker for ``key`` (call ``acquire()`` on it); see ``LockerService.locker``."""
        self.start()
        return self.frames.locker(key)

    def get(self, key: str) -> Locker[D] | None:
        """The live locker for ``key``, if any."""
        return self.frames.get(key)

    def lockers(self) -> list[Locker[D]]:
        """Every live locker."""
        return self.frames.lockers()

    def on_message(self, kind: str, handler: Handler) -> None:
        """Apply inbox messages of ``kind`` with ``handler``; see ``LockerService.on_message``."""
        self.frames.on_message(kind, handler)

    @property
    def critical(self) -> bool:
        """True while the store is failing; see ``LockerService.critical``."""
        return self.frames.critical

    def on_critical(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``callback(critical)`` on entering and leaving the critical state, from
        the frame task; see ``LockerService.on_critical``."""
        return self.frames.on_critical(callback)

    def on_store_error(self, callback: Callable[[StoreFailure], None]) -> Callable[[], None]:
        """Call ``callback(failure)`` for every failed store call of the frames, from the
        frame task; see ``LockerService.on_store_error``."""
        return self.frames.on_store_error(callback)

    async def send(
        self, key: str, kind: str, body: Any, *, id: str | None = None, timeout: float = 10.0
    ) -> str:
        """Append a message to ``key``'s inbox, whoever holds it; returns its id.

        The awaitable twin of ``LockerService.send``: the same checks, retries and errors.
        On an async store the update is awaited on it; otherwise it runs on a thread.
        """
        if self._native is None:
            send = self.frames.send
            return await asyncio.to_thread(send, key, kind, body, id=id, timeout=timeout)
        self._check_open()
        frames = self.frames
        delivery = Delivery.build(self.spec, key, kind, body, id=id, now=frames.wall())
        store = self.async_store
        assert store is not None  # an AsyncExecutor is made only for an async store
        updated = await adeliver(store, delivery, timeout, frames.clock)
        message_id = frames.delivered(delivery, updated.outcome)
        tell = frames.to_tell(delivery, updated.outcome)
        if tell is not None:
            posted = await aexecute(store, tell.request())
            if isinstance(posted, StoreError):
                frames.untold(tell)
        return message_id

    async def keys_for_user(self, user_id: str) -> list[str]:
        """The keys of this namespace whose record lists ``user_id``, sorted.

        The awaitable twin of ``LockerService.keys_for_user``: awaited on an async store
        (which has no user index: every record is read), else run on a worker thread.
        """
        store = self.async_store
        if store is None or self._native is None:
            return await asyncio.to_thread(self.frames.keys_for_user, user_id)
        self._check_open()
        prefix = self.spec.store_key("")
        return [key[len(prefix) :] for key in await akeys_for_user(store, user_id, prefix)]

    async def view(self, key: str) -> Snapshot | None:
        """The record at ``key`` without its lock; the awaitable twin of
        ``LockerService.view`` (awaited on an async store, else run on a thread)."""
        store = self.async_store
        if not isinstance(store, AsyncDated) or isinstance(self.store, ReadOnlyStore):
            return await asyncio.to_thread(self.frames.view, key)  # read-only: the overlay
        self._check_open()
        stored = await store.read_entry(self.spec.store_key(check_key(key)))
        return snapshot_of(key, self.spec, stored)

    async def history(
        self,
        key: str,
        *,
        before: Moment | None = None,
        after: Moment | None = None,
        limit: int | None = None,
    ) -> list[PastVersion]:
        """The history entries of ``key``, newest first; the awaitable twin of
        ``LockerService.history``."""
        store = self.async_store
        if store is None:
            return await asyncio.to_thread(
                self.frames.history, key, before=before, after=after, limit=limit
            )
        self._check_open()
        if not isinstance(store, AsyncKeepsHistory):
            raise UsageError(f"this store ({type(store).__name__}) keeps no versions")
        versions = await store.history(self.spec.store_key(check_key(key)))
        chosen = select(versions, before=before, after=after, limit=limit)
        return [past_version(key, version) for version in chosen]

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"service {self.lease_id} is closed")

    # ------------------------------------------------------------------ frames

    def start(self) -> None:
        """Start the frame task on the running loop (done for you by the other calls)."""
        if self._closed or self._stopping:
            raise UsageError(f"service {self.lease_id} is closed")
        if self._task is not None:
            if self._task.done():
                raise UsageError("the frame task ended") from self._task.exception()
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for bound in self._bound:
            bound.bind(self._loop, self._loop_thread)
        self._task = self._loop.create_task(self._run(), name=f"sessionlocker {self.lease_id}")

    def wake(self) -> None:
        """Run a frame now: for a caller whose ``clock`` jumped (a test's manual clock).

        Store results, notifications and lockers wake the frame task by themselves.
        """
        self._on_work()

    def _on_work(self) -> None:
        """From any thread: a frame has work; wake the frame task."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._work.set()
            return
        with suppress(RuntimeError):  # the loop is closed: nobody is left to wake
            loop.call_soon_threadsafe(self._work.set)

    async def _run(self) -> None:
        try:
            await self._frames()
        finally:
            self._fail_waiters(UsageError(f"service {self.lease_id} is not running"))

    async def _frames(self) -> None:
        frames = self.frames
        work = self._work
        run = True
        while not self._stopping:  # checked first: no frame starts a call once aclose stops
            if run:
                work.clear()
                frames.update()
                self._check_waiters()
            upcoming = frames.next_deadline()
            wait = _IDLE if upcoming is None else min(_IDLE, upcoming - frames.clock())
            if wait <= 0:
                await asyncio.sleep(0)
                run = True
                continue
            woken = False
            # Not ``wait_for``: on 3.11 it swallows a cancel that comes as the wait ends,
            # and then the task could not be cancelled (a hang at loop shutdown).
            with suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    woken = await work.wait()
            if woken:  # a caller woken in the same pass may take the work itself first
                await asyncio.sleep(0)
            # Woken for work a waiting caller's own frame took (``_drive`` clears the
            # flag): no frame, unless a deadline came meanwhile.
            upcoming = frames.next_deadline()
            due = upcoming is not None and upcoming <= frames.clock()
            run = not woken or work.is_set() or due

    def _check_waiters(self) -> None:
        """After a frame: resolve the waiters whose condition now holds; keep the rest."""
        waiting: list[tuple[Callable[[], bool], asyncio.Future[bool]]] = []
        for done, future in self._waiters:
            if future.done():  # timed out or cancelled meanwhile
                continue
            try:
                if done():
                    future.set_result(True)
                    continue
            except Exception as exc:  # the condition's own error belongs to its waiter
                future.set_exception(exc)
                continue
            waiting.append((done, future))
        self._waiters = waiting

    def _fail_waiters(self, error: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_exception(error)

    async def wait_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait, frame by frame, until ``done()`` is true (True) or ``timeout`` passes (False).

        The awaitable twin of ``LockerService.run_until``. ``done()`` is checked now and
        then by the frame task after every frame, so it should be cheap.
        """
        self.start()
        if done():
            return True
        task = self._task
        if task is None or task.done():
            raise UsageError(f"service {self.lease_id} is not running")
        if timeout is None and await self._drive(done):
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiters.append((done, future))
        timer = None if timeout is None else loop.call_later(timeout, _expire, future)
        try:
            if await future:
                return True
        finally:
            if timer is not None:
                timer.cancel()
            future.cancel()  # a cancelled waiter's entry is dropped at the next check
        return done()

    async def _drive(self, done: Callable[[], bool]) -> bool:
        """For a caller that waits with no deadline: run here the frames it waits for,
        while a frame has work now and no other call is in flight; their store calls
        are awaited by this task, and their results taken in the same frame (one frame
        per save, the frame task not woken for it). True once ``done()``.

        The frame task goes on by itself meanwhile (the lease, other lockers), so a
        store call that hangs holds only this caller. With calls in flight (a burst of
        callers), the caller waits for the frame task instead, which sends the calls
        due in one frame together."""
        native = self._native
        if native is None:  # a sync store's calls run on threads: nothing to await here
            return False
        frames = self.frames
        work = self._work
        while not self._stopping and frames.in_flight == 0 and frames.has_work(frames.clock()):
            work.clear()
            collected = Collected()
            frames.update(executor=collected)
            if collected.calls:
                await native.run_here(collected.calls)
                frames.take_results()
            self._check_waiters()
            if frames.has_work(frames.clock()):
                work.set()  # for the frame task, if this caller is done
            else:
                work.clear()  # the wake-ups of this frame's own results: taken already
            if done():
                return True
        return False

    # ------------------------------------------------------------------ sessions

    @asynccontextmanager
    async def session(
        self, key: str, mode: Mode = LoadMode.REPEAT, timeout: float | None = None
    ) -> AsyncIterator[Profile[D]]:
        """Load ``key``, yield its ``Profile``, then save and release it.

        As ``LockerService.session``: raises ``LockUnavailable`` on timeout or cancel,
        the data error when the record is refused; on exit ``LockLost`` if the lock was
        lost, or the data error that kept the final save from being written. The final
        save happens also when the body raised. A cancelled or timed-out load leaves the
        record as it was: the release withdraws any lock or release request first.

        Concurrent calls for one key wait in line (first come, first served) and each
        gets the loaded record in turn: the same locker, its data as the previous block
        left it, with no store round trip between them. ``timeout`` covers the wait in
        line; past ``max_waiters`` waiting, ``LockUnavailable`` at once, and so in
        ``cancel`` mode whenever the key is in use here. A block handing the record on
        raises nothing at exit (its changes go with a later save: ``await
        profile.saved()`` in the block to know they are stored). A release request from
        another session is honoured between two blocks, never within one: the record
        is then saved and released, and the next in line loads it again by its mode.
        """
        if timeout is not None and timeout <= 0:
            raise UsageError(f"timeout must be positive seconds or None, not {timeout!r}")
        checked = check_mode(mode)
        check_key(key)
        self.start()
        if self._closing:
            raise UsageError(f"service {self.lease_id} is closing")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        line = self._lines.get(key)
        locker: Locker[D] | None = None
        if line is not None and line.idle is not None:  # kept loaded after the last block
            locker = self._take_idle(line)
            line = self._lines.get(key)  # gone if that locker had ended meanwhile
        if line is None:
            if self.frames.get(key) is not None:  # a locker not made by session()
                raise AlreadyOpen(f"{key!r} is already open in session {self.lease_id}")
            line = self._lines[key] = _Line(key)
        elif locker is None:
            if checked is LoadMode.CANCEL:
                raise LockUnavailable(f"{key!r} is in use by another session() of this service")
            locker = await self._wait_in_line(line, deadline, timeout)
        if locker is None:
            locker = await self._load(line, mode, deadline, timeout)
        try:
            yield Profile(locker, self)
        finally:
            error = await self._leave(line, locker)
        if error is not None:
            raise error

    async def _wait_in_line(
        self, line: _Line, deadline: float | None, timeout: float | None
    ) -> Locker[D] | None:
        """Wait behind the session() users of ``line``'s key: the loaded locker when one
        hands it on, ``None`` when the record was released and this caller loads it."""
        if len(line.waiting) >= self.max_waiters:
            raise LockUnavailable(
                f"{line.key!r} already has {len(line.waiting)} sessions waiting in this "
                f"service (max_waiters={self.max_waiters})"
            )
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[Locker[Any] | None] = loop.create_future()
        line.waiting.append(turn)
        timer = None if deadline is None else loop.call_at(deadline, _expire_turn, turn)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                # our turn came as we were cancelled: it goes to the next in line
                self._pass_on(line, turn.result())
            raise
        except _TimedOut:
            raise LockUnavailable(
                f"{line.key!r} could not be loaded within {timeout} s (waiting in line)"
            ) from None
        finally:
            if timer is not None:
                timer.cancel()
            with suppress(ValueError):
                line.waiting.remove(turn)

    async def _load(
        self, line: _Line, mode: Mode, deadline: float | None, timeout: float | None
    ) -> Locker[D]:
        """Load ``line``'s key from the store by ``deadline``; on failure the next in
        line gets its turn (to load it itself) once the locker has ended."""
        loop = asyncio.get_running_loop()
        try:
            if line.yield_until > loop.time():  # let the session that asked take it first
                pause = line.yield_until - loop.time()
                if deadline is not None and deadline - loop.time() < pause:
                    await asyncio.sleep(max(0.0, deadline - loop.time()))
                    raise LockUnavailable(f"{line.key!r} could not be loaded within {timeout} s")
                await asyncio.sleep(pause)
            if self._closing:
                raise UsageError(f"service {self.lease_id} is closing")
            locker = self.locker(line.key)
            locker.defer_release_requests = True  # honoured between two users, not within
            locker.acquire(mode)
        except BaseException:
            self._pass_on(line, None)
            raise
        left = None if deadline is None else max(0.0, deadline - loop.time())
        loaded = False
        try:
            loaded = await self.wait_until(lambda: locker.status not in _LOADING, left)
        finally:
            if not loaded or locker.status is not Status.LOADED:
                ending = self._pass_on(line, locker)
                if ending is not None:
                    await asyncio.shield(ending)
        if not loaded:
            raise LockUnavailable(f"{line.key!r} could not be loaded within {timeout} s")
        if locker.status is not Status.LOADED:
            raise locker.error or LockUnavailable(f"{line.key!r} could not be loaded")
        return locker

    async def _leave(self, line: _Line, locker: Locker[D]) -> SessionLockerError | None:
        """One user's block is over: hand the locker to the next in line, or save and
        release it. The error ``session()`` raises at exit, if any."""
        final = watch_final_save(locker)
        ending = self._pass_on(line, locker)
        if ending is not None:
            await asyncio.shield(ending)
        elif locker.status is Status.LOADED:  # handed on: a later block's release saves it
            return None
        return exit_error(locker, final)

    def _pass_on(self, line: _Line, locker: Locker[Any] | None) -> asyncio.Future[bool] | None:
        """End a turn on ``line``: a loaded ``locker`` goes to the first caller still
        waiting, unless another session asked for the record (or the service closes);
        otherwise it is released (the future returned ends once it has) and then the
        next waiter loads the record itself. ``None`` (nothing held): the next waiter
        loads it; with nobody waiting the line ends."""
        if locker is None or self._usable(locker):
            while line.waiting:
                turn = line.waiting.popleft()
                if not turn.done():
                    turn.set_result(locker)
                    return None
            if locker is None:
                if self._lines.get(line.key) is line:
                    del self._lines[line.key]
                return None
            if self.spec.linger > 0:
                self._linger(line, locker)
                return None
        return self._release(line, locker)

    def _usable(self, locker: Locker[Any]) -> bool:
        """``locker`` may go on to another block: loaded, and nobody asked for it."""
        return locker.status is Status.LOADED and not locker.release_requested and not self._closing

    def _linger(self, line: _Line, locker: Locker[Any]) -> None:
        """Keep ``locker`` loaded for ``Spec.linger`` seconds in case another block comes."""
        locker.defer_release_requests = False  # no block to finish: a request is honoured now
        line.idle = locker
        line.timer = asyncio.get_running_loop().call_later(
            self.spec.linger, self._end_linger, line, locker
        )

    def _end_linger(self, line: _Line, locker: Locker[Any]) -> None:
        if line.idle is locker:
            line.idle = None
            self._release(line, locker)

    def _take_idle(self, line: _Line) -> Locker[Any] | None:
        """The lingering locker of ``line`` for a new block, if it is still loaded; else
        ``None``, and it is released (the line ends once it has, if nobody waits)."""
        locker, line.idle = line.idle, None
        if line.timer is not None:
            line.timer.cancel()
        if locker is None:
            return None
        if self._usable(locker):
            locker.defer_release_requests = True
            return locker
        self._release(line, locker)
        return None

    def _release(self, line: _Line, locker: Locker[Any]) -> asyncio.Future[bool] | None:
        """Release ``locker``; once it has ended, the next in line gets its turn (after
        two poll periods when another session asked for it: time to take it first)."""
        if locker.status not in _LIVE:  # ended already (lost, failed, or released by aclose)
            self._pass_on(line, None)
            return None
        asked = locker.release_requested and locker.status is Status.LOADED
        locker.release()
        ended = asyncio.ensure_future(self.wait_until(lambda: locker.status not in _LIVE))

        def next_turn(done: asyncio.Future[bool]) -> None:
            if not done.cancelled():
                done.exception()  # seen here: a stopped service fails every waiter
            if asked:
                line.yield_until = asyncio.get_running_loop().time() + 2 * self.spec.poll_period
            self._pass_on(line, None)

        ended.add_done_callback(next_turn)
        return ended

    async def aclose(self, timeout: float = 10.0) -> CloseReport:
        """Save and release every locker within ``timeout`` seconds, then end the lease.

        As ``LockerService.close``: returns within ``timeout`` plus ``CLOSE_MARGIN``
        whatever the store does, with a ``CloseReport``. Idempotent.
        """
        if self._closed:
            return self._report
        self._closing = True  # no user hands a locker on now: each one is released
        for line in list(self._lines.values()):
            if line.idle is not None:
                self._end_linger(line, line.idle)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        released = True
        if self._task is not None and not self._task.done():
            for locker in self.frames.lockers():
                locker.release(shutdown=True)
            released = await self.wait_until(self.frames.drained, timeout)
            self._stopping = True
            self._work.set()
            await self._task
        self._closed = True
        if self.async_store is None or self._native is None:
            # A sync store's close (the lease, the pool) blocks: on a thread, which
            # returns in time by itself (``LockerService.close``).
            left = max(0.1, end - loop.time())
            closed = await thread_within(lambda: self.frames.close(left), left + 1, "aclose")
            report = closed[0] if closed else CloseReport(released=False, lease_dropped=False)
            if not released:
                report = replace(report, released=False)
        else:
            abandoned = tuple(sorted(locker.key for locker in self.frames.lockers()))
            dropped = await self._drop_lease(self.async_store, released, end)
            report = CloseReport(released=released, abandoned=abandoned, lease_dropped=dropped)
        if self._owns_async_store and self.async_store is not None:
            await self._close_store(self.async_store, end + CLOSE_MARGIN - loop.time())
        self._report = report
        return report

    async def _drop_lease(self, store: AsyncStore, released: bool, end: float) -> bool:
        """``LockerService.close`` after the frames, with the lease drop awaited on
        ``store`` until ``end`` (plus the margin); the watch (its thread is joined) is
        closed off the loop. True when the lease was dropped in time."""
        frames = self.frames
        loop = asyncio.get_running_loop()
        ending = await thread_within(
            lambda: frames.end_lease(released), end + CLOSE_MARGIN - loop.time(), "end lease"
        )
        if not ending:
            return False
        request = ending[0]
        started = frames.clock()
        drop = loop.create_task(aexecute(store, request))
        self._abandoned.add(drop)
        drop.add_done_callback(self._abandoned.discard)
        await asyncio.wait({drop}, timeout=max(0.0, end + CLOSE_MARGIN - loop.time()))
        if not drop.done():
            return False  # it ends by itself (the store's deadline); the lease lapses
        result = drop.result()
        frames.finish_close(request, result, frames.clock() - started)
        return not isinstance(result, StoreError)

    async def _close_store(self, store: AsyncStore, seconds: float) -> None:
        """Close the store this service opened, waiting at most ``seconds`` for it."""
        closing = asyncio.get_running_loop().create_task(store.aclose())
        self._abandoned.add(closing)
        closing.add_done_callback(self._abandoned.discard)
        await asyncio.wait({closing}, timeout=max(0.0, seconds))

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        live = len(self.frames.lockers())
        return f"<AsyncLockerService {self.spec.namespace!r} session={self.lease_id} live={live}>"


def _expire_turn(turn: asyncio.Future[Locker[Any] | None]) -> None:
    if not turn.done():
        turn.set_exception(_TimedOut())


def _expire(future: asyncio.Future[bool]) -> None:
    """A waiter's timeout: it returns with its condition as it is then."""
    if not future.done():
        future.set_result(False)
