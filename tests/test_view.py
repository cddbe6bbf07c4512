"""``view`` (a record without its lock) and ``history`` by date, on every backend.

Each test runs on memory, SQLite and this run's Redis and PostgreSQL servers, with the
blocking service and with the asyncio one (on an async store where the backend has one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backends import Backend, drive, fast_spec, load, open_backend
from sessionlocker import (
    AsyncLockerService,
    CorruptRecord,
    LockerService,
    Snapshot,
    Spec,
    UsageError,
)
from sessionlocker.core.migrations import Migrations
from sessionlocker.core.record import Record, decode, encode
from sessionlocker.errors import NewerSchema
from sessionlocker.history import select, version_at
from sessionlocker.stores import CountingStore, MemoryStore, open_async_store, threaded
from sessionlocker.stores.base import Entry
from sessionlocker.testing import seed

BACKENDS = ["memory", "sqlite", "redis", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path, history=5)
    yield made
    made.close()


def spec_v2() -> Spec:
    """Version 2 of the players' data: version 1 records gain ``"level": 1``."""
    migrations = Migrations().step(1, lambda data: {**data, "level": 1})
    return fast_spec(create=lambda: {"coins": 0, "level": 1}, version=2, migrations=migrations)


def stored(backend: Backend) -> dict[str, Any]:
    """Every record as stored now (bytes and revision), to show nothing was written."""
    return {key: backend.store.read(key) for key in backend.store.keys("")}


def test_view_shows_a_record_held_by_another_server_and_writes_nothing(
    backend: Backend,
) -> None:
    store = backend.store
    seed(store, fast_spec(), {"p1": {"coins": 5}}, version=1)
    with LockerService(store, fast_spec()) as holder_service:
        holder = load(holder_service, "p1")
        holder.add_user_id("u1")
        holder.set_tag("rank", "gold")
        holder.force_save()
        drive([holder_service], lambda: not holder.changes_pending)
        holder_service.send("p1", "gift", {"coins": 1})  # no handler here: it stays queued
        with LockerService(store, spec_v2()) as viewer:
            before = stored(backend)
            started = time.time()
            snapshot = viewer.view("p1")
            assert stored(backend) == before  # no lock taken, no migration written
        assert holder.token is not None
        assert snapshot is not None
        assert snapshot.data == {"coins": 5, "level": 1}  # migrated in memory only
        assert snapshot.schema == 1  # as stored
        assert snapshot.lock is not None
        assert (snapshot.lock.session, snapshot.lock.epoch) == (
            holder_service.lease_id,
            holder.token,
        )
        assert snapshot.lock.acquired <= started + 1
        assert snapshot.epoch == holder.token
        assert snapshot.user_ids == ("u1",)
        assert dict(snapshot.tags) == {"rank": "gold"}
        assert snapshot.inbox == 1
        assert snapshot.written is not None
        assert started - 30 <= snapshot.written <= time.time() + 1
        assert snapshot.revision == before["players/p1"].revision
        assert snapshot.size == len(before["players/p1"].value)


def test_view_of_a_free_record_an_absent_one_and_a_copy_of_the_data(backend: Backend) -> None:
    with LockerService(backend.store, fast_spec()) as service:
        with service.session("p1", timeout=10) as player:
            player.data["log"].append("hi")
            player.mark_changed()
        snapshot = service.view("p1")
        assert snapshot is not None
        assert snapshot.lock is None
        assert snapshot.data == {"log": ["hi"]}
        snapshot.data["log"].append("changed")  # each access is a new copy
        assert snapshot.data == {"log": ["hi"]}
        assert service.view("nobody") is None
        with pytest.raises(UsageError):
            service.view("")


def test_view_refuses_what_a_load_refuses(backend: Backend) -> None:
    store = backend.store
    store.write("players/bad", b"{not json", None)
    newer = Record(data=None, schema=3, compatible=3)
    store.write("players/newer", encode(newer, '{"coins": 1}'), None)
    with LockerService(store, fast_spec()) as service:
        with pytest.raises(CorruptRecord):
            service.view("bad")
        with pytest.raises(NewerSchema):
            service.view("newer")
    assert store.read("players/bad").value == b"{not json"  # type: ignore[union-attr]


def _async_store(backend: Backend) -> Any:
    if backend.url is not None:
        return open_async_store(backend.url)
    assert isinstance(backend.store, MemoryStore)
    return threaded(backend.store)


