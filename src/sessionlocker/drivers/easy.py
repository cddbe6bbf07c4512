"""The easy API: ``EasyStore`` and ``EasyProfile`` (SessionLocker's EasyStore/EasyProfile,
ProfileService's profiles), for either driver.

A game server does not hold a profile inside one block of code: a player joins, plays
for a while and leaves, and the server reacts to events. So the easy API is
start / get / end, with callbacks: ``start_session(key)`` starts loading and returns
the key's ``EasyProfile`` at once (its ``data`` is usable before the load completes;
changes made through ``edit`` are replayed on the loaded data); ``on("loaded", ...)``,
``"saved"``, ``"released"``, ``"lost"`` (and the locker's other events) report what
happened; ``end_session(key)`` saves and releases, and does nothing when already
ended. A key keeps one profile (one locker) for the life of the store, so starting it
again after it ended reuses it, callbacks included.

The frames are the driver's: call ``LockerService.update()`` each frame, or let
``AsyncLockerService`` run its own task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

from sessionlocker.core.locker import Locker
from sessionlocker.core.modes import LoadMode, Mode
from sessionlocker.core.snapshot import SaveFacts
from sessionlocker.core.spec import D
from sessionlocker.core.states import Lifecycle, Status
from sessionlocker.drivers.aio import AsyncLockerService
from sessionlocker.drivers.service import LockerService

__all__ = ["EasyProfile", "EasyStore"]

_ACTIVE = frozenset({Status.LOADING, Status.WAITING, Status.LOADED})


class EasyProfile(SaveFacts[D]):
    """One key's profile: its data (a ``D``), its session's state, and callbacks for its
    events."""

    locker: Locker[D]

    def __init__(self, locker: Locker[D]) -> None:
        self.locker = locker

    @property
    def key(self) -> str:
        """The profile's key."""
        return self.locker.key

    @property
    def data(self) -> D:
        """The data: the loaded copy, or a transient one before the load completes."""
        return self.locker.data

    def edit(self, change: Callable[[D], object]) -> int:
        """Apply ``change(data)`` now (and again on the loaded data if still loading)."""
        return self.locker.edit(change)

    def mark_changed(self) -> int:
        """Note a change made to ``data`` in place; returns its change id."""
        return self.locker.mark_changed()

    def is_loaded(self) -> bool:
        """The session holds the lock and the data is the stored one."""
        return self.locker.status is Status.LOADED

    def is_active(self) -> bool:
        """A session was started and has not ended (loading, waiting or loaded)."""
        return self.locker.status in _ACTIVE

    def on(self, event: str, callback: Callable[[EasyProfile[D]], None]) -> Callable[[], None]:
        """Call ``callback(profile)`` on ``event`` (``loaded``, ``saved``, ``released``,
        ``lost``, ...) in every session of this key; returns a function that stops it.
        """
        return self.locker.on(event, lambda _: callback(self))

    def end_session(self) -> None:
        """Save and release (or cancel the load). Idempotent."""
        self.locker.release()

    def __repr__(self) -> str:
        return f"<EasyProfile {self.key!r} {self.locker.status.value}>"


class EasyStore(Generic[D]):
    """Profiles of one service, started and ended by key."""

    def __init__(self, service: LockerService[D] | AsyncLockerService[D]) -> None:
        self.service = service
        self._profiles: dict[str, EasyProfile[D]] = {}

    def start_session(self, key: str, mode: Mode = LoadMode.REPEAT) -> EasyProfile[D]:
        """Start loading ``key`` unless its session is already active; returns its profile."""
        profile = self._profiles.get(key)
        if profile is None:
            profile = EasyProfile(self.service.locker(key))
            self._profiles[key] = profile
        locker = profile.locker
        if locker.status is Status.RELEASING:  # started again while ending: load right after
            stops: list[Callable[[], None]] = []

            def again(_: Locker[Any]) -> None:
                for stop in stops:
                    stop()
                if locker.status not in _ACTIVE:  # not started again already
                    locker.acquire(mode)

            stops.extend(locker.on(event, again) for event in (Lifecycle.IDLE, Lifecycle.LOST))
        elif not profile.is_active():
            locker.acquire(mode)
        return profile

    def get(self, key: str) -> EasyProfile[D] | None:
        """The profile of ``key`` while its session is active (loading or loaded)."""
        profile = self._profiles.get(key)
        return profile if profile is not None and profile.is_active() else None

    def end_session(self, key: str) -> None:
        """Save and release ``key``'s session. Does nothing if none is active."""
        profile = self._profiles.get(key)
        if profile is not None:
            profile.end_session()

    def profiles(self) -> list[EasyProfile[D]]:
        """Every profile whose session is active."""
        return [p for p in self._profiles.values() if p.is_active()]
