"""ProfileService and ProfileStore beside sessionlocker: handoff and takeover, same store.

Each library runs the same three scenarios, in virtual time (``virtual.py``), on one
``MemoryStore`` whose clock is the virtual clock, with every request counted:

- ``handoff``: a live holder has had the record for a while (a random time between one
  and two of its autosave periods); another server loads it with ``force``
  (ProfileService ``ForceLoad``, ProfileStore ``StartSessionAsync``). Seconds until
  the second server has it, and requests made by both meanwhile.
- ``takeover_force``: the same, but the holder crashed at that moment.
- ``takeover_wait``: the holder crashed; the other server only waits (our ``repeat``,
  ProfileService's handler answering ``"Repeat"``; ProfileStore has no such mode).

sessionlocker runs its real code (``LockerService``) with its default settings; the
Roblox libraries run as the models in ``roblox.py``. Requests to renew one's own lease
are not counted (one per process per third of a TTL, whatever the number of records),
nor are subscriptions to notifications (adding or removing a watched key).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from typing import Any

from roblox import PROFILE_SERVICE, PROFILE_STORE, RobloxServer, Rules

from sessionlocker.benchmarks.common import Sizes, percentiles, rounded
from sessionlocker.benchmarks.virtual import World
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import CountingStore, MemoryStore

__all__ = ["baselines"]

_KEY = "player-1"
#: Longest a scenario may take, in virtual seconds (ProfileService's wait is 30 min).
_LIMIT = 4 * 3600.0
_SCENARIOS = (("handoff", False, "force"), ("takeover_force", True, "force"))
_WAIT = ("takeover_wait", True, "repeat")

#: One run of a scenario: (virtual seconds until loaded, requests made).
Outcome = tuple[float, int]


def baselines(sizes: Sizes, *, notifications: bool = False) -> dict[str, Any]:
    """Every library through every scenario, ``sizes.baseline_samples`` times each.

    sessionlocker runs polling only, and also with notifications when ``notifications``
    (when its driver uses them: see ``probe.py``).
    """
    spec = Spec("players", lambda: {"coins": 0})
    settings = {
        "lease_s": spec.lease,
        "autosave_s": spec.autosave_period,
        "poll_s": spec.poll_period,
        "force_timeout_s": spec.force_timeout,
    }
    systems: dict[str, Any] = {}
    for notified in (False, True) if notifications else (False,):
        name = "sessionlocker_notified" if notified else "sessionlocker"

        def ours(dead: bool, mode: str, rng: random.Random, notified: bool = notified) -> Outcome:
            return _ours(spec, dead, mode, rng, notifications=notified)

        systems[name] = {
            "settings": {**settings, "notifications": notified},
            **_run_all(ours, sizes, wait=True),
        }
    for rules, wait in ((PROFILE_SERVICE, True), (PROFILE_STORE, False)):
        run = _roblox_runner(rules)
        systems[rules.name.lower()] = {"rules": rules.as_dict(), **_run_all(run, sizes, wait)}
    return {
        "clock": "virtual seconds; store requests take no time",
        "store": "MemoryStore on the virtual clock, every request counted",
        "samples": sizes.baseline_samples,
        "systems": systems,
    }


def _run_all(
    run: Callable[[bool, str, random.Random], Outcome], sizes: Sizes, wait: bool
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, dead, mode in (*_SCENARIOS, _WAIT):
        if name == "takeover_wait" and not wait:
            figures[name] = None
            continue
        rng = random.Random(f"{name}-{mode}")
        outcomes = [run(dead, mode, rng) for _ in range(sizes.baseline_samples)]
        figures[f"{name}_s"] = percentiles([seconds for seconds, _ in outcomes])
        figures[f"{name}_requests"] = rounded(statistics.mean(n for _, n in outcomes))
    return figures


#: Not counted: one's own lease upkeep (per process) and notification subscriptions.
_NOT_REQUESTS = frozenset({"put_lease", "drop_lease", "watch_add", "watch_discard"})


def _requests(counting: CountingStore) -> int:
    counts = counting.counts()
    return sum(n for kind, n in counts.items() if kind not in _NOT_REQUESTS)


def _ours(spec: Spec, dead: bool, mode: str, rng: random.Random, *, notifications: bool) -> Outcome:
    world = World()
    counting = CountingStore.wrap(MemoryStore(clock=world.clock), notifications=notifications)
    holder, waiter = (
        LockerService(
            counting,
            spec,
            lease_id=name,
            clock=world.clock,
            wall=world.clock.wall,
            executor=world.executor(),
        )
        for name in ("server-A", "server-B")
    )
    world.add(holder)
    world.add(waiter)
    held = holder.locker(_KEY)
    held.acquire()
    _settle(world, lambda: held.status is Status.LOADED)
    world.wait(rng.uniform(spec.autosave_period, 2 * spec.autosave_period))
    if dead:
        world.remove(holder)
    counting.reset()
    start = world.clock.now
    wanting = waiter.locker(_KEY)
    wanting.acquire(LoadMode(mode))
    _settle(world, lambda: wanting.status is Status.LOADED)
    return world.clock.now - start, _requests(counting)


def _roblox_runner(rules: Rules) -> Callable[[bool, str, random.Random], Outcome]:
    def run(dead: bool, mode: str, rng: random.Random) -> Outcome:
        world = World()
        counting = CountingStore(MemoryStore(clock=world.clock))
        servers = {
            job: RobloxServer(rules, job, counting, world.clock, world.activity)
            for job in ("server-A", "server-B")
        }
        holder, waiter = servers.values()
        for server in servers.values():
            server.peers = servers
            world.add(server)
        holder.load(_KEY, force=True, on_loaded=lambda: None)
        _settle(world, lambda: holder.loaded == _KEY)
        world.wait(rng.uniform(rules.autosave, 2 * rules.autosave))
        if dead:
            holder.crashed = True
            world.remove(holder)
        counting.reset()
        start = world.clock.now
        loaded: list[float] = []
        waiter.load(_KEY, force=mode == "force", on_loaded=lambda: loaded.append(world.clock.now))
        _settle(world, lambda: bool(loaded))
        return loaded[0] - start, _requests(counting)

    return run


def _settle(world: World, done: Callable[[], bool]) -> None:
    if not world.run_until(done, _LIMIT):
        raise SessionLockerError(f"a baseline scenario did not finish in {_LIMIT} virtual s")