def test_async_view_and_history(backend: Backend) -> None:
    seed(backend.store, fast_spec(), {"p1": {"coins": 5}}, version=1)

    async def main() -> tuple[Snapshot | None, Snapshot | None, int]:
        store = _async_store(backend)
        try:
            async with AsyncLockerService(store, spec_v2()) as service:
                kept = await service.history("p1")
                return await service.view("p1"), await service.view("nobody"), len(kept)
        finally:
            if backend.url is not None:
                await store.aclose()

    snapshot, absent, kept = asyncio.run(main())
    assert absent is None
    assert snapshot is not None
    assert snapshot.data == {"coins": 5, "level": 1}
    assert snapshot.lock is None
    assert snapshot.written is not None
    assert kept == 1


def test_history_by_date_newest_first_with_time_revision_epoch_and_size(
    backend: Backend,
) -> None:
    with LockerService(backend.store, fast_spec()) as service:
        for round_ in range(3):
            with service.session("p1", timeout=10) as player:
                player.data["log"].append(round_)
                player.mark_changed()
        kept = service.history("p1")
        assert len(kept) == 5  # history=5: the newest five of the six writes
        revisions = [version.revision for version in kept]
        assert revisions == sorted(revisions, reverse=True)
        newest = kept[0]
        current = backend.store.read("players/p1")
        assert current is not None
        assert (newest.revision, newest.size) == (current.revision, len(current.value))
        assert newest.epoch == 3
        assert newest.data == {"log": [0, 1, 2]}
        assert all(version.written is not None for version in kept)
        assert service.history("p1", limit=2) == kept[:2]
        middle = kept[2].written
        assert middle is not None
        older = service.history("p1", before=middle)  # strictly before
        newer = service.history("p1", after=middle)  # strictly after
        assert all(v.written is not None and v.written < middle for v in older)
        assert all(v.written is not None and v.written > middle for v in newer)
        assert kept[2] not in older + newer
        same = [v for v in kept if v.written == middle]
        assert len(older) + len(same) + len(newer) == len(kept)
        assert service.history("p1", after=datetime.fromtimestamp(0, UTC)) == kept
        assert service.history("p1", after=time.time() + 3600) == []
        assert service.history("nobody") == []
        with pytest.raises(UsageError, match="time zone"):
            service.history("p1", before=datetime(2026, 12, 1, 10, 0))
        with pytest.raises(UsageError, match="limit"):
            service.history("p1", limit=0)


def test_history_needs_a_store_that_keeps_versions() -> None:
    with LockerService(CountingStore(MemoryStore()), fast_spec()) as service:
        with pytest.raises(UsageError, match="keeps no versions"):
            service.history("p1")


def test_a_time_shown_by_history_selects_its_version() -> None:
    # 1796208929.6625674 * 1e6 rounds up to ...568 in floating point; it is shown as
    # .662567 (as datetime rounds), and that shown time must select it.
    kept = [Entry(b"b", 4, 1796208929.6628633), Entry(b"a", 3, 1796208929.6625674)]
    shown = datetime.fromtimestamp(kept[1].written or 0, UTC)
    assert shown.microsecond == 662567
    assert version_at(kept, shown) == kept[1]
    assert version_at(kept, shown.timestamp() - 1e-6) is None
    assert select(kept, after=shown) == [kept[0]]
    assert select(kept, before=shown) == []
    assert version_at([Entry(b"x", 1, None)], shown) is None  # undated: not known


def test_a_read_only_async_service_views_its_own_writes(backend: Backend) -> None:
    seed(backend.store, fast_spec(), {"p1": {"log": ["real"]}})

    async def main() -> tuple[Snapshot | None, Snapshot | None]:
        store = _async_store(backend)
        try:
            async with AsyncLockerService(store, fast_spec(), read_only=True) as service:
                real = await service.view("p1")
                async with service.session("p1", timeout=10) as player:
                    player.data["log"].append("trial")
                    player.mark_changed()
                return real, await service.view("p1")
        finally:
            if backend.url is not None:
                await store.aclose()

    real, mine = asyncio.run(main())
    assert real is not None
    assert real.written is not None  # the store's time, read through the read-only wrapper
    assert mine is not None
    assert mine.data == {"log": ["real", "trial"]}
    assert mine.written is None  # a write kept in this process only
    stored_now = backend.store.read("players/p1")
    assert stored_now is not None
    assert decode(stored_now.value).data == {"log": ["real"]}  # the store is unchanged
