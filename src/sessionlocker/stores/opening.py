"""``open_store`` and ``open_async_store``: a store from a URL, every backend registered.

Other backends plug in with ``register_backend`` (see ``sessionlocker.stores.url``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sessionlocker.errors import UsageError
from sessionlocker.stores.async_base import AsyncStore
from sessionlocker.stores.async_threaded import threaded
from sessionlocker.stores.base import Store
from sessionlocker.stores.faults import FaultyStore
from sessionlocker.stores.memory import MemoryStore
from sessionlocker.stores.sqlite import SQLiteStore
from sessionlocker.stores.url import (
    FAULT_OPTIONS,
    Backend,
    StoreURL,
    parse_store_url,
    register_backend,
)

__all__ = ["open_async_store", "open_store"]


def _open_memory(url: StoreURL) -> Store:
    if url.host or url.path or url.username is not None:
        raise url.error("memory:// takes no host and no path")
    return MemoryStore()


def _open_sqlite(url: StoreURL) -> Store:
    if not url.has_authority:
        raise url.error("write sqlite:/// and then the path")
    if url.host or url.username is not None:
        raise url.error(
            "a sqlite URL has no host: use three slashes for a relative path "
            "and four for an absolute one"
        )
    path = url.path[1:]  # drop the "/" that ends "sqlite://"; a second one makes it absolute
    if not path or path.endswith("/"):
        raise url.error("the database file path is missing")
    busy_timeout = url.number("busy_timeout", 5.0)
    history = url.integer("history")
    if history is not None and history < 0:
        raise url.error(f"history={history} must be >= 0")
    return SQLiteStore(path, busy_timeout=busy_timeout, history=10 if history is None else history)


register_backend(
    Backend(
        scheme="memory",
        forms=("memory://",),
        options=frozenset(),
        open=_open_memory,
    )
)
register_backend(
    Backend(
        scheme="sqlite",
        forms=(
            "sqlite:///relative/path.db",
            "sqlite:////absolute/path.db",
            "sqlite:///path.db?busy_timeout=5&history=10",
        ),
        options=frozenset({"busy_timeout", "history"}),
        open=_open_sqlite,
    )
)


@contextmanager
def _extra(url: StoreURL, package: str, extra: str) -> Iterator[None]:
    """Turn the ImportError of a missing optional extra into a one-line ``UsageError``."""
    try:
        yield
    except ImportError as exc:
        if not str(exc.name).startswith(package):
            raise
        raise UsageError(
            f"{url.scheme}:// needs the {extra!r} extra ({exc.name} is not installed): "
            f"pip install 'sessionlocker[{extra}]'"
        ) from None


# The backends of optional extras are imported when opened, so the package works
# without them installed.


def _open_redis(url: StoreURL) -> Store:
    with _extra(url, "redis", "redis"):
        from sessionlocker.stores.redis_url import open_redis_url  # noqa: PLC0415 (optional extra)
    return open_redis_url(url)


def _open_async_redis(url: StoreURL) -> AsyncStore:
    with _extra(url, "redis", "redis"):
        from sessionlocker.stores.redis_url import (  # noqa: PLC0415 (optional extra)
            open_async_redis_url,
        )
    return open_async_redis_url(url)


for _scheme in ("redis", "rediss"):
    register_backend(
        Backend(
            scheme=_scheme,
            forms=(
                f"{_scheme}://host:6379/0",
                f"{_scheme}://:password@host/0?prefix=game:&history=10&timeout=5&pool=8"
                + ("&ca=/path/ca.pem" if _scheme == "rediss" else ""),
            ),
            options=frozenset({"prefix", "history", "timeout", "pool", "ca"}),
            open=_open_redis,
            open_async=_open_async_redis,
        )
    )


def _open_postgresql(url: StoreURL) -> Store:
    with _extra(url, "psycopg", "postgresql"):
        from sessionlocker.stores.postgresql_url import (  # noqa: PLC0415 (optional extra)
            open_postgresql_url,
        )
    return open_postgresql_url(url)


def _open_async_postgresql(url: StoreURL) -> AsyncStore:
    with _extra(url, "psycopg", "postgresql"):
        from sessionlocker.stores.postgresql_url import (  # noqa: PLC0415 (optional extra)
            open_async_postgresql_url,
        )
    return open_async_postgresql_url(url)


for _scheme in ("postgresql", "postgres"):
    register_backend(
        Backend(
            scheme=_scheme,
            forms=(
                f"{_scheme}://user:password@host:5432/database",
                f"{_scheme}://host/db?table=records&schema=public&history=10&pool=8&timeout=10"
                "&connect_timeout=5&sslmode=require",
            ),
            options=frozenset(
                {"table", "schema", "prefix", "history", "pool", "timeout", "connect_timeout"}
                | {"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name"}
            ),
            open=_open_postgresql,
            open_async=_open_async_postgresql,
        )
    )


def open_store(url: str) -> Store:
    """Open the store ``url`` names.

    - ``memory://``: a new, empty ``MemoryStore``.
    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's
      convention): a ``SQLiteStore``; options ``busy_timeout`` in seconds and ``history``
      (versions kept per key, default 10, 0 for none). The directory must exist.
    - ``redis://[user:password@]host[:port][/db]`` (``rediss://`` for TLS): a
      ``RedisStore``; options ``prefix``, ``history``, ``timeout``, ``pool`` (and ``ca``).
    - ``postgresql://[user:password@]host[:port]/database`` (or ``postgres://``): a
      ``PostgreSQLStore``; options ``table``, ``schema``, ``prefix``, ``history``, ``pool``,
      ``timeout``, ``connect_timeout`` and the libpq ``sslmode``, ``sslrootcert``,
      ``sslcert``, ``sslkey``, ``application_name``.
    - Fault options, for any scheme: ``fail``, ``throttle`` and ``unknown`` (rates
      between 0 and 1), ``latency`` and ``retry_after`` (seconds), ``seed`` (a whole
      number). Giving any of them wraps the store in a ``FaultyStore``.

    Raises ``UsageError`` naming what is wrong and listing the supported forms.
    """
    backend, parsed = parse_store_url(url)
    # Check every option before opening anything, so a bad URL leaves nothing behind.
    faults = {
        "fail_rate": parsed.number("fail", 0.0, maximum=1.0),
        "throttle_rate": parsed.number("throttle", 0.0, maximum=1.0),
        "unknown_rate": parsed.number("unknown", 0.0, maximum=1.0),
        "latency": parsed.number("latency", 0.0),
        "retry_after": parsed.number("retry_after", 0.05),
    }
    seed = parsed.integer("seed")
    store = backend.open(parsed)
    if not FAULT_OPTIONS.intersection(parsed.options):
        return store
    return FaultyStore(
        store,
        fail_rate=faults["fail_rate"],
        throttle_rate=faults["throttle_rate"],
        unknown_rate=faults["unknown_rate"],
        latency=faults["latency"],
        retry_after=faults["retry_after"],
        seed=seed,
    )


def open_async_store(url: str) -> AsyncStore:
    """Open the store ``url`` names as an ``AsyncStore``: the same schemes and options as
    ``open_store``, and the same records (a sync and an async store can share them).

    Redis and PostgreSQL get their native async clients (``AsyncRedisStore``,
    ``AsyncPostgreSQLStore``). Memory, SQLite, and any URL with fault options (the
    ``FaultyStore`` wrapper is sync) get ``open_store``'s store with every call on a
    thread (``threaded``). Raises ``UsageError`` as ``open_store`` does.
    """
    backend, parsed = parse_store_url(url)
    if backend.open_async is None or FAULT_OPTIONS.intersection(parsed.options):
        return threaded(open_store(url))
    return backend.open_async(parsed)
