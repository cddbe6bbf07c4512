"""``update_many``: a batch of updates, each keeping its own outcome, on every backend.

One batch mixes an update that writes a new key, one whose ``known`` is stale (it
conflicts, and runs again on what is stored), one that keeps, one whose transform
raises, and one the server itself refuses (a trigger on SQLite and PostgreSQL, a
record of the wrong type on Redis): each gets exactly the result it would get alone,
and the store holds exactly the writes that succeeded. On Redis and PostgreSQL a
connection that breaks in the middle of a batch fails only the updates whose replies
had not come, as writes of unknown outcome, and the store serves the next batch. The
same runs on the native async stores (memory's async store is threaded, and batches
through the default loop).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import Backend, open_backend, server_url
from sessionlocker.core.protocol import Keep, Put, Update, Updated, Versioned
from sessionlocker.errors import StoreError
from sessionlocker.stores import AsyncStore, Store, open_async_store
from sessionlocker.stores.base import Outcome, async_update_many, update_many

NS = "batch/"


def _added(tag: bytes) -> Callable[[Versioned | None], Put[str]]:
    """A transform putting ``tag`` before what is stored."""
    return lambda current: Put(tag + (current.value if current else b""), "put")


def _keeps(current: Versioned | None) -> Keep[str]:
    return Keep("kept")


def _raises(current: Versioned | None) -> Put[str]:
    raise ValueError("this transform fails")


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(str(request.param), tmp_path)
    yield made
    made.close()


def refuse(backend: Backend, key: str) -> bool:
    """Make the server refuse every write of ``key`` (False: memory has no server)."""
    if backend.name == "sqlite":
        assert backend.url is not None
        path = backend.url.removeprefix("sqlite:///").split("?")[0]
        with sqlite3.connect(path) as connection:
            for event in ("INSERT", "UPDATE"):
                connection.execute(
                    f"CREATE TRIGGER refuse_{event} BEFORE {event} ON records WHEN "
                    f"NEW.key = '{NS}{key}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
        return True
    if backend.name == "redis":
        import redis  # noqa: PLC0415 (only this backend needs it)

        prefix = backend.store.prefix  # type: ignore[attr-defined]
        with redis.Redis.from_url(server_url("redis")) as client:
            client.set(f"{prefix}r:{NS}{key}", "not a hash")  # every script on it: WRONGTYPE
        return True
    if backend.name == "postgresql":
        _pg_trigger(backend, key, "RAISE EXCEPTION 'refused'")
        return True
    return False


def _pg_trigger(backend: Backend, key: str, action: str) -> None:
    """A trigger running ``action`` before any write of ``key`` in the store's table."""
    import psycopg  # noqa: PLC0415 (only this backend needs it)

    backend.store.read(f"{NS}x")  # the store makes its tables on first use
    assert backend.url is not None
    schema = backend.url.split("schema=")[1].split("&")[0]
    table = f"{schema}.sessionlocker_records"
    name = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url("postgresql"), autocommit=True) as connection:
        connection.execute(
            f"CREATE FUNCTION {schema}.{name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF NEW.key = '{NS}{key}' THEN {action}; END IF; RETURN NEW; END $$"
        )
        connection.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {schema}.{name}()"
        )


def _mixed(store_revision: int) -> list[Update[Any]]:
    stale = Versioned(b"stale", store_revision + 1000)
    return [
        Update(key=f"{NS}new", transform=_added(b"N")),
        Update(key=f"{NS}old", transform=_added(b"O"), known=stale),
        Update(key=f"{NS}kept", transform=_keeps),
        Update(key=f"{NS}raises", transform=_raises),
        Update(key=f"{NS}refused", transform=_added(b"R")),
        Update(key=f"{NS}last", transform=_added(b"L")),
    ]


def _check_mixed(results: list[Outcome], refused: bool) -> None:
    new, old, kept, raises, refusal, last = results
    assert isinstance(new, Updated)
    assert new.wrote
    assert new.current is not None
    assert new.current.value == b"N"
    assert isinstance(old, Updated)  # conflicted, then ran again on what is stored
    assert old.current is not None
    assert old.current.value == b"Oold"
    assert isinstance(kept, Updated)
    assert not kept.wrote
    assert kept.outcome == "kept"
    assert isinstance(raises, ValueError)
    if refused:
        assert isinstance(refusal, StoreError)
        assert not refusal.unknown_outcome  # refused: it did not happen
    else:
        assert isinstance(refusal, Updated)
    assert isinstance(last, Updated)
    assert last.current is not None
    assert last.current.value == b"L"


def _check_stored(read: Callable[[str], Versioned | None], refused: bool) -> None:
    stored = {name: read(f"{NS}{name}") for name in ("new", "old", "kept", "raises", "last")}
    assert {name: None if got is None else got.value for name, got in stored.items()} == {
        "new": b"N",
        "old": b"Oold",
        "kept": None,
        "raises": None,
        "last": b"L",
    }
    if refused:
        assert backend_value(read, "refused") in (None, b"not a hash")


