"""What only the PostgreSQL store promises, on a real server.

The server is the one in ``SESSIONLOCKER_POSTGRES_URL`` (``tests/conftest.py`` starts
one for the run when it can). Each test works in a schema of its own, dropped after.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from backends import undated
from servers import PostgresServer
from sessionlocker.core.protocol import Put, Versioned
from sessionlocker.errors import Conflict, StoreError, UsageError
from sessionlocker.stores import Store, open_store
from sessionlocker.stores.base import Notifying
from sessionlocker.stores.opening import parse_store_url, supported_forms
from sessionlocker.stores.postgresql import PostgreSQLStore
from sessionlocker.stores.postgresql._connect import _readable
from sessionlocker.stores.postgresql._sql import prefix_end
from sessionlocker.stores.postgresql._url import OPTIONS

URL = os.environ.get("SESSIONLOCKER_POSTGRES_URL", "")
if not URL:
    pytest.skip(
        "POSTGRESQL BACKEND NOT TESTED: SESSIONLOCKER_POSTGRES_URL is not set",
        allow_module_level=True,
    )


def increment(current: Versioned | None) -> Put[int]:
    number = int(current.value) if current is not None else 0
    return Put(str(number + 1).encode(), number + 1)


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class Woken(list[str]):
    """A ``wake`` callable: the keys woken, in order, and the revision of each."""

    def __init__(self) -> None:
        super().__init__()
        self.revisions: list[int | None] = []

    def __call__(self, key: str, revision: int | None = None) -> None:
        self.revisions.append(revision)
        self.append(key)

    def clear(self) -> None:
        self.revisions.clear()
        super().clear()


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[TupleRow]]:
    """A superuser connection of the test's own, outside any store."""
    with psycopg.connect(URL, autocommit=True) as connection:
        yield connection


@pytest.fixture
def schema(admin: psycopg.Connection[TupleRow]) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def app() -> str:
    """An application_name that finds this test's connections in pg_stat_activity."""
    return f"sl-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make(schema: str, app: str) -> Iterator[Callable[..., PostgreSQLStore]]:
    """Open stores in the test's schema; all closed at the end."""
    stores: list[PostgreSQLStore] = []

    def opener(**options: object) -> PostgreSQLStore:
        options.setdefault("schema", schema)
        options.setdefault("application_name", app)
        store = PostgreSQLStore(URL, **options)  # type: ignore[arg-type]
        stores.append(store)
        return store

    yield opener
    for store in stores:
        store.close()


def backends(admin: psycopg.Connection[TupleRow], app: str, listening: bool) -> list[int]:
    """Process ids of the test's connections: the LISTENers, or the others."""
    rows = admin.execute(
        "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s", (app,)
    ).fetchall()
    return [int(pid) for pid, query in rows if str(query).startswith("LISTEN") == listening]


def terminate(admin: psycopg.Connection[TupleRow], pids: list[int]) -> None:
    for pid in pids:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_is_a_notifying_store() -> None:
    store: Notifying = PostgreSQLStore(URL)  # checked by mypy too
    assert isinstance(store, Notifying)
    assert isinstance(store, Store)
    store.close()


# Writes, revisions and history.


def test_concurrent_writers_in_threads_lose_no_update(make: Callable[..., PostgreSQLStore]) -> None:
    stores = [make(pool_size=4), make(pool_size=4)]  # two pools: two "processes"
    threads, rounds = 8, 40
    errors: list[BaseException] = []
    seen: list[list[int]] = [[] for _ in range(threads)]

    def work(index: int) -> None:
        store = stores[index % 2]
        known: Versioned | None = None
        try:
            for _ in range(rounds):
                result = store.update("counter", increment, known)  # stale known: conflicts
                known = result.current
                assert known is not None
                seen[index].append(known.revision)
        except BaseException as exc:  # report it in the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    stored = stores[0].read("counter")
    assert stored is not None
    assert int(stored.value) == threads * rounds
    revisions = [revision for each in seen for revision in each]
    assert len(set(revisions)) == len(revisions)  # every write its own revision
    assert all(each == sorted(each) for each in seen)


def test_revision_never_reused_after_delete_across_stores(
    make: Callable[..., PostgreSQLStore],
) -> None:
    first, second = make(), make()
    old = first.write("k", b"1", None)
    assert second.delete("k", expected=old) is True
    again = second.write("k", b"2", None)
    assert again > old
    with pytest.raises(Conflict) as caught:
        first.write("k", b"stale", old)  # an old writer cannot hit the re-created key
    assert caught.value.current == Versioned(b"2", again)
    first.close()
    reopened = make()
    assert reopened.write("k", b"3", again) > again


