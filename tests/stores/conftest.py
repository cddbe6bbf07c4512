"""Fixtures for the store tests: every backend behind one ``store`` fixture.

The stores come from ``open_backend`` (``tests/backends.py``): memory on a fake clock,
SQLite in the test's folder, Redis and PostgreSQL on the real servers of the test run,
each in a namespace of its own that is removed after. ``faulty-`` backends wrap the
store in a ``FaultyStore``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend, FakeClock, open_backend
from sessionlocker.stores import FaultyStore, Store

BACKENDS = [
    "memory",
    "sqlite",
    "faulty-memory",
    "faulty-sqlite",
    "redis",
    "redis-cluster",
    "redis-cluster-replicas",
    "postgresql",
    "redis-sentinel",
    "postgresql-standby",
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name = str(request.param)
    made = open_backend(name.removeprefix("faulty-"), tmp_path, clock=FakeClock())
    if name.startswith("faulty-"):
        made = dataclasses.replace(made, name=name, store=FaultyStore(made.store, seed=1))
    yield made
    made.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store
