"""What a service's close reports (``CloseReport``), and how its last steps stay bounded.

``LockerService.close(timeout)`` and ``AsyncLockerService.aclose(timeout)`` first wait
up to ``timeout`` for every locker to be saved and released. Then they drop the lease,
stop their threads and close a store they opened: steps that talk to the store or join
a thread, so they could wait as long as a stuck store call. They run on a thread of
their own (``run_within``), given what is left of ``timeout`` plus ``CLOSE_MARGIN``;
what has not finished by then goes on in the background, and the report says so.

Also how a ``session()`` block ends, for both drivers: ``watch_final_save`` marks the
data for the final save and ``exit_error`` says what the block raises at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sessionlocker.core.locker import Locker
from sessionlocker.errors import DataError, LockLost, SessionLockerError

__all__ = [
    "CLOSE_MARGIN",
    "CloseReport",
    "exit_error",
    "run_within",
    "thread_within",
    "watch_final_save",
]

log = logging.getLogger("sessionlocker.service")

T = TypeVar("T")

#: How long past its ``timeout`` a close may spend ending the lease and its threads.
CLOSE_MARGIN = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseReport:
    """What a close did. True (``bool(report)``) when every locker was released in time,
    as the ``bool`` that close returned before.

    - ``released``: every locker was saved and released within the timeout.
    - ``abandoned``: the keys whose lockers were still live (loading, loaded or
      releasing: a save or release not confirmed) when close stopped waiting. Their
      locks stay in the store, held by this session's lease, until the lease lapses
      (``Spec.lease`` TTL after its last renewal); then another process may take them.
      A change not confirmed saved may be lost.
    - ``lease_dropped``: the lease record was removed in time, so the locks it held
      are free at once; False when the store did not answer in time (or failed): the
      lease then lapses by itself.
    """

    released: bool
    abandoned: tuple[str, ...] = ()
    lease_dropped: bool = True

    def __bool__(self) -> bool:
        return self.released


def run_within(work: Callable[[], T], seconds: float, name: str) -> list[T]:
    """Run ``work()`` on a daemon thread and wait up to ``seconds``: ``[result]`` when it
    finished in time, ``[]`` otherwise (or when it raised; logged). Late work goes on."""
    result: list[T] = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(work())
        except Exception:
            log.exception("%s failed", name)
        finally:
            done.set()

    threading.Thread(target=run, name=f"sessionlocker-{name}", daemon=True).start()
    done.wait(max(0.0, seconds))
    return result if done.is_set() else []


async def thread_within(work: Callable[[], T], seconds: float, name: str) -> list[T]:
    """``run_within`` awaited: the loop is free while the thread works."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[list[T]] = loop.create_future()

    def run() -> None:
        outcome: list[T] = []
        try:
            outcome.append(work())
        except Exception:
            log.exception("%s failed", name)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(_settle, finished, outcome)

    threading.Thread(target=run, name=f"sessionlocker-{name}", daemon=True).start()
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            return await asyncio.shield(finished)
    except TimeoutError:
        return []


def _settle(future: asyncio.Future[list[T]], outcome: list[T]) -> None:
    if not future.done():
        future.set_result(outcome)


def watch_final_save(locker: Locker[Any]) -> list[bool]:
    """Mark the data as it is when a session ends; the list gets True once the final
    write holds it, False if it never will (the release writes once either way).
    """
    answer: list[bool] = []
    locker.when_saved(locker.mark_changed(), answer.append)
    return answer


def exit_error(locker: Locker[Any], final: list[bool]) -> SessionLockerError | None:
    """What ``session()`` raises at exit: ``LockLost``, or the data error that kept the
    final write from holding the data. A save refused earlier in the session whose data
    was fixed before the end is not an error any more.
    """
    if isinstance(locker.error, LockLost):
        return locker.error
    if final != [True] and isinstance(locker.error, DataError):
        return locker.error
    return None
