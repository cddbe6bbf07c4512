"""What a load does to the data besides migrations: ``Spec(reconcile=True)`` fills keys
from ``create()`` and ``Spec(merge_offline=...)`` merges the transient pre-load data into
the loaded data (SessionLocker's ``MergeOfflineSaveDataWithLoadedSaveData``). On memory
and SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backends import Backend, fast_spec, open_backend
from sessionlocker import LockerService, Spec, Status, UsageError
from sessionlocker.core.locker import Locker
from sessionlocker.core.migrations import Migrations, fill_missing
from sessionlocker.core.record import decode
from sessionlocker.stores import Store


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path)
    yield made
    made.close()


def stored_data(store: Store, key: str = "p1") -> Any:
    versioned = store.read(f"players/{key}")
    assert versioned is not None
    return decode(versioned.value).data


def put(store: Store, data: Any, key: str = "p1") -> None:
    """Store ``data`` through a session whose ``create()`` is empty."""
    with LockerService(store, fast_spec("players", dict)) as service:
        with service.session(key) as locker:
            locker.data = data
            locker.mark_changed()


# ---------------------------------------------------------------- reconcile


def test_reconcile_fills_missing_keys_at_every_depth_and_overwrites_nothing() -> None:
    data = {"coins": 7, "settings": {"music": False}, "bag": [1], "mode": 1}
    template = {
        "coins": 0,
        "gems": 5,
        "settings": {"music": True, "volume": {"main": 3}},
        "bag": [9, 9],
        "mode": {"kind": "solo"},
    }
    filled = fill_missing(data, template)
    assert filled == {
        "coins": 7,
        "gems": 5,
        "settings": {"music": False, "volume": {"main": 3}},
        "bag": [1],
        "mode": 1,
    }
    assert data == {"coins": 7, "settings": {"music": False}, "bag": [1], "mode": 1}
    filled["settings"]["volume"]["main"] = 0
    assert template["settings"] == {"music": True, "volume": {"main": 3}}  # copied


def test_reconcile_returns_the_same_object_when_nothing_is_missing() -> None:
    data = {"a": 1, "b": {"c": 2, "extra": 3}}
    assert fill_missing(data, {"a": 0, "b": {"c": 0}}) is data
    assert fill_missing([1], {"a": 0}) == [1]
    assert fill_missing({"a": 1}, [0]) == {"a": 1}


def test_reconcile_on_load_fills_old_records_and_writes_them(backend: Backend) -> None:
    put(backend.store, {"coins": 7, "settings": {"music": False}})

    def create() -> dict[str, Any]:
        return {"coins": 0, "gems": 5, "settings": {"music": True, "volume": 3}}

    plain = fast_spec("players", create)
    with LockerService(backend.store, plain) as service, service.session("p1") as locker:
        assert locker.data == {"coins": 7, "settings": {"music": False}}
    reconciling = fast_spec("players", create, reconcile=True)
    with LockerService(backend.store, reconciling) as service:
        locker = service.locker("p1")
        locker.acquire()
        assert service.run_until(locker.is_available, timeout=10)
        expected = {"coins": 7, "gems": 5, "settings": {"music": False, "volume": 3}}
        assert locker.data == expected
        assert stored_data(backend.store) == expected  # written with the lock
        locker.release()
        assert service.run_until(lambda: locker.status is Status.IDLE, timeout=10)


def test_reconcile_runs_after_migrations(backend: Backend) -> None:
    put(backend.store, {"gold": 3})
    migrations = Migrations().step(1, lambda data: {"coins": data["gold"]})
    spec = fast_spec(
        "players",
        lambda: {"coins": 0, "gems": 1},
        version=2,
        migrations=migrations,
        reconcile=True,
    )
    with LockerService(backend.store, spec) as service, service.session("p1") as locker:
        assert locker.data == {"coins": 3, "gems": 1}


def test_reconcile_must_be_a_bool() -> None:
    with pytest.raises(UsageError, match="reconcile"):
        Spec("players", dict, reconcile="yes")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="merge_offline"):
        Spec("players", dict, merge_offline=3)  # type: ignore[arg-type]


# ---------------------------------------------------------------- merge_offline


def add_coins(loaded: Any, offline: Any) -> Any:
    """A merge: the coins earned on the transient copy (it started at 0) are added."""
    return {**loaded, "coins": loaded["coins"] + offline["coins"]}


@dataclass
class Loaded:
    service: LockerService
    locker: Locker
    errors: list[str]

    def finish(self, store: Store) -> Any:
        """Release the locker, close the service, and return the stored data."""
        self.service.close()
        return stored_data(store)


def loading(
    backend: Backend, merge: Callable[[Any, Any], Any] | None, change: Callable[[Locker], object]
) -> Loaded:
    """Load ``p1`` (stored with 10 coins) after ``change`` was made while loading.
    The service stays open until ``finish``."""
    put(backend.store, {"coins": 10})
    spec = fast_spec("players", lambda: {"coins": 0}, merge_offline=merge)
    service = LockerService(backend.store, spec)
    errors: list[str] = []
    locker = service.locker("p1")
    locker.on("error", lambda lk: errors.append(str(lk.error)))
    locker.acquire()
    change(locker)
    assert service.run_until(locker.is_available, timeout=10)
    return Loaded(service, locker, errors)


def direct(locker: Locker) -> None:
    locker.data["coins"] += 5  # straight on the transient copy, no edit()


def test_without_merge_direct_changes_to_the_transient_copy_are_dropped(
    backend: Backend,
) -> None:
    loaded = loading(backend, None, direct)
    assert loaded.locker.data == {"coins": 10}
    assert loaded.finish(backend.store) == {"coins": 10}


def test_merge_offline_merges_direct_changes_into_the_loaded_data(backend: Backend) -> None:
    loaded = loading(backend, add_coins, direct)
    assert loaded.locker.data == {"coins": 15}
    assert loaded.locker.changes_pending  # the merged data differs: it is saved soon
    assert loaded.finish(backend.store) == {"coins": 15}
    assert loaded.errors == []


def test_with_merge_edits_are_merged_not_replayed_but_tags_and_user_ids_are(
    backend: Backend,
) -> None:
    def change(locker: Locker) -> None:
        locker.edit(lambda data: data.update(coins=data["coins"] + 5))
        locker.set_tag("origin", "offline")
        locker.add_user_id("u1")

    loaded = loading(backend, add_coins, change)
    assert loaded.locker.data == {"coins": 15}  # not 20: the edit is counted once
    assert loaded.locker.tags == {"origin": "offline"}
    assert loaded.locker.user_ids == ("u1",)
    assert loaded.finish(backend.store) == {"coins": 15}


def test_a_merge_that_changes_nothing_marks_nothing(backend: Backend) -> None:
    loaded = loading(backend, lambda data, offline: data, direct)
    assert loaded.locker.data == {"coins": 10}
    assert not loaded.locker.changes_pending
    assert loaded.finish(backend.store) == {"coins": 10}


def test_a_failing_merge_is_reported_and_keeps_the_loaded_data(backend: Backend) -> None:
    def broken(loaded: Any, offline: Any) -> Any:
        loaded["coins"] = -1  # changed halfway, then it fails
        raise RuntimeError("cannot merge")

    loaded = loading(backend, broken, direct)
    assert loaded.locker.data == {"coins": 10}
    assert len(loaded.errors) == 1
    assert "cannot merge" in loaded.errors[0]
    assert loaded.finish(backend.store) == {"coins": 10}
