"""What only the Redis store promises: its scripts, SCAN, history, pub/sub and its errors.

The shared conformance suite runs on Redis too (``conftest.BACKENDS``); these tests look
at what is particular to it, on the run's server or on a private one that a test may
stop, pause or restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from backends import open_backend, undated
from servers import RedisServer
from sessionlocker.core.protocol import Put, Versioned
from sessionlocker.errors import Conflict, StoreError, UsageError
from sessionlocker.stores import open_store
from sessionlocker.stores.base import Entry
from sessionlocker.stores.redis import RedisStore
from sessionlocker.stores.redis._layout import packed
from sessionlocker.stores.redis._watch import IDLE


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RedisStore]:
    made = open_backend("redis", tmp_path)
    assert isinstance(made.store, RedisStore)
    yield made.store
    made.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as made:
        yield made


def twin(store: RedisStore, url: str, *options: str) -> RedisStore:
    """Another client (its own pool) on the same prefix, like another process."""
    query = "&".join([f"prefix={store.prefix}", *options])
    made = open_store(f"{url}?{query}")
    assert isinstance(made, RedisStore)
    return made


def increment(current: Versioned | None) -> Put[int]:
    number = int(current.value) if current is not None else 0
    return Put(str(number + 1).encode(), number + 1)


def run_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# Scripts: atomic compare-and-write.


def test_concurrent_writers_on_separate_clients_lose_no_update(
    store: RedisStore, redis_url: str
) -> None:
    clients = [twin(store, redis_url) for _ in range(6)]
    rounds = 40

    def work(index: int) -> None:
        for _ in range(rounds):
            clients[index].update("counter", increment)

    run_threads(len(clients), work)
    stored = store.read("counter")
    assert stored is not None
    assert int(stored.value) == len(clients) * rounds
    for made in clients:
        made.close()


def test_one_winner_per_expected_revision(store: RedisStore, redis_url: str) -> None:
    clients = [twin(store, redis_url) for _ in range(5)]
    start = store.write("k", b"0", None)
    winners: list[int] = []
    conflicts: list[Versioned | None] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        try:
            clients[index].write("k", str(index).encode(), start)
        except Conflict as conflict:
            with lock:
                conflicts.append(conflict.current)
        else:
            with lock:
                winners.append(index)

    run_threads(len(clients), work)
    assert len(winners) == 1
    stored = store.read("k")
    assert stored is not None
    assert stored.value == str(winners[0]).encode()
    assert conflicts == [stored] * (len(clients) - 1)  # each loser saw the winner's write
    for made in clients:
        made.close()


def test_revisions_keep_growing_when_the_counter_is_lost(
    store: RedisStore, client: redis.Redis
) -> None:
    first = store.write("k", b"a", None)
    second = store.write("k", b"b", first)
    client.delete(f"{store.prefix}revision")  # flushed or evicted by a careless setup
    third = store.write("k", b"c", second)
    assert third > second


def test_a_flushed_script_cache_is_reloaded(store: RedisStore, client: redis.Redis) -> None:
    revision = store.write("k", b"a", None)
    client.script_flush()  # as after a server restart
    assert store.write("k", b"b", revision) > revision
    store.put_lease("s", 5.0, b"")
    assert store.get_lease("s").expired is False


def test_layout_is_one_hash_per_key_under_the_prefix(
    store: RedisStore, client: redis.Redis
) -> None:
    revision = store.write("players/1", b"data", None)
    prefix = store.prefix
    stored = client.hgetall(f"{prefix}r:players/1")
    assert stored.keys() == {b"v", b"rev", b"t"}  # t: the server's time of the write
    assert (stored[b"v"], stored[b"rev"]) == (b"data", str(revision).encode())
    assert not client.exists(f"{prefix}h:players/1")  # history is off by default


# SCAN.


def test_keys_scans_many_keys_and_only_ours(store: RedisStore, redis_url: str) -> None:
    neighbour = open_store(f"{redis_url}?prefix={store.prefix}x:")
    expected = {f"items/{index}" for index in range(1500)}
    for key in expected:
        store.write(key, b"", None)
    store.write("other/1", b"", None)
    neighbour.write("items/neighbour", b"", None)  # same key shape, another prefix
    started = time.monotonic()
    listed = list(store.keys("items/"))
    elapsed = time.monotonic() - started
    assert len(listed) == len(set(listed))
    assert set(listed) == expected
    assert set(store.keys()) == expected | {"other/1"}
    assert elapsed < 2.0  # a few SCAN round trips, not one per key
    neighbour.close()


def test_keys_prefix_with_glob_characters_is_literal(store: RedisStore) -> None:
    for key in ("a*/1", "ab/1", "a?/1", "a[b]/1", "a\\/1", "ab"):
        store.write(key, b"", None)
    assert sorted(store.keys("a*")) == ["a*/1"]
    assert sorted(store.keys("a?")) == ["a?/1"]
    assert sorted(store.keys("a[b]")) == ["a[b]/1"]
    assert sorted(store.keys("a\\")) == ["a\\/1"]


# History.


def test_history_keeps_the_last_n_versions_newest_first(store: RedisStore, redis_url: str) -> None:
    keeping = twin(store, redis_url, "history=3")
    revisions = [keeping.write("k", b"v0", None)]
    for index in range(1, 6):
        revisions.append(keeping.write("k", f"v{index}".encode(), revisions[-1]))
    assert undated(keeping.history("k")) == [
        Versioned(b"v5", revisions[5]),
        Versioned(b"v4", revisions[4]),
        Versioned(b"v3", revisions[3]),
    ]
    assert keeping.delete("k")
    assert undated(keeping.history("k"))[0] == Versioned(b"v5", revisions[5])  # kept after a delete
    assert keeping.history("never") == []
    assert store.history("other") == []
    keeping.close()


def test_history_holds_values_with_colons_and_any_bytes(store: RedisStore, redis_url: str) -> None:
    keeping = twin(store, redis_url, "history=2")
    value = b"a:b:\x00\xff:"
    written = keeping.update("k", lambda current: Put(value, None)).current
    assert written is not None
    assert undated(keeping.history("k")) == [written]
    keeping.close()


def test_versions_and_records_written_before_write_times_read_with_none(
    store: RedisStore, redis_url: str, client: redis.Redis
) -> None:
    keeping = twin(store, redis_url, "history=3")
    revision = keeping.write("k", b"new", None)
    prefix = store.prefix.encode()
    client.rpush(prefix + b"h:k", b"3:old:value")  # an entry kept by an earlier version
    client.hset(prefix + b"r:old", mapping={"v": b"x", "rev": "5"})  # a record without "t"
    kept = keeping.history("k")
    assert [(v.value, v.revision) for v in kept] == [(b"new", revision), (b"old:value", 3)]
    assert kept[0].written is not None
    assert kept[1].written is None
    assert keeping.read_entry("old") == Entry(b"x", 5, None)
    keeping.close()


# Notifications.


class Wakes:
    """Records wake-ups; ``wait_for`` blocks until one for ``key`` came."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.revisions: list[int | None] = []
        self._changed = threading.Condition()

    def __call__(self, key: str, revision: int | None = None) -> None:
        with self._changed:
            self.keys.append(key)
            self.revisions.append(revision)
            self._changed.notify_all()

    def wait_for(self, key: str, count: int = 1, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.keys.count(key) >= count, timeout)


