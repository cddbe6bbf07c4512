"""Stores: where records and leases are kept, behind one small protocol.

- ``Store`` and ``AsyncStore``, ``cas_update`` and ``async_cas_update``: the protocols
  and the generic updates (``base``).
- ``MemoryStore``: in this process; the reference implementation.
- ``SQLiteStore``: one SQLite file, shared by the processes of one machine.
- ``FaultyStore``: wraps any store and injects latency and failures, for tests.
- ``ReadOnlyStore``: wraps any store; reads it, keeps every write in this process.
- ``CountingStore``: wraps any store and counts its round trips by kind.
- ``RedisStore``, ``AsyncRedisStore``, ``PostgreSQLStore``, ``AsyncPostgreSQLStore``: the
  database stores (packages ``redis`` and ``postgresql``), loaded on first use so this
  package imports without redis or psycopg.
- ``open_store(url)``: any of them from a URL such as ``sqlite:///data/app.db``.
- ``AsyncStore`` and ``open_async_store(url)``: the same stores for asyncio (native
  clients for Redis and PostgreSQL, ``threaded(store)`` for the others).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sessionlocker.stores._bridges import ThreadedAsyncStore, threaded
from sessionlocker.stores.base import AsyncStore, Store, async_cas_update, cas_update
from sessionlocker.stores.counting import CountingStore
from sessionlocker.stores.faults import FaultyStore
from sessionlocker.stores.memory import MemoryStore
from sessionlocker.stores.opening import open_async_store, open_store
from sessionlocker.stores.readonly import ReadOnlyStore
from sessionlocker.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from sessionlocker.stores.postgresql import AsyncPostgreSQLStore, PostgreSQLStore
    from sessionlocker.stores.redis import (
        AsyncRedisClusterStore,
        AsyncRedisStore,
        RedisClusterStore,
        RedisStore,
    )

__all__ = [
    "AsyncPostgreSQLStore",
    "AsyncRedisClusterStore",
    "AsyncRedisStore",
    "AsyncStore",
    "CountingStore",
    "FaultyStore",
    "MemoryStore",
    "PostgreSQLStore",
    "ReadOnlyStore",
    "RedisClusterStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "ThreadedAsyncStore",
    "async_cas_update",
    "cas_update",
    "open_async_store",
    "open_store",
    "threaded",
]

# The database stores import their client library: loaded on first use (PEP 562).
_LAZY = {
    "AsyncPostgreSQLStore": "sessionlocker.stores.postgresql",
    "AsyncRedisClusterStore": "sessionlocker.stores.redis",
    "AsyncRedisStore": "sessionlocker.stores.redis",
    "PostgreSQLStore": "sessionlocker.stores.postgresql",
    "RedisClusterStore": "sessionlocker.stores.redis",
    "RedisStore": "sessionlocker.stores.redis",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
