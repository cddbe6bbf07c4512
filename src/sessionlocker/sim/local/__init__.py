"""Throwaway local server topologies for ``sessionlocker simulate --start`` and the tests.

Each topology starts real servers on loopback in a directory of its own, gives the store
``url`` to use, can ``fail_primary()`` (SIGKILL the current primary and let the
servers' own failover promote a replica), and ``close()`` stops everything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sessionlocker.errors import UsageError
from sessionlocker.sim.local.postgres_standby import PostgresAsyncStandby, PostgresStandby
from sessionlocker.sim.local.redis_cluster import RedisClusterTopology
from sessionlocker.sim.local.redis_sentinel import RedisSentinelTopology

__all__ = ["TOPOLOGIES", "LocalTopology", "start"]


class LocalTopology(Protocol):
    """What every local topology offers."""

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def fail_primary(self) -> None: ...

    def close(self) -> None: ...


#: Every topology by the name ``simulate --start`` takes.
TOPOLOGIES: dict[str, Callable[[Path], LocalTopology]] = {
    "redis-cluster": RedisClusterTopology,
    "redis-sentinel": RedisSentinelTopology,
    "postgresql-standby": PostgresStandby,
    "postgresql-async-standby": PostgresAsyncStandby,
}


def start(kind: str, workdir: Path) -> LocalTopology:
    """Start the topology ``kind`` in ``workdir``; the caller closes it."""
    make = TOPOLOGIES.get(kind)
    if make is None:
        raise UsageError(f"no local topology {kind!r}; choose from {', '.join(TOPOLOGIES)}")
    topology = make(workdir)
    topology.start()
    return topology
