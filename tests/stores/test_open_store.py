"""open_store: every accepted URL form, and a helpful, password-free error for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessionlocker.errors import UsageError
from sessionlocker.stores import (
    FaultyStore,
    MemoryStore,
    SQLiteStore,
    open_async_store,
    open_store,
)
from sessionlocker.stores.opening import LONGEST


def test_memory() -> None:
    store = open_store("memory://")
    assert isinstance(store, MemoryStore)
    store.close()


def test_memory_with_every_fault_option() -> None:
    store = open_store(
        "memory://?fail=0.1&latency=0.01&throttle=0.2&retry_after=0.3&unknown=0.4&seed=7"
    )
    assert isinstance(store, FaultyStore)
    assert isinstance(store.inner, MemoryStore)
    assert (store.fail_rate, store.throttle_rate, store.unknown_rate) == (0.1, 0.2, 0.4)
    assert (store.latency, store.retry_after) == (0.01, 0.3)
    seeded_only = open_store("memory://?seed=7")
    assert isinstance(seeded_only, FaultyStore)  # any fault option wraps, even seed alone
    assert seeded_only.faults == dict.fromkeys(store.faults, 0)


def test_sqlite_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    store = open_store("sqlite:///data/app.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "data" / "app.db"
    store.write("k", b"v", None)
    store.close()
    assert (tmp_path / "data" / "app.db").exists()


def test_sqlite_absolute(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    assert url.startswith("sqlite:////")
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "app.db"
    store.close()


def test_sqlite_percent_encoded_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/my%20app.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "my app.db"
    store.close()


def test_sqlite_options_and_faults(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/app.db?busy_timeout=0.5&fail=0&seed=1")
    assert isinstance(store, FaultyStore)
    assert isinstance(store.inner, SQLiteStore)
    store.write("k", b"v", None)
    store.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "empty"),
        ("store.db", "no scheme"),
        ("mongodb://localhost:27017/0", "'mongodb://...': unknown scheme"),
        ("memory://somewhere", "no host"),
        ("memory:///path", "no host"),
        ("sqlite://", "path is missing"),
        ("sqlite:///", "path is missing"),
        ("sqlite:///dir/", "path is missing"),
        ("sqlite:app.db", "sqlite:///"),
        ("sqlite://host/app.db", "no host"),
        ("memory://?bogus=1", "unknown option 'bogus'"),
        ("memory://?busy_timeout=1", "unknown option 'busy_timeout'"),
        ("memory://?fail=often", "not a number"),
        ("memory://?fail=", "not a number"),
        ("memory://?fail=1.5", "<= 1"),
        ("memory://?latency=-1", ">= 0"),
        ("memory://?latency=nan", ">= 0"),
        ("memory://?seed=1.5", "whole number"),
        ("memory://?fail=0.1&fail=0.2", "twice"),
        ("memory://#top", "fragment is not supported; use memory://"),
        ("sqlite:///app.db?busy_timeout=soon", "not a number; use sqlite:///relative/path.db"),
    ],
)
def test_bad_urls(url: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_store(url)
    message = str(caught.value)
    assert problem in message
    assert "see docs/backends.md" in message
    assert len(message) <= LONGEST  # one short line
    assert "\n" not in message


def test_unknown_scheme_names_every_backend_in_one_short_line() -> None:
    with pytest.raises(UsageError) as caught:
        open_store("mongodb://localhost")
    message = str(caught.value)
    for form in ("memory://", "sqlite:///path.db", "redis://host", "postgresql://host/db"):
        assert form in message
    assert len(message) <= LONGEST


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite:///app.db?busy=1", "did you mean 'busy_timeout'?"),
        ("postgresql://host/db?pool=" + "x" * 300, "option pool="),
        ("redis://host/" + "x" * 300, "the path names the database"),
        ("redis://host/0?histroy=1", "did you mean 'history'?"),
        ("redis+cluster://host:7000/1", "has only database 0"),
        ("redis+cluster://host:7000,host:port/", "port must be a number"),
        ("redis+cluster:///", "host:port of one or more nodes"),
        ("redis+cluster://host:7000/?ca=/ca.pem", "use rediss+cluster://"),
        ("memory://?faill=1", "did you mean 'fail'?"),
        ("x" * 300 + "://" + "y" * 300, "'xxxxxxxxxxxxx...://...': unknown scheme"),
        (
            "sqlite:///" + "d/" * 200 + "a.db?" + "o" * 300 + "=1",
            "unknown option 'ooooooooooooooooo...'",
        ),
    ],
)
def test_url_errors_stay_short_and_helpful(url: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_store(url)
    message = str(caught.value)
    assert problem in message
    assert len(message) <= LONGEST, message


def test_not_a_string() -> None:
    with pytest.raises(UsageError, match="must be a str"):
        open_store(Path("store.db"))  # type: ignore[arg-type]


def test_missing_sqlite_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        open_store(f"sqlite:///{tmp_path}/absent/app.db")
    assert str(tmp_path / "absent") in str(caught.value)
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    "url",
    [
        "redis://admin:s3cr3t-pw@db.example:6379/0?history=-1",
        "postgresql://app:s3cr3t-pw@db.example/app?sslmode=require&history=-1",
        "sqlite://user:s3cr3t-pw@/app.db",
        "memory://user:s3cr3t-pw@",
        "sqlite://user:s3cr3t/pw?#@host/app.db",  # characters a URL parser trips over
        "memory://?password=s3cr3t-pw",
        "memory://?fail=2&token=s3cr3t-pw",
    ],
)
def test_passwords_never_leak(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_store(url)
    error: BaseException | None = caught.value
    while error is not None:  # nor in a chained cause
        assert "s3cr3t" not in str(error)
        assert "s3cr3t" not in repr(error.args)
        error = error.__cause__ or error.__context__
    assert "***" in str(caught.value)


def test_redis_cluster_urls_name_every_node_and_connect_only_when_used() -> None:
    from sessionlocker.stores.redis import (  # noqa: PLC0415 (the redis extra)
        AsyncRedisClusterStore,
        RedisClusterStore,
    )

    store = open_store("redis+cluster://127.0.0.1:1,127.0.0.1:2/?prefix=p:&history=3&pool=2")
    assert isinstance(store, RedisClusterStore)
    assert store.prefix == "p:"
    assert "127.0.0.1:1,127.0.0.1:2" in repr(store)
    store.close()
    tls = open_store("rediss+cluster://:secret@127.0.0.1:1/?ca=/nowhere/ca.pem")
    assert isinstance(tls, RedisClusterStore)
    assert "secret" not in repr(tls)
    tls.close()
    assert isinstance(open_async_store("redis+cluster://127.0.0.1:1/"), AsyncRedisClusterStore)


def test_redis_cluster_urls_take_replicas_and_check_the_timeout() -> None:
    waited = open_store("redis+cluster://127.0.0.1:1/?replicas=2&replica_timeout=0.5")
    assert waited._replication.replicas == 2  # type: ignore[attr-defined]
    assert waited._replication.timeout == 0.5  # type: ignore[attr-defined]
    waited.close()
    for url in (
        "redis+cluster://127.0.0.1:1/?replicas=1&replica_timeout=5&timeout=5",
        "rediss+cluster://127.0.0.1:1/?replicas=1&replica_timeout=9",
    ):
        with pytest.raises(UsageError, match="replica_timeout must be above 0 and below timeout"):
            open_store(url)
        with pytest.raises(UsageError, match="replica_timeout must be above 0 and below timeout"):
            open_async_store(url)
    with pytest.raises(UsageError, match="replicas"):
        open_store("redis+cluster://127.0.0.1:1/?replicas=-1")
