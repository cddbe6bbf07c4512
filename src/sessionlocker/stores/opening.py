"""``open_store`` and ``open_async_store``: a store from its URL.

This one module turns a URL into a store: it takes the URL apart (``parse_store_url``),
checks its options against the table of backends below (each with its scheme, the URL
forms shown in errors, its own query options, and how it opens a sync and an async
store), and opens it. Fault options (``FAULT_OPTIONS``) are accepted for every scheme.
Errors are one-line ``UsageError`` (under 200 characters) naming the problem and one form
to follow, and pointing to docs/backends.md for the rest; the URL is shown without any
user name or password, values of unknown query options hidden, and cut when long.
The backends of optional extras are imported when opened, so the package works without
them installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from sessionlocker.errors import UsageError
from sessionlocker.stores._bridges import threaded
from sessionlocker.stores.base import AsyncStore, Store
from sessionlocker.stores.faults import FaultyStore
from sessionlocker.stores.memory import MemoryStore
from sessionlocker.stores.sqlite import SQLiteStore

__all__ = [
    "BACKENDS",
    "FAULT_OPTIONS",
    "Backend",
    "StoreURL",
    "made_from",
    "open_async_store",
    "open_store",
    "parse_store_url",
    "redact",
    "supported_forms",
]


#: Query options that wrap any store in a ``FaultyStore`` (see ``open_store``).
FAULT_OPTIONS = frozenset({"fail", "latency", "throttle", "retry_after", "unknown", "seed"})


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A store URL taken apart. ``shown`` is the form safe to put in messages."""

    scheme: str
    #: True when the URL has ``//`` after the scheme (``sqlite:///x`` but not ``sqlite:x``).
    has_authority: bool
    #: Host and port as written, without user name or password.
    host: str
    #: The percent-decoded path, with its leading ``/`` (``sqlite:///x.db`` → ``/x.db``).
    path: str
    options: Mapping[str, str]
    shown: str
    forms: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def error(self, problem: str) -> UsageError:
        """A ``UsageError`` naming ``problem`` in this URL and this backend's first form."""
        return _usage_error(problem, self.shown, self.forms[0])

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float = 0.0,
        maximum: float = math.inf,
    ) -> float:
        """The option ``name`` as a finite number in [minimum, maximum], or ``default``."""
        text = self.options.get(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise self.error(f"option {name}={text!r} is not a number") from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            upper = "" if maximum == math.inf else f" and <= {maximum:g}"
            raise self.error(f"option {name}={text!r} must be >= {minimum:g}{upper}")
        return value

    def integer(self, name: str) -> int | None:
        """The option ``name`` as a whole number, or ``None`` when absent."""
        text = self.options.get(name)
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            raise self.error(f"option {name}={text!r} is not a whole number") from None


@dataclass(frozen=True, slots=True)
class Backend:
    """How one URL scheme is opened."""

    scheme: str
    #: Example URLs shown in error messages.
    forms: tuple[str, ...]
    #: Query options of this backend, beside ``FAULT_OPTIONS``.
    options: frozenset[str]
    open: Callable[[StoreURL], Store]
    #: A native async store for ``open_async_store``; without one, ``open``'s store
    #: runs on threads.
    open_async: Callable[[StoreURL], AsyncStore] | None = None


S = TypeVar("S")


def made_from(url: StoreURL, factory: Callable[..., S], settings: Mapping[str, Any]) -> S:
    """``factory(**settings)``, its ``UsageError`` re-raised naming ``url`` and its forms."""
    try:
        return factory(**settings)
    except UsageError as exc:
        raise url.error(str(exc)) from None


def supported_forms() -> tuple[str, ...]:
    """Every URL form of every backend, for help and error messages."""
    return tuple(form for backend in BACKENDS.values() for form in backend.forms)


def _known_options() -> frozenset[str]:
    names = set(FAULT_OPTIONS)
    for backend in BACKENDS.values():
        names |= backend.options
    return frozenset(names)


def redact(url: str) -> str:
    """``url`` made safe to show: no user name or password, unknown option values hidden.

    Everything between ``://`` and the last ``@`` becomes ``***``, even when a password holds a
    ``/``, ``?`` or ``#`` that would confuse a URL parser: hiding too much is fine,
    showing a password is not.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, separator, rest = "", "", url
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    base, question, query = rest.partition("?")
    if question:
        known = _known_options()
        pieces = []
        for piece in query.split("&"):
            name, equals, _value = piece.partition("=")
            pieces.append(piece if name in known or not equals else f"{name}=***")
        query = "&".join(pieces)
    return f"{scheme}{separator}{base}{question}{query}"


#: The URL forms named when the scheme itself is wrong (aliases and options: backends.md).
USAGE = "memory://, sqlite:///path.db, redis://host/0, postgresql://host/db"

#: Where every URL form and option is described, named at the end of each error.
SEE = "see docs/backends.md"

#: The longest a URL error is, so that a command's line stays under 200 characters.
LONGEST = 155


def _usage_error(problem: str, shown: str, example: str) -> UsageError:
    """One short line: the URL and the problem (both cut when long), a form to follow.

    The form is left out when it would make the line longer than ``LONGEST``.
    """
    head = f"bad store URL {_cut(shown, 36)}: {_clip(problem, 78)}"
    tail = f" ({SEE})"
    use = f"; use {example}"
    if len(head) + len(use) + len(tail) <= LONGEST:
        head += use
    return UsageError(head + tail)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cut(text: str, limit: int) -> str:
    """``text`` quoted, cut to ``limit`` characters (a long URL must not flood the line)."""
    return repr(_clip(text, limit))


def _unknown_option(name: str, allowed: frozenset[str]) -> str:
    """The problem of an unknown option, with the known one it is close to, if any."""
    close = sorted(known for known in allowed if name and known.startswith(name))
    close = close or get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown option {_cut(name, 20)}{hint}"


def parse_store_url(url: object) -> tuple[Backend, StoreURL]:
    """Take ``url`` apart and find its backend; ``UsageError`` when anything is wrong."""
    if not isinstance(url, str):
        raise UsageError(f"a store URL must be a str, not {type(url).__name__}; use {USAGE}")
    shown = redact(url)
    if not url.strip():
        raise _usage_error("the URL is empty", shown, USAGE)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _usage_error("it cannot be parsed as a URL", shown, USAGE) from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise _usage_error("it has no scheme", shown, USAGE)
    backend = BACKENDS.get(scheme)
    if backend is None:
        raise _usage_error("unknown scheme", _clip(scheme, 16) + "://...", USAGE)
    if parts.fragment:
        raise _usage_error("a '#' fragment is not supported", shown, backend.forms[0])

    options: dict[str, str] = {}
    allowed = backend.options | FAULT_OPTIONS
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in allowed:
            raise _usage_error(_unknown_option(name, allowed), shown, backend.forms[0])
        if name in options:
            raise _usage_error(f"option {name!r} is given twice", shown, backend.forms[0])
        options[name] = value

    userinfo, _at, host = parts.netloc.rpartition("@")
    username, _colon, password = userinfo.partition(":")
    parsed = StoreURL(
        scheme=scheme,
        has_authority=url[len(parts.scheme) + 1 :].startswith("//"),
        host=host,
        path=unquote(parts.path),
        options=options,
        shown=shown,
        forms=backend.forms,
        username=unquote(username) if userinfo else None,
        password=unquote(password) if _colon else None,
    )
    return backend, parsed


def _open_memory(url: StoreURL) -> Store:
    if url.host or url.path or url.username is not None:
        raise url.error("memory:// takes no host and no path")
    return MemoryStore()


def _open_sqlite(url: StoreURL) -> Store:
    if not url.has_authority:
        raise url.error("write sqlite:/// and then the path")
    if url.host or url.username is not None:
        raise url.error("a sqlite URL has no host: sqlite:///relative.db, sqlite:////absolute.db")
    path = url.path[1:]  # drop the "/" that ends "sqlite://"; a second one makes it absolute
    if not path or path.endswith("/"):
        raise url.error("the database file path is missing")
    busy_timeout = url.number("busy_timeout", 5.0)
    history = url.integer("history")
    if history is not None and history < 0:
        raise url.error(f"history={history} must be >= 0")
    return SQLiteStore(path, busy_timeout=busy_timeout, history=10 if history is None else history)


@contextmanager
def _extra(url: StoreURL, package: str, extra: str) -> Iterator[None]:
    """Turn the ImportError of a missing optional extra into a one-line ``UsageError``."""
    try:
        yield
    except ImportError as exc:
        if not str(exc.name).startswith(package):
            raise
        raise UsageError(
            f"{url.scheme}:// needs the {extra!r} extra ({exc.name} is not installed): "
            f"pip install 'sessionlocker[{extra}]'"
        ) from None


def _open_redis(url: StoreURL) -> Store:
    with _extra(url, "redis", "redis"):
        from sessionlocker.stores.redis._url import open_redis_url  # noqa: PLC0415 (optional extra)
    return open_redis_url(url)


def _open_async_redis(url: StoreURL) -> AsyncStore:
    with _extra(url, "redis", "redis"):
        from sessionlocker.stores.redis._url import (  # noqa: PLC0415 (optional extra)
            open_async_redis_url,
        )
    return open_async_redis_url(url)


def _open_redis_cluster(url: StoreURL) -> Store:
    with _extra(url, "redis", "redis"):
        from sessionlocker.stores.redis._url import (  # noqa: PLC0415 (optional extra)
            open_redis_cluster_url,
        )
    return open_redis_cluster_url(url)


def _open_async_redis_cluster(url: StoreURL) -> AsyncStore:
    with _extra(url, "redis", "redis"):
        from sessionlocker.stores.redis._url import (  # noqa: PLC0415 (optional extra)
            open_async_redis_cluster_url,
        )
    return open_async_redis_cluster_url(url)


def _open_sentinel(url: StoreURL) -> Store:
    with _extra(url, "redis", "redis"):
        from sessionlocker.stores.redis._url import open_sentinel_url  # noqa: PLC0415 (optional extra)
    return open_sentinel_url(url)


def _open_async_sentinel(url: StoreURL) -> AsyncStore:
    with _extra(url, "redis", "redis"):
        from sessionlocker.stores.redis._url import (  # noqa: PLC0415 (optional extra)
            open_async_sentinel_url,
        )
    return open_async_sentinel_url(url)


def _open_postgresql(url: StoreURL) -> Store:
    with _extra(url, "psycopg", "postgresql"):
        from sessionlocker.stores.postgresql._url import (  # noqa: PLC0415 (optional extra)
            open_postgresql_url,
        )
    return open_postgresql_url(url)


def _open_async_postgresql(url: StoreURL) -> AsyncStore:
    with _extra(url, "psycopg", "postgresql"):
        from sessionlocker.stores.postgresql._url import (  # noqa: PLC0415 (optional extra)
            open_async_postgresql_url,
        )
    return open_async_postgresql_url(url)


def _redis(scheme: str) -> Backend:
    return Backend(
        scheme=scheme,
        forms=(
            f"{scheme}://host:6379/0",
            f"{scheme}://:password@host/0?prefix=game:&history=10&timeout=5&pool=8"
            + ("&ca=/path/ca.pem" if scheme == "rediss" else ""),
            f"{scheme}://host/0?replicas=1&replica_timeout=1",
        ),
        options=_REDIS_OPTIONS | {"ca"},
        open=_open_redis,
        open_async=_open_async_redis,
    )


def _redis_cluster(scheme: str) -> Backend:
    return Backend(
        scheme=scheme,
        forms=(
            f"{scheme}://host1:7000,host2:7001,host3:7002/",
            f"{scheme}://:password@host:7000/?prefix=game:&history=10&timeout=5&pool=8"
            + ("&ca=/path/ca.pem" if scheme.startswith("rediss") else ""),
            f"{scheme}://host1:7000,host2:7001/?replicas=1&replica_timeout=1",
        ),
        options=_REDIS_OPTIONS | {"ca"},
        open=_open_redis_cluster,
        open_async=_open_async_redis_cluster,
    )


_REDIS_OPTIONS = frozenset({"prefix", "history", "timeout", "pool", "replicas", "replica_timeout"})

#: ``redis+sentinel://``: the primary the sentinels name.
_SENTINEL = Backend(
    scheme="redis+sentinel",
    forms=(
        "redis+sentinel://sentinel1:26379,sentinel2:26379,sentinel3:26379/mymaster",
        "redis+sentinel://:password@sentinel:26379/mymaster?db=0&replicas=1&replica_timeout=1",
    ),
    options=_REDIS_OPTIONS | {"db"},
    open=_open_sentinel,
    open_async=_open_async_sentinel,
)


def _postgresql(scheme: str) -> Backend:
    return Backend(
        scheme=scheme,
        forms=(
            f"{scheme}://user:password@host:5432/database",
            f"{scheme}://host/db?table=records&schema=public&history=10&pool=8&timeout=10"
            "&connect_timeout=5&sslmode=require",
        ),
        options=frozenset(
            {"table", "schema", "prefix", "history", "pool", "timeout", "connect_timeout"}
            | {"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name"}
            | {"target_session_attrs"}
        ),
        open=_open_postgresql,
        open_async=_open_async_postgresql,
    )


#: Every scheme a store URL may have, and how each opens: the one table of backends.
BACKENDS: Mapping[str, Backend] = {
    backend.scheme: backend
    for backend in (
        Backend(scheme="memory", forms=("memory://",), options=frozenset(), open=_open_memory),
        Backend(
            scheme="sqlite",
            forms=(
                "sqlite:///relative/path.db",
                "sqlite:////absolute/path.db",
                "sqlite:///path.db?busy_timeout=5&history=10",
            ),
            options=frozenset({"busy_timeout", "history"}),
            open=_open_sqlite,
        ),
        _redis("redis"),
        _redis("rediss"),
        _redis_cluster("redis+cluster"),
        _redis_cluster("rediss+cluster"),
        _SENTINEL,
        _postgresql("postgresql"),
        _postgresql("postgres"),
    )
}


def open_store(url: str) -> Store:
    """Open the store ``url`` names.

    - ``memory://``: a new, empty ``MemoryStore``.
    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's
      convention): a ``SQLiteStore``; options ``busy_timeout`` in seconds and ``history``
      (versions kept per key, default 10, 0 for none). The directory must exist.
    - ``redis://[user:password@]host[:port][/db]`` (``rediss://`` for TLS): a
      ``RedisStore``; options ``prefix``, ``history``, ``timeout``, ``pool`` (and ``ca``),
      ``replicas`` and ``replica_timeout`` (a record command counts once that many
      replicas acknowledged it, waiting up to that many seconds).
    - ``redis+cluster://host:port[,host:port...]/`` (``rediss+cluster://`` for TLS): a
      ``RedisClusterStore``; the ``redis://`` options (``replicas`` waits for the
      replicas of the record's slot's primary).
    - ``redis+sentinel://sentinel:port[,sentinel:port...]/service``: a ``RedisStore`` on
      the primary the sentinels name for ``service``, following it across failovers;
      the ``redis://`` options but ``ca``, and ``db``.
    - ``postgresql://[user:password@]host[:port]/database`` (or ``postgres://``): a
      ``PostgreSQLStore``; options ``table``, ``schema``, ``prefix``, ``history``, ``pool``,
      ``timeout``, ``connect_timeout`` and the libpq ``sslmode``, ``sslrootcert``,
      ``sslcert``, ``sslkey``, ``application_name``, ``target_session_attrs``. Several
      hosts (``h1:5432,h2:5432``) reach whichever is the primary.
    - Fault options, for any scheme: ``fail``, ``throttle`` and ``unknown`` (rates
      between 0 and 1), ``latency`` and ``retry_after`` (seconds), ``seed`` (a whole
      number). Giving any of them wraps the store in a ``FaultyStore``.

    Raises ``UsageError`` naming what is wrong and listing the supported forms.
    """
    backend, parsed = parse_store_url(url)
    # Check every option before opening anything, so a bad URL leaves nothing behind.
    faults = {
        "fail_rate": parsed.number("fail", 0.0, maximum=1.0),
        "throttle_rate": parsed.number("throttle", 0.0, maximum=1.0),
        "unknown_rate": parsed.number("unknown", 0.0, maximum=1.0),
        "latency": parsed.number("latency", 0.0),
        "retry_after": parsed.number("retry_after", 0.05),
    }
    seed = parsed.integer("seed")
    store = backend.open(parsed)
    if not FAULT_OPTIONS.intersection(parsed.options):
        return store
    return FaultyStore(
        store,
        fail_rate=faults["fail_rate"],
        throttle_rate=faults["throttle_rate"],
        unknown_rate=faults["unknown_rate"],
        latency=faults["latency"],
        retry_after=faults["retry_after"],
        seed=seed,
    )


def open_async_store(url: str) -> AsyncStore:
    """Open the store ``url`` names as an ``AsyncStore``: the same schemes and options as
    ``open_store``, and the same records (a sync and an async store can share them).

    Redis and PostgreSQL get their native async clients (``AsyncRedisStore``,
    ``AsyncPostgreSQLStore``). Memory, SQLite, and any URL with fault options (the
    ``FaultyStore`` wrapper is sync) get ``open_store``'s store with every call on a
    thread (``threaded``). Raises ``UsageError`` as ``open_store`` does.
    """
    backend, parsed = parse_store_url(url)
    if backend.open_async is None or FAULT_OPTIONS.intersection(parsed.options):
        return threaded(open_store(url))
    return backend.open_async(parsed)
