"""A loopback rig for the pure state machines: requests run inline on a MemoryStore.

The rig owns the clock. ``step()`` runs the lease and the locker until nothing more
happens at the current time; a test advances time with ``advance``.
"""

from __future__ import annotations

from typing import Any

from sessionlocker.core.lease import Lease
from sessionlocker.core.locker import Locker
from sessionlocker.core.protocol import Request, Update, Updated
from sessionlocker.core.spec import Spec
from sessionlocker.drivers.executor import execute
from sessionlocker.drivers.mailbox import Collect, Tell, addressee
from sessionlocker.errors import StoreError
from sessionlocker.stores import MemoryStore, Store

SPEC = Spec(
    "t", lambda: {"log": []}, lease=1.0, autosave_period=0.5, force_timeout=0.6, poll_period=0.1
)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Rig:
    """One session (lease) on a store, with any number of lockers.

    ``mail``: read the session's mailbox with each renewal, as the drivers do (False: a
    holder that never hears a release request, to test ``force`` against one).
    """

    def __init__(
        self, store: Store, session: str, clock: Clock, spec: Spec = SPEC, *, mail: bool = True
    ) -> None:
        self.store, self.clock, self.spec, self.mail = store, clock, spec, mail
        self.lease = Lease(session, spec.lease, b"{}", clock=clock, wall=clock)
        self.lockers: list[Locker] = []
        self.sent: list[Request] = []

    def locker(self, key: str) -> Locker:
        locker = Locker(key, self.spec, self.lease)
        self.lockers.append(locker)
        return locker

    def step(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            busy = False
            renewal = self.lease.update(self.clock.now)
            if renewal is not None:
                result = execute(self.store, renewal)
                self.lease.handle(
                    result if isinstance(result, StoreError) else None, self.clock.now
                )
                if self.mail:
                    self.check_mail()
                busy = True
            for locker in self.lockers:
                for request in locker.update(self.clock.now):
                    self.sent.append(request)
                    result = execute(self.store, request)
                    locker.handle(result, self.clock.now)
                    self.tell(request, result)
                    busy = True
            if not busy:
                return

    def check_mail(self) -> None:
        """As the drivers do with each renewal: poke the lockers our mailbox names."""
        keys = Collect(self.store, self.lease.lease_id)().keys
        for locker in self.lockers:
            if locker.store_key in keys:
                locker.poke()

    def tell(self, request: Request, result: object) -> None:
        """As the drivers do: post to the mailbox of a session a result names."""
        if isinstance(request, Update) and isinstance(result, Updated):
            session = addressee(result.outcome, self.lease.lease_id)
            if session is not None:
                execute(self.store, Tell(session, request.key).request())


def new_world() -> tuple[MemoryStore, Clock]:
    clock = Clock()
    return MemoryStore(clock=clock), clock


def run(rigs: list[Rig], clock: Clock, seconds: float, tick: float = 0.05) -> None:
    """Advance time in ticks, stepping every rig each tick."""
    end = clock.now + seconds
    while clock.now < end:
        for rig in rigs:
            rig.step()
        clock.now += tick
    for rig in rigs:
        rig.step()


def log(locker: Locker) -> list[Any]:
    return list(locker.data["log"])
