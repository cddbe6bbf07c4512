"""At most one available owner at any instant, on every store.

A holder driven at 60 Hz (a game server's frame loop) and an event-driven taker hand
one key back and forth with ``force``; a third thread samples both lockers'
``is_available()`` all along. The holder stops being available before the write that
releases its lock can commit (it goes ``releasing`` first), so the two are never
available at once, whatever the holder's frame rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend, fast_spec, open_backend
from sessionlocker import LockerService, Status

KEY = "ball"
HANDOFFS = 30
#: Cooperative handoffs only: a force that times out takes over without the holder's
#: help (by design), which is not what this test is about.
SPEC = fast_spec(lease=3.0, autosave_period=0.1, force_timeout=120.0, poll_period=0.02)


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path)
    yield made
    made.close()


class Game:
    """Two services taking turns at holding ``KEY``; ``turn`` counts finished loads."""

    def __init__(self, backend: Backend) -> None:
        self.sides = {
            "holder": LockerService(backend.store, SPEC, "holder"),
            "taker": LockerService(backend.store, SPEC, "taker"),
        }
        self.turn = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def whose(self) -> str:
        return "holder" if self.turn % 2 == 0 else "taker"

    def drive(self, name: str, period: float) -> None:
        """The frame loop of one side: open with force on its turn, count its load."""
        service = self.sides[name]
        try:
            while not self.stop.is_set():
                service.update()
                locker = service.get(KEY)
                with self.lock:
                    mine = self.whose() == name
                    if mine and locker is None:
                        service.locker(KEY).acquire("force")
                    elif mine and locker is not None and locker.status is Status.LOADED:
                        self.turn += 1
                time.sleep(period)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def available(self, name: str) -> bool:
        locker = self.sides[name].get(KEY)
        return locker is not None and locker.is_available()


def test_two_lockers_are_never_available_at_once(backend: Backend) -> None:
    game = Game(backend)
    threads = [
        threading.Thread(target=game.drive, args=("holder", 1 / 60), daemon=True),
        threading.Thread(target=game.drive, args=("taker", 0.001), daemon=True),
    ]
    samples = both = 0
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 180.0
        while game.turn <= HANDOFFS and not game.errors:
            assert time.monotonic() < deadline, f"only {game.turn - 1} handoffs"
            holder, taker = game.available("holder"), game.available("taker")
            samples += 1
            both += holder and taker
            time.sleep(0.0002)
    finally:
        game.stop.set()
        for thread in threads:
            thread.join(10)
        for service in game.sides.values():
            service.close(timeout=5.0)
    assert not game.errors, game.errors
    assert samples > HANDOFFS
    assert both == 0, f"both lockers available in {both} of {samples} samples"
