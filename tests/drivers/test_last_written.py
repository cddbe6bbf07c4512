"""A session of a record this service wrote last starts from what it wrote: its load is
one conditional write, no read (``drivers.last_written``). A guess never decides an
outcome alone: a stale one is corrected by the store, and a ``Keep`` decided on it is
decided again on what is stored."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from backends import open_backend
from sessionlocker import LockerService, Spec
from sessionlocker.core.protocol import Keep, Put, Transform, Update, Updated, Versioned
from sessionlocker.drivers.executor import execute
from sessionlocker.drivers.last_written import LastWritten, guessed
from sessionlocker.stores import MemoryStore, Store

SLOW = {"lease": 5.0, "autosave_period": 60.0, "force_timeout": 30.0, "poll_period": 0.05}


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


def spec() -> Spec[dict[str, int]]:
    return Spec("players", lambda: {"n": 0}, **SLOW)  # type: ignore[arg-type]


class Seen(MemoryStore):
    """The memory store, noting the ``known`` each update came with."""

    def __init__(self) -> None:
        super().__init__()
        self.known: list[Versioned | None] = []

    def update(self, key: str, transform: Transform[Any], known: Versioned | None = None) -> Any:
        self.known.append(known)
        return super().update(key, transform, known)


def test_the_next_session_of_a_key_starts_from_what_this_service_wrote() -> None:
    seen = Seen()
    with LockerService(seen, spec()) as service:
        with service.session("p1", timeout=5) as player:
            player.data["n"] += 1
        written = seen.read("players/p1")
        seen.known.clear()
        with service.session("p1", timeout=5) as player:
            assert player.data == {"n": 1}
            player.data["n"] += 1
    assert seen.known[0] == written  # the load: one conditional write on the guess
    assert seen.read("players/p1") is not None


def test_a_session_after_another_service_wrote_sees_that_write(store: Store) -> None:
    with LockerService(store, spec()) as ours, LockerService(store, spec()) as theirs:
        with ours.session("p1", timeout=5) as player:
            player.data["n"] = 1
        with theirs.session("p1", timeout=5) as player:
            player.data["n"] = 2
        with ours.session("p1", timeout=5) as player:  # our guess (n=1) is stale
            assert player.data == {"n": 2}
            player.data["n"] = 3
        with theirs.session("p1", timeout=5) as player:
            assert player.data == {"n": 3}


def _keeps_on(value: bytes) -> Transform[str]:
    def transform(current: Versioned | None) -> Put[str] | Keep[str]:
        if current is not None and current.value == value:
            return Keep("kept")
        return Put(b"new", "written")

    return transform


def test_a_keep_decided_on_a_stale_guess_is_decided_again_on_what_is_stored() -> None:
    store = MemoryStore()
    old = store.update("k", lambda _: Put(b"old", None)).current
    store.update("k", lambda _: Put(b"moved on", None), old)
    assert old is not None
    result = guessed(partial(execute, store), Update(key="k", transform=_keeps_on(b"old")), old)
    assert isinstance(result, Updated)
    assert (result.outcome, result.wrote) == ("written", True)
    assert store.read("k") == Versioned(b"new", 3)


def test_a_right_guess_is_one_update_and_a_keep_on_it_is_checked() -> None:
    store = Seen()
    first = store.update("k", lambda _: Put(b"v", None)).current
    assert first is not None
    store.known.clear()
    run = partial(execute, store)
    written = guessed(run, Update(key="k", transform=lambda _: Put(b"w", "w")), first)
    assert isinstance(written, Updated)
    assert written.wrote
    assert store.known == [first]  # one update, from the guess
    current = store.read("k")
    assert current is not None
    store.known.clear()
    kept = guessed(run, Update(key="k", transform=_keeps_on(b"w")), current)
    assert isinstance(kept, Updated)
    assert kept.outcome == "kept"
    assert store.known == [current, None]  # the Keep was decided again on a read


def test_guesses_are_bounded_by_count_and_bytes_and_dropped_on_a_foreign_write() -> None:
    guesses = LastWritten(entries=2, budget=10)
    guesses.keep("a", Versioned(b"1234", 1))
    guesses.keep("b", Versioned(b"1234", 2))
    guesses.keep("c", Versioned(b"1234", 3))  # 12 bytes > 10: "a" goes
    assert guesses.take("a") is None
    guesses.keep("d", Versioned(b"x" * 11, 4))  # larger than the whole budget: not kept
    assert guesses.take("d") is None
    guesses.written("b", 2)  # our own write: kept
    guesses.written("c", 9)  # someone else's: dropped
    assert guesses.take("c") is None
    assert guesses.take("b") == Versioned(b"1234", 2)
    assert guesses.take("b") is None  # one use
    assert len(guesses) == 0


def test_ended_sessions_leave_no_locker_behind() -> None:
    """The frame heap once kept every ended session's locker (and data) until its
    autosave time: a web service doing a session per request grew without bound."""
    refs: list[weakref.ref[Any]] = []
    with LockerService(MemoryStore(), spec()) as service:
        for i in range(600):
            with service.session(f"p{i % 3}", timeout=5) as player:
                player.data["n"] += 1
                refs.append(weakref.ref(player))
        gc.collect()
        alive = sum(ref() is not None for ref in refs)
    assert alive <= 100, f"{alive} of 600 ended lockers are still referenced"
