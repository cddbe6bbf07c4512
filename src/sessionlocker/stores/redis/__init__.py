"""The Redis stores: records and leases in Redis, written by atomic Lua scripts.

Needs the ``redis`` extra. Public here: ``RedisStore`` (sync), ``AsyncRedisStore``
(``redis.asyncio``), ``RedisClusterStore`` and ``AsyncRedisClusterStore`` (Redis
Cluster, ``redis+cluster://``), their shared arguments ``RedisSettings`` / ``RedisOptions``, and
``RedisWatch`` (wake-ups from pub/sub). The rest is private: ``_layout`` (key names and
reply reading, shared by both stores), ``_scripts`` (the Lua), ``_settings``, ``_url``
(``redis://`` URLs), ``_store``, ``_async`` and ``_watch``; for the cluster
``_cluster_layout``, ``_cluster``, ``_async_cluster`` and ``_cluster_watch``.
"""

from __future__ import annotations

from sessionlocker.stores.redis._async import AsyncRedisStore
from sessionlocker.stores.redis._async_cluster import AsyncRedisClusterStore
from sessionlocker.stores.redis._cluster import RedisClusterStore
from sessionlocker.stores.redis._settings import RedisOptions, RedisSettings
from sessionlocker.stores.redis._store import RedisStore
from sessionlocker.stores.redis._watch import RedisWatch

__all__ = [
    "AsyncRedisClusterStore",
    "AsyncRedisStore",
    "RedisClusterStore",
    "RedisOptions",
    "RedisSettings",
    "RedisStore",
    "RedisWatch",
]
