"""Connection pools that always talk to the primary the Sentinels name, sync and async.

Built on redis-py's own ``redis.sentinel`` / ``redis.asyncio.sentinel``: its
``SentinelConnectionPool`` asks the sentinels for the primary's address on every new
connection, and drops a connection whose command got ``READONLY`` (a primary demoted
under it). What it does not do, and is added here:

- **a role check on every (re)connection**: redis-py's ``check_connection`` only sends
  ``PING``; here ``ROLE`` must answer ``master``, or the connection is refused (the
  sentinels may name a node that is not yet, or no longer, a primary);
- **a look at the sentinels at least every ``LOOK_AGAIN`` seconds**, and a pooled
  connection to any node other than the one they name now is dropped before it is
  used: a connection opened to the old primary is never written to again once the
  sentinels name another (an old primary may stay up, cut off, or restart and claim to
  be a primary for a while before the sentinels demote it);
- **blocking pools**: callers beyond ``pool`` connections wait for a free one up to the
  timeout, as with a single Redis server.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel as async_sentinel
import redis.sentinel as sync_sentinel
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = [
    "LOOK_AGAIN",
    "async_primary_pool",
    "close_async_pool",
    "close_pool",
    "make_async_pool",
    "make_pool",
    "primary_pool",
]

#: Seconds after which a connection taken from the pool makes the pool ask the
#: sentinels again which node is the primary.
LOOK_AGAIN = 1.0

#: Whether redis-py's sync ``BlockingConnectionPool.disconnect`` takes the
#: ``inuse_connections`` argument its sentinel code passes (not in redis-py 5.3).
_DISCONNECT_TAKES_INUSE = (
    "inuse_connections" in inspect.signature(redis.BlockingConnectionPool.disconnect).parameters
)


def _not_primary(reply: Any, where: str) -> RedisConnectionError | None:
    role = reply[0] if isinstance(reply, list) and reply else reply
    if role in (b"master", "master"):
        return None
    return RedisConnectionError(f"{where} is not the primary (ROLE says {role!r})")


def _address(connection: Any) -> tuple[str, int]:
    return (str(connection.host), int(connection.port))


# The sync pool.


#: redis-py 5.3 calls ``on_connect()`` once connected; later ones ``on_connect_check_health``.
_HOOK = "on_connect_check_health"


class _Connection(sync_sentinel.SentinelManagedConnection):
    """A connection to the primary that checks, once connected, that it is one."""

    def _check_role(self) -> None:
        self.send_command("ROLE")  # type: ignore[no-untyped-call]
        refused = _not_primary(self.read_response(), f"{self.host}:{self.port}")
        if refused is not None:
            raise refused

    if hasattr(sync_sentinel.SentinelManagedConnection, _HOOK):

        def on_connect_check_health(self, check_health: bool = True) -> None:
            super().on_connect_check_health(check_health=check_health)
            self._check_role()

    else:

        def on_connect(self) -> None:
            super().on_connect()  # type: ignore[no-untyped-call]
            self._check_role()


class _SSLConnection(_Connection, redis.SSLConnection):
    pass


class _Pool(sync_sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's sentinel pool, blocking, that drops connections to a former primary."""

    def __init__(self, service: str, sentinels: Any, **kwargs: Any) -> None:
        super().__init__(service, sentinels, **kwargs)  # type: ignore[no-untyped-call]
        self._looked = float("-inf")

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now - self._looked >= LOOK_AGAIN:
            self.get_master_address()  # type: ignore[no-untyped-call]  # idle ones dropped
            self._looked = now
        connection = super().get_connection()  # type: ignore[no-untyped-call]
        if _address(connection) != self.master_address:
            try:
                connection.disconnect()
                connection.connect()  # asks the sentinels again, checks the role
            except BaseException:
                self.release(connection)  # type: ignore[no-untyped-call]
                raise
        return connection

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Drop every connection, or only the idle ones (what redis-py's sentinel code
        asks when the primary moves, also where its blocking pool takes no argument)."""
        if _DISCONNECT_TAKES_INUSE:
            super().disconnect(inuse_connections=inuse_connections)
        elif inuse_connections:
            super().disconnect()
        else:
            self._checkpid()
            with self.pool.mutex:
                idle = [connection for connection in self.pool.queue if connection is not None]
            for connection in idle:
                connection.disconnect()


def primary_pool(
    sentinels: tuple[tuple[str, int], ...], service: str, *, pool: int, **kwargs: Any
) -> redis.ConnectionPool:
    """A blocking pool of at most ``pool`` connections to ``service``'s primary.

    ``kwargs`` are the connection arguments of a single-server pool (``host`` and
    ``port`` are ignored: the sentinels give them); the sentinels are asked with the
    same socket timeouts, without credentials.
    """
    kwargs = {name: value for name, value in kwargs.items() if name not in ("host", "port")}
    tls = kwargs.pop("connection_class", None) is not None
    manager = sync_sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(sentinels), sentinel_kwargs=_sentinel_kwargs(kwargs)
    )
    return _Pool(
        service,
        manager,
        connection_class=_SSLConnection if tls else _Connection,
        max_connections=pool,
        timeout=kwargs["socket_timeout"],
        **kwargs,
    )


def _sentinel_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "socket_timeout": kwargs["socket_timeout"],
        "socket_connect_timeout": kwargs["socket_connect_timeout"],
        "retry": kwargs["retry"],
    }


# The async pool.


class _AsyncConnection(async_sentinel.SentinelManagedConnection):
    """The async ``_Connection``."""

    async def _check_role(self) -> None:
        await self.send_command("ROLE")
        refused = _not_primary(await self.read_response(), f"{self.host}:{self.port}")
        if refused is not None:
            raise refused

    if hasattr(async_sentinel.SentinelManagedConnection, _HOOK):

        async def on_connect_check_health(self, check_health: bool = True) -> None:
            await super().on_connect_check_health(check_health=check_health)
            await self._check_role()

    else:

        async def on_connect(self) -> None:
            await super().on_connect()
            await self._check_role()


class _AsyncSSLConnection(_AsyncConnection, redis.asyncio.SSLConnection):
    pass


class _AsyncPool(async_sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """The async ``_Pool``."""

    def __init__(self, service: str, sentinels: Any, **kwargs: Any) -> None:
        super().__init__(service, sentinels, **kwargs)  # type: ignore[no-untyped-call]
        self._looked = float("-inf")

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now - self._looked >= LOOK_AGAIN:
            await self.get_master_address()  # type: ignore[no-untyped-call]
            self._looked = now
        connection = await super().get_connection()  # type: ignore[no-untyped-call]
        if _address(connection) != self.master_address:
            try:
                await connection.disconnect()
                await connection.connect()
            except BaseException:
                await self.release(connection)
                raise
        return connection


def async_primary_pool(
    sentinels: tuple[tuple[str, int], ...], service: str, *, pool: int, **kwargs: Any
) -> redis.asyncio.ConnectionPool:
    """The async ``primary_pool``."""
    kwargs = {name: value for name, value in kwargs.items() if name not in ("host", "port")}
    tls = kwargs.pop("connection_class", None) is not None
    manager = async_sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(sentinels), sentinel_kwargs=_sentinel_kwargs(kwargs)
    )
    return _AsyncPool(
        service,
        manager,
        connection_class=_AsyncSSLConnection if tls else _AsyncConnection,
        max_connections=pool,
        timeout=kwargs["socket_timeout"],
        **kwargs,
    )


# Either kind of pool.


def make_pool(
    sentinels: tuple[tuple[str, int], ...], service: str, *, pool: int, **kwargs: Any
) -> Any:  # redis-py's pools and connections are unannotated
    """``primary_pool`` with ``sentinels``, else a blocking pool to ``kwargs``' server."""
    if sentinels:
        return primary_pool(sentinels, service, pool=pool, **kwargs)
    return redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
        max_connections=pool, timeout=kwargs["socket_timeout"], **kwargs
    )


def make_async_pool(
    sentinels: tuple[tuple[str, int], ...], service: str, *, pool: int, **kwargs: Any
) -> Any:
    """The async ``make_pool``."""
    if sentinels:
        return async_primary_pool(sentinels, service, pool=pool, **kwargs)
    return redis.asyncio.BlockingConnectionPool(
        max_connections=pool, timeout=kwargs["socket_timeout"], **kwargs
    )


# Each sentinel client is closed here, not with ``Sentinel.close()`` / ``aclose()``,
# which redis-py 5.3 does not have.


def close_pool(pool: Any) -> None:
    """Drop every connection of ``pool``, and of its sentinels when it has them."""
    pool.disconnect()
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:
        for client in manager.sentinels:
            client.close()


async def close_async_pool(pool: Any) -> None:
    """The async ``close_pool``."""
    await pool.disconnect()
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:
        for client in manager.sentinels:
            await client.aclose(close_connection_pool=True)
