"""How the PostgreSQL store connects: libpq parameters, timeouts and the pool.

Every connection is in autocommit at READ COMMITTED (the store's statements rely on
PostgreSQL re-checking a row that changed while they waited for its lock), with a
statement timeout and TCP keepalives and user timeout. They are set as startup
options, at no extra round trip. None of them ends a call on a server that is stopped
(SIGSTOP) or behind a network that holds packets back: its kernel, or the client's,
keeps the connection open. So every statement also runs under a client-side deadline
(``Connector.deadline``, ``_deadline``): past it, its socket is shut down and the
connection discarded.

Several hosts (``h1:p1,h2:p2``, libpq's own syntax) are tried in order; unless the
string says otherwise, only a primary is accepted (``target_session_attrs=read-write``),
so after a failover new connections reach the promoted standby.
"""

from __future__ import annotations

import math
import select
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from sessionlocker.errors import UsageError

__all__ = [
    "GRACE",
    "Connector",
    "check_idle",
    "check_idle_async",
    "check_seconds_above_zero",
]

#: How long past the server's statement timeout the client waits for the reply before
#: giving up on the connection: room for the server's own timeout error to arrive.
GRACE = 1.0


def check_seconds_above_zero(value: object, what: str) -> float:
    """A timeout: a finite number of seconds above zero."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{what} must be a finite number of seconds above zero, not {value!r}")
    return seconds


def check_idle(connection: psycopg.Connection[TupleRow]) -> None:
    """Refuse a pooled connection the server has closed, without a round trip.

    An idle connection has nothing to read unless the server went away (a restart,
    ``idle_session_timeout``, ``pg_terminate_backend``): then its socket is readable.
    Closing it makes the pool discard it and hand out, or open, another.
    """
    if _readable(connection.fileno()):
        connection.close()
        raise psycopg.OperationalError("the server closed this idle connection")


async def check_idle_async(connection: psycopg.AsyncConnection[TupleRow]) -> None:
    """``check_idle`` for the async pool."""
    if _readable(connection.fileno()):
        await connection.close()
        raise psycopg.OperationalError("the server closed this idle connection")


def _hosts(params: Mapping[str, Any]) -> list[str]:
    """``host:port`` of each host libpq may try, in order (``h1,h2`` and ``p1,p2``)."""
    hosts = str(params.get("host") or "localhost").split(",")
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports *= len(hosts)
    return [
        f"{host or 'localhost'}:{port or 5432}" for host, port in zip(hosts, ports, strict=False)
    ]


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read (or hung up), without waiting."""
    if hasattr(select, "poll"):  # poll, unlike select, takes descriptors above 1023
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows: no poll, and no such limit
    return bool(readable)


@dataclass(frozen=True, slots=True)
class Connector:
    """The connection string, the libpq parameters and what may be shown of them.

    ``host`` and ``database`` are for messages; ``password`` only to scrub messages.
    ``deadline``: how long a statement may wait for its reply (the statement timeout
    plus ``GRACE``).
    """

    conninfo: str = field(repr=False)
    kwargs: Mapping[str, Any] = field(repr=False)
    connect_timeout: float
    deadline: float
    host: str
    database: str
    password: str | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        conninfo: str,
        connect: Mapping[str, str] | None,
        *,
        timeout: float,
        connect_timeout: float,
        application_name: str,
    ) -> Connector:
        """Check ``conninfo`` and merge the store's settings with the given parameters."""
        timeout = check_seconds_above_zero(timeout, "timeout")
        connect_timeout = check_seconds_above_zero(connect_timeout, "connect_timeout")
        if not isinstance(conninfo, str):
            raise UsageError(f"conninfo must be a str, not {type(conninfo).__name__}")
        extra = dict(connect or {})
        try:
            params = conninfo_to_dict(conninfo, **extra)
        except psycopg.Error:
            # psycopg's message may quote the string, password included: do not chain it.
            raise UsageError("the PostgreSQL connection string cannot be parsed") from None
        milliseconds = max(1, round(timeout * 1000))
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(connect_timeout)),  # libpq: whole seconds
            "application_name": application_name,
            "options": f"-c statement_timeout={milliseconds}"
            " -c default_transaction_isolation=read\\ committed",
            "keepalives": 1,
            "keepalives_idle": max(1, round(timeout)),
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "tcp_user_timeout": milliseconds,
            **extra,
        }
        hosts = _hosts(params)
        if len(hosts) > 1 and "target_session_attrs" not in params:
            kwargs["target_session_attrs"] = "read-write"  # several hosts: the primary's
        password = params.get("password")
        return cls(
            conninfo=conninfo,
            kwargs=kwargs,
            connect_timeout=connect_timeout,
            deadline=timeout + GRACE,
            host=",".join(hosts),
            database=str(params.get("dbname") or params.get("user") or ""),
            password=str(password) if password else None,
        )

    @property
    def several_hosts(self) -> bool:
        """Whether the connection string names more than one host (a failover setup)."""
        return "," in self.host

    def connect(self) -> psycopg.Connection[TupleRow]:
        """A new connection outside any pool."""
        return psycopg.Connection.connect(self.conninfo, **self.kwargs)

    def pool(self, *, size: int, name: str) -> ConnectionPool[psycopg.Connection[TupleRow]]:
        """An opened pool of up to ``size`` connections (one made at once, in the background).

        A caller waits up to ``connect_timeout`` for a connection. A series of
        backed-off reconnects is given up after as long, so the next call starts a fresh
        one: calls work again within moments of a server coming back, however long it
        was away.
        """
        pool = ConnectionPool(self.conninfo, check=check_idle, **self._pool_options(size, name))
        pool.open(wait=False)
        return pool

    def async_pool(
        self, *, size: int, name: str
    ) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
        """``pool`` for the event loop (not yet opened: ``await pool.open()``)."""
        return AsyncConnectionPool(
            self.conninfo, check=check_idle_async, **self._pool_options(size, name)
        )

    def _pool_options(self, size: int, name: str) -> dict[str, Any]:
        """The settings both pools share (see ``pool``)."""
        return {
            "kwargs": dict(self.kwargs),
            "min_size": 1,
            "max_size": size,
            "name": name,
            "timeout": self.connect_timeout,
            "reconnect_timeout": self.connect_timeout,
            "num_workers": 2,
            "open": False,
        }
