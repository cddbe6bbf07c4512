"""Virtual time: run services (ours, or models of other libraries) on a clock we move.

A ``World`` holds a ``VirtualClock`` and some *actors*: anything with
``update(now)`` and ``next_deadline()``, which is what a ``LockerService`` offers. Our
services run with an ``InlineExecutor``, so each store call runs at once, in the
frame that sent it, against a real store; the world calls every actor again at the
same instant until no store call happens, then jumps the clock to the earliest
deadline. Store calls take no virtual time: the figures are what the timing rules
alone cost, the same for every library measured this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sessionlocker.errors import SessionLockerError

if TYPE_CHECKING:
    from sessionlocker.drivers.service import LockerService

__all__ = ["Actor", "InlineExecutor", "VirtualClock", "World"]

#: Wall-clock seconds of virtual time zero (only stored in records as timestamps).
EPOCH = 1_700_000_000.0


class VirtualClock:
    """Seconds that pass only when ``World`` moves them. Also a wall clock (``wall``)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        """Epoch seconds at this virtual instant (for timestamps written into records)."""
        return EPOCH + self.now


class Activity:
    """Counts store calls made in a world, so it knows when an instant has settled."""

    def __init__(self) -> None:
        self.calls = 0


class InlineExecutor:
    """Runs each store call at once, in the caller's thread, and counts it."""

    def __init__(self, activity: Activity) -> None:
        self._activity = activity

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        """Run ``call`` now and hand its result to ``done``."""
        self._activity.calls += 1
        done(call())

    def shutdown(self) -> None:
        """Nothing is ever pending."""


class Actor(Protocol):
    """Something driven by frames: our ``LockerService``, or a model of another library."""

    def update(self, now: float | None = None) -> None:
        """Do what is due at ``now``."""
        ...

    def next_deadline(self) -> float | None:
        """When ``update`` next has work (``None``: not before something else happens)."""
        ...


class World:
    """A virtual clock, the actors living on it, and the loop that drives them."""

    #: Passes at one instant after which the world is considered stuck (a livelock).
    MAX_PASSES = 10_000

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.activity = Activity()
        self.actors: list[Actor] = []

    def executor(self) -> InlineExecutor:
        """An executor for a ``LockerService`` living in this world."""
        return InlineExecutor(self.activity)

    def add(self, actor: Actor) -> None:
        """Start driving ``actor``."""
        self.actors.append(actor)

    def remove(self, actor: Actor) -> None:
        """Stop driving ``actor``: as far as the store can tell, it has crashed."""
        self.actors.remove(actor)

    def settle(self) -> None:
        """Call every actor at the current instant until none makes a store call."""
        for _ in range(self.MAX_PASSES):
            before = self.activity.calls
            for actor in list(self.actors):
                actor.update(self.clock.now)
            if self.activity.calls == before:
                return
        raise SessionLockerError(f"virtual world stuck at t={self.clock.now}")

    def run_until(self, done: Callable[[], bool], limit: float) -> bool:
        """Advance through deadlines until ``done()`` (True) or ``limit`` seconds pass."""
        end = self.clock.now + limit
        stalled = 0
        while True:
            self.settle()
            if done():
                return True
            deadlines = [d for d in (a.next_deadline() for a in self.actors) if d is not None]
            upcoming = min(deadlines, default=end)
            if upcoming > end:
                self.clock.now = end
                self.settle()
                return done()
            stalled = stalled + 1 if upcoming <= self.clock.now else 0
            if stalled > self.MAX_PASSES:
                raise SessionLockerError(f"virtual world makes no progress at t={self.clock.now}")
            self.clock.now = max(self.clock.now, upcoming)

    def close(self, service: LockerService) -> None:
        """Release ``service``'s lockers in virtual time, then close it (never blocks)."""
        for locker in service.lockers():
            locker.release()
        self.run_until(lambda: not service.lockers(), 600.0)
        service.close(timeout=0.0)
        if service in self.actors:
            self.remove(service)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, driving every actor on the way."""
        self.run_until(lambda: False, seconds)
