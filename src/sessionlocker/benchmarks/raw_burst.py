"""Many records written at once by hand: the yardstick of the burst benchmark.

Each writer keeps ``count`` records and rewrites all of them, each only if its revision
is still the one last written (the compare-and-set of ``raw.py``), with the same client
library as our store, in two ways:

- ``sequential``: one conditional write after another, each waiting for its reply;
- ``pipelined``: every conditional write sent before the first reply is read (a Redis
  pipeline, psycopg's pipeline mode, one SQLite transaction, one hold of the memory
  lock), each write still conditional on its own record's revision.

Both return the time each write was known to be done (``time.perf_counter()``): for the
pipelined way that is when the last reply came, for all of them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sessionlocker.benchmarks.raw import without_query
from sessionlocker.errors import UsageError
from sessionlocker.stores.opening import parse_store_url

__all__ = ["RawMany", "open_raw_many"]

_TABLE = "sessionlocker_bench_burst"

_REDIS_CAS = """
local current = redis.call('HGET', KEYS[1], 'revision')
if current ~= ARGV[1] then return -1 end
local revision = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'revision', revision, 'value', ARGV[2])
return revision
"""


class RawMany(Protocol):
    """``count`` records, each rewritten conditionally on its last known revision."""

    #: How each way writes, for the results.
    methods: ClassVar[dict[str, str]]

    def sequential(self, values: list[bytes]) -> list[float]:
        """Write ``values[i]`` to record ``i``, one write at a time; when each was done."""
        ...

    def pipelined(self, values: list[bytes]) -> list[float]:
        """The same writes, all sent before any reply is read; when each was done."""
        ...

    def close(self) -> None:
        """Remove the records and disconnect."""
        ...


def open_raw_many(url: str, count: int, initial: bytes) -> RawMany:
    """A writer of ``count`` records on the backend ``url`` names, each set to ``initial``."""
    backend, parsed = parse_store_url(url)
    scheme = backend.scheme
    if scheme == "memory":
        return MemoryMany(count, initial)
    if scheme == "sqlite":
        path = Path(parsed.path[1:])
        burst = path.with_name(f"{path.name}.burst-{uuid.uuid4().hex[:8]}")
        return SQLiteMany(burst, count, initial)
    if scheme in ("redis", "rediss"):
        return RedisMany(without_query(url), count, initial)
    if scheme in ("postgres", "postgresql"):
        return PostgresMany(without_query(url), count, initial)
    raise UsageError(f"no raw writer for {scheme}:// stores")


def _changed(what: str) -> RuntimeError:
    return RuntimeError(f"a raw {what} record changed under the benchmark")


class MemoryMany:
    """Dict entries with revisions, checked and replaced under one lock."""

    methods: ClassVar[dict[str, str]] = {
        "sequential": "dict + revision check, the lock taken for each write",
        "pipelined": "dict + revision check for every write in one hold of the lock",
    }

    def __init__(self, count: int, initial: bytes) -> None:
        self._lock = threading.Lock()
        self._records = [(1, initial)] * count
        self._known = [1] * count

    def _write(self, index: int, value: bytes) -> None:
        revision, _ = self._records[index]
        if revision != self._known[index]:
            raise _changed("memory")
        self._known[index] = revision + 1
        self._records[index] = (revision + 1, value)

    def sequential(self, values: list[bytes]) -> list[float]:
        done = []
        for index, value in enumerate(values):
            with self._lock:
                self._write(index, value)
            done.append(time.perf_counter())
        return done

    def pipelined(self, values: list[bytes]) -> list[float]:
        with self._lock:
            for index, value in enumerate(values):
                self._write(index, value)
        return [time.perf_counter()] * len(values)

    def close(self) -> None:
        self._records.clear()


class SQLiteMany:
    """A table of ``count`` rows in its own file beside the store's (WAL, NORMAL)."""

    methods: ClassVar[dict[str, str]] = {
        "sequential": "sqlite3: BEGIN IMMEDIATE; UPDATE ... WHERE key = ? AND revision = ?; "
        "COMMIT per write",
        "pipelined": "sqlite3: every conditional UPDATE in one BEGIN IMMEDIATE ... COMMIT",
    }

    def __init__(self, path: Path, count: int, initial: bytes) -> None:
        self._path = path
        self._connection = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        for pragma in ("busy_timeout = 5000", "journal_mode = WAL", "synchronous = NORMAL"):
            self._connection.execute(f"PRAGMA {pragma}")
        self._connection.execute(
            f"CREATE TABLE {_TABLE} (key INTEGER PRIMARY KEY, revision INTEGER NOT NULL, "
            "value BLOB NOT NULL)"
        )
        self._connection.executemany(
            f"INSERT INTO {_TABLE} VALUES (?, 1, ?)", ((i, initial) for i in range(count))
        )
        self._known = [1] * count

    def _write(self, index: int, value: bytes) -> None:
        cursor = self._connection.execute(
            f"UPDATE {_TABLE} SET value = ?, revision = revision + 1 "
            "WHERE key = ? AND revision = ?",
            (value, index, self._known[index]),
        )
        if cursor.rowcount != 1:
            raise _changed("SQLite")
        self._known[index] += 1

    def _transaction(self, writes: list[tuple[int, bytes]]) -> None:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            for index, value in writes:
                self._write(index, value)
            self._connection.execute("COMMIT")
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise

    def sequential(self, values: list[bytes]) -> list[float]:
        done = []
        for index, value in enumerate(values):
            self._transaction([(index, value)])
            done.append(time.perf_counter())
        return done

    def pipelined(self, values: list[bytes]) -> list[float]:
        self._transaction(list(enumerate(values)))
        return [time.perf_counter()] * len(values)

    def close(self) -> None:
        self._connection.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self._path}{suffix}").unlink(missing_ok=True)


