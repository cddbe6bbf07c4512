"""The PostgreSQL stores: records, leases, history and wake-ups in PostgreSQL tables.

Needs the ``postgresql`` extra (psycopg 3 and psycopg_pool). Public here:
``PostgreSQLStore`` (sync), ``AsyncPostgreSQLStore`` (psycopg's async connections), their
shared arguments ``PostgreSQLSettings`` / ``PostgreSQLOptions``, and ``PostgreSQLWatch``
(LISTEN/NOTIFY wake-ups). The rest is private: ``_layout`` (everything both stores share
but the I/O), ``_sql`` (the SQL), ``_connect`` (libpq parameters and pools), ``_errors``
(psycopg errors to ``StoreError``), ``_replication`` (the start-up check of what the
server keeps on failover), ``_settings``, ``_url`` (``postgresql://`` URLs), ``_store``,
``_async`` and ``_watch``.
"""

from __future__ import annotations

from sessionlocker.stores.postgresql._async import AsyncPostgreSQLStore
from sessionlocker.stores.postgresql._settings import PostgreSQLOptions, PostgreSQLSettings
from sessionlocker.stores.postgresql._store import PostgreSQLStore
from sessionlocker.stores.postgresql._watch import PostgreSQLWatch

__all__ = [
    "AsyncPostgreSQLStore",
    "PostgreSQLOptions",
    "PostgreSQLSettings",
    "PostgreSQLStore",
    "PostgreSQLWatch",
]
