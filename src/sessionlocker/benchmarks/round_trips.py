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

Counted are requests about records and other sessions' leases. Renewing one's own
lease (``put_session``, one per service per third of a TTL, however many records it
holds) is per process, not per record, and is shown apart as ``lease_renewals``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sessionlocker.benchmarks.virtual import World
from sessionlocker.core.locker import Locker
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import CountingStore, Store, open_store

__all__ = ["lifecycle_round_trips"]

#: Lease upkeep of one's own session: per process, not per record.
_UPKEEP = frozenset({"put_session", "drop_session"})

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
            session_id=f"bench-{name}-{uuid.uuid4().hex[:8]}",
            clock=world.clock,
            wall=world.clock.wall,
            executor=world.executor(),
        )
        world.add(self.service)

    def take(self) -> dict[str, int]:
        """The round trips since the last ``take``, without zero kinds."""
        return {kind: n for kind, n in self.counting.reset().items() if n}


def lifecycle_round_trips(url: str) -> dict[str, Any]:
    """Round trips of each lifecycle step on the backend ``url`` names."""
    inner = open_store(url)
    world = World()
    spec = _spec()
    key = f"trips-{uuid.uuid4().hex[:10]}"
    holder = _Side(world, inner, spec, "holder")
    waiter = _Side(world, inner, spec, "waiter")
    try:
        world.settle()  # both leases are up
        holder.take()
        waiter.take()
        steps = _steps(world, holder, key)
        steps["handoff"] = _handoff(world, holder, waiter, key)
        steps["remote_change"] = _remote_change(world, holder, waiter, key)
    finally:
        for side in (holder, waiter):
            world.close(side.service)
        inner.delete(spec.store_key(key))
        inner.close()
    return _summary(steps)


def _steps(world: World, holder: _Side, key: str) -> dict[str, dict[str, Any]]:
    service = holder.service
    locker = service.locker(key)
    steps: dict[str, dict[str, Any]] = {}
    _load(world, locker)
    steps["load"] = {"holder": holder.take()}

    locker.data["coins"] += 1
    locker.mark_changed()
    locker.force_save()
    _run(world, lambda: not locker.changes_pending, "a save")
    steps["save"] = {"holder": holder.take()}

    world.wait(service.spec.autosave_period)
    steps["idle_autosave"] = {"holder": holder.take()}

    locker.data["coins"] += 1
    locker.mark_changed()
    locker.release()
    _run(world, lambda: locker.status is Status.IDLE, "a release")
    steps["release"] = {"holder": holder.take()}

    _load(world, locker)
    steps["load_existing"] = {"holder": holder.take()}
    locker.release()
    _run(world, lambda: locker.status is Status.IDLE, "a release")
    steps["release_clean"] = {"holder": holder.take()}
    return steps


def _handoff(world: World, holder: _Side, waiter: _Side, key: str) -> dict[str, Any]:
    held = holder.service.locker(key)
    _load(world, held)
    world.wait(holder.service.spec.autosave_period / 2)
    holder.take()
    waiter.take()
    wanting = waiter.service.locker(key)
    wanting.acquire("force")
    _run(world, lambda: wanting.status is Status.LOADED, "a force handoff")
    step = {"holder": holder.take(), "waiter": waiter.take()}
    wanting.release()
    _run(world, lambda: wanting.status is Status.IDLE, "a release")
    holder.take()
    waiter.take()
    return step


def _remote_change(world: World, holder: _Side, sender: _Side, key: str) -> dict[str, Any]:
    send = getattr(sender.service, "send", None)
    if send is None:
        return {"note": "LockerService.send does not exist yet (issue 4): not measured"}
    applied: list[object] = []
    holder.service.on_message("gift", lambda locker, message: applied.append(message))
    held = holder.service.locker(key)
    _load(world, held)
    holder.take()
    sender.take()
    send(key, "gift", {"coins": 1})
    world.settle()
    sent = sender.take()
    _run(world, lambda: bool(applied) and not held.changes_pending, "applying a message")
    step = {"sender": sent, "holder": holder.take()}
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
    return sum(n for kind, n in counts.items() if kind not in _UPKEEP)


def _summary(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    renewals = 0
    for name, sides in steps.items():
        if "note" in sides:
            figures[name] = None
            continue
        counts = [c for c in sides.values() if isinstance(c, dict)]
        figures[name] = sum(_requests(c) for c in counts)
        renewals += sum(c.get("put_session", 0) for c in counts)
    return {
        **figures,
        "lease_renewals": renewals,
        "detail": steps,
        "settings": dict(_SPEC),
        "clock": "virtual (store calls are real; time between them is simulated)",
    }
