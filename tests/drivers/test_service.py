"""LockerService: the frame driver on real threads, and the blocking session() helper."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import drive, open_backend
from backends import fast_spec as spec
from sessionlocker import (
    AlreadyOpen,
    CorruptRecord,
    LockerService,
    LockLost,
    LockUnavailable,
    Spec,
    Status,
    UnstorableData,
    UsageError,
)
from sessionlocker.core.locker import Locker
from sessionlocker.core.record import decode
from sessionlocker.stores import FaultyStore, MemoryStore, SQLiteStore, Store


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every backend; a server backend gets a fresh key prefix for each test."""
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


def stored(store: Store, key: str, namespace: str = "players") -> Any:
    value = store.read(f"{namespace}/{key}")
    assert value is not None
    return decode(value.value)


def test_session_loads_saves_and_releases(store: Store) -> None:
    with LockerService(store, spec()) as service:
        with service.session("p1", timeout=5) as player:
            assert player.status is Status.LOADED
            assert player.is_available()
            player.data["log"].append("hello")
            player.mark_changed()
        assert player.status is Status.IDLE
    record = stored(store, "p1")
    assert record.data == {"log": ["hello"]}
    assert record.lock is None
    assert not store.get_lease(service.lease_id).exists  # the lease ended cleanly


def test_one_process_one_owner(store: Store) -> None:
    with LockerService(store, spec()) as service:
        first = service.locker("p1")
        second = service.locker("p1")
        first.acquire()
        with pytest.raises(AlreadyOpen):
            second.acquire()
        assert second.status is Status.IDLE
        with pytest.raises(AlreadyOpen):
            service.locker("p1")
        assert service.get("p1") is first
        service.run_until(lambda: first.status is Status.LOADED, 5)
        first.release()
        service.run_until(lambda: first.status is Status.IDLE, 5)
        assert service.get("p1") is None
        second.acquire()  # free again: the other locker object may take it
        assert service.run_until(lambda: second.status is Status.LOADED, 5)


def test_a_release_request_waits_for_the_end_of_a_session_block(store: Store) -> None:
    with (
        LockerService(store, spec(force_timeout=10)) as service,
        LockerService(store, spec(force_timeout=10)) as other,
    ):
        with service.session("p1", timeout=5) as player:
            asking = other.locker("p1")
            asking.acquire("force")
            drive([service, other], lambda: player.release_requested)
            assert player.status is Status.LOADED  # kept for the rest of the block
            player.data["log"].append("to the end")
            with pytest.raises(AlreadyOpen, match=r"AsyncLockerService\.session"):
                with service.session("p1", timeout=5):
                    pytest.fail("a nested blocking session of the same key cannot wait")
        drive([other], lambda: asking.status is Status.LOADED)
        assert asking.data == {"log": ["to the end"]}


def test_services_specs_and_stores_coexist_in_one_process(tmp_path: Path) -> None:
    memory, sqlite = MemoryStore(), SQLiteStore(tmp_path / "other.db")
    services = [
        LockerService(memory, spec("players")),
        LockerService(memory, spec("guilds")),
        LockerService(sqlite, spec("players")),
    ]
    for index, service in enumerate(services):
        with service.session("same-key", timeout=5) as locker:
            locker.data["log"].append(index)
            locker.mark_changed()
        service.close()
    assert stored(memory, "same-key", "players").data == {"log": [0]}
    assert stored(memory, "same-key", "guilds").data == {"log": [1]}
    assert stored(sqlite, "same-key", "players").data == {"log": [2]}
    sqlite.close()


def test_session_times_out_with_lock_unavailable_and_leaves_no_request(store: Store) -> None:
    holder, waiter = LockerService(store, spec()), LockerService(store, spec())
    with holder.session("p1", timeout=5):
        for mode in ("repeat", "force"):
            with (
                pytest.raises(LockUnavailable, match="within"),
                waiter.session("p1", mode, timeout=0.2),
            ):
                pytest.fail("must not yield")
            assert stored(store, "p1").release_requests == ()
        with pytest.raises(LockUnavailable, match="held by"), waiter.session("p1", "cancel"):
            pytest.fail("must not yield")
    waiter.close()
    holder.close()