def subscribers(client: redis.Redis, channel: str) -> int:
    return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))


def wait_subscribed(client: redis.Redis, channel: str, count: int = 1) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if subscribers(client, channel) >= count:
            return
        time.sleep(0.01)
    pytest.fail(f"nobody subscribed to {channel}")


def wait_unsubscribed(client: redis.Redis, channel: str) -> None:
    deadline = time.monotonic() + 30
    while subscribers(client, channel):
        if time.monotonic() > deadline:
            pytest.fail(f"still subscribed to {channel}")
        time.sleep(0.01)


def test_a_write_by_another_client_wakes_the_watch(
    store: RedisStore, client: redis.Redis, redis_url: str
) -> None:
    other = twin(store, redis_url)
    wakes = Wakes()
    watch = store.watch(wakes)
    watch.add("k")
    wait_subscribed(client, f"{store.prefix}n:k")
    assert wakes.wait_for("k")  # the confirmed subscription wakes once: look again
    revision = other.write("k", b"1", None)
    assert wakes.wait_for("k", count=2)
    other.write("unwatched", b"1", None)
    other.delete("k", expected=revision)
    assert wakes.wait_for("k", count=3)
    assert "unwatched" not in wakes.keys

    watch.discard("k")
    wait_unsubscribed(client, f"{store.prefix}n:k")
    other.write("k", b"2", None)
    time.sleep(0.2)
    assert wakes.keys.count("k") == 3
    watch.close()
    other.close()


