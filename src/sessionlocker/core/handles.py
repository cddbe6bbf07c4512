"""Handles: answers that arrive later, without threads or clocks.

A ``Handle`` is resolved once, by the locker, when the write that decides it has
committed (or can no longer commit). Drivers wait on it in their own way: a frame loop
looks at ``done`` or registers ``on_done``; the blocking and asyncio drivers drive their
service until it is done.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Generic, TypeVar

from sessionlocker.errors import SessionLockerError

__all__ = ["Handle", "Outcome", "resolved"]

T = TypeVar("T")


class Outcome(StrEnum):
    """How an exactly-once operation ended."""

    #: this call applied it, and a committed write contains it
    APPLIED = "applied"
    #: it was applied before (its id is in the record's history), and that is committed
    ALREADY_APPLIED = "already_applied"
    #: not applied by this session, and it never will be: the session ended first, the
    #: locker was not loaded, or the operation raised (see ``Handle.error``)
    NOT_DONE = "not_done"


class Handle(Generic[T]):
    """An answer that is ``None`` until resolved, then fixed for good."""

    __slots__ = ("_callbacks", "error", "name", "result")

    def __init__(self, name: str) -> None:
        self.name = name
        self.result: T | None = None
        self.error: SessionLockerError | None = None
        self._callbacks: list[Callable[[T], None]] = []

    @property
    def done(self) -> bool:
        """True once resolved."""
        return self.result is not None

    def on_done(self, callback: Callable[[T], None]) -> None:
        """Call ``callback(result)`` when resolved (at once if it already is)."""
        if self.result is not None:
            callback(self.result)
        else:
            self._callbacks.append(callback)

    def resolve(self, result: T, error: SessionLockerError | None = None) -> None:
        """Set the answer (the first one wins) and call the waiting callbacks."""
        if self.result is not None:
            return
        self.result, self.error = result, error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(result)

    def __repr__(self) -> str:
        state = "pending" if self.result is None else str(self.result)
        return f"<Handle {self.name!r} {state}>"


def resolved(name: str, result: T, error: SessionLockerError | None = None) -> Handle[T]:
    """A handle that is already answered."""
    handle: Handle[T] = Handle(name)
    handle.resolve(result, error)
    return handle
