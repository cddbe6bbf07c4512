"""``AsyncExecutor``: store requests awaited on the event loop, no thread hop.

The frame-loop driver hands every request to its executor as a ``StoreCall``, and the
mailbox read as a ``Collect``. When the call's store is an ``AsyncStore`` the request is
awaited on it (``aexecute``, the async twin of ``execute``; ``Collect.acollect``) in a
task on the loop; a call on a sync ``Store`` runs as it is on the loop's default thread
pool. Then the result goes to ``done``. ``submit`` may be called from any thread.

At most ``limit`` record updates (the lockers' calls; a frame's batch counts as one) run
at once; the others wait
here, not in the store's own queue (a connection pool's), so the lease renewal and the
session reads, which never wait here, are not queued behind a burst of them: the async
twin of the sync driver's own lease thread. A lease queued behind a thousand saves would
lapse every round, and each lapse makes every loading locker confirm its lock again.

A caller that waits for a frame's calls anyway (``AsyncLockerService.wait_until``)
collects them (``Collected``) and awaits them itself (``run_here``): each result is
taken in the frame that sent it, and nothing wakes the frame task for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, cast

from sessionlocker.core.protocol import Request, Update
from sessionlocker.drivers.executor import (
    GuessedCall,
    StoreBatch,
    StoreCall,
    batch_results,
    dispatch,
    failure,
)
from sessionlocker.drivers.last_written import aguessed
from sessionlocker.drivers.mailbox import Collect
from sessionlocker.errors import UsageError
from sessionlocker.stores.base import AsyncStore, async_update_many, is_async

__all__ = ["AsyncExecutor", "Collected", "aexecute", "aexecute_batch"]

Calls = list[tuple[Callable[[], object], Callable[[object], None]]]


async def aexecute(store: AsyncStore, request: Request) -> object:
    """``execute`` awaited: the same store call (``dispatch``) and the same failure values."""
    try:
        return await cast("Awaitable[object]", dispatch(store, request))
    except Exception as exc:
        return failure(store, request, exc)


async def aexecute_batch(store: AsyncStore, updates: Sequence[Update[Any]]) -> list[object]:
    """``execute_batch`` awaited: one ``update_many``, each result as ``aexecute`` gives it."""
    try:
        outcomes = await async_update_many(store, updates)
    except Exception as exc:  # a store's batch that raised as a whole: every one failed
        outcomes = [exc] * len(updates)
    return batch_results(store, updates, outcomes)


class AsyncExecutor:
    """Awaits each ``StoreCall``'s request on its async store in a task of the bound
    loop, at most ``limit`` record updates at once."""

    def __init__(self, limit: int = 4) -> None:
        if limit < 1:
            raise UsageError(f"workers must be at least 1, not {limit!r}")
        self._limit = limit
        self._updates: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop, thread: int) -> None:
        """Run on ``loop``, whose thread is ``thread`` (before the first ``submit``)."""
        self._loop, self._loop_thread = loop, thread
        self._updates = asyncio.Semaphore(self._limit)

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        """Await ``call``'s request on the store (or run ``call`` on a thread); then ``done``."""
        loop = self._loop
        if loop is None:
            raise UsageError("the executor is not bound to an event loop yet")
        if threading.get_ident() == self._loop_thread:
            self._start(call, done)
        else:
            loop.call_soon_threadsafe(self._start, call, done)

    def _start(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        assert self._loop is not None  # bound before any submit
        task = self._loop.create_task(self._run(call, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        done(await self._limited(call))

    async def run_here(self, calls: Calls) -> None:
        """Await ``calls`` for a caller that waits for them anyway, then pass each result
        to its ``done`` in the caller's task, so no other task wakes for them.

        Each call still runs in a task of its own, within the limit: a cancelled caller
        never cuts a store call short, and its results are then passed on as they come.
        """
        assert self._loop is not None  # bound before any frame
        tasks = [self._loop.create_task(self._limited(call)) for call, _ in calls]
        for task in tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for task, (_, done) in zip(tasks, calls, strict=True):
                task.add_done_callback(_passing_to(done))
            raise
        for task, (_, done) in zip(tasks, calls, strict=True):
            done(task.result())

    async def _limited(self, call: Callable[[], object]) -> object:
        """``call``'s result; a record update waits for one of the ``limit`` places."""
        if isinstance(call, StoreBatch | GuessedCall) or (
            isinstance(call, StoreCall) and isinstance(call.request, Update)
        ):
            assert self._updates is not None  # made when bound
            async with self._updates:
                return await self._call(call)
        return await self._call(call)

    async def _call(self, call: Callable[[], object]) -> object:
        if isinstance(call, StoreCall) and is_async(call.store):
            return await aexecute(cast("AsyncStore", call.store), call.request)
        if isinstance(call, GuessedCall) and is_async(call.store):
            run = partial(aexecute, cast("AsyncStore", call.store))
            return await aguessed(run, call.request, call.guess)
        if isinstance(call, StoreBatch) and is_async(call.store):
            return await aexecute_batch(cast("AsyncStore", call.store), call.updates)
        if isinstance(call, Collect) and is_async(call.store):
            return await call.acollect(cast("AsyncStore", call.store))
        return await asyncio.to_thread(call)

    @property
    def pending(self) -> int:
        """How many submitted calls have not finished."""
        return len(self._tasks)

    def shutdown(self) -> None:
        """Nothing to stop: the driver waits for every result before it closes."""


class Collected:
    """An executor that only collects the calls it is given, for ``run_here``."""

    def __init__(self) -> None:
        self.calls: Calls = []

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        self.calls.append((call, done))

    def shutdown(self) -> None:
        """Nothing runs here."""


def _passing_to(done: Callable[[object], None]) -> Callable[[asyncio.Task[object]], None]:
    """A task's done callback passing its result to ``done`` (a cancelled caller's call)."""

    def passing(task: asyncio.Task[object]) -> None:
        if not task.cancelled():
            done(task.result())

    return passing