def test_a_key_added_to_a_sleeping_watch_is_subscribed_at_once(
    store: RedisStore, client: redis.Redis
) -> None:
    wakes = Wakes()
    watch = store.watch(wakes)
    watch.add("a")
    wait_subscribed(client, f"{store.prefix}n:a")
    assert wakes.wait_for("a")  # confirmed; now the thread sleeps, for up to IDLE
    time.sleep(0.1)
    started = time.monotonic()
    watch.add("b")
    wait_subscribed(client, f"{store.prefix}n:b")
    assert time.monotonic() - started < IDLE / 2  # poked awake, not at its next look
    watch.close()


def test_reconnect_resubscribes_and_wakes_every_watched_key(
    store: RedisStore, client: redis.Redis
) -> None:
    wakes = Wakes()
    watch = store.watch(wakes)
    for key in ("a", "b"):
        watch.add(key)
    for key in ("a", "b"):
        wait_subscribed(client, f"{store.prefix}n:{key}")
    assert client.client_kill_filter(_type="pubsub") >= 1
    assert wakes.wait_for("a")  # no write happened: the wake says "look again"
    assert wakes.wait_for("b")
    wait_subscribed(client, f"{store.prefix}n:a")
    store.write("a", b"after", None)  # and the new subscription works
    assert wakes.wait_for("a", count=2)
    watch.close()


def test_closing_the_store_closes_its_watches(store: RedisStore, client: redis.Redis) -> None:
    watch = store.watch(Wakes())
    watch.add("k")
    wait_subscribed(client, f"{store.prefix}n:k")
    threads = {thread.name for thread in threading.enumerate()}
    assert "sessionlocker-redis-watch" in threads
    store.close()
    assert client.pubsub_numsub(f"{store.prefix}n:k")[0][1] == 0
    with pytest.raises(UsageError, match="closed"):
        watch.add("j")
    with pytest.raises(StoreError, match="closed"):
        store.watch(Wakes())


