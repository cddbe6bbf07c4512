"""The service drops a store's wake-up for a write its own locker just made (the locker
learns that revision from the result), but never one it still needs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import open_backend
from sessionlocker import LockerService, Spec, Status
from sessionlocker.core.locker import Locker
from sessionlocker.core.record import Message
from sessionlocker.stores import Store

# Autosave far away: whatever happens below happens because a wake-up came.
SLOW = {"lease": 5.0, "autosave_period": 60.0, "force_timeout": 1.0, "poll_period": 30.0}


@pytest.fixture(params=["memory", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


def spec() -> Spec:
    return Spec("players", lambda: {"log": []}, **SLOW)  # type: ignore[arg-type]


def test_a_message_a_locker_sends_to_its_own_record_is_applied_at_once(store: Store) -> None:
    with LockerService(store, spec()) as service:
        service.on_message("note", lambda locker, m: locker.data["log"].append(m.body))
        with service.session("p1", timeout=5) as player:
            player.send("p1", "note", "to myself")
            player.force_save()
            applied = service.run_until(lambda: player.data["log"] == ["to myself"], 5)
            assert applied  # woken by its own delivery's write, not by the 60 s autosave


def test_a_write_by_another_service_right_after_our_own_still_wakes_us(store: Store) -> None:
    with LockerService(store, spec()) as holder, LockerService(store, spec()) as other:
        holder.on_message("note", _note)
        with holder.session("p1", timeout=5) as player:
            for n in range(5):
                player.data["log"].append(n)
                player.mark_changed()
                player.force_save()
                assert holder.run_until(lambda: not player.changes_pending, 5)
                other.send("p1", "note", f"after save {n}")
            done = holder.run_until(lambda: len(player.data["log"]) == 10, 5)
            assert done, player.data["log"]
            assert player.status is Status.LOADED


def _note(locker: Locker, message: Message) -> Any:
    locker.data["log"].append(message.body)
    return time.monotonic()
