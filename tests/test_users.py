"""User ids: the record field, the locker calls, and ``keys_for_user`` on every backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import fast_spec, open_backend
from sessionlocker import AsyncLockerService, CorruptRecord, LockerService, Spec, UsageError
from sessionlocker.core.record import Record, decode, encode
from sessionlocker.stores import MemoryStore, SQLiteStore, Store
from sessionlocker.stores.user_keys import keys_for_user


def spec(namespace: str = "players", **overrides: object) -> Spec:
    return fast_spec(namespace, dict, **overrides)


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every backend; a server backend gets a fresh key prefix for each test."""
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


# ---------------------------------------------------------------- the record field


def test_user_ids_round_trip_sorted_without_repeats() -> None:
    record = Record(data={"a": 1}, user_ids=("u2", "u1"))
    raw = json.loads(encode(record))
    assert raw["user_ids"] == ["u2", "u1"]
    raw["user_ids"] = ["u2", "u1", "u2"]
    assert decode(json.dumps(raw).encode()).user_ids == ("u1", "u2")


def test_a_record_without_user_ids_loads_with_none() -> None:
    old = {"format": 1, "data": {"coins": 3}, "schema": 1, "epoch": 0, "lock": None}
    assert decode(json.dumps(old).encode()).user_ids == ()


@pytest.mark.parametrize("bad", [[12], [""], [None], "u1", {"u1": True}])
def test_user_ids_are_decoded_strictly(bad: object) -> None:
    raw = {"format": 1, "data": {}, "user_ids": bad}
    with pytest.raises(CorruptRecord, match="user_ids"):
        decode(json.dumps(raw).encode())


def test_compressed_data_leaves_user_ids_readable() -> None:
    record = Record(data={"blob": "x" * 500}, encoding="zlib", user_ids=("u1",))
    value = encode(record)
    assert b'"user_ids":["u1"]' in value
    assert b"xxxx" not in value
    assert decode(value).user_ids == ("u1",)


# ---------------------------------------------------------------- the locker calls


