"""Read-only mode: a full load-edit-save-release cycle leaves the store unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sessionlocker import Conflict, LockerService, Spec, Status
from sessionlocker.core.migrations import Migrations
from sessionlocker.core.record import decode
from sessionlocker.stores import MemoryStore, ReadOnlyStore, SQLiteStore, Store
from sessionlocker.testing import seed

TIMES: dict[str, Any] = {"lease": 0.6, "autosave_period": 0.2, "poll_period": 0.02}


def snapshot(store: Store) -> dict[str, Any]:
    return {key: store.read(key) for key in store.keys("")}


def spec(version: int = 1) -> Spec:
    migrations = Migrations()
    if version > 1:
        migrations.step(1, lambda d: {**d, "upgraded": True})
    return Spec("players", lambda: {"coins": 0}, version=version, migrations=migrations, **TIMES)


@pytest.fixture
def real(tmp_path: Path) -> Any:
    store = SQLiteStore(tmp_path / "prod.db")
    seed(store, spec(), {"p1": {"coins": 10}, "p2": {"coins": 20}})
    yield store
    store.close()


def test_a_read_only_service_runs_the_full_cycle_and_changes_nothing(real: SQLiteStore) -> None:
    before = snapshot(real)
    with LockerService(real, spec(2), read_only=True) as service:
        for key in ("p1", "p2", "new-player"):
            with service.session(key, timeout=5) as player:
                assert player.data.get("upgraded") or key == "new-player"
                player.data["coins"] += 1
                player.mark_changed()
        with service.session("p1", timeout=5) as again:
            assert again.data["coins"] == 11  # the overlay remembers its own writes
        assert decode(service.store.read("players/p1").value).schema == 2  # type: ignore[union-attr]
    assert snapshot(real) == before
    assert decode(real.read("players/p1").value).schema == 1  # type: ignore[union-attr]


def test_a_read_only_service_waits_for_a_real_holder(real: SQLiteStore) -> None:
    with LockerService(real, spec()) as live:
        holder = live.locker("p1")
        holder.acquire()
        live.run_until(lambda: holder.status is Status.LOADED, 5)
        with LockerService(ReadOnlyStore(real), spec()) as trial:
            waiter = trial.locker("p1")
            waiter.acquire("repeat")
            trial.run_until(lambda: False, 0.3)
            assert waiter.status is Status.WAITING  # the real holder's lease is alive
            waiter.release()
            trial.run_until(lambda: waiter.status is Status.IDLE, 5)


def test_overlay_writes_keep_conditional_semantics_and_deletes_hide_keys() -> None:
    inner = MemoryStore()
    inner.write("a", b"1", None)
    store = ReadOnlyStore(inner)
    first = store.read("a")
    assert first is not None
    revision = store.write("a", b"2", first.revision)
    with pytest.raises(Conflict):
        store.write("a", b"3", first.revision)
    assert store.read("a").value == b"2"  # type: ignore[union-attr]
    assert inner.read("a").value == b"1"  # type: ignore[union-attr]
    assert store.delete("a", revision)
    assert store.read("a") is None
    assert list(store.keys()) == []
    assert list(inner.keys()) == ["a"]
    store.write("b", b"x", None)
    assert list(store.keys()) == ["b"]


def test_seed_writes_records_at_a_chosen_version_and_never_overwrites() -> None:
    store = MemoryStore()
    seed(store, spec(2), {"p1": {"coins": 1}}, version=1)
    record = decode(store.read("players/p1").value)  # type: ignore[union-attr]
    assert (record.schema, record.data, record.lock) == (1, {"coins": 1}, None)
    with pytest.raises(Conflict):
        seed(store, spec(2), {"p1": {"coins": 2}})


def test_a_read_only_service_views_the_real_record_with_its_write_time(real: SQLiteStore) -> None:
    with LockerService(real, spec(2), read_only=True) as service:
        seen = service.view("p1")
        assert seen is not None
        assert seen.data == {"coins": 10, "upgraded": True}
        assert seen.written is not None  # the real store's time
        with service.session("p1", timeout=5) as player:
            player.data["coins"] = 11
            player.mark_changed()
        mine = service.view("p1")
        assert mine is not None
        assert mine.data["coins"] == 11  # the overlay's own write
        assert mine.written is None  # never stored, so no store time
    assert real.read("players/p1") is not None