def backend_value(read: Callable[[str], Versioned | None], name: str) -> bytes | None:
    """What ``read`` finds at ``name`` (a record of the wrong type reads as an error)."""
    try:
        found = read(f"{NS}{name}")
    except StoreError:
        return b"not a hash"
    return None if found is None else found.value


def test_each_update_of_a_batch_keeps_its_own_outcome(backend: Backend) -> None:
    store = backend.store
    revision = store.write(f"{NS}old", b"old", None)
    refused = refuse(backend, "refused")
    results = update_many(store, _mixed(revision))
    _check_mixed(results, refused)
    _check_stored(store.read, refused)


@pytest.mark.parametrize("name", ["memory", "redis", "postgresql"])
def test_an_async_batch_keeps_each_outcome(name: str, tmp_path: Path) -> None:
    made = open_backend(name, tmp_path)
    refused = refuse(made, "refused")
    url = made.url or "memory://"

    async def main() -> None:
        store = open_async_store(url)
        try:
            revision = await store.write(f"{NS}old", b"old", None)
            results = await async_update_many(store, _mixed(revision))
            _check_mixed(results, refused)
            stored = {key: await store.read(key) for key in _keys()}
            _check_stored(lambda key: _found(stored, key), refused)
        finally:
            await store.aclose()

    try:
        asyncio.run(main())
    finally:
        made.close()


def _keys() -> list[str]:
    return [f"{NS}{name}" for name in ("new", "old", "kept", "raises", "last")]


def _found(stored: dict[str, Versioned | None], key: str) -> Versioned | None:
    if key not in stored:
        raise StoreError("not read")
    return stored[key]


# --------------------------------------------------------------------------- known


def _stored(store: Store, names: list[str]) -> dict[str, Versioned]:
    """Write each of ``names`` (its value: its name), and what was stored."""
    return {
        name: Versioned(name.encode(), store.write(f"{NS}{name}", name.encode(), None))
        for name in names
    }


def _written(result: Outcome) -> Versioned:
    assert isinstance(result, Updated)
    assert result.wrote
    assert result.current is not None
    return result.current


def test_a_batch_of_known_updates_keeps_each_outcome(backend: Backend) -> None:
    """Writes to stored keys go together (one statement on PostgreSQL): a conflict in
    the middle, a key deleted since and a key updated twice each get their own result."""
    store = backend.store
    known = _stored(store, ["a", "stale", "gone", "b"])
    store.delete(f"{NS}gone")
    stale = Versioned(b"older", known["stale"].revision + 1000)
    results = update_many(
        store,
        [
            Update(key=f"{NS}a", transform=_added(b"1"), known=known["a"]),
            Update(key=f"{NS}stale", transform=_added(b"2"), known=stale),
            Update(key=f"{NS}gone", transform=_added(b"3"), known=known["gone"]),
            Update(key=f"{NS}a", transform=_added(b"4"), known=known["a"]),
            Update(key=f"{NS}b", transform=_added(b"5"), known=known["b"]),
        ],
    )
    first, conflicted, absent, second, last = (_written(result) for result in results)
    assert conflicted.value == b"2stale"  # ran again on what is stored
    assert absent.value == b"3"  # ran again on nothing: the key was deleted
    assert last.value == b"5b"
    # Two updates of one key: one wrote on what it knew, the other ran again after it.
    assert (first.value, second.value) in ((b"1a", b"41a"), (b"14a", b"4a"))
    final = max(first, second, key=lambda written: written.revision)
    expected = {"a": final, "stale": conflicted, "gone": absent, "b": last}
    assert {name: store.read(f"{NS}{name}") for name in expected} == expected


def test_a_refused_write_among_known_updates_fails_alone(backend: Backend) -> None:
    store = backend.store
    known = _stored(store, ["one", "refused", "two"])
    refused = refuse(backend, "refused")
    results = update_many(
        store,
        [Update(key=f"{NS}{name}", transform=_added(b"+"), known=known[name]) for name in known],
    )
    one, refusal, two = results
    assert store.read(f"{NS}one") == _written(one) == Versioned(b"+one", _written(one).revision)
    assert store.read(f"{NS}two") == _written(two) == Versioned(b"+two", _written(two).revision)
    if refused:
        assert isinstance(refusal, StoreError)
        assert not refusal.unknown_outcome  # refused: it did not happen
        assert backend_value(store.read, "refused") in (b"refused", b"not a hash")
    else:
        assert _written(refusal).value == b"+refused"


# --------------------------------------------------------------------------- broken


def break_at(backend: Backend, key: str) -> Callable[[], None]:
    """Make a write of ``key`` break its connection mid-batch; returns the undo."""
    if backend.name == "postgresql":  # the server process ends itself, mid-pipeline
        _pg_trigger(backend, key, "PERFORM pg_terminate_backend(pg_backend_pid())")
        return lambda: None
    import redis  # noqa: PLC0415 (only this backend needs it)

    # A request longer than the server accepts is a protocol error: it closes the
    # connection, after answering what came before it.
    client = redis.Redis.from_url(server_url("redis"))
    before = client.config_get("proto-max-bulk-len")["proto-max-bulk-len"]
    client.config_set("proto-max-bulk-len", 1024 * 1024)

    def undo() -> None:
        client.config_set("proto-max-bulk-len", before)
        client.close()

    return undo


