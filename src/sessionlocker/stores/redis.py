"""``RedisStore``: records and session leases in Redis, written by atomic Lua scripts.

Layout, under the store's key prefix ``P`` (default ``sessionlocker:``):

- ``P r:<key>``: a hash with the value ``v`` and its revision ``rev``;
- ``P revision``: the counter revisions come from, so they only grow, across keys and
  across a delete and re-create;
- ``P h:<key>``: the last N versions of the key, newest first (``history=N``; off by
  default), kept also after a delete;
- ``P s:<session>`` and ``P session-version``: session leases and their version counter;
- ``P n:<key>``: the pub/sub channel every write and delete of the key publishes on.

Every conditional write is one script (``redis_scripts``): compare the revision, write,
bump, record history, publish. Session expiry is judged by the server's clock (``TIME``
inside a script); Redis key expiry only cleans up a lease some time after it expired,
so no client clock is ever involved.

Errors of redis-py become ``StoreError`` here: connection failures, timeouts and a busy,
loading or read-only server are retryable; a write whose reply was lost has an unknown
outcome. Messages name the server by host, port and database, never by credentials.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import suppress
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.retry import Retry

from sessionlocker.core.protocol import SessionView, Transform, Updated, Versioned
from sessionlocker.errors import Conflict, StoreError, UsageError
from sessionlocker.stores import redis_scripts
from sessionlocker.stores._checks import (
    check_expected,
    check_key,
    check_prefix,
    check_seconds,
    check_session_id,
    check_ttl,
    check_value,
    closed_error,
)
from sessionlocker.stores.base import Wake, Watch, cas_update
from sessionlocker.stores.redis_watch import RedisWatch

__all__ = ["RedisStore"]

T = TypeVar("T")

#: Server replies that mean "not now": the command was refused, so it did not run.
_RETRYABLE_REPLIES = ("BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "LOADING")

#: How long an expired session record stays readable before Redis removes it.
_SESSION_GRACE = 60.0


class RedisStore:
    """A ``Store`` (and ``Notifying``) on one Redis server.

    ``timeout`` bounds every socket connect and reply, so a call never hangs; ``pool``
    is the number of connections, to size like the driver's worker threads (callers
    beyond it wait up to ``timeout`` for a free one). ``history`` keeps that many
    versions per key (see ``history``). ``tls`` speaks TLS (``rediss://``), verifying
    the server against the system's CAs or the file ``ca_certs``.

    Redis Cluster is not supported: a script touches the key and the counter, which
    live in different slots. Nothing connects until the first call.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_certs: str | None = None,
        prefix: str = "sessionlocker:",
        history: int = 0,
        timeout: float = 5.0,
        pool: int = 8,
    ) -> None:
        self._prefix = check_prefix(prefix).encode()
        self._history = _whole(history, "history", 0)
        self._timeout = check_seconds(timeout, "timeout")
        if self._timeout <= 0:
            raise UsageError("timeout must be above zero")
        self._where = f"{host}:{port}/{db}"
        self._password = password
        kwargs: dict[str, Any] = {
            "host": host,
            "port": _whole(port, "port", 1),
            "db": _whole(db, "db", 0),
            "username": username,
            "password": password,
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            "retry": Retry(NoBackoff(), 0),  # we classify and the driver retries, with backoff
            "client_name": "sessionlocker",
        }
        if tls:
            kwargs.update(connection_class=redis.SSLConnection, ssl_ca_certs=ca_certs)
        self._connection_kwargs = kwargs
        # redis-py leaves the pool's methods unannotated, hence the ignores below.
        self._pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
            max_connections=_whole(pool, "pool", 1), timeout=self._timeout, **kwargs
        )
        self._scripts = {
            name: (text, _sha1(text))
            for name, text in (
                ("write", redis_scripts.WRITE),
                ("delete", redis_scripts.DELETE),
                ("put_session", redis_scripts.PUT_SESSION),
                ("get_session", redis_scripts.GET_SESSION),
            )
        }
        self._watches: set[RedisWatch] = set()
        self._closed = False

    def __repr__(self) -> str:
        prefix = self._prefix.decode()
        return f"RedisStore({self._where!r}, prefix={prefix!r}, history={self._history})"

    @property
    def prefix(self) -> str:
        """The prefix of every Redis key and channel this store uses."""
        return self._prefix.decode()

    # Names.

    def _name(self, kind: bytes, name: str) -> bytes:
        return self._prefix + kind + name.encode()

    def _channel(self, key: str) -> bytes:
        return self._name(b"n:", key)

    def _key_of_channel(self, channel: bytes) -> str | None:
        head = self._prefix + b"n:"
        return channel[len(head) :].decode() if channel.startswith(head) else None

    # Talking to the server.

    def _execute(self, operation: str, *args: Any, writes: bool = False) -> Any:
        """Send one command and read its reply, translating every failure.

        A failure before the command was sent in full has a known outcome (nothing ran);
        a lost reply to a ``writes`` command has an unknown one.
        """
        if self._closed:
            raise closed_error()
        try:
            connection = self._pool.get_connection()  # type: ignore[no-untyped-call]
        except (RedisError, OSError) as exc:
            raise self._error(exc, operation, sent=False, writes=writes) from exc
        try:
            try:
                connection.send_command(*args)
            except (RedisError, OSError) as exc:
                connection.disconnect()
                raise self._error(exc, operation, sent=False, writes=writes) from exc
            try:
                return connection.read_response()
            except NoScriptError:
                raise
            except ResponseError as exc:  # the server's answer: the connection is fine
                raise self._error(exc, operation, sent=False, writes=writes) from exc
            except (RedisError, OSError) as exc:
                connection.disconnect()
                sent = not isinstance(exc, BusyLoadingError)
                raise self._error(exc, operation, sent=sent, writes=writes) from exc
        finally:
            self._pool.release(connection)  # type: ignore[no-untyped-call]

    def _script(self, name: str, keys: list[bytes], args: list[Any], *, writes: bool) -> Any:
        text, sha = self._scripts[name]
        try:
            return self._execute(name, "EVALSHA", sha, len(keys), *keys, *args, writes=writes)
        except NoScriptError:  # a restarted server forgot it: EVAL sends it and caches it
            return self._execute(name, "EVAL", text, len(keys), *keys, *args, writes=writes)

    def _error(self, exc: BaseException, operation: str, *, sent: bool, writes: bool) -> StoreError:
        where = f"Redis {operation} on {self._where} failed"
        text = self._scrub(str(exc))
        if isinstance(exc, AuthenticationError | AuthorizationError):
            return StoreError(
                f"{where}: the server refused our credentials (check user name and password)",
                retryable=False,
            )
        if isinstance(exc, NoPermissionError):
            problem = f"the Redis user lacks a permission: {text}"
            return StoreError(f"{where}: {problem}", retryable=False)
        if isinstance(exc, BusyLoadingError | ReadOnlyError | OutOfMemoryError) or (
            isinstance(exc, ResponseError) and text.startswith(_RETRYABLE_REPLIES)
        ):
            return StoreError(f"{where}: the server cannot serve us now: {text}", retryable=True)
        if isinstance(exc, ResponseError):
            return StoreError(f"{where}: {text}", retryable=False)
        unknown = sent and writes
        if isinstance(exc, redis.exceptions.TimeoutError | TimeoutError):
            problem = f"no reply within {self._timeout:g} s"
        else:
            problem = f"connection failed ({text})"
        if unknown:
            problem += "; the write may or may not have happened"
        return StoreError(f"{where}: {problem}", retryable=True, unknown_outcome=unknown)

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text

    # Records.

    def _revision(self, key: str) -> int | None:
        """The revision stored at ``key`` (one small read, for a new subscription)."""
        revision = self._execute("read", "HGET", self._name(b"r:", key), "rev")
        return None if revision is None else int(revision)

    def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        key = check_key(key)
        value, revision = self._execute("read", "HMGET", self._name(b"r:", key), "v", "rev")
        if revision is None:
            return None
        return Versioned(bytes(value or b""), int(revision))

    def write(self, key: str, value: bytes, expected: int | None) -> int:
        """Write if the stored revision is ``expected`` (``None``: the key must be absent).

        One script compares, writes, bumps the revision and publishes. Returns the new
        revision; raises ``Conflict`` carrying what is stored now.
        """
        key = check_key(key)
        value = check_value(value)
        expected = check_expected(expected)
        keys = [self._name(b"r:", key), self._prefix + b"revision", self._name(b"h:", key)]
        args = [
            "" if expected is None else str(expected),
            value,
            self._history,
            self._channel(key),
        ]
        reply = self._script("write", keys, args, writes=True)
        if reply[0] == 1:
            return int(reply[1])
        raise Conflict(key, _versioned(reply[1:]))

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """``cas_update`` on the write script: with ``known``, one round trip uncontended."""
        return cas_update(self, key, transform, known)

    def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key``; True if it existed.

        With ``expected`` the key is removed only at that revision: another revision
        raises ``Conflict`` carrying what is stored. An absent key returns False. The
        key's history stays (it is the way back from a mistaken delete).
        """
        key = check_key(key)
        expected = check_expected(expected)
        args = ["" if expected is None else str(expected), self._channel(key)]
        reply = self._script("delete", [self._name(b"r:", key)], args, writes=True)
        if reply[0] == 2:
            raise Conflict(key, _versioned(reply[1:]))
        return bool(reply[0] == 1)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, gathered now by SCAN (never KEYS).

        SCAN walks the keyspace in small steps without blocking the server; a key
        written or deleted during the walk may or may not be listed.
        """
        prefix = check_prefix(prefix)
        head = self._prefix + b"r:"
        pattern = _glob_escape(head + prefix.encode()) + b"*"
        found: dict[str, None] = {}  # SCAN may return a key twice; keep the first
        cursor: bytes | int = 0
        while True:
            cursor, names = self._execute("keys", "SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            for name in names:
                found[bytes(name)[len(head) :].decode()] = None
            if int(cursor) == 0:
                return iter(list(found))

    def history(self, key: str) -> list[Versioned]:
        """The last ``history`` versions written to ``key``, newest first."""
        key = check_key(key)
        entries = self._execute("history", "LRANGE", self._name(b"h:", key), 0, -1)
        versions = []
        for entry in entries:
            revision, _, value = bytes(entry).partition(b":")
            versions.append(Versioned(value, int(revision)))
        return versions

    # Sessions.

    def put_session(self, session_id: str, ttl: float, info: bytes) -> None:
        """Write our session record, alive for ``ttl`` seconds of the server's clock."""
        session_id = check_session_id(session_id)
        ttl = check_ttl(ttl)
        info = check_value(info, "session info")
        keep_ms = max(1, math.ceil((ttl + max(ttl, _SESSION_GRACE)) * 1000))
        keys = [self._name(b"s:", session_id), self._prefix + b"session-version"]
        args = [max(1, math.ceil(ttl * 1_000_000)), repr(ttl), info, keep_ms]
        self._script("put_session", keys, args, writes=True)

    def get_session(self, session_id: str) -> SessionView:
        """What the server knows of a session; expired once its clock reached the expiry.

        An expired record stays readable (``exists``) for a while, then Redis removes
        it; an absent one reads as expired.
        """
        session_id = check_session_id(session_id)
        reply = self._script("get_session", [self._name(b"s:", session_id)], [], writes=False)
        if not reply:
            return SessionView(exists=False, expired=True, version=0, ttl=None)
        expired, version, ttl = reply
        return SessionView(exists=True, expired=expired == 1, version=int(version), ttl=float(ttl))

    def drop_session(self, session_id: str) -> None:
        """Remove a session record; absent is fine."""
        session_id = check_session_id(session_id)
        self._execute("drop_session", "DEL", self._name(b"s:", session_id), writes=True)

    # Notifications.

    def watch(self, wake: Wake) -> Watch:
        """A new watch: ``wake(key)`` soon after each write or delete of a watched key.

        It holds its own connection and thread until ``close()`` (or the store's).
        """
        if self._closed:
            raise closed_error()
        if not callable(wake):
            raise UsageError(f"wake must be callable, not {type(wake).__name__}")
        kwargs = self._connection_kwargs

        def connect() -> redis.Redis:
            return redis.Redis(connection_pool=redis.ConnectionPool(max_connections=1, **kwargs))

        made = RedisWatch(
            connect,
            self._channel,
            self._key_of_channel,
            wake,
            revision_of=self._revision,
            heartbeat=self._timeout,
            on_close=self._watches.discard,
        )
        self._watches.add(made)
        return made

    def close(self) -> None:
        """Close every watch and connection; later calls raise. Idempotent."""
        self._closed = True
        for made in list(self._watches):
            made.close()
        with suppress(RedisError, OSError):  # best effort; the server forgets us anyway
            self._pool.disconnect()


def _versioned(reply: list[Any]) -> Versioned | None:
    """What a script reported as stored: ``[value, revision]``, or ``[]`` when absent."""
    if len(reply) < 2:
        return None
    return Versioned(bytes(reply[0]), int(reply[1]))


def _glob_escape(text: bytes) -> bytes:
    """``text`` as a literal in a SCAN MATCH pattern."""
    for special in (b"\\", b"*", b"?", b"[", b"]"):
        text = text.replace(special, b"\\" + special)
    return text


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _whole(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{what} must be a whole number >= {minimum}, not {value!r}")
    return value