def test_add_and_remove_user_ids_are_saved(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    with LockerService(store, spec(compress_above=10)) as service:
        with service.session("house") as locker:
            assert locker.user_ids == ()
            locker.add_user_id("u2")
            locker.add_user_id("u1")
            locker.add_user_id("u3")
            locker.remove_user_id("u3")
            locker.remove_user_id("never-there")
            locker.data["rooms"] = 4
            assert locker.user_ids == ("u1", "u2")
        stored = store.read("players/house")
        assert stored is not None
        assert decode(stored.value).user_ids == ("u1", "u2")
        assert decode(stored.value).encoding == "zlib"
        with service.session("house") as locker:
            assert locker.user_ids == ("u1", "u2")
            assert locker.data == {"rooms": 4}
    store.close()


def test_a_user_id_change_alone_is_saved_and_confirmed() -> None:
    store = MemoryStore()
    with LockerService(store, spec()) as service:
        with service.session("p1") as locker:
            answers: list[bool] = []
            locker.when_saved(locker.add_user_id("u9"), answers.append)
            locker.force_save()
            assert service.run_until(lambda: bool(answers), timeout=5)
            assert answers == [True]
            stored = store.read("players/p1")
            assert stored is not None
            assert decode(stored.value).user_ids == ("u9",)


def test_a_user_id_added_while_loading_is_kept_on_the_loaded_record() -> None:
    store = MemoryStore()
    with LockerService(store, spec()) as service:
        with service.session("p1") as locker:
            locker.add_user_id("old")
        locker = service.locker("p1")
        locker.acquire()
        locker.add_user_id("new")
        assert service.run_until(locker.is_available, timeout=5)
        assert locker.user_ids == ("new", "old")
        locker.release()
        assert service.run_until(lambda: service.get("p1") is None, timeout=5)
    stored = store.read("players/p1")
    assert stored is not None
    assert decode(stored.value).user_ids == ("new", "old")


def test_user_id_calls_refuse_bad_ids_and_idle_lockers() -> None:
    with LockerService(MemoryStore(), spec()) as service:
        locker = service.locker("p1")
        with pytest.raises(UsageError, match="not loaded"):
            locker.add_user_id("u1")
        with service.session("p2") as loaded:
            for bad in ("", 7, None):
                with pytest.raises(UsageError, match="user id"):
                    loaded.add_user_id(bad)  # type: ignore[arg-type]
            assert loaded.user_ids == ()


# ---------------------------------------------------------------- the index


def _put(store: Store, key: str, user_ids: tuple[str, ...], **fields: object) -> None:
    value = encode(Record(data={"k": key}, user_ids=user_ids, **fields))  # type: ignore[arg-type]
    current = store.read(key)
    store.write(key, value, None if current is None else current.revision)


def test_index_follows_writes_and_deletes(store: Store) -> None:
    _put(store, "players/a", ("u1",))
    _put(store, "players/b", ("u1", "u2"))
    _put(store, "guilds/g", ("u1", "u3"))
    _put(store, "players/c", ())
    assert keys_for_user(store, "u1", "players/") == ["players/a", "players/b"]
    assert keys_for_user(store, "u1") == ["guilds/g", "players/a", "players/b"]
    assert keys_for_user(store, "u3", "players/") == []
    _put(store, "players/b", ("u2",))  # u1 removed
    _put(store, "players/c", ("u1",))  # u1 added
    assert keys_for_user(store, "u1", "players/") == ["players/a", "players/c"]
    assert keys_for_user(store, "u2", "players/") == ["players/b"]
    store.delete("players/a")
    assert keys_for_user(store, "u1", "players/") == ["players/c"]
    assert keys_for_user(store, "nobody") == []


def test_index_with_many_users_and_compressed_data(store: Store) -> None:
    users = tuple(f"user-{n}" for n in range(60))
    _put(store, "houses/h", users, encoding="zlib")
    _put(store, "houses/i", users[:2])
    assert keys_for_user(store, "user-59", "houses/") == ["houses/h"]
    assert keys_for_user(store, "user-1", "houses/") == ["houses/h", "houses/i"]


def test_values_that_are_not_records_are_stored_and_not_indexed(store: Store) -> None:
    store.write("raw/a", b'not json "user_ids":["u1"]', None)
    store.write("raw/b", b'{"user_ids":["u1", 7, ""],"data":1}', None)
    store.write("raw/c", b'{"user_ids":"u1"}', None)
    found = keys_for_user(store, "u1", "raw/")
    # An index reads what is there; the scan decodes strictly and skips what fails.
    assert found in (["raw/b"], [])
    assert keys_for_user(store, "7", "raw/") == []


def test_service_keys_for_user_returns_keys_of_its_namespace(store: Store) -> None:
    with LockerService(store, spec("guilds")) as guilds, LockerService(store, spec()) as players:
        for service, key in ((players, "p1"), (players, "p2"), (guilds, "g1")):
            with service.session(key) as locker:
                locker.add_user_id("u1")
        with players.session("p3") as locker:
            locker.add_user_id("u2")
        assert players.keys_for_user("u1") == ["p1", "p2"]
        assert guilds.keys_for_user("u1") == ["g1"]
        assert players.keys_for_user("u2") == ["p3"]
        with players.session("p2") as locker:
            locker.remove_user_id("u1")
        assert players.keys_for_user("u1") == ["p1"]


def test_async_profile_user_ids_and_keys_for_user(store: Store) -> None:
    async def main() -> None:
        async with AsyncLockerService(store, spec()) as service:
            async with service.session("house", timeout=5) as profile:
                profile.add_user_id("u1")
                profile.add_user_id("u2")
                profile.remove_user_id("u2")
                assert profile.user_ids == ("u1",)
                await profile.saved()
            assert await service.keys_for_user("u1") == ["house"]
            assert await service.keys_for_user("u2") == []

    asyncio.run(main())