class RedisMany:
    """Hashes (revision, value), each rewritten by one Lua compare-and-set script."""

    methods: ClassVar[dict[str, str]] = {
        "sequential": "redis-py: EVALSHA of a Lua compare-and-set per write, one at a time",
        "pipelined": "redis-py: every EVALSHA in one pipeline (transaction=False)",
    }

    def __init__(self, url: str, count: int, initial: bytes) -> None:
        import redis  # noqa: PLC0415 (optional extra: only for a Redis run)

        self._client: Any = redis.Redis.from_url(url)
        prefix = f"sessionlocker-bench-burst:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._keys = [f"{prefix}:{i}" for i in range(count)]
        with self._client.pipeline(transaction=False) as pipe:
            for key in self._keys:
                pipe.hset(key, mapping={"revision": 1, "value": initial})
            pipe.execute()
        self._script: Any = self._client.register_script(_REDIS_CAS)
        self._known = [1] * count

    def _check(self, index: int, revision: Any) -> None:
        if revision == -1:
            raise _changed("Redis")
        self._known[index] = int(revision)

    def sequential(self, values: list[bytes]) -> list[float]:
        done = []
        for index, value in enumerate(values):
            revision = self._script(keys=[self._keys[index]], args=[self._known[index], value])
            self._check(index, revision)
            done.append(time.perf_counter())
        return done

    def pipelined(self, values: list[bytes]) -> list[float]:
        with self._client.pipeline(transaction=False) as pipe:
            for index, value in enumerate(values):
                keys, args = [self._keys[index]], [self._known[index], value]
                self._script(keys=keys, args=args, client=pipe)
            revisions = pipe.execute()
        now = time.perf_counter()
        for index, revision in enumerate(revisions):
            self._check(index, revision)
        return [now] * len(values)

    def close(self) -> None:
        for start in range(0, len(self._keys), 1000):
            self._client.delete(*self._keys[start : start + 1000])
        self._client.close()


class PostgresMany:
    """A table of ``count`` rows, one conditional ``UPDATE`` per write, autocommit."""

    methods: ClassVar[dict[str, str]] = {
        "sequential": "psycopg: UPDATE ... WHERE key = %s AND revision = %s per write (autocommit)",
        "pipelined": "psycopg pipeline mode: every conditional UPDATE sent, then the replies "
        "(autocommit: each its own transaction)",
    }

    def __init__(self, url: str, count: int, initial: bytes) -> None:
        import psycopg  # noqa: PLC0415 (optional extra: only for a PostgreSQL run)

        self._connection: Any = psycopg.connect(url, autocommit=True)
        self._table = f"{_TABLE}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._connection.execute(
            f"CREATE TABLE {self._table} (key integer PRIMARY KEY, revision bigint NOT NULL, "
            "value bytea NOT NULL)"
        )
        with self._connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {self._table} VALUES (%s, 1, %s)",
                [(i, initial) for i in range(count)],
            )
        self._known = [1] * count
        self._update = (
            f"UPDATE {self._table} SET value = %s, revision = revision + 1 "
            "WHERE key = %s AND revision = %s"
        )

    def sequential(self, values: list[bytes]) -> list[float]:
        done = []
        for index, value in enumerate(values):
            cursor = self._connection.execute(self._update, (value, index, self._known[index]))
            if cursor.rowcount != 1:
                raise _changed("PostgreSQL")
            self._known[index] += 1
            done.append(time.perf_counter())
        return done

    def pipelined(self, values: list[bytes]) -> list[float]:
        with self._connection.pipeline():
            cursors = [
                self._connection.execute(self._update, (value, index, self._known[index]))
                for index, value in enumerate(values)
            ]
        now = time.perf_counter()
        for index, cursor in enumerate(cursors):
            if cursor.rowcount != 1:
                raise _changed("PostgreSQL")
            self._known[index] += 1
        return [now] * len(values)

    def close(self) -> None:
        self._connection.execute(f"DROP TABLE IF EXISTS {self._table}")
        self._connection.close()
