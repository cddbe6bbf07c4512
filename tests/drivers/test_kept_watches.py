"""A service keeps watching a key after its locker ends, so the next session of the same
key does not subscribe again; the oldest kept key is dropped past ``KEPT_WATCHES``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import open_backend
from sessionlocker import LockerService, Spec, Status
from sessionlocker.drivers import service as service_module
from sessionlocker.stores import CountingStore, MemoryStore, Store

# Autosave and polling far away: a holder answers a release request only when woken.
SLOW = {"lease": 5.0, "autosave_period": 60.0, "force_timeout": 30.0, "poll_period": 30.0}


@pytest.fixture(params=["memory", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


def spec() -> Spec[dict[str, int]]:
    return Spec("players", lambda: {"n": 0}, **SLOW)  # type: ignore[arg-type]


def test_sessions_of_one_key_subscribe_once() -> None:
    counting = CountingStore.wrap(MemoryStore())
    with LockerService(counting, spec()) as service:
        for _ in range(3):
            with service.session("p1", timeout=5) as player:
                player.data["n"] += 1
        counts = counting.counts()
        assert counts.get("watch_add", 0) == 3  # asked each time, a no-op once watched
        assert counts.get("watch_discard", 0) == 0


def test_past_the_limit_the_oldest_kept_key_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "KEPT_WATCHES", 2)
    counting = CountingStore.wrap(MemoryStore())
    with LockerService(counting, spec()) as service:
        for key in ("a", "b", "c", "a"):
            with service.session(key, timeout=5):
                pass
        assert counting.counts().get("watch_discard", 0) == 2  # "a", then "b"


def test_a_key_opened_again_still_hears_a_release_request_at_once(store: Store) -> None:
    with LockerService(store, spec()) as holder, LockerService(store, spec()) as waiter:
        with holder.session("p1", timeout=5) as player:
            player.data["n"] += 1
        held = holder.locker("p1")
        held.acquire()
        assert holder.run_until(lambda: held.status is Status.LOADED, 5)
        wanting = waiter.locker("p1")
        wanting.acquire("force")
        done = False
        for _ in range(200):  # both services driven from this thread, 10 s at most
            holder.run_until(lambda: False, timeout=0.025)
            if waiter.run_until(lambda: wanting.status is Status.LOADED, timeout=0.025):
                done = True
                break
        assert done, (held.status, wanting.status)  # woken: the autosave and poll are 30 s off
        assert wanting.data["n"] == 1
