"""``open_redis_url``: a ``RedisStore`` from a ``redis://``, ``rediss://`` or
``redis+sentinel://`` store URL.

``redis://[user:password@]host[:port][/db]?prefix=...&history=N&timeout=S&pool=N``;
``rediss://`` speaks TLS and may name a CA file with ``ca``.
``redis+sentinel://[user:password@]sentinel[:port][,sentinel[:port]...]/service?db=N``
finds the primary of ``service`` through the sentinels (the credentials are the data
nodes'; the sentinels are asked without). Every form takes ``replicas=N`` and
``replica_timeout=S`` (``_replicas``). The password goes to the store apart from
anything it shows, so it never appears in a message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sessionlocker.stores.opening import StoreURL, made_from
from sessionlocker.stores.redis._async import AsyncRedisStore
from sessionlocker.stores.redis._async_cluster import AsyncRedisClusterStore
from sessionlocker.stores.redis._cluster import RedisClusterStore
from sessionlocker.stores.redis._store import RedisStore

__all__ = [
    "open_async_redis_cluster_url",
    "open_async_redis_url",
    "open_async_sentinel_url",
    "open_redis_cluster_url",
    "open_redis_url",
    "open_sentinel_url",
]


def open_redis_url(url: StoreURL) -> RedisStore:
    """A ``RedisStore`` from ``redis://[user:password@]host[:port][/db]?options``.

    Options: ``prefix`` (key prefix), ``history`` (versions kept per key), ``timeout``
    (seconds), ``pool`` (connections), ``ca`` (a CA file, with ``rediss://``).
    """
    return made_from(url, RedisStore, _settings(url))


def open_async_redis_url(url: StoreURL) -> AsyncRedisStore:
    """An ``AsyncRedisStore`` from the same URL (see ``open_redis_url``)."""
    return made_from(url, AsyncRedisStore, _settings(url))


def _settings(url: StoreURL) -> dict[str, Any]:
    """The store's arguments from ``url``; ``UsageError`` naming what is malformed."""
    if not url.has_authority:
        raise url.error(f"write {url.scheme}:// and then the host")
    try:
        parts = urlsplit(f"//{url.host}")
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 6379
    except ValueError:
        raise url.error("the port must be a number from 1 to 65535") from None
    path = url.path.strip("/")
    if not path.isdigit() and path:
        raise url.error(f"the path names the database by number (like /0), not {path!r}")
    if url.options.get("ca") is not None and url.scheme != "rediss":
        raise url.error("option ca is for TLS: use rediss://")
    return {"host": host, "port": port, "db": int(path or 0), **_common(url)}


def _common(url: StoreURL) -> dict[str, Any]:
    """The options every Redis URL form takes."""
    history = url.integer("history")
    pool = url.integer("pool")
    replicas = url.integer("replicas")
    return {
        "username": url.username or None,
        "password": url.password,
        "tls": url.scheme == "rediss",
        "ca_certs": url.options.get("ca"),
        "prefix": url.options.get("prefix", "sessionlocker:"),
        "history": 0 if history is None else history,
        "timeout": url.number("timeout", 5.0, minimum=0.001),
        "pool": 8 if pool is None else pool,
        "replicas": 0 if replicas is None else replicas,
        "replica_timeout": url.number("replica_timeout", 1.0, minimum=0.001),
    }


def open_redis_cluster_url(url: StoreURL) -> RedisClusterStore:
    """A ``RedisClusterStore`` from ``redis+cluster://host:port[,host:port...]/?options``
    (``rediss+cluster://`` speaks TLS); the options are ``redis://``'s, ``replicas`` and
    ``replica_timeout`` included."""
    settings = _cluster_settings(url)
    return made_from(url, RedisClusterStore, settings)


def open_async_redis_cluster_url(url: StoreURL) -> AsyncRedisClusterStore:
    """An ``AsyncRedisClusterStore`` from the same URL (see ``open_redis_cluster_url``)."""
    return made_from(url, AsyncRedisClusterStore, _cluster_settings(url))


def _cluster_settings(url: StoreURL) -> dict[str, Any]:
    """The cluster store's arguments: ``nodes`` from the comma-separated host list."""
    if not url.has_authority or not url.host:
        raise url.error(f"write {url.scheme}:// and then host:port of one or more nodes")
    nodes = _addresses(url, "node", 6379)
    if url.path.strip("/") not in ("", "0"):
        raise url.error("a Redis Cluster has only database 0: leave the path empty")
    if url.options.get("ca") is not None and url.scheme != "rediss+cluster":
        raise url.error("option ca is for TLS: use rediss+cluster://")
    history = url.integer("history")
    pool = url.integer("pool")
    replicas = url.integer("replicas")
    return {
        "nodes": nodes,
        "username": url.username or None,
        "password": url.password,
        "tls": url.scheme == "rediss+cluster",
        "ca_certs": url.options.get("ca"),
        "prefix": url.options.get("prefix", "sessionlocker:"),
        "history": 0 if history is None else history,
        "timeout": url.number("timeout", 5.0, minimum=0.001),
        "pool": 8 if pool is None else pool,
        "replicas": 0 if replicas is None else replicas,
        "replica_timeout": url.number("replica_timeout", 1.0, minimum=0.001),
    }


def open_sentinel_url(url: StoreURL) -> RedisStore:
    """A ``RedisStore`` on the primary that the sentinels of
    ``redis+sentinel://sentinel[:port][,...]/service?options`` name (see the module)."""
    return made_from(url, RedisStore, _sentinel_settings(url))


def open_async_sentinel_url(url: StoreURL) -> AsyncRedisStore:
    """An ``AsyncRedisStore`` from the same URL (see ``open_sentinel_url``)."""
    return made_from(url, AsyncRedisStore, _sentinel_settings(url))


def _sentinel_settings(url: StoreURL) -> dict[str, Any]:
    if not url.has_authority or not url.host:
        raise url.error(f"write {url.scheme}:// and then the sentinels, host:port,host:port")
    sentinels = _addresses(url, "sentinel", 26379)
    service = url.path.strip("/")
    if not service or "/" in service:
        raise url.error("the path names the sentinels' service (like /mymaster)")
    db = url.integer("db")
    return {"sentinels": tuple(sentinels), "service": service, "db": db or 0, **_common(url)}


def _addresses(url: StoreURL, what: str, port: int) -> list[tuple[str, int]]:
    """The comma-separated ``host[:port]`` list of ``url`` (``port`` when none is given)."""
    found = []
    for address in url.host.split(","):
        try:
            parts = urlsplit(f"//{address.strip()}")
            found.append((parts.hostname or "127.0.0.1", parts.port or port))
        except ValueError:
            problem = f"{what} {address!r}: the port must be a number from 1 to 65535"
            raise url.error(problem) from None
    return found
