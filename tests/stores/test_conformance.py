"""One suite every backend must pass: the ``Store`` protocol as the memory store defines it."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from backends import Backend
from sessionlocker.core.protocol import Keep, LeaseView, Put, Versioned
from sessionlocker.errors import Conflict, StoreError, UsageError
from sessionlocker.stores import Store


def increment(current: Versioned | None) -> Put[int]:
    """A transform that counts: the stored bytes are a decimal number."""
    number = int(current.value) if current is not None else 0
    return Put(str(number + 1).encode(), number + 1)


def test_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


# Records.


def test_read_absent(store: Store) -> None:
    assert store.read("nobody") is None


def test_write_new_then_conflict_when_expecting_absent(store: Store) -> None:
    revision = store.write("k", b"first", None)
    assert store.read("k") == Versioned(b"first", revision)

    with pytest.raises(Conflict) as caught:
        store.write("k", b"second", None)
    assert caught.value.key == "k"
    assert caught.value.current == Versioned(b"first", revision)
    assert store.read("k") == Versioned(b"first", revision)


def test_conditional_write(store: Store) -> None:
    first = store.write("k", b"a", None)
    second = store.write("k", b"b", first)
    assert second > first
    assert store.read("k") == Versioned(b"b", second)

    with pytest.raises(Conflict) as caught:
        store.write("k", b"c", first)  # stale
    assert caught.value.current == Versioned(b"b", second)
    assert store.read("k") == Versioned(b"b", second)


def test_conditional_write_on_absent_key_conflicts_with_none(store: Store) -> None:
    with pytest.raises(Conflict) as caught:
        store.write("ghost", b"x", 7)
    assert caught.value.current is None
    assert store.read("ghost") is None


def test_empty_bytes_are_a_value(store: Store) -> None:
    revision = store.write("k", b"", None)
    assert store.read("k") == Versioned(b"", revision)


def test_revisions_grow_also_after_delete_and_recreate(store: Store) -> None:
    # The protocol promises growth per key (the cluster store has no store-wide sequence).
    seen = [store.write("k", b"1", None)]
    seen.append(store.write("k", b"2", seen[-1]))
    store.write("other", b"x", None)
    assert store.delete("k")
    seen.append(store.write("k", b"3", None))
    seen.append(store.write("k", b"4", seen[-1]))
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)


def test_delete(store: Store) -> None:
    assert store.delete("k") is False
    store.write("k", b"v", None)
    assert store.delete("k") is True
    assert store.read("k") is None
    assert store.delete("k") is False


def test_delete_with_expected(store: Store) -> None:
    first = store.write("k", b"a", None)
    second = store.write("k", b"b", first)
    with pytest.raises(Conflict) as caught:
        store.delete("k", expected=first)
    assert caught.value.current == Versioned(b"b", second)
    assert store.read("k") == Versioned(b"b", second)

    assert store.delete("k", expected=second) is True
    assert store.read("k") is None
    assert store.delete("k", expected=second) is False


def test_keys_by_prefix(store: Store) -> None:
    for key in ("players/1", "players/2", "players-x", "guilds/1", "p"):
        store.write(key, b"v", None)
    assert sorted(store.keys("players/")) == ["players/1", "players/2"]
    assert sorted(store.keys("p")) == ["p", "players-x", "players/1", "players/2"]
    assert sorted(store.keys()) == ["guilds/1", "p", "players-x", "players/1", "players/2"]
    assert list(store.keys("nothing/")) == []


def test_keys_with_unusual_characters(store: Store) -> None:
    for key in ("ä/1", "ä/2", "a/1", "%_/1", "%_x"):
        store.write(key, b"v", None)
    assert sorted(store.keys("ä/")) == ["ä/1", "ä/2"]
    assert sorted(store.keys("%_/")) == ["%_/1"]


def test_keys_is_a_snapshot(store: Store) -> None:
    store.write("a/1", b"v", None)
    listing = store.keys("a/")
    store.write("a/2", b"v", None)
    assert list(listing) == ["a/1"]


# Update.


def test_update_on_absent_key(store: Store) -> None:
    seen: list[Versioned | None] = []

    def create(current: Versioned | None) -> Put[str]:
        seen.append(current)
        return Put(b"new", "created")

    result = store.update("k", create)
    assert seen == [None]
    assert result.outcome == "created"
    assert result.wrote is True
    assert result.current is not None
    assert result.current.value == b"new"
    assert store.read("k") == result.current


def test_update_put_and_keep(store: Store) -> None:
    revision = store.write("k", b"1", None)

    result = store.update("k", increment)
    assert result.outcome == 2
    assert result.wrote is True
    assert result.current is not None
    assert result.current.value == b"2"
    assert result.current.revision > revision
    assert store.read("k") == result.current

    kept = store.update("k", lambda current: Keep("nothing to do"))
    assert kept.outcome == "nothing to do"
    assert kept.wrote is False
    assert kept.current == result.current
    assert store.read("k") == result.current


def test_update_keep_on_absent_key(store: Store) -> None:
    result = store.update("k", lambda current: Keep(current is None))
    assert result.outcome is True
    assert result.wrote is False
    assert result.current is None
    assert store.read("k") is None


def test_update_with_known_fast_path(store: Store) -> None:
    revision = store.write("k", b"1", None)
    known = Versioned(b"1", revision)
    seen: list[Versioned | None] = []

    def counting(current: Versioned | None) -> Put[int]:
        seen.append(current)
        return increment(current)

    result = store.update("k", counting, known)
    assert seen == [known]
    assert result.outcome == 2
    assert result.current is not None
    assert result.current.revision > revision
    assert store.read("k") == result.current


def test_update_with_stale_known_reruns_on_current(store: Store) -> None:
    first = store.write("k", b"1", None)
    stale = Versioned(b"1", first)
    second = store.write("k", b"10", first)  # someone else wrote
    current = Versioned(b"10", second)
    seen: list[Versioned | None] = []

    def counting(value: Versioned | None) -> Put[int]:
        seen.append(value)
        return increment(value)

    result = store.update("k", counting, stale)
    # Stores that honour ``known`` try it first; the last run is always on what is stored.
    assert seen[-1] == current
    assert seen[:-1] in ([], [stale])
    assert result.outcome == 11
    assert result.wrote is True
    assert store.read("k") == result.current
    assert result.current is not None
    assert result.current.value == b"11"


def test_update_with_known_when_key_was_deleted(store: Store) -> None:
    revision = store.write("k", b"1", None)
    store.delete("k")
    result = store.update("k", increment, Versioned(b"1", revision))
    assert result.outcome == 1
    assert store.read("k") == result.current


def test_update_transform_error_changes_nothing(store: Store) -> None:
    revision = store.write("k", b"1", None)

    def broken(current: Versioned | None) -> Put[None]:
        raise RuntimeError("transform bug")

    with pytest.raises(RuntimeError, match="transform bug"):
        store.update("k", broken)
    assert store.read("k") == Versioned(b"1", revision)
    assert store.write("k", b"2", revision) > revision  # the store still works


def test_update_put_of_non_bytes_is_refused(store: Store) -> None:
    with pytest.raises(UsageError, match="bytes"):
        store.update("k", lambda current: Put("text", None))  # type: ignore[arg-type]
    assert store.read("k") is None


def test_concurrent_updates_count_exactly(store: Store) -> None:
    threads, rounds = 4, 40
    errors: list[BaseException] = []
    # A retryable StoreError with a known outcome is retried, as every driver does, and
    # the count must still be exact. (SQLite's early "database is locked" when threads
    # opened a new file at once was the WAL switch on open, fixed in ``sqlite``
    # and tested in test_sqlite.py, where no retry would hide its return.)

    def work() -> None:
        try:
            for _ in range(rounds):
                while True:
                    try:
                        store.update("counter", increment)
                        break
                    except StoreError as exc:  # retried as every driver does, if safe
                        if not exc.retryable or exc.unknown_outcome:
                            raise
        except BaseException as exc:  # report it in the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    stored = store.read("counter")
    assert stored is not None
    assert int(stored.value) == threads * rounds


# Sessions.


def test_session_absent(store: Store) -> None:
    assert store.get_lease("nobody") == LeaseView(exists=False, expired=True, version=0, ttl=None)


def test_session_put_renew_drop(store: Store, backend: Backend) -> None:
    store.put_lease("s1", backend.ttl, b"host=a")
    first = store.get_lease("s1")
    assert first.exists is True
    assert first.expired is False
    assert first.ttl == pytest.approx(backend.ttl)
    assert first.version > 0

    store.put_lease("s1", backend.ttl, b"host=a")
    second = store.get_lease("s1")
    assert second.version > first.version
    assert second.expired is False

    store.drop_lease("s1")
    assert store.get_lease("s1").exists is False
    store.drop_lease("s1")  # absent is fine


def test_session_expires(store: Store, backend: Backend) -> None:
    store.put_lease("s1", backend.ttl, b"")
    store.put_lease("s2", backend.ttl * 10, b"")
    backend.pass_time(backend.ttl)
    view = store.get_lease("s1")
    assert view.exists is True
    assert view.expired is True
    assert store.get_lease("s2").expired is False

    store.put_lease("s1", backend.ttl, b"")  # renewal revives it
    assert store.get_lease("s1").expired is False


def test_session_version_never_repeats_after_drop(store: Store, backend: Backend) -> None:
    store.put_lease("s1", backend.ttl, b"")
    before = store.get_lease("s1").version
    store.drop_lease("s1")
    store.put_lease("s1", backend.ttl, b"")
    assert store.get_lease("s1").version > before


# Bad arguments and closed stores.


@pytest.mark.parametrize("value", ["text", bytearray(b"x"), memoryview(b"x"), None, 1])
def test_values_must_be_bytes(store: Store, value: object) -> None:
    with pytest.raises(UsageError, match="bytes"):
        store.write("k", value, None)  # type: ignore[arg-type]
    assert store.read("k") is None


@pytest.mark.parametrize("key", ["", None, 5, b"k", "\ud800"])
def test_keys_must_be_non_empty_text(store: Store, key: object) -> None:
    with pytest.raises(UsageError, match="key"):
        store.write(key, b"v", None)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="key"):
        store.read(key)  # type: ignore[arg-type]


def test_other_bad_arguments(store: Store) -> None:
    with pytest.raises(UsageError):
        store.write("k", b"v", "1")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        store.keys(None)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        store.put_lease("", 1.0, b"")
    with pytest.raises(UsageError):
        store.put_lease("s", 0.0, b"")
    with pytest.raises(UsageError):
        store.put_lease("s", float("nan"), b"")
    with pytest.raises(UsageError):
        store.put_lease("s", 1.0, "info")  # type: ignore[arg-type]


def test_closed_store_refuses_every_call(store: Store) -> None:
    store.write("k", b"v", None)
    store.close()
    store.close()  # idempotent
    calls: list[Callable[[], object]] = [
        lambda: store.read("k"),
        lambda: store.write("k", b"v", None),
        lambda: store.update("k", increment),
        lambda: store.delete("k"),
        lambda: list(store.keys()),
        lambda: store.put_lease("s", 1.0, b""),
        lambda: store.get_lease("s"),
        lambda: store.drop_lease("s"),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="closed") as caught:
            call()
        assert caught.value.retryable is False
