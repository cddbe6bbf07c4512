"""The raw backends: the same conditional write, done directly with each client library.

This is the yardstick for save throughput. Each raw writer keeps one record and
rewrites it on every call, only if its revision is still the one last written (the
same compare-and-set our stores do), over one connection:

- memory: a dict and a revision check, behind a ``threading.Lock`` (as ``MemoryStore``);
- SQLite: ``UPDATE … WHERE key = ? AND revision = ?`` in a ``BEGIN IMMEDIATE``
  transaction, on a file in WAL mode with ``synchronous = NORMAL`` and the same busy
  timeout as ``SQLiteStore``;
- Redis: one Lua compare-and-set script (``EVALSHA``) through redis-py;
- PostgreSQL: ``UPDATE … WHERE key = %s AND revision = %s`` through psycopg, autocommit
  (one statement, one transaction).

Each writer cleans up what it created (a file, a key, a table) on ``close``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from sessionlocker.errors import UsageError
from sessionlocker.stores.opening import parse_store_url

__all__ = ["RawWriter", "open_raw", "without_query"]

_TABLE = "sessionlocker_bench_raw"

_REDIS_CAS = """
local current = redis.call('HGET', KEYS[1], 'revision')
if current ~= ARGV[1] then return -1 end
local revision = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'revision', revision, 'value', ARGV[2])
return revision
"""


class RawWriter(Protocol):
    """One record, rewritten conditionally on its last known revision."""

    #: What the writer is, for the results (``"sqlite3 UPDATE … WHERE revision"``, …).
    method: str

    def write(self, value: bytes) -> None:
        """Replace the record if its revision is the one this writer last wrote."""
        ...

    def close(self) -> None:
        """Remove the record (and anything made for it) and disconnect."""
        ...


def open_raw(url: str, initial: bytes) -> RawWriter:
    """A raw writer for the backend ``url`` names, its record created with ``initial``."""
    backend, parsed = parse_store_url(url)
    scheme = backend.scheme
    if scheme == "memory":
        return MemoryRaw(initial)
    if scheme == "sqlite":
        path = Path(parsed.path[1:])
        busy_timeout = parsed.number("busy_timeout", 5.0)
        return SQLiteRaw(
            path.with_name(f"{path.name}.raw-{uuid.uuid4().hex[:8]}"), initial, busy_timeout
        )
    if scheme in ("redis", "rediss"):
        return RedisRaw(without_query(url), initial)
    if scheme in ("postgres", "postgresql"):
        return PostgresRaw(without_query(url), initial)
    raise UsageError(f"no raw writer for {scheme}:// stores")


def without_query(url: str) -> str:
    """The URL without our store options (the client library would refuse them)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class MemoryRaw:
    """A dict entry with a revision, checked and replaced under a lock."""

    method = "dict with a revision check under a threading.Lock"

    def __init__(self, initial: bytes) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[int, bytes]] = {"raw": (1, initial)}
        self._known = 1

    def write(self, value: bytes) -> None:
        with self._lock:
            revision, _ = self._records["raw"]
            if revision != self._known:
                raise RuntimeError("raw memory record changed under the benchmark")
            self._known = revision + 1
            self._records["raw"] = (self._known, value)

    def close(self) -> None:
        self._records.clear()


class SQLiteRaw:
    """A one-row table in its own file beside the store's, with the store's settings."""

    method = "sqlite3: BEGIN IMMEDIATE; UPDATE ... WHERE key = ? AND revision = ?; COMMIT (WAL)"

    def __init__(self, path: Path, initial: bytes, busy_timeout: float) -> None:
        self._path = path
        self._connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        self._connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        self._connection.execute("PRAGMA journal_mode = WAL")
        self._connection.execute("PRAGMA synchronous = NORMAL")
        self._connection.execute(
            f"CREATE TABLE {_TABLE} (key TEXT PRIMARY KEY, revision INTEGER NOT NULL, "
            "value BLOB NOT NULL)"
        )
        self._connection.execute(f"INSERT INTO {_TABLE} VALUES ('raw', 1, ?)", (initial,))
        self._known = 1

    def write(self, value: bytes) -> None:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            cursor = connection.execute(
                f"UPDATE {_TABLE} SET value = ?, revision = revision + 1 "
                "WHERE key = 'raw' AND revision = ?",
                (value, self._known),
            )
            if cursor.rowcount != 1:
                raise RuntimeError("raw SQLite record changed under the benchmark")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        self._known += 1

    def close(self) -> None:
        self._connection.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self._path}{suffix}").unlink(missing_ok=True)


class RedisRaw:
    """A hash (revision, value) rewritten by one Lua compare-and-set script."""

    method = "redis-py: EVALSHA of a Lua compare-and-set on a hash (revision, value)"

    def __init__(self, url: str, initial: bytes) -> None:
        import redis  # noqa: PLC0415 (optional extra: only for a Redis run)

        self._client: Any = redis.Redis.from_url(url)
        self._key = f"sessionlocker-bench-raw:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client.hset(self._key, mapping={"revision": 1, "value": initial})
        self._script: Any = self._client.register_script(_REDIS_CAS)
        self._known = 1

    def write(self, value: bytes) -> None:
        revision = self._script(keys=[self._key], args=[self._known, value])
        if revision == -1:
            raise RuntimeError("raw Redis record changed under the benchmark")
        self._known = int(revision)

    def close(self) -> None:
        self._client.delete(self._key)
        self._client.close()


class PostgresRaw:
    """A one-row table updated by one conditional ``UPDATE`` per write, autocommit."""

    method = "psycopg: UPDATE ... WHERE key = %s AND revision = %s (autocommit)"

    def __init__(self, url: str, initial: bytes) -> None:
        import psycopg  # noqa: PLC0415 (optional extra: only for a PostgreSQL run)

        self._connection: Any = psycopg.connect(url, autocommit=True)
        self._table = f"{_TABLE}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._connection.execute(
            f"CREATE TABLE {self._table} (key text PRIMARY KEY, revision bigint NOT NULL, "
            "value bytea NOT NULL)"
        )
        self._connection.execute(f"INSERT INTO {self._table} VALUES ('raw', 1, %s)", (initial,))
        self._known = 1

    def write(self, value: bytes) -> None:
        cursor = self._connection.execute(
            f"UPDATE {self._table} SET value = %s, revision = revision + 1 "
            "WHERE key = 'raw' AND revision = %s",
            (value, self._known),
        )
        if cursor.rowcount != 1:
            raise RuntimeError("raw PostgreSQL record changed under the benchmark")
        self._known += 1

    def close(self) -> None:
        self._connection.execute(f"DROP TABLE IF EXISTS {self._table}")
        self._connection.close()
