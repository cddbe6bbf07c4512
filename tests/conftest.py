"""Run-wide fixtures: real Redis and PostgreSQL servers, each started once when needed.

``redis_url`` and ``postgres_url`` give the URL of a server for this test run. When
``SESSIONLOCKER_REDIS_URL`` / ``SESSIONLOCKER_POSTGRES_URL`` is set, that server is
used; otherwise one is started on loopback in a temporary directory (see
``tests/servers.py``), the variable is set for the run, and the server is stopped at the
end. A test whose id names the backend (``test_redis.py``, ``test_x[postgresql]``) gets
its server before the run starts, so it may read the variable instead; a module whose
file name names it gets it even before it is imported.

A server that cannot be started skips its backend's tests with a reason in capitals,
``REDIS BACKEND NOT TESTED: ...``, repeated in the terminal summary: never silently.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator

import pytest

from servers import ClusterServer, PostgresServer, RedisServer, SentinelServers, ServerError
from sessionlocker.sim.local.postgres_standby import PostgresStandby, TopologyError

_ENV = {
    "redis": "SESSIONLOCKER_REDIS_URL",
    "postgresql": "SESSIONLOCKER_POSTGRES_URL",
    "redis-cluster": "SESSIONLOCKER_REDIS_CLUSTER_URL",
    "redis-sentinel": "SESSIONLOCKER_SENTINEL_URL",
    "postgresql-standby": "SESSIONLOCKER_POSTGRES_STANDBY_URL",
}
_TITLE = {
    "redis": "REDIS",
    "postgresql": "POSTGRESQL",
    "redis-cluster": "REDIS CLUSTER",
    "redis-sentinel": "REDIS SENTINEL",
    "postgresql-standby": "POSTGRESQL STANDBY",
}
Server = RedisServer | PostgresServer | ClusterServer | SentinelServers
Started = Server | PostgresStandby


class _Servers:
    """The servers of this run: started at most once each, stopped at the end."""

    def __init__(self) -> None:
        self.started: dict[str, Started] = {}
        self.failures: dict[str, str] = {}
        self.notes: dict[str, str] = {}

    def url(self, kind: str) -> str | None:
        """The URL for ``kind``, starting its server on first use; None if impossible."""
        variable = _ENV[kind]
        given = os.environ.get(variable)
        if kind in self.started:
            return self.started[kind].url
        if given and kind not in self.failures:
            self.notes.setdefault(kind, f"{kind}: using the server in {variable}")
            return given
        if kind in self.failures:
            return None
        try:
            server = start_standby() if kind == "postgresql-standby" else start(kind)
        except ServerError as exc:
            self.failures[kind] = str(exc)
            return None
        self.started[kind] = server
        os.environ[variable] = server.url
        self.notes[kind] = f"{kind}: started {server.url} for this run"
        return server.url

    def stop_all(self) -> None:
        for kind, server in list(self.started.items()):
            if isinstance(server, PostgresStandby):
                server.close()
            else:
                server.cleanup()
            os.environ.pop(_ENV[kind], None)
            del self.started[kind]


def start_standby(*, synchronous: bool = True) -> PostgresStandby:
    """A running PostgreSQL primary and standby (``sim/local/postgres_standby.py``);
    ``ServerError`` (and nothing left behind) if not."""
    try:
        topology = PostgresStandby(synchronous=synchronous)
    except TopologyError as exc:
        raise ServerError(str(exc)) from None
    try:
        topology.start()
    except TopologyError as exc:
        topology.close()
        raise ServerError(str(exc)) from None
    except BaseException:
        topology.close()
        raise
    return topology


def start(kind: str) -> Server:
    """A running server of ``kind``; ``ServerError`` (and nothing left behind) if not."""
    if kind == "redis-cluster":
        return ClusterServer()
    if kind == "redis-sentinel":
        return SentinelServers()  # running once made, removed if it failed
    server: RedisServer | PostgresServer = RedisServer() if kind == "redis" else PostgresServer()
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server


def skip_loudly(kind: str, why: str) -> BaseException:
    """The skip of a backend's tests: its reason starts in capitals."""
    SERVERS.failures.setdefault(kind, why)
    return pytest.skip.Exception(f"{_TITLE[kind]} BACKEND NOT TESTED: {why}")


