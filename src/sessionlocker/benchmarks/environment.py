"""KeepsHistory of what was measured: this library, its client libraries, the servers."""

from __future__ import annotations

import sqlite3
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sessionlocker.benchmarks.common import backend_name
from sessionlocker.benchmarks.raw import without_query

__all__ = ["library_versions", "server_version"]


def library_versions() -> dict[str, str]:
    """sessionlocker, the SQLite library, redis-py and psycopg, as installed."""
    found = {"sqlite": sqlite3.sqlite_version}
    for package in ("sessionlocker", "redis", "psycopg"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def server_version(url: str) -> str | None:
    """The server's own version for Redis and PostgreSQL URLs (``None`` otherwise)."""
    name = backend_name(url)
    try:
        if name == "redis":
            return _redis_version(url)
        if name == "postgresql":
            return _postgres_version(url)
    except Exception as exc:  # a version is nice to have; the benchmark goes on without
        return f"unknown ({type(exc).__name__})"
    return None


def _redis_version(url: str) -> str:
    import redis  # noqa: PLC0415 (optional extra: only for a Redis URL)

    client: Any = redis.Redis.from_url(without_query(url))
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def _postgres_version(url: str) -> str:
    import psycopg  # noqa: PLC0415 (optional extra: only for a PostgreSQL URL)

    with psycopg.connect(without_query(url)) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"