def test_a_failing_wake_callback_does_not_end_the_watch(
    store: RedisStore, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    wakes = Wakes()

    def wake(key: str, revision: int | None = None) -> None:
        wakes(key)
        raise RuntimeError("callback bug")

    watch = store.watch(wake)
    watch.add("k")
    wait_subscribed(client, f"{store.prefix}n:k")
    store.write("k", b"1", None)
    assert wakes.wait_for("k")
    store.write("k", b"2", store.read("k").revision)  # type: ignore[union-attr]
    assert wakes.wait_for("k", count=2)
    watch.close()
    assert "callback bug" in caplog.text


def test_a_silent_connection_is_found_by_ping_and_replaced(private_redis: RedisServer) -> None:
    store = open_store(f"{private_redis.url}?timeout=0.3")  # also the watch's heartbeat
    assert isinstance(store, RedisStore)
    wakes = Wakes()
    watch = store.watch(wakes)
    watch.add("k")
    with redis.Redis.from_url(private_redis.url) as admin:
        wait_subscribed(admin, f"{store.prefix}n:k")
    assert wakes.wait_for("k")  # the new subscription is confirmed with a wake-up
    private_redis.pause()  # the connection stays open, but nothing answers
    time.sleep(1.0)
    private_redis.resume()
    assert wakes.wait_for("k", count=2)  # no write happened: woken because it reconnected
    assert watch.reconnects >= 1  # type: ignore[attr-defined]
    store.close()


# Errors and timeouts, on a private server.


def test_a_stopped_server_gives_a_retryable_error_at_once(private_redis: RedisServer) -> None:
    server = private_redis
    store = open_store(f"{server.url}?timeout=1")
    store.write("k", b"v", None)
    server.stop()
    for call in (lambda: store.read("k"), lambda: store.write("k", b"w", None)):
        started = time.monotonic()
        with pytest.raises(StoreError, match="connection failed") as caught:
            call()
        assert time.monotonic() - started < 2.0
        assert caught.value.retryable is True
        assert caught.value.unknown_outcome is False  # nothing reached the server
    server.start()
    assert store.read("k") == Versioned(b"v", 1)  # the pool reconnects by itself
    store.close()


def test_a_silent_server_times_out_and_a_lost_write_reply_is_unknown(
    private_redis: RedisServer,
) -> None:
    server = private_redis
    store = open_store(f"{server.url}?timeout=0.3")
    revision = store.write("k", b"v", None)
    server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"no reply within 0\.3 s") as caught:
            store.write("k", b"w", revision)
        assert time.monotonic() - started < 1.5
        assert caught.value.retryable is True
        assert caught.value.unknown_outcome is True
        with pytest.raises(StoreError) as caught:
            store.read("k")
        assert caught.value.retryable is True
        assert caught.value.unknown_outcome is False  # a read changes nothing
    finally:
        server.resume()
    stored = store.read("k")  # the paused write was delivered late: it did happen
    assert stored is not None
    assert stored.value == b"w"
    store.close()


def test_a_busy_server_is_retryable(private_redis: RedisServer) -> None:
    server = private_redis
    url = server.url
    store = open_store(f"{url}?timeout=5")
    with redis.Redis.from_url(url) as admin:
        admin.config_set("busy-reply-threshold", 50)
        busy_for_1_5_s = (
            "local function now() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end "
            "local t0 = now() while now() - t0 < 1.5e6 do end return 1"
        )

        def block() -> None:
            with redis.Redis.from_url(url) as blocking:
                blocking.eval(busy_for_1_5_s, 0)

        blocker = threading.Thread(target=block)
        blocker.start()
        time.sleep(0.3)  # the script runs past the threshold: the server answers BUSY
        with pytest.raises(StoreError, match="BUSY") as caught:
            store.write("k", b"v", None)
        assert caught.value.retryable is True
        assert caught.value.unknown_outcome is False
        blocker.join()
    assert store.write("k", b"v", None) > 0
    store.close()


def test_a_restarted_server_keeps_acknowledged_writes(private_redis: RedisServer) -> None:
    server = private_redis
    store = open_store(f"{server.url}?timeout=2")
    revisions = {f"k{index}": store.write(f"k{index}", b"%d" % index, None) for index in range(20)}
    server.restart(hard=True)
    for key, revision in revisions.items():
        assert store.read(key) == Versioned(key[1:].encode(), revision)
    assert store.write("k0", b"again", revisions["k0"]) > max(revisions.values())
    store.close()


# Credentials and URLs.


PASSWORD = "s3cret-Pa55word"