def test_session_raises_for_a_corrupt_record_and_leaves_it_untouched(store: Store) -> None:
    store.write("players/bad", b"\x00 not a record", None)
    with LockerService(store, spec()) as service:
        with pytest.raises(CorruptRecord), service.session("bad", timeout=5):
            pytest.fail("must not yield")
    assert store.read("players/bad").value == b"\x00 not a record"  # type: ignore[union-attr]


def test_session_exit_raises_when_the_final_save_is_refused(store: Store) -> None:
    with LockerService(store, spec()) as service:
        with service.session("p1", timeout=5) as player:
            player.data["log"].append("kept")
            player.mark_changed()
        before = store.read("players/p1")
        with pytest.raises(UnstorableData, match=r"data\['log'\]\[1\]"):
            with service.session("p1", timeout=5) as player:
                player.data["log"].append(math.inf)
                player.mark_changed()
        after = stored(store, "p1")
        assert after.data == {"log": ["kept"]}
        assert after.lock is None  # released with the last good value
        assert before is not None
        assert after.epoch == decode(before.value).epoch + 1


def test_a_save_refused_then_repaired_in_the_session_is_no_error_at_exit(store: Store) -> None:
    with LockerService(store, spec()) as service:
        with service.session("p1", timeout=5) as player:
            player.data["log"].append(math.inf)
            player.force_save()
            assert service.run_until(lambda: isinstance(player.error, UnstorableData), 5)
            player.data["log"][-1] = "repaired"
            player.mark_changed()
        assert stored(store, "p1").data == {"log": ["repaired"]}


def test_session_exit_raises_lock_lost_when_stolen(store: Store) -> None:
    with LockerService(store, spec()) as first, LockerService(store, spec()) as thief:
        with pytest.raises(LockLost), first.session("p1", timeout=5) as player:
            with thief.session("p1", "steal", timeout=5) as stolen:
                stolen.data["log"].append("thief")
                stolen.mark_changed()
            player.data["log"].append("stale")
            player.mark_changed()
    assert stored(store, "p1").data == {"log": ["thief"]}


def test_force_hands_over_between_services_quickly(store: Store) -> None:
    holder, opener = LockerService(store, spec()), LockerService(store, spec())
    locker = holder.locker("p1")
    locker.acquire()
    holder.run_until(lambda: locker.status is Status.LOADED, 5)
    locker.data["log"].append("from holder")
    locker.mark_changed()
    wanted = opener.locker("p1")
    wanted.acquire("force")
    done = holder.run_until(lambda: (opener.update(), wanted.status is Status.LOADED)[1], 5)
    assert done
    assert wanted.data == {"log": ["from holder"]}
    assert locker.status is Status.IDLE
    holder.close()
    opener.close()


def test_close_saves_and_releases_everything(store: Store) -> None:
    service = LockerService(store, spec(autosave_period=60.0))
    lockers = [service.locker(f"p{i}") for i in range(20)]
    for locker in lockers:
        locker.acquire()
    service.run_until(lambda: all(one.status is Status.LOADED for one in lockers), 10)
    answers: list[bool] = []
    for locker in lockers:
        locker.data["log"].append("bye")
        locker.when_saved(locker.mark_changed(), answers.append)
    assert service.close(timeout=10)
    assert answers == [True] * 20
    for i in range(20):
        record = stored(store, f"p{i}")
        assert (record.lock, record.data) == (None, {"log": ["bye"]})
    assert service.close().released  # idempotent
    with pytest.raises(UsageError, match="closed"):
        service.locker("p1")


