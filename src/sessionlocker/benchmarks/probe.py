"""Does ``LockerService`` use store notifications? Find out by trying, in virtual time.

A holder loads a record on a notifying memory store, with autosave and polling a
thousand seconds apart; another service then asks for the record with ``force``. If
the holder answers within ten seconds, something other than its autosave woke it: the
driver watches the store. The benchmarks measure "with notifications" only then.
"""

from __future__ import annotations

from sessionlocker.benchmarks.virtual import World
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.stores import MemoryStore
from sessionlocker.stores.base import Notifying

__all__ = ["driver_uses_notifications"]


def driver_uses_notifications() -> bool:
    """True when a holder answers a release request before its next autosave."""
    world = World()
    store = MemoryStore(clock=world.clock)
    if not isinstance(store, Notifying):
        return False
    slow = 1000.0
    spec: Spec[dict[str, object]] = Spec(
        "probe", dict, autosave_period=slow, poll_period=slow, force_timeout=slow
    )
    holder, waiter = (
        LockerService(store, spec, lease_id=name, clock=world.clock, executor=world.executor())
        for name in ("probe-holder", "probe-waiter")
    )
    for service in (holder, waiter):
        world.add(service)
    held = holder.locker("probe")
    held.acquire()
    world.run_until(lambda: held.status is Status.LOADED, 10.0)
    wanting = waiter.locker("probe")
    wanting.acquire("force")
    return world.run_until(lambda: wanting.status is Status.LOADED, 10.0)