def test_passwords_never_show(private_redis: RedisServer) -> None:
    server = private_redis
    with redis.Redis.from_url(server.url) as admin:
        admin.config_set("requirepass", PASSWORD)
    good = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0?timeout=1"
    store = open_store(good)
    assert store.write("k", b"v", None) == 1
    assert PASSWORD not in repr(store)

    wrong = open_store(good.replace(PASSWORD, PASSWORD + "-wrong"))
    with pytest.raises(StoreError) as caught:
        wrong.read("k")
    assert caught.value.retryable is False
    assert "credentials" in str(caught.value)
    assert PASSWORD not in str(caught.value)

    server.stop()
    with pytest.raises(StoreError) as caught:
        store.read("k")
    assert PASSWORD not in str(caught.value)
    with pytest.raises(UsageError) as bad_url:
        open_store(good + "&nonsense=1")
    assert PASSWORD not in str(bad_url.value)
    wrong.close()
    store.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis:127.0.0.1", "host"),
        ("redis://127.0.0.1/zero", "database by number"),
        ("redis://127.0.0.1:99999/0", "port"),
        ("redis://127.0.0.1/0?history=-1", "history"),
        ("redis://127.0.0.1/0?pool=0", "pool"),
        ("redis://127.0.0.1/0?timeout=0", "timeout"),
        ("redis://127.0.0.1/0?ca=/x.pem", "TLS"),
        ("redis://127.0.0.1/0?table=x", "unknown option"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        open_store(url)


def test_url_options_reach_the_store() -> None:
    store = open_store("rediss://user:pw@example.invalid:7000/3?prefix=g:&history=4&pool=2")
    assert repr(store) == "RedisStore('example.invalid:7000/3', prefix='g:', history=4)"
    store.close()  # nothing was connected: opening is lazy


ACL_RULES = (
    "-@all +eval +evalsha +hmget +hset +incr +set +del +lpush +ltrim +lrange +publish"
    " +pexpire +time +scan +subscribe +unsubscribe +ping +client|setname +select"
)


def test_the_least_privileged_acl_user_of_the_docs_is_enough(private_redis: RedisServer) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "backends.md").read_text()
    assert " ".join(ACL_RULES.split()) in " ".join(docs.split())  # the docs say the same
    with redis.Redis.from_url(private_redis.url) as admin:
        admin.execute_command("ACL", "SETUSER", "game", "on", ">pw", "~game:*", "&game:*",
                              *ACL_RULES.split())  # fmt: skip
    url = f"redis://game:pw@127.0.0.1:{private_redis.port}/0?prefix=game:&history=2"
    store = open_store(url)
    assert isinstance(store, RedisStore)
    wakes = Wakes()
    watch = store.watch(wakes)
    watch.add("k")
    revision = store.write("k", b"1", None)
    store.update("k", increment, Versioned(b"1", revision))
    assert len(store.history("k")) == 2
    assert list(store.keys()) == ["k"]
    store.put_lease("s", 5.0, b"")
    assert store.get_lease("s").expired is False
    store.drop_lease("s")
    deadline = time.monotonic() + 30
    while not wakes.keys and time.monotonic() < deadline:  # the subscription may be late
        store.update("k", increment)
        wakes.wait_for("k", timeout=0.1)
    assert wakes.keys
    assert store.delete("k")

    denied = open_store(url.replace("prefix=game:", "prefix=other:"))
    with pytest.raises(StoreError, match="permission") as caught:
        denied.write("k", b"1", None)
    assert caught.value.retryable is False
    denied.close()
    store.close()


def test_a_full_server_refuses_writes_retryably(private_redis: RedisServer) -> None:
    store = open_store(private_redis.url)
    store.write("k", b"before", None)
    with redis.Redis.from_url(private_redis.url) as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)  # below what is used: every write is refused
        with pytest.raises(StoreError, match="maxmemory") as caught:
            store.write("k2", b"x", None)
        assert caught.value.retryable is True
        assert caught.value.unknown_outcome is False
        assert store.read("k") is not None  # reads still work
        admin.config_set("maxmemory", 0)
    assert store.write("k2", b"x", None) > 0
    store.close()


def test_a_pipeline_is_packed_as_redis_py_packs_it() -> None:
    connection = redis.Connection()
    commands = [
        ("EVALSHA", "f" * 40, 3, b"k\x00\xff", "ñandú", 0, 12, b"", "x y"),
        ("HMGET", b"r:key", "v", "rev", 0.1, 1e16),
    ]
    assert b"".join(packed(connection, commands)) == b"".join(connection.pack_commands(commands))
