"""Store round trips per lifecycle step, counted by ``CountingStore`` around a real store.

Two ``LockerService``s run on the backend under test in virtual time (``virtual.py``),
each through its own counting wrapper, so every step is exact and repeatable:

- ``load``: acquire a record (new, then existing) until loaded;
- ``save``: one changed save (``force_save``), until confirmed;
- ``idle_autosave``: an autosave period passing with nothing changed;
- ``release``: release with a change still pending (saved and unlocked in one write);
- ``release_clean``: release with nothing pending;
- ``handoff``: a second service loads with ``force`` while the first holds the record
  and answers at its next check, half a poll period later; both sides counted;
- ``remote_change``: ``LockerService.send`` to a held record, and the holder applying it.

Each figure is a count of ``Store`` calls; ``wire`` is the server's own count of the
requests it received in the step, where it can tell (``wire.py``): a generic update
without a known revision is one call but two round trips (a read, then the write).

Counted are requests about records and other sessions' leases. Renewing one's own
lease (``put_lease``, one per service per third of a TTL, however many records it
holds) is per process, not per record, and is shown apart as ``lease_renewals``;
adding a key to the store's notifications or removing it (``watch_add`` and
``watch_discard``, where the driver watches) is shown apart as ``watch_requests``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sessionlocker.benchmarks.virtual import World
from sessionlocker.benchmarks.wire import WireCounter, wire_counter
from sessionlocker.core.locker import Locker
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import CountingStore, Store, open_store

__all__ = ["lifecycle_round_trips"]

#: Lease upkeep of one's own session: per process, not per record.
_UPKEEP = frozenset({"put_lease", "drop_lease"})
#: Subscriptions to notifications (counted apart: they are not record requests).
_WATCH = frozenset({"watch_add", "watch_discard"})

#: Real seconds given to notifications of a step to arrive, before counting it.
_NOTIFICATION_WAIT = 0.05

_SPEC = {"lease": 30.0, "autosave_period": 1.0, "poll_period": 1.0, "force_timeout": 60.0}


def _spec() -> Spec:
    return Spec(
        "bench",
        lambda: {"coins": 0},
        lease=_SPEC["lease"],
        autosave_period=_SPEC["autosave_period"],
        poll_period=_SPEC["poll_period"],
        force_timeout=_SPEC["force_timeout"],
    )


class _Side:
    """One service in the world, with its counting store."""

    def __init__(self, world: World, inner: Store, spec: Spec, name: str) -> None:
        self.counting = CountingStore.wrap(inner)
        self.service = LockerService(
            self.counting,
            spec,
            lease_id=f"bench-{name}-{uuid.uuid4().hex[:8]}",
            clock=world.clock,
            wall=world.clock.wall,
            executor=world.executor(),
        )
        world.add(self.service)

    def take(self) -> dict[str, int]:
        """The round trips since the last ``take``, without zero kinds."""
        return {kind: n for kind, n in self.counting.reset().items() if n}


class _Meter:
    """Both sides' counts, and the server's own count of requests when it has one."""

    def __init__(
        self, world: World, holder: _Side, waiter: _Side, wire: WireCounter | None
    ) -> None:
        self.world = world
        self.holder = holder
        self.waiter = waiter
        self.wire = wire

    def quiesce(self) -> None:
        """Let notifications of the step arrive (they come on other threads, in real
        time) and the requests they cause run, so they count in the step that caused them.
        """
        activity = self.world.activity
        for _ in range(20):
            before = activity.calls
            time.sleep(_NOTIFICATION_WAIT)
            self.world.settle()
            if activity.calls == before:
                return

    def take(self) -> dict[str, Any]:
        """Counts since the last ``take``, per side; ``wire``: the server's count."""
        self.quiesce()
        wire = self.wire
        return {
            "holder": self.holder.take(),
            "waiter": self.waiter.take(),
            "wire": wire.take() if wire is not None else None,
            "wire_commands": wire.last_commands() if wire is not None else None,
        }


def lifecycle_round_trips(url: str) -> dict[str, Any]:
    """Round trips of each lifecycle step on the backend ``url`` names."""
    inner = open_store(url)
    world = World()
    spec = _spec()
    key = f"trips-{uuid.uuid4().hex[:10]}"
    holder = _Side(world, inner, spec, "holder")
    waiter = _Side(world, inner, spec, "waiter")
    wire = wire_counter(url)
    meter = _Meter(world, holder, waiter, wire)
    try:
        world.settle()  # both leases are up
        _warm_up(world, holder, waiter, f"{key}-warm-up")
        meter.take()
        steps = _steps(world, meter, key)
        steps["handoff"] = _handoff(world, meter, key)
        steps["remote_change"] = _remote_change(world, meter, key)
    finally:
        for side in (holder, waiter):
            world.close(side.service)
        if wire is not None:
            wire.close()
        inner.delete(spec.store_key(key))
        inner.delete(spec.store_key(f"{key}-warm-up"))
        inner.close()
    return _summary(steps, wire is not None)