def test_history_keeps_the_last_versions_newest_first(
    make: Callable[..., PostgreSQLStore],
) -> None:
    store = make(history=3)
    assert store.history_depth == 3
    revisions = [store.write("k", b"v0", None)]
    for number in range(1, 6):
        revisions.append(store.write("k", f"v{number}".encode(), revisions[-1]))
    store.update("other", increment)
    assert undated(store.history("k")) == [
        Versioned(b"v5", revisions[5]),
        Versioned(b"v4", revisions[4]),
        Versioned(b"v3", revisions[3]),
    ]
    assert [version.value for version in store.history("other")] == [b"1"]
    with pytest.raises(Conflict):
        store.write("k", b"refused", revisions[0])
    assert undated(store.history("k"))[0] == Versioned(b"v5", revisions[5])  # a conflict adds none

    assert store.delete("k") is True
    assert [version.value for version in store.history("k")] == [b"v5", b"v4", b"v3"]
    again = store.write("k", b"again", None)  # to undo a mistaken delete, say
    assert undated(store.history("k"))[:2] == [
        Versioned(b"again", again),
        Versioned(b"v5", revisions[5]),
    ]
    assert len(store.history("k")) == 3


def test_history_of_one_and_history_off(
    make: Callable[..., PostgreSQLStore], admin: psycopg.Connection[TupleRow], schema: str
) -> None:
    one = make(history=1, table="one")
    revision = one.write("k", b"a", None)
    revision = one.write("k", b"b", revision)
    assert undated(one.history("k")) == [Versioned(b"b", revision)]

    off = make(history=0, table="off")
    off.write("k", b"a", None)
    assert off.history("k") == []
    (exists,) = admin.execute("SELECT to_regclass(%s)", (f"{schema}.off_history",)).fetchone() or (
        None,
    )
    assert exists is None


def test_keys_come_in_pages_each_once(
    make: Callable[..., PostgreSQLStore], admin: psycopg.Connection[TupleRow], schema: str
) -> None:
    store = make(history=0)
    store.write("seed", b"", None)  # creates the tables
    table = sql.Identifier(schema, "sessionlocker_records")
    sequence = f'"{schema}"."sessionlocker_records_revisions"'
    with admin.cursor() as cursor:
        cursor.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, nextval(%s::regclass), '', now())").format(table),
            [(f"p/{number:05}", sequence) for number in range(2500)],
        )
    for key in ("p", "p.", "p0", "q/1", "o/1"):
        store.write(key, b"", None)

    listing = store.keys("p/")
    store.write("p/99999", b"", None)  # after the first page was read: listed, it sorts last
    store.delete("p/00000")  # on the first page, read already: still listed
    keys = list(listing)
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys)) == 2501
    assert keys[0] == "p/00000"
    assert keys[-1] == "p/99999"
    assert sorted(store.keys("p")) == sorted(["p", "p.", "p0", *keys[1:]])


def test_prefixes_share_a_table_apart(make: Callable[..., PostgreSQLStore]) -> None:
    game, other, bare = make(prefix="game:"), make(prefix="other:"), make()
    first = game.write("k", b"game", None)
    other_revision = other.write("k", b"other", None)
    assert game.read("k") == Versioned(b"game", first)
    assert sorted(game.keys()) == ["k"]
    assert sorted(bare.keys()) == ["game:k", "other:k"]
    assert bare.read("game:k") == Versioned(b"game", first)
    with pytest.raises(Conflict) as caught:
        game.write("k", b"x", None)
    assert caught.value.key == "k"
    assert game.delete("k") is True
    assert other.read("k") is not None
    assert [version.value for version in game.history("k")] == [b"game"]

    woken = Woken()
    watch = game.watch(woken)
    wait_until(lambda: watch.connections == 1)
    watch.add("k")
    other.write("k", b"again", other_revision)
    game.write("k", b"back", None)
    wait_until(lambda: woken == ["k"])  # the game's key, named without its prefix


def test_prefix_end() -> None:
    assert prefix_end("") is None
    assert prefix_end("a/") == "a0"
    assert prefix_end("a\ud7ff") == "a\ue000"  # surrogates are skipped
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None