def test_a_frame_touches_only_due_lockers(monkeypatch: pytest.MonkeyPatch) -> None:
    # A long lease too: on a slow machine, loading 1,000 lockers must not make renewals due.
    service = LockerService(MemoryStore(), spec(lease=7200.0, autosave_period=3600.0))
    lockers = [service.locker(f"p{i}") for i in range(1000)]
    for locker in lockers:
        locker.acquire()
    assert service.run_until(lambda: all(one.status is Status.LOADED for one in lockers), 30)
    calls: list[Locker] = []
    original = Locker.update

    def counting(self: Locker, now: float) -> Any:
        calls.append(self)
        return original(self, now)

    monkeypatch.setattr(Locker, "update", counting)
    for _ in range(10):
        service.update()
    assert calls == []  # 1,000 idle lockers, nothing due: no locker looked at
    lockers[7].force_save()
    service.update()
    assert calls == [lockers[7]]
    monkeypatch.undo()
    service.close()


def test_faults_are_retried_and_no_confirmed_change_is_lost() -> None:
    inner = MemoryStore()
    faulty = FaultyStore(
        inner, fail_rate=0.2, unknown_rate=0.1, throttle_rate=0.05, retry_after=0.01, seed=7
    )
    service = LockerService(faulty, spec())
    locker = service.locker("p1")
    locker.acquire()
    assert service.run_until(lambda: locker.status is Status.LOADED, 10)
    confirmed: list[int] = []
    for n in range(40):
        locker.data["log"].append(n)
        locker.when_saved(locker.mark_changed(), lambda ok, n=n: ok and confirmed.append(n))  # type: ignore[misc]
        locker.force_save()
        service.run_until(lambda: not locker.changes_pending, 10)
    assert sum(faulty.faults.values()) > 0
    assert confirmed == list(range(40))
    assert set(confirmed) <= set(stored(inner, "p1").data["log"])
    service.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"lease": 0},
        {"lease": -1},
        {"autosave_period": math.nan},
        {"force_timeout": True},
        {"poll_period": "1"},
    ],
)
def test_bad_timings_are_refused_at_the_call(settings: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        Spec("players", dict, **settings)


def test_bad_spec_arguments_are_refused() -> None:
    with pytest.raises(UsageError, match="namespace"):
        Spec("", dict)
    with pytest.raises(UsageError, match="namespace"):
        Spec("a/b", dict)
    with pytest.raises(UsageError, match="create"):
        Spec("players", {})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="version"):
        Spec("players", dict, version=0)
    with pytest.raises(UsageError, match="Migrations builder"):
        Spec("players", dict, migrations={1: dict})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="spec"):
        LockerService(MemoryStore(), "players")  # type: ignore[arg-type]


def test_bad_session_arguments_are_refused(store: Store) -> None:
    with LockerService(store, spec()) as service:
        with pytest.raises(UsageError, match="timeout"), service.session("p1", timeout=0):
            pytest.fail("must not yield")
        with pytest.raises(UsageError, match="load mode"), service.session("p1", mode="maybe"):
            pytest.fail("must not yield")
        assert service.get("p1") is None


def test_a_store_url_is_opened_and_closed_by_the_service(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/by-url.db"
    with LockerService(url, spec()) as service, service.session("p1", timeout=5) as locker:
        locker.data["log"].append(1)
        locker.mark_changed()
    reopened = SQLiteStore(tmp_path / "by-url.db")
    assert stored(reopened, "p1").data == {"log": [1]}
    reopened.close()


def test_the_lease_renewal_does_not_queue_behind_lockers_calls() -> None:
    # One worker and 40 loads of 50 ms each: 2 s of queued calls, over three times the
    # lease's renew deadline (0.4 s). The renewal runs on its own thread, so it never lapses.
    store = FaultyStore(MemoryStore(), latency=0.05)
    service = LockerService(store, spec(autosave_period=30.0), workers=1)
    lockers = [service.locker(f"p{i}") for i in range(40)]
    for locker in lockers:
        locker.acquire()
    assert service.run_until(lambda: all(one.status is Status.LOADED for one in lockers), 30)
    assert service.lease.gaps == 0
    assert all(locker.is_available() for locker in lockers)
    service.close()
