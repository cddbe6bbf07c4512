"""Models of ProfileService's and ProfileStore's session locking, on a real store.

Each model follows the library's own code for *when* it reads and writes one profile,
and *what* it changes in the profile's metadata; the data itself is a small dict. Its
calls go through a real ``Store`` (``update`` with a transform, as ``UpdateAsync``),
so the same store and the same round-trip counting serve all libraries measured, and
it runs in virtual time (``virtual.py``) as an actor. Constants, from the sources
(MadStudioRoblox/ProfileService ``src/ProfileService.lua`` ``SETTINGS``;
MadStudioRoblox/ProfileStore ``ProfileStore.luau``, top of file):

ProfileService: ``AutoSaveProfiles = 30`` s; ``RobloxWriteCooldown = 7`` s between calls
for one key (its ``CustomWriteQueueAsync``); ``ForceLoadMaxSteps = 8``;
``AssumeDeadSessionLock = 30 * 60`` s since ``MetaData.LastUpdate``.

ProfileStore: ``AUTO_SAVE_PERIOD = 300``; ``FIRST_LOAD_REPEAT = 5``;
``LOAD_REPEAT_PERIOD = 10``; ``SESSION_STEAL = 40`` (so it steals after
``ceil(40 / 10) = 4`` steps); ``ASSUME_DEAD = 630``; a holder told by MessagingService
that another server wants the profile ends its session at once (at most once per 6 s).

Simplifications, all in the libraries' favour: frames (Heartbeat, ~1/60 s) take no
time; MessagingService delivers instantly and never loses a message; with one profile
loaded, autosave comes every autosave period after the load (their round-robin,
which skips profiles loaded less than half a period ago, gives exactly that).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sessionlocker.benchmarks.virtual import Activity, VirtualClock
from sessionlocker.core.protocol import Put, Versioned
from sessionlocker.stores import Store

__all__ = ["PROFILE_SERVICE", "PROFILE_STORE", "RobloxServer", "Rules"]


@dataclass(frozen=True)
class Rules:
    """The timing rules of one library (see the module docstring for their sources)."""

    name: str
    autosave: float
    #: Least time between two calls for one key from one server (0: none).
    cooldown: float
    #: Wait after the first conflicting read, then between later ones.
    first_repeat: float
    repeat: float
    #: Steps after the first before stealing.
    steal_steps: int
    #: A session whose LastUpdate is older than this is assumed dead.
    assume_dead: float
    #: A live holder is told at once (MessagingService) rather than at its next autosave.
    messaging: bool
    #: A holder ignores a second message within this many seconds.
    message_gap: float
    #: A save that finds a force load pending releases in the same write (ProfileService)
    #: rather than in a second one (ProfileStore).
    release_in_save: bool

    def as_dict(self) -> dict[str, Any]:
        """The rules as JSON values."""
        return {k: v for k, v in self.__dict__.items() if k != "name"}


PROFILE_SERVICE = Rules(
    name="ProfileService",
    autosave=30.0,
    cooldown=7.0,
    first_repeat=7.0,
    repeat=7.0,
    steal_steps=8,
    assume_dead=30 * 60.0,
    messaging=False,
    message_gap=0.0,
    release_in_save=True,
)

PROFILE_STORE = Rules(
    name="ProfileStore",
    autosave=300.0,
    cooldown=0.0,
    first_repeat=5.0,
    repeat=10.0,
    steal_steps=math.ceil(40 / 10),
    assume_dead=630.0,
    messaging=True,
    message_gap=6.0,
    release_in_save=False,
)


class _Loading:
    """The state of one ``LoadProfileAsync`` / ``StartSessionAsync`` call."""

    def __init__(self, force: bool, on_loaded: Callable[[], None]) -> None:
        self.force = force
        self.on_loaded = on_loaded
        self.request = force
        self.steal = False
        self.steps = 0


class RobloxServer:
    """One game server running the modelled library, holding at most one profile."""

    def __init__(
        self, rules: Rules, job: str, store: Store, clock: VirtualClock, activity: Activity
    ) -> None:
        self.rules = rules
        self.job = job
        self.store = store
        self.clock = clock
        self.activity = activity
        self.loaded: str | None = None
        self.load_count = -1
        self.released = False
        #: Set when the server has crashed: it answers no message any more.
        self.crashed = False
        self.peers: dict[str, RobloxServer] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._last_call = -math.inf
        self._last_message = -math.inf

    # ------------------------------------------------------------------ the actor

    def update(self, now: float | None = None) -> None:
        """Run every timer that is due."""
        at = self.clock.now if now is None else now
        while self._timers and self._timers[0][0] <= at:
            _, _, action = heapq.heappop(self._timers)
            action()

    def next_deadline(self) -> float | None:
        """When the next timer is due."""
        return self._timers[0][0] if self._timers else None

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (self.clock.now + delay, next(self._order), action))

    def _call(
        self, key: str, edit: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """One ``UpdateAsync``: read, edit the profile, write it back."""
        self.activity.calls += 1
        self._last_call = self.clock.now

        def transform(current: Versioned | None) -> Put[dict[str, Any]]:
            profile = json.loads(current.value) if current is not None else None
            edited = edit(profile)
            return Put(json.dumps(edited).encode(), edited)

        return self.store.update(key, transform).outcome

    def _queued(self, action: Callable[[], None]) -> None:
        """Run ``action`` once this server's write cooldown for the key allows."""
        self._later(max(0.0, self._last_call + self.rules.cooldown - self.clock.now), action)

    # ------------------------------------------------------------------ loading

    def load(self, key: str, *, force: bool, on_loaded: Callable[[], None]) -> None:
        """Start loading ``key`` (``force``: ForceLoad / StartSessionAsync; else Repeat)."""
        state = _Loading(force, on_loaded)
        self._queued(lambda: self._attempt(key, state))

    def _attempt(self, key: str, state: _Loading) -> None:
        profile = self._call(key, lambda p: self._take(p, state))
        meta = profile["MetaData"]
        if meta["ActiveSession"] == [self.job]:
            self.loaded, self.load_count, self.released = key, meta["SessionLoadCount"], False
            self._later(self.rules.autosave, lambda: self._autosave(key))
            state.on_loaded()
            return
        delay = self.rules.first_repeat if state.request else self.rules.repeat
        if state.force:
            if meta["ForceLoadSession"] != [self.job]:
                return  # another server force-loads it: this load returns nil
            if not state.request:
                state.steps += 1
                state.steal = state.steal or state.steps >= self.rules.steal_steps
            state.request = False
            if self.rules.messaging:
                self._message(meta["ActiveSession"])
        if self.rules.cooldown:
            self._queued(lambda: self._attempt(key, state))
        else:
            self._later(delay, lambda: self._attempt(key, state))

    def _take(self, profile: dict[str, Any] | None, state: _Loading) -> dict[str, Any]:
        """The load's transform (ExistingProfileHandle, MissingProfileHandle, EditProfile)."""
        now, me = self.clock.wall(), [self.job]
        if profile is None:
            profile = {"Data": {"coins": 0}, "MetaData": {"SessionLoadCount": 0}}
            profile["MetaData"].update(ActiveSession=me, ForceLoadSession=None, LastUpdate=None)
        meta = profile["MetaData"]
        active = meta["ActiveSession"]
        if active is None:
            meta["ActiveSession"], meta["ForceLoadSession"] = me, None
        elif active != me:
            last = meta["LastUpdate"]
            if last is not None and now - last > self.rules.assume_dead:
                meta["ActiveSession"], meta["ForceLoadSession"] = me, None
            elif state.steal:
                if meta["ForceLoadSession"] == me:
                    meta["ActiveSession"], meta["ForceLoadSession"] = me, None
            elif state.request:
                meta["ForceLoadSession"] = me
        else:
            meta["ForceLoadSession"] = None
        if meta["ActiveSession"] == me:
            meta["SessionLoadCount"] += 1
            meta["LastUpdate"] = now
        return profile

    # ------------------------------------------------------------------ holding

    def _autosave(self, key: str) -> None:
        if self.loaded != key:
            return
        self._queued(lambda: self._save(key, release=False))
        self._later(self.rules.autosave, lambda: self._autosave(key))

    def _save(self, key: str, *, release: bool) -> None:
        if self.loaded != key:
            return
        profile = self._call(key, lambda p: self._saved(p, release))
        meta = profile["MetaData"]
        pending = meta["ForceLoadSession"] not in (None, [self.job])
        if meta["ActiveSession"] != [self.job]:
            self.loaded, self.released = None, True  # released (or lost): the session ends
        elif pending and not release:
            self._queued(lambda: self._save(key, release=True))  # ProfileStore: a second write

    def _saved(self, profile: dict[str, Any] | None, release: bool) -> dict[str, Any]:
        """The save's transform: write only while this session still owns the profile."""
        assert profile is not None
        meta = profile["MetaData"]
        if meta["ActiveSession"] == [self.job] and meta["SessionLoadCount"] == self.load_count:
            profile["Data"]["coins"] += 1
            meta["LastUpdate"] = self.clock.wall()
            pending = meta["ForceLoadSession"] not in (None, [self.job])
            if release or (pending and self.rules.release_in_save):
                meta["ActiveSession"] = None
        return profile

    def _message(self, active: list[str] | None) -> None:
        """ProfileStore's PublishAsync to the holder: end your session."""
        holder = self.peers.get(active[0]) if active else None
        if holder is not None:
            holder.receive_end_session()

    def receive_end_session(self) -> None:
        """The holder's MessagingService handler (only while the server runs)."""
        key = self.loaded
        if self.crashed or key is None:
            return
        if self.clock.now - self._last_message <= self.rules.message_gap:
            return
        self._last_message = self.clock.now
        self._later(0.0, lambda: self._save(key, release=True))