def test_keys_with_a_prefix_ending_in_the_last_code_point(
    make: Callable[..., PostgreSQLStore],
) -> None:
    store = make()
    for key in ("a\U0010ffff", "a\U0010ffffz", "b", "a"):
        store.write(key, b"", None)
    assert sorted(store.keys("a\U0010ffff")) == ["a\U0010ffff", "a\U0010ffffz"]


# Tables and permissions.


def test_tables_created_once_by_concurrent_first_users(
    make: Callable[..., PostgreSQLStore], admin: psycopg.Connection[TupleRow], schema: str
) -> None:
    stores = [make(table="shared") for _ in range(4)]
    errors: list[BaseException] = []

    def first_call(store: PostgreSQLStore) -> None:
        try:
            store.update("k", increment)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=first_call, args=(store,)) for store in stores]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    stored = stores[0].read("k")
    assert stored is not None
    assert stored.value == b"4"
    names = {
        str(row[0])
        for row in admin.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE nspname = %s",
            (schema,),
        )
    }
    expected = {"", "_revisions", "_session_versions", "_sessions", "_history"}
    assert {f"shared{suffix}" for suffix in expected} <= names


@pytest.fixture
def role(admin: psycopg.Connection[TupleRow], schema: str) -> Iterator[str]:
    """A login role that may use the test schema but not create anything in it."""
    name = f"sl_role_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    admin.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(name)
        )
    )
    yield name
    admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_permission_errors_say_what_is_missing(
    make: Callable[..., PostgreSQLStore],
    admin: psycopg.Connection[TupleRow],
    schema: str,
    role: str,
) -> None:
    limited = PostgreSQLStore(make_conninfo(URL, user=role), schema=schema)
    try:
        with pytest.raises(StoreError, match=f"grant it CREATE on schema {schema}") as caught:
            limited.read("k")
        assert caught.value.retryable is False

        make().write("k", b"1", None)  # the owner creates the tables
        with pytest.raises(StoreError, match="needs SELECT, INSERT, UPDATE and DELETE") as caught:
            limited.read("k")
        assert caught.value.retryable is False

        # The grants docs/backends.md lists are enough to use the store.
        tables = [f"sessionlocker_records{suffix}" for suffix in ("", "_sessions", "_history")]
        sequences = ["sessionlocker_records_revisions", "sessionlocker_records_session_versions"]
        for table in tables:
            admin.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
                    sql.Identifier(schema, table), sql.Identifier(role)
                )
            )
        for sequence in sequences:
            admin.execute(
                sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                    sql.Identifier(schema, sequence), sql.Identifier(role)
                )
            )
        assert limited.read("k") is not None
        limited.update("k", increment)
        revision = limited.write("k2", b"1", None)
        assert limited.delete("k2", expected=revision) is True
        limited.put_lease("s", 5.0, b"")
        assert limited.get_lease("s").exists is True
    finally:
        limited.close()


# Errors and timeouts.


@pytest.fixture
def row_lock(admin: psycopg.Connection[TupleRow]) -> Iterator[Callable[..., None]]:
    """Hold the lock on a record's row from another connection, so writes to it wait."""
    holders: list[psycopg.Connection[TupleRow]] = []

    def hold(schema: str, key: str, table: str = "sessionlocker_records") -> None:
        connection = psycopg.connect(URL)
        holders.append(connection)
        connection.execute(
            sql.SQL("SELECT 1 FROM {} WHERE key = %s FOR UPDATE").format(
                sql.Identifier(schema, table)
            ),
            (key,),
        )

    yield hold
    for connection in holders:
        connection.close()


def test_connection_killed_mid_write_is_retryable_with_unknown_outcome(
    make: Callable[..., PostgreSQLStore],
    admin: psycopg.Connection[TupleRow],
    schema: str,
    app: str,
    row_lock: Callable[..., None],
) -> None:
    store = make()
    revision = store.write("k", b"old", None)
    row_lock(schema, "k")
    outcome: list[BaseException | int] = []

    def write() -> None:
        try:
            outcome.append(store.write("k", b"new", revision))
        except BaseException as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    waiting: list[int] = []

    def blocked() -> bool:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock'",
            (app,),
        ).fetchall()
        waiting[:] = [int(row[0]) for row in rows]
        return bool(waiting)

    wait_until(blocked)
    started = time.monotonic()
    terminate(admin, waiting)
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert time.monotonic() - started < 5
    (error,) = outcome
    assert isinstance(error, StoreError)
    assert error.retryable is True
    assert error.unknown_outcome is True
    assert "terminating connection" in str(error)


