"""The Redis stores: records and leases in Redis, written by atomic Lua scripts.

Needs the ``redis`` extra. Public here: ``RedisStore`` (sync), ``AsyncRedisStore``
(``redis.asyncio``), their shared arguments ``RedisSettings`` / ``RedisOptions``, and
``RedisWatch`` (wake-ups from pub/sub). The rest is private: ``_layout`` (key names and
reply reading, shared by both stores), ``_scripts`` (the Lua), ``_settings``, ``_url``
(``redis://`` URLs), ``_store``, ``_async`` and ``_watch``.
"""

from __future__ import annotations

from sessionlocker.stores.redis._async import AsyncRedisStore
from sessionlocker.stores.redis._settings import RedisOptions, RedisSettings
from sessionlocker.stores.redis._store import RedisStore
from sessionlocker.stores.redis._watch import RedisWatch

__all__ = ["AsyncRedisStore", "RedisOptions", "RedisSettings", "RedisStore", "RedisWatch"]
