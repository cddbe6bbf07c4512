"""Where store requests run: a small thread pool, or by hand in tests.

A driver hands each request to an executor as ``submit(call, done)``; the executor
runs ``call()`` somewhere and passes its result to ``done``, from any thread. A store
request comes as a ``StoreCall``, so an executor for async stores
(``aio_executor.AsyncExecutor``) can run the request natively instead of calling it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

from sessionlocker.core.protocol import PutLease, ReadLease, Request, Update, Versioned
from sessionlocker.drivers.last_written import guessed
from sessionlocker.errors import StoreError, UsageError
from sessionlocker.stores.base import AsyncStore, Outcome, Store, is_async, update_many

__all__ = [
    "Executor",
    "GuessedCall",
    "StoreCall",
    "ThreadExecutor",
    "dispatch",
    "execute",
    "failure",
    "sync_store",
]

log = logging.getLogger("sessionlocker.driver")


class Executor(Protocol):
    """Runs calls away from the frame and reports their results."""

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        """Run ``call()``; pass what it returns to ``done``."""

    def shutdown(self) -> None:
        """Finish what was submitted, then stop."""


class ThreadExecutor:
    """A pool of up to ``workers`` threads (size it to the store's connection count).

    Threads start as work needs them and take calls from one queue, in order. It does
    what ``concurrent.futures.ThreadPoolExecutor`` would, minus the ``Future`` per
    call: a store call's hand-off to a worker and back costs half as much without it
    (about 22 µs against 46 µs here), and a save makes one on every frame it waits.
    The threads are daemons: ``shutdown`` (which ``LockerService.close`` calls) lets
    them finish what was submitted.
    """

    def __init__(self, workers: int = 4) -> None:
        if workers < 1:
            raise UsageError(f"workers must be at least 1, not {workers!r}")
        self._workers = workers
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], Callable[[object], None]] | None]
        self._calls = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        self._calls.put((call, done))
        if self._idle.acquire(blocking=False):
            return  # a waiting thread takes it
        with self._lock:
            if len(self._threads) < self._workers:
                thread = threading.Thread(
                    target=self._work, name=f"sessionlocker-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            call, done = item
            try:
                done(call())
            except Exception:  # a failing callback must not end the worker
                log.exception("a store call's completion failed")
            if self._calls.empty():  # about to wait: the next submit need not start a thread
                self._idle.release()

    def shutdown(self) -> None:
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._calls.put(None)
        for thread in threads:
            thread.join()


class InlineExecutor:
    """Runs each call on the caller's thread, at once: for a caller that waits for the
    result anyway (``LockerService.run_until`` without a deadline), so the call pays no
    thread hand-off and no wake-up, and its result is taken in the same frame."""

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        done(call())

    def shutdown(self) -> None:
        """Nothing runs in the background."""


@dataclass(frozen=True, slots=True)
class StoreCall:
    """A call of one ``request`` on ``store``: ``call()`` is ``execute(store, request)``
    on a sync store; an ``AsyncStore``'s request is awaited (``aexecute``) instead."""

    store: Store | AsyncStore
    request: Request

    def __call__(self) -> object:
        return execute(sync_store(self.store), self.request)


@dataclass(frozen=True, slots=True)
class GuessedCall:
    """A ``StoreCall`` of a record update, started from ``guess`` of what is stored
    instead of a read (``drivers.last_written.guessed``); an ``AsyncStore``'s is awaited
    (``aguessed``) instead."""

    store: Store | AsyncStore
    request: Update[Any]
    guess: Versioned

    def __call__(self) -> object:
        return guessed(partial(execute, sync_store(self.store)), self.request, self.guess)


@dataclass(frozen=True, slots=True)
class StoreBatch:
    """The record updates that became due in one frame, sent to ``store`` together
    (``update_many``): ``call()`` is ``execute_batch(store, updates)``, a list with one
    result per update; an ``AsyncStore``'s batch is awaited instead."""

    store: Store | AsyncStore
    updates: tuple[Update[Any], ...]

    def __call__(self) -> list[object]:
        return execute_batch(sync_store(self.store), self.updates)


def execute_batch(store: Store, updates: Sequence[Update[Any]]) -> list[object]:
    """Run ``updates`` together on ``store``; each result as ``execute`` gives it."""
    try:
        outcomes = update_many(store, updates)
    except Exception as exc:  # a store's batch that raised as a whole: every one failed
        outcomes = [exc] * len(updates)
    return batch_results(store, updates, outcomes)


def batch_results(
    store: Store | AsyncStore, updates: Sequence[Update[Any]], outcomes: Sequence[Outcome]
) -> list[object]:
    """Each update's outcome as ``execute`` returns it: a failure as a ``StoreError``."""
    return [
        failure(store, update, outcome) if isinstance(outcome, Exception) else outcome
        for update, outcome in zip(updates, outcomes, strict=True)
    ]


def sync_store(store: Store | AsyncStore) -> Store:
    """``store`` when it is a sync ``Store``; ``UsageError`` for an async one."""
    if is_async(store):
        raise UsageError(f"{store!r} is an AsyncStore: await its calls (AsyncLockerService)")
    return cast("Store", store)


def dispatch(store: Store | AsyncStore, request: Request) -> object:
    """Start ``request`` on ``store``: the store method's result, or for an ``AsyncStore``
    the awaitable of it. The one place that maps a request to a store call."""
    if isinstance(request, Update):
        return store.update(request.key, request.transform, request.known)
    if isinstance(request, ReadLease):
        return store.get_lease(request.lease_id)
    if isinstance(request, PutLease):
        return store.put_lease(request.lease_id, request.ttl, request.info)
    return store.drop_lease(request.lease_id)


def failure(store: Store | AsyncStore, request: Request, exc: Exception) -> StoreError:
    """The ``StoreError`` a request's ``exc`` comes back as: itself, or for an error the
    store let escape untranslated (logged), one whose outcome is unknown."""
    if isinstance(exc, StoreError):
        return exc
    key = request.key if isinstance(request, Update) else None
    log.exception(
        "key=%s store %s raised an untranslated error",
        key,
        type(store).__name__,
        extra={"key": key},
    )
    error = StoreError(f"store raised {type(exc).__name__}", unknown_outcome=True)
    error.__cause__ = exc
    return error


def execute(store: Store, request: Request) -> object:
    """Run one request on ``store``; a failure comes back as a ``StoreError`` value."""
    try:
        return dispatch(store, request)
    except Exception as exc:  # a store that let its client's error escape: outcome unknown
        return failure(store, request, exc)
