"""Test stores by backend name (memory, SQLite in a folder, or this run's servers), and
driving services by hand.

``tests/conftest.py`` starts the Redis and PostgreSQL servers for tests whose id names
them and puts their URLs in the environment; here a test reads them, and a backend with
no server is skipped with a reason in capitals, never silently.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from sessionlocker import LockerService, Status
from sessionlocker.core.locker import Locker
from sessionlocker.stores import MemoryStore, SQLiteStore, Store, open_store

__all__ = ["drive", "fresh_url", "load", "open_backend", "server_url"]

_ENV = {"redis": "SESSIONLOCKER_REDIS_URL", "postgresql": "SESSIONLOCKER_POSTGRES_URL"}


def server_url(kind: str) -> str:
    """The URL of this run's ``kind`` server (``redis`` or ``postgresql``), or a loud skip."""
    url = os.environ.get(_ENV[kind])
    if not url:
        pytest.skip(f"{kind.upper()} BACKEND NOT TESTED: {_ENV[kind]} is not set")
    return url


def fresh_url(kind: str, tag: str = "t") -> str:
    """A URL of this run's ``kind`` server under a key prefix no other test uses."""
    url = server_url(kind)
    return f"{url}{'&' if '?' in url else '?'}prefix={tag}{uuid.uuid4().hex[:10]}/"


def open_backend(name: str, folder: Path, tag: str = "t") -> Store:
    """A fresh, empty store of backend ``name``; the caller closes it."""
    if name == "memory":
        return MemoryStore()
    if name == "sqlite":
        return SQLiteStore(folder / "store.db")
    return open_store(fresh_url(name, tag))


def drive(services: list[LockerService], done: Callable[[], bool], timeout: float = 15.0) -> None:
    """Run frames of every service until ``done()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for service in services:
            service.update()
        time.sleep(0.005)


def load(service: LockerService, key: str, mode: str = "repeat") -> Locker:
    """A new locker of ``service`` for ``key``, driven until it is loaded or failed."""
    locker = service.locker(key)
    locker.acquire(mode)  # type: ignore[arg-type]
    drive([service], lambda: locker.status in (Status.LOADED, Status.FAILED))
    return locker