def test_statement_timeout_is_retryable_and_changes_nothing(
    make: Callable[..., PostgreSQLStore], schema: str, row_lock: Callable[..., None]
) -> None:
    store = make(timeout=0.5)
    revision = store.write("k", b"old", None)
    row_lock(schema, "k")
    started = time.monotonic()
    with pytest.raises(StoreError, match="statement timeout") as caught:
        store.write("k", b"new", revision)
    assert time.monotonic() - started < 5
    assert caught.value.retryable is True
    assert caught.value.unknown_outcome is False  # the server answered: rolled back


def test_pool_drops_connections_the_server_closed(
    make: Callable[..., PostgreSQLStore], admin: psycopg.Connection[TupleRow], app: str
) -> None:
    store = make(pool_size=2)
    revision = store.write("k", b"1", None)
    pids = backends(admin, app, listening=False)
    assert pids
    terminate(admin, pids)
    # The pool may open a new connection meanwhile: wait for the terminated ones only.
    wait_until(lambda: not set(pids) & set(backends(admin, app, listening=False)), 50)
    wait_until(lambda: closed_by_the_server(store, pids), 50)
    # Idle connections the server closed are checked out of the pool without an error.
    assert store.read("k") == Versioned(b"1", revision)
    assert store.write("k", b"2", revision) > revision


def closed_by_the_server(store: PostgreSQLStore, pids: list[int]) -> bool:
    """Whether every idle pooled connection to one of ``pids`` shows the server's close
    (its socket is readable): only then can the pool's check see it."""
    pool = store._pool  # what the pool holds: private, looked at by this test only
    assert pool is not None
    idle = list(pool._pool)  # psycopg_pool's idle connections
    return all(
        _readable(connection.fileno()) for connection in idle if connection.info.backend_pid in pids
    )


def test_server_crash_and_restart(private_postgres: PostgresServer) -> None:
    store = PostgreSQLStore(private_postgres.url, connect_timeout=1)
    try:
        woken = Woken()
        watch = store.watch(woken)
        watch.add("k")
        wait_until(lambda: watch.connections == 1)
        revision = store.write("k", b"before", None)

        private_postgres.stop(hard=True)  # a crash: every connection drops at once
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(StoreError) as caught:
                store.write("k", b"during", revision)
            assert time.monotonic() - started < 5  # bounded, never a hang
            assert caught.value.retryable is True
        time.sleep(3)  # long enough for the pool to back off between reconnects

        private_postgres.start()
        woken.clear()
        back = time.monotonic()
        failures: list[StoreError] = []
        while True:  # as a driver would: retry until the store answers
            try:
                stored = store.read("k")
                break
            except StoreError as exc:
                failures.append(exc)
                time.sleep(0.05)
        assert all(failure.retryable for failure in failures)
        assert time.monotonic() - back < 3
        assert stored == Versioned(b"before", revision)  # committed before the crash: kept
        assert store.write("k", b"after", revision) > revision
        wait_until(lambda: watch.connections == 2)
        assert "k" in woken  # the watch came back and woke its key
    finally:
        store.close()


def test_unreachable_server_is_retryable_and_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store("postgresql://app:s3cr3t-pw@127.0.0.1:1/db?connect_timeout=2")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            store.read("k")
        assert time.monotonic() - started < 10
        assert caught.value.retryable is True
        assert caught.value.unknown_outcome is False
        with caplog.at_level(logging.DEBUG):
            assert isinstance(store, Notifying)
            watch = store.watch(Woken())
            time.sleep(0.3)  # a few failed connection attempts, logged
            watch.close()
        shown = [repr(store), str(caught.value), caplog.text]
        error: BaseException | None = caught.value
        while error is not None:
            shown.append(str(error))
            error = error.__cause__ or error.__context__
        assert "cannot connect" in caplog.text
        for text in shown:
            assert "s3cr3t" not in text
    finally:
        store.close()


def test_bad_connection_string_is_refused_without_echoing_it() -> None:
    with pytest.raises(UsageError, match="cannot be parsed") as caught:
        PostgreSQLStore("host=db.example password=s3cr3t-pw oops")
    assert "s3cr3t" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


# Notifications.