def _breaking(backend: Backend) -> list[Update[Any]]:
    """Three updates; the second breaks the connection (a value too long for Redis)."""
    big = b"B" * (2 * 1024 * 1024) if backend.name == "redis" else b"B"
    return [
        Update(key=f"{NS}before", transform=_added(b"1")),
        Update(key=f"{NS}breaks", transform=lambda current: Put(big, "put")),
        Update(key=f"{NS}after", transform=_added(b"3")),
    ]


def _check_broken(results: list[Outcome]) -> None:
    before, breaks, after = results
    # Its reply was sent before the break; whether it is read depends on the break's
    # timing (a reset may reach the client while it is still sending the big value and
    # take the unread reply with it): known when read, else an unknown outcome. Either
    # way the write happened once (the caller checks the stored value).
    if isinstance(before, StoreError):
        assert before.unknown_outcome
    else:
        assert isinstance(before, Updated)
        assert before.wrote
    assert isinstance(breaks, StoreError)  # Redis refuses it, then closes; PostgreSQL dies
    assert isinstance(after, StoreError)
    assert after.unknown_outcome  # sent, reply lost: may or may not have happened


@pytest.fixture(params=["redis", "postgresql"])
def networked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(str(request.param), tmp_path)
    yield made
    made.close()


def test_a_connection_broken_mid_batch_fails_only_the_replies_not_read(
    networked: Backend,
) -> None:
    store: Store = networked.store
    undo = break_at(networked, "breaks")
    try:
        results = update_many(store, _breaking(networked))
    finally:
        undo()
    _check_broken(results)
    stored = store.read(f"{NS}before")
    assert stored is not None
    assert stored.value == b"1"
    again = update_many(store, [Update(key=f"{NS}next", transform=_added(b"4"))])
    assert isinstance(again[0], Updated)  # the store serves the next batch


def test_an_async_connection_broken_mid_batch(networked: Backend) -> None:
    assert networked.url is not None
    url = networked.url

    async def main() -> None:
        store: AsyncStore = open_async_store(url)
        try:
            results = await async_update_many(store, _breaking(networked))
            _check_broken(results)
            again = await async_update_many(store, [Update(key=f"{NS}n", transform=_keeps)])
            assert isinstance(again[0], Updated)
        finally:
            await store.aclose()

    undo = break_at(networked, "breaks")
    try:
        asyncio.run(main())
    finally:
        undo()


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_postgresql_connection_broken_among_known_updates_leaves_outcomes_unknown(
    tmp_path: Path, asynchronous: bool
) -> None:
    """On PostgreSQL writes to stored keys go in one statement: when its connection
    breaks, each of them is of unknown outcome, and each either happened or not."""
    made = open_backend("postgresql", tmp_path)
    try:
        store: Store = made.store
        names = ("before", "breaks", "after")
        known = _stored(store, list(names))
        break_at(made, "breaks")
        updates = [
            Update(key=f"{NS}{name}", transform=_added(b"+"), known=known[name]) for name in names
        ]
        if asynchronous:
            assert made.url is not None
            results = asyncio.run(_async_batch(made.url, updates))
        else:
            results = update_many(store, updates)
        assert isinstance(results[1], StoreError)
        for name, result in zip(names, results, strict=True):
            stored = store.read(f"{NS}{name}")
            assert stored is not None
            if isinstance(result, Updated):
                assert result.current == stored
            else:
                assert isinstance(result, StoreError)
                assert result.unknown_outcome
                assert stored.value in (name.encode(), b"+" + name.encode())
        again = update_many(store, [Update(key=f"{NS}next", transform=_added(b"4"))])
        assert isinstance(again[0], Updated)  # the store serves the next batch
    finally:
        made.close()


async def _async_batch(url: str, updates: list[Update[Any]]) -> list[Outcome]:
    store: AsyncStore = open_async_store(url)
    try:
        return await async_update_many(store, updates)
    finally:
        await store.aclose()


def test_postgresql_known_updates_in_several_statements_keep_each_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch larger than a PostgreSQL statement takes (``GROUP`` rows) is split:
    each write's result comes from its own statement's reply."""
    from sessionlocker.stores.postgresql import _layout  # noqa: PLC0415 (its constant)

    monkeypatch.setattr(_layout, "GROUP", 2)
    made = open_backend("postgresql", tmp_path)
    try:
        store: Store = made.store
        names = ["a", "b", "stale", "d", "gone"]
        known = _stored(store, names)
        store.delete(f"{NS}gone")
        known["stale"] = Versioned(b"older", known["stale"].revision + 1000)
        updates = [Update(key=f"{NS}{n}", transform=_added(b"+"), known=known[n]) for n in names]
        written = [_written(result) for result in update_many(store, updates)]
        assert [w.value for w in written] == [b"+a", b"+b", b"+stale", b"+d", b"+"]
        assert [store.read(f"{NS}{name}") for name in names] == written
    finally:
        made.close()
