"""What this service last wrote to each record it let go: the next session's first guess.

A locker that opens a record reads it, then writes its lock: two round trips. When this
service was the record's last writer (a web service opening the same cart request
after request, a game server a player coming back), the bytes and revision it wrote
then are very likely still what is stored, so the first write can go out at once,
conditional on that revision: one round trip. A guess that turns out stale costs
nothing more than the read it replaced: the conditional write fails and brings back
what is stored, and the update runs again on that (``cas_update``).

One thing differs from a read: a transform that decides to write nothing (``Keep``)
on the guess is not checked against the store. ``guessed`` therefore runs the update
again without the guess when that happens, so an outcome is never decided on a guess
alone.

Entries are dropped when the store tells of another writer (a notification of a
revision that is not the guess's), when taken, and oldest first beyond ``entries``
records or ``budget`` bytes of values. Thread-safe: notifications come from the
store's thread.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from sessionlocker.core.protocol import Update, Updated, Versioned

__all__ = ["LastWritten", "aguessed", "guessed"]


class LastWritten:
    """The ``Versioned`` this service last wrote per store key, bounded."""

    def __init__(self, entries: int = 1024, budget: int = 16 * 1024 * 1024) -> None:
        self._entries = entries
        self._budget = budget
        self._bytes = 0
        self._kept: dict[str, Versioned] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, store_key: str, written: Versioned) -> None:
        """Remember ``written`` as what ``store_key`` holds (the newest entry)."""
        size = len(written.value)
        with self._lock:
            self._drop(store_key)
            if size > self._budget:
                return
            self._kept[store_key] = written
            self._bytes += size
            while len(self._kept) > self._entries or self._bytes > self._budget:
                self._drop(next(iter(self._kept)))

    def take(self, store_key: str) -> Versioned | None:
        """The guess for ``store_key``, if any; it is forgotten (one use)."""
        with self._lock:
            return self._drop(store_key)

    def written(self, store_key: str, revision: int | None) -> None:
        """The store says ``store_key`` was written (at ``revision``, if it says):
        forget the guess unless it is that very write."""
        with self._lock:
            kept = self._kept.get(store_key)
            if kept is not None and kept.revision != revision:
                self._drop(store_key)

    def _drop(self, store_key: str) -> Versioned | None:
        dropped = self._kept.pop(store_key, None)
        if dropped is not None:
            self._bytes -= len(dropped.value)
        return dropped


def guessed(run: Callable[[Update[Any]], object], update: Update[Any], guess: Versioned) -> object:
    """``run(update)`` started from ``guess`` instead of a read: one round trip when the
    guess is right. A ``Keep`` that may have been decided on the guess alone (its
    ``current`` is at the guess's revision) is decided again on what is stored
    (``run(update)`` as asked)."""
    result = run(dataclasses.replace(update, known=guess))
    return run(update) if _kept_on(result, guess) else result


async def aguessed(
    run: Callable[[Update[Any]], Awaitable[object]], update: Update[Any], guess: Versioned
) -> object:
    """``guessed`` awaited (an async store's ``run``)."""
    result = await run(dataclasses.replace(update, known=guess))
    return await run(update) if _kept_on(result, guess) else result


def _kept_on(result: object, guess: Versioned) -> bool:
    """``result`` is a ``Keep`` that may have been decided on ``guess`` alone."""
    return (
        isinstance(result, Updated)
        and not result.wrote
        and result.current is not None
        and result.current.revision == guess.revision
    )