def _warm_up(world: World, holder: _Side, waiter: _Side, key: str) -> None:
    """Load, save and release once per side, so connections and scripts are ready."""
    for side in (holder, waiter):
        locker = side.service.locker(key)
        _load(world, locker)
        locker.mark_changed()
        locker.release()
        _run(world, lambda held=locker: held.status is Status.IDLE, "a warm-up release")


def _steps(world: World, meter: _Meter, key: str) -> dict[str, dict[str, Any]]:
    service = meter.holder.service
    locker = service.locker(key)
    steps: dict[str, dict[str, Any]] = {}
    _load(world, locker)
    steps["load"] = meter.take()

    locker.data["coins"] += 1
    locker.mark_changed()
    locker.force_save()
    _run(world, lambda: not locker.changes_pending, "a save")
    steps["save"] = meter.take()

    world.wait(service.spec.autosave_period)
    steps["idle_autosave"] = meter.take()

    locker.data["coins"] += 1
    locker.mark_changed()
    locker.release()
    _run(world, lambda: locker.status is Status.IDLE, "a release")
    steps["release"] = meter.take()

    _load(world, locker)
    steps["load_existing"] = meter.take()
    locker.release()
    _run(world, lambda: locker.status is Status.IDLE, "a release")
    steps["release_clean"] = meter.take()
    return steps


def _handoff(world: World, meter: _Meter, key: str) -> dict[str, Any]:
    held = meter.holder.service.locker(key)
    _load(world, held)
    world.wait(meter.holder.service.spec.autosave_period / 2)
    meter.take()
    wanting = meter.waiter.service.locker(key)
    wanting.acquire("force")
    _run(world, lambda: wanting.status is not Status.LOADING, "a release request")
    # Where the store notifies, the holder hears the request in real time, well before
    # the waiter's next poll in virtual time: let it answer before the clock moves on.
    meter.quiesce()
    _run(world, lambda: wanting.status is Status.LOADED, "a force handoff")
    step = meter.take()
    wanting.release()
    _run(world, lambda: wanting.status is Status.IDLE, "a release")
    meter.take()
    return step


def _remote_change(world: World, meter: _Meter, key: str) -> dict[str, Any]:
    applied: list[object] = []
    meter.holder.service.on_message("gift", lambda locker, message: applied.append(message))
    held = meter.holder.service.locker(key)
    _load(world, held)
    meter.take()
    meter.waiter.service.send(key, "gift", {"coins": 1})  # the waiter sends
    world.settle()
    _run(world, lambda: bool(applied) and not held.changes_pending, "applying a message")
    step = meter.take()
    held.release()
    _run(world, lambda: held.status is Status.IDLE, "a release")
    return step


def _load(world: World, locker: Locker) -> None:
    locker.acquire()
    _run(world, lambda: locker.status is not Status.LOADING, "a load")
    if locker.status is not Status.LOADED:
        raise SessionLockerError(f"benchmark record did not load: {locker.error}")


def _run(world: World, done: Any, what: str) -> None:
    if not world.run_until(done, 120.0):
        raise SessionLockerError(f"{what} did not finish within 120 s of virtual time")


def _requests(counts: dict[str, int]) -> int:
    return sum(n for kind, n in counts.items() if kind not in _UPKEEP | _WATCH)


def _summary(steps: dict[str, dict[str, Any]], counted_wire: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    wire: dict[str, Any] = {}
    watches: dict[str, int] = {}
    renewals = 0
    for name, step in steps.items():
        sides = [step["holder"], step["waiter"]]
        figures[name] = sum(_requests(counts) for counts in sides)
        watches[name] = sum(n for c in sides for kind, n in c.items() if kind in _WATCH)
        renewals += sum(counts.get("put_lease", 0) for counts in sides)
        wire[name] = step["wire"]
    return {
        **figures,
        "wire": wire if counted_wire else None,
        "watch_requests": watches,
        "lease_renewals": renewals,
        "detail": steps,
        "settings": dict(_SPEC),
        "clock": "virtual (store calls are real; time between them is simulated)",
    }
