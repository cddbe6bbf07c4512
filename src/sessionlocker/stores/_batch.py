"""Many compare-and-set updates at once, over pipelined reads and writes.

``CasBatch`` is ``cas_update`` for a list of updates, written as steps without I/O so a
store can pipeline them: ``reads()`` are the keys to read first (the updates without
``known``); ``read(replies)`` takes what came back (called even with nothing to read);
then, until ``done``, ``writes()`` are the conditional writes the transforms decided on
(``cas_decide``) and ``wrote(replies)`` takes their replies: a revision, a
``Conflict`` (that update runs its transform again on what the conflict reported,
in the next round) or the error that update met. Each update's outcome depends only
on its own replies, so a conflict or a failure of one changes nothing for the others.
Every round is one pipeline; each conflict means another writer made progress, so the
rounds end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sessionlocker.core.protocol import Update, Updated, Versioned
from sessionlocker.errors import Conflict
from sessionlocker.stores.base import Attempt, Outcome, cas_decide

__all__ = ["CasBatch"]


class CasBatch:
    """The state of one batch of updates (see the module)."""

    def __init__(self, updates: Sequence[Update[Any]]) -> None:
        self._updates = list(updates)
        self._results: list[Outcome | None] = [None] * len(self._updates)
        self._unread = [i for i, update in enumerate(self._updates) if update.known is None]
        self._current: dict[int, Versioned | None] = {
            i: update.known for i, update in enumerate(self._updates) if update.known is not None
        }
        self._attempts: dict[int, Attempt[Any]] = {}

    def reads(self) -> list[str]:
        """The keys to read before the first round, in order."""
        return [self._updates[i].key for i in self._unread]

    def read(self, replies: Sequence[Versioned | Exception | None]) -> None:
        """What the ``reads()`` found (an exception: that update failed with it); called
        once, with ``[]`` when there was nothing to read."""
        for i, reply in zip(self._unread, replies, strict=True):
            if isinstance(reply, Exception):
                self._results[i] = reply
            else:
                self._current[i] = reply
        self._unread = []
        self._decide()

    @property
    def done(self) -> bool:
        """Every update has its result."""
        return not self._attempts

    def writes(self) -> list[tuple[str, Attempt[Any]]]:
        """This round's conditional writes: each update's key and ``Attempt``."""
        return [(self._updates[i].key, attempt) for i, attempt in self._attempts.items()]

    def wrote(self, replies: Sequence[int | Exception]) -> None:
        """The replies to ``writes()``, in order: the new revision, or the exception."""
        attempts, self._attempts = self._attempts, {}
        for (i, attempt), reply in zip(attempts.items(), replies, strict=True):
            if isinstance(reply, Conflict):
                self._current[i] = reply.current
            elif isinstance(reply, Exception):
                self._results[i] = reply
            else:
                self._results[i] = attempt.written(reply)
        self._decide()

    def fail(self, error: Exception) -> None:
        """A whole round failed (no connection, say): every update still without a
        result gets ``error``; those already finished keep their results."""
        for i in self._unread:
            self._results[i] = error
        for i in self._attempts:
            self._results[i] = error
        self._unread, self._attempts = [], {}

    def _decide(self) -> None:
        current, self._current = self._current, {}
        for i, stored in current.items():
            try:
                step = cas_decide(self._updates[i].transform, stored)
            except Exception as exc:  # the transform's (or its value's) error: this update's
                self._results[i] = exc
                continue
            if isinstance(step, Updated):
                self._results[i] = step
            else:
                self._attempts[i] = step

    def results(self) -> list[Outcome]:
        """One result per update, in order (once ``done``)."""
        results = [result for result in self._results if result is not None]
        assert self.done
        assert len(results) == len(self._updates)
        return results