def test_write_from_another_store_wakes_a_watched_key(
    make: Callable[..., PostgreSQLStore],
) -> None:
    watcher, writer = make(), make()
    woken = Woken()
    watch = watcher.watch(woken)
    long_key = "long/" + "x" * 9000  # over the NOTIFY payload limit: sent as a digest
    for key in ("a", long_key):
        watch.add(key)
    wait_until(lambda: watch.connections == 1)
    woken.clear()

    writer.write("unwatched", b"", None)
    revision = writer.write("a", b"1", None)
    wait_until(lambda: woken == ["a"])  # "unwatched" came first on the channel: not woken
    long_revision = writer.write(long_key, b"", None)
    wait_until(lambda: woken == ["a", long_key])
    writer.delete("a", expected=revision)
    wait_until(lambda: woken == ["a", long_key, "a"])
    assert woken.revisions == [revision, long_revision, None]  # a delete names no revision

    watch.discard("a")
    writer.write("a", b"again", None)
    writer.write(long_key + "!", b"", None)
    assert writer.delete(long_key) is True
    wait_until(lambda: len(woken) == 4)
    assert woken[-1] == long_key


def test_watch_reconnects_and_wakes_every_key_after_its_connection_dies(
    make: Callable[..., PostgreSQLStore], admin: psycopg.Connection[TupleRow], app: str
) -> None:
    store = make()
    woken = Woken()
    watch = store.watch(woken)
    wait_until(lambda: watch.connections == 1)
    for key in ("a", "b", "c"):
        watch.add(key)
    listener = backends(admin, app, listening=True)
    assert len(listener) == 1
    woken.clear()

    terminate(admin, listener)
    wait_until(lambda: watch.connections == 2)
    assert sorted(woken) == ["a", "b", "c"]  # notifications may have been missed: wake all
    assert woken.revisions == [None, None, None]
    assert backends(admin, app, listening=True) != listener

    woken.clear()
    store.write("b", b"", None)
    wait_until(lambda: woken == ["b"])


def test_a_failing_wake_callback_does_not_stop_the_watch(
    make: Callable[..., PostgreSQLStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = make()
    woken = Woken()

    def wake(key: str, revision: int | None = None) -> None:
        woken(key, revision)
        if key == "bad":
            raise RuntimeError("callback bug")

    watch = store.watch(wake)
    watch.add("bad")
    watch.add("good")
    wait_until(lambda: watch.connections == 1)
    store.write("bad", b"", None)
    store.write("good", b"", None)
    wait_until(lambda: woken[-2:] == ["bad", "good"])
    assert "wake callback failed" in caplog.text


def test_close_stops_every_watch(make: Callable[..., PostgreSQLStore]) -> None:
    store = make()
    watch = store.watch(Woken())
    wait_until(lambda: watch.connections == 1)
    before = {thread.name for thread in threading.enumerate()}
    assert "sessionlocker-postgresql-watch" in before
    store.close()
    wait_until(
        lambda: all(t.name != "sessionlocker-postgresql-watch" for t in threading.enumerate())
    )
    with pytest.raises(StoreError, match="closed"):
        store.watch(Woken())


# URLs.


def test_url_options_reach_the_store(schema: str, app: str) -> None:
    store = open_store(
        f"{URL}?schema={schema}&table=records&prefix=p:&history=2&pool=2&timeout=3"
        f"&connect_timeout=2&application_name={app}&sslmode=disable"
    )
    try:
        assert isinstance(store, PostgreSQLStore)
        assert store.history_depth == 2
        assert f"{schema}.records" in repr(store)
        revision = store.write("k", b"1", None)
        store.write("k", b"2", revision)
        assert len(store.history("k")) == 2
        assert list(store.keys()) == ["k"]
        assert "prefix='p:'" in repr(store)
    finally:
        store.close()
    alias = open_store(URL.replace("postgresql://", "postgres://", 1) + f"?schema={schema}")
    alias.close()


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("history=-1", "history=-1 must be >= 0"),
        ("pool=0", "pool=0 must be >= 1"),
        ("pool=two", "not a whole number"),
        ("timeout=0", ">= 0.001"),
        ("table=Records", "lower-case SQL name"),
        ("schema=a;drop", "lower-case SQL name"),
        (f"table={'t' * 47}", "longer than 46"),
        ("sslmode=require&color=red", "unknown option"),
    ],
)
def test_bad_url_options(options: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        open_store(f"postgresql://app:s3cr3t-pw@db.example/app?{options}")


def test_registered_options_match_the_opener() -> None:
    backend, _ = parse_store_url("postgresql://db.example/app")
    assert backend.options == OPTIONS
    assert any(form.startswith("postgres://") for form in supported_forms())
