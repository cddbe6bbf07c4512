"""``open_postgresql_url``: a ``PostgreSQLStore`` from a ``postgresql://`` store URL.

``postgresql://user:password@host:port/database?table=...&schema=...&history=10&pool=8``
(``postgres://`` too). Host, port and database go to libpq as written, so several
hosts (``h1:5432,h2:5432``) and IPv6 (``[::1]``) work as in libpq's own URLs. The
password is handed to libpq apart from the connection string and never shown.
With several hosts, libpq connects to the first that is a primary
(``target_session_attrs=read-write``, the default then), so the store follows a failover.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sessionlocker.stores.opening import StoreURL, made_from
from sessionlocker.stores.postgresql._async import AsyncPostgreSQLStore
from sessionlocker.stores.postgresql._store import PostgreSQLStore

__all__ = ["OPTIONS", "open_async_postgresql_url", "open_postgresql_url"]

#: libpq parameters a URL may set, passed through unchanged.
_LIBPQ = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "target_session_attrs",
)
#: Every query option of a ``postgresql://`` URL (beside the fault options).
OPTIONS = frozenset(
    {"table", "schema", "prefix", "history", "pool", "timeout", "connect_timeout", *_LIBPQ}
)


def _whole(url: StoreURL, name: str, default: int, minimum: int) -> int:
    value = url.integer(name)
    if value is None:
        return default
    if value < minimum:
        raise url.error(f"option {name}={value} must be >= {minimum}")
    return value


def open_postgresql_url(url: StoreURL) -> PostgreSQLStore:
    """A ``PostgreSQLStore`` for ``url`` (see the module doc); ``UsageError`` when malformed.

    Options: ``table`` (default ``sessionlocker_records``), ``schema`` (``public``),
    ``prefix`` (put before every key, default none),
    ``history`` (versions kept per key, default 10, 0 for none), ``pool`` (most
    connections, default 8), ``timeout`` (statement and TCP timeout in seconds, default
    10), ``connect_timeout`` (seconds, default 5), and the libpq parameters ``sslmode``,
    ``sslrootcert``, ``sslcert``, ``sslkey``, ``application_name``, ``target_session_attrs``.
    """
    return made_from(url, PostgreSQLStore, _settings(url))


def open_async_postgresql_url(url: StoreURL) -> AsyncPostgreSQLStore:
    """An ``AsyncPostgreSQLStore`` from the same URL (see ``open_postgresql_url``)."""
    return made_from(url, AsyncPostgreSQLStore, _settings(url))


def _settings(url: StoreURL) -> dict[str, Any]:
    """The store's arguments from ``url``; ``UsageError`` naming what is malformed."""
    if not url.has_authority or not url.host:
        raise url.error(f"write {url.scheme}://host[:port]/database")
    database = url.path[1:] if url.path.startswith("/") else url.path
    if "/" in database:
        raise url.error(f"the path names one database, not {database!r}")
    user = f"{quote(url.username, safe='')}@" if url.username else ""
    conninfo = f"postgresql://{user}{url.host}/{quote(database, safe='')}"
    connect = {name: url.options[name] for name in _LIBPQ if name in url.options}
    if url.password:
        connect["password"] = url.password
    return {
        "conninfo": conninfo,
        "table": url.options.get("table", "sessionlocker_records"),
        "schema": url.options.get("schema", "public"),
        "prefix": url.options.get("prefix", ""),
        "history": _whole(url, "history", 10, 0),
        "pool_size": _whole(url, "pool", 8, 1),
        "timeout": url.number("timeout", 10.0, minimum=0.001),
        "connect_timeout": url.number("connect_timeout", 5.0, minimum=0.001),
        "application_name": connect.pop("application_name", "sessionlocker"),
        "connect": connect,
    }