SERVERS = _Servers()
atexit.register(SERVERS.stop_all)  # also when the run is interrupted


def _server_url(kind: str) -> str:
    url = SERVERS.url(kind)
    if url is None:
        raise skip_loudly(kind, SERVERS.failures[kind])
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL (without options) of the Redis server of this run."""
    return _server_url("redis")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL (without options) of the PostgreSQL server of this run."""
    return _server_url("postgresql")


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """The URL (without options) of the Redis Cluster of this run (6 nodes)."""
    return _server_url("redis-cluster")


@pytest.fixture
def private_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterServer]:
    """A Redis Cluster of this test's own, to kill nodes of or reshard at will; with
    ``replicas`` replicas per primary (indirect parameter, default 1)."""
    replicas = getattr(request, "param", 1)
    if replicas == 1:
        server = _private("redis-cluster")
    else:
        try:
            server = ClusterServer(replicas=replicas)
        except ServerError as exc:
            raise skip_loudly("redis-cluster", str(exc)) from None
    assert isinstance(server, ClusterServer)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_sentinel_url() -> str:
    """The URL of this run's primary + replica + 3 sentinels (``replicas=1``)."""
    return _server_url("redis-sentinel")


@pytest.fixture
def private_sentinel(request: pytest.FixtureRequest) -> Iterator[SentinelServers]:
    """A Sentinel topology of this test's own to kill primaries in; ``replicas`` replicas
    (indirect parameter, default 1)."""
    try:
        servers = SentinelServers(replicas=getattr(request, "param", 1))
    except ServerError as exc:
        raise skip_loudly("redis-sentinel", str(exc)) from None
    yield servers
    servers.cleanup()


@pytest.fixture(scope="session")
def postgres_standby_url() -> str:
    """The multi-host URL of this run's PostgreSQL primary and synchronous standby
    (never failed over: a test that fails one over starts its own, ``private_standby``)."""
    return _server_url("postgresql-standby")


@pytest.fixture
def private_standby() -> Iterator[Callable[[bool], PostgresStandby]]:
    """Start a PostgreSQL primary and standby of this test's own: ``private_standby(sync)``,
    synchronous replication or not. Stopped at the end of the test."""
    started: list[PostgresStandby] = []

    def make(synchronous: bool) -> PostgresStandby:
        try:
            topology = start_standby(synchronous=synchronous)
        except ServerError as exc:
            raise skip_loudly("postgresql-standby", str(exc)) from None
        started.append(topology)
        return topology

    yield make
    for topology in started:
        topology.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis server of this test's own, to stop, pause or restart at will."""
    server = _private("redis")
    assert isinstance(server, RedisServer)
    yield server
    server.cleanup()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, to stop or restart at will."""
    server = _private("postgresql")
    assert isinstance(server, PostgresServer)
    yield server
    server.cleanup()


def _private(kind: str) -> Server:
    try:
        return start(kind)
    except ServerError as exc:
        raise skip_loudly(kind, str(exc)) from None


_WORDS = (
    ("redis", "redis"),
    ("postgresql", "postgres"),
    ("redis-cluster", "cluster"),
    ("redis-sentinel", "sentinel"),
    ("postgresql-standby", "standby"),
)


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Start a backend's server before a test module named after it is imported."""
    if isinstance(collector, pytest.Module):
        for kind, word in _WORDS:
            if word in collector.path.name:
                SERVERS.url(kind)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the server of every backend a selected test names (``test_x[redis]``).

    Such tests may read ``SESSIONLOCKER_*_URL`` themselves instead of using a fixture.
    """
    for kind, word in _WORDS:
        if any(word in item.nodeid.lower() for item in items):
            SERVERS.url(kind)


def pytest_sessionfinish(session: pytest.Session) -> None:
    SERVERS.stop_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for kind in _ENV:
        if kind in SERVERS.failures:
            why = SERVERS.failures[kind].splitlines()[0]
            terminalreporter.write_sep(
                "!", f"{_TITLE[kind]} BACKEND NOT TESTED: {why}", red=True, bold=True
            )
        elif kind in SERVERS.notes:
            terminalreporter.write_line(SERVERS.notes[kind])
