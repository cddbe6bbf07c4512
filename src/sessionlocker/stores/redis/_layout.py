"""What the sync and the async Redis stores share: everything but the I/O.

``RedisLayout`` knows one store's key names and settings; from them it builds the
arguments of every command and script, reads every reply, and turns every redis-py
error into a ``StoreError``. ``RedisStore`` (``redis``) and ``AsyncRedisStore``
(``_async``) only send what it builds and hand it what came back, so the two can
never disagree on the layout, the scripts or what an error means. redis-py raises the
same exception classes from both of its clients.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    MovedError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from sessionlocker.core.protocol import LeaseView, Versioned
from sessionlocker.core.record import check_user_id
from sessionlocker.errors import Conflict, StoreError, UsageError
from sessionlocker.stores._checks import (
    check_count,
    check_expected,
    check_key,
    check_lease_id,
    check_prefix,
    check_seconds,
    check_ttl,
    check_value,
)
from sessionlocker.stores.base import Entry
from sessionlocker.stores.redis import _scripts

__all__ = ["SCRIPTS", "Call", "RedisLayout", "eval_", "evalsha", "packed"]

#: Server replies that mean "not now": the command was refused, so it did not run.
_RETRYABLE_REPLIES = ("BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "LOADING")

#: How long an expired lease record stays readable before Redis removes it.
_SESSION_GRACE = 60.0


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


#: Every script by name: its text and the SHA1 ``EVALSHA`` names it by.
SCRIPTS = {
    name: (text, _sha1(text))
    for name, text in (
        ("write", _scripts.WRITE),
        ("delete", _scripts.DELETE),
        ("put_lease", _scripts.PUT_LEASE),
        ("get_lease", _scripts.GET_LEASE),
        ("cluster_write", _scripts.CLUSTER_WRITE),
        ("cluster_delete", _scripts.CLUSTER_DELETE),
        ("cluster_put_lease", _scripts.CLUSTER_PUT_LEASE),
    )
}


def _untrusted_certificate(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a TLS handshake that refused the server's certificate.

    redis-py wraps the ``ssl`` error in its ``ConnectionError``, keeping it as the context
    and its words in the message.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; the bound only guards against a cycle
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


@dataclass(frozen=True, slots=True)
class Call:
    """One script to run: its name, ``KEYS`` and ``ARGV``."""

    script: str
    keys: list[bytes]
    args: list[Any]


def _c_packer() -> Callable[[tuple[Any, ...]], bytes] | None:
    """hiredis's command packer, when hiredis is installed (redis-py then parses
    replies with it too); ``None``: redis-py packs, in Python."""
    try:
        module = importlib.import_module("hiredis")
    except ImportError:
        return None
    packer: Callable[[tuple[Any, ...]], bytes] = module.pack_command
    return packer


_pack_command = _c_packer()


def packed(connection: Any, commands: list[tuple[Any, ...]]) -> list[bytes]:
    """``commands`` in the wire format, for ``send_packed_command`` on ``connection``:
    with hiredis installed, each packed by its C packer and the whole joined once
    (redis-py's own packing walks every argument in Python first); else redis-py's.
    The same bytes either way, for commands named in one word (all of ours)."""
    if _pack_command is None:
        return list(connection.pack_commands(commands))
    return [b"".join([_pack_command(command) for command in commands])]


def evalsha(call: Call) -> tuple[Any, ...]:
    """The ``EVALSHA`` command running ``call`` (its script cached on the server)."""
    _, sha = SCRIPTS[call.script]
    return ("EVALSHA", sha, len(call.keys), *call.keys, *call.args)


def eval_(call: Call) -> tuple[Any, ...]:
    """The ``EVAL`` command running ``call`` (sends the script, which the server caches)."""
    text, _ = SCRIPTS[call.script]
    return ("EVAL", text, len(call.keys), *call.keys, *call.args)


def _versioned(reply: list[Any]) -> Versioned | None:
    """What a script reported as stored: ``[value, revision]``, or ``[]`` when absent."""
    if len(reply) < 2:
        return None
    return Versioned(bytes(reply[0]), int(reply[1]))


def _seconds(microseconds: Any) -> float | None:
    """Epoch seconds from the scripts' ``TIME`` in microseconds (``None``: not kept)."""
    return None if microseconds is None else int(microseconds) / 1_000_000


def _glob_escape(text: bytes) -> bytes:
    """``text`` as a literal in a SCAN MATCH pattern."""
    for special in (b"\\", b"*", b"?", b"[", b"]"):
        text = text.replace(special, b"\\" + special)
    return text


class RedisLayout:
    """One store's names and settings, and every command built and reply read from them.

    Arguments are checked here, so both stores refuse the same bad input the same way.
    """

    def __init__(
        self, *, prefix: str, history: int, timeout: float, where: str, password: str | None
    ) -> None:
        self.prefix = check_prefix(prefix).encode()
        self.history = check_count(history, "history", 0)
        self.timeout = check_seconds(timeout, "timeout")
        if self.timeout <= 0:
            raise UsageError("timeout must be above zero")
        self.where = where
        self._password = password

    def connection_kwargs(
        self,
        *,
        host: str,
        port: int,
        db: int,
        username: str | None,
        retry: object,
        ssl_class: type | None,
        ca_certs: str | None,
    ) -> dict[str, Any]:
        """The connection settings of both clients (``retry`` and ``ssl_class`` are the
        client's own kinds): bounded timeouts, no retries (the driver retries, with backoff).
        """
        kwargs: dict[str, Any] = {
            "host": host,
            "port": check_count(port, "port", 1),
            "db": check_count(db, "db", 0),
            "username": username,
            "password": self._password,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": retry,
            "client_name": "sessionlocker",
        }
        if ssl_class is not None:
            # redis-py checks the host name by default only from 6.0 on: ask for it.
            kwargs.update(
                connection_class=ssl_class, ssl_ca_certs=ca_certs, ssl_check_hostname=True
            )
        return kwargs

    # Names.

    def name(self, kind: bytes, name: str) -> bytes:
        """The Redis key of ``name`` in the space ``kind`` (``r:``, ``h:``, ``s:``, ``n:``)."""
        return self.prefix + kind + name.encode()

    def channel(self, key: str) -> bytes:
        """The pub/sub channel every write of ``key`` publishes on."""
        return self.name(b"n:", key)

    def key_of_channel(self, channel: bytes) -> str | None:
        """The key a channel belongs to, or ``None`` for a channel of someone else."""
        head = self.prefix + b"n:"
        return channel[len(head) :].decode() if channel.startswith(head) else None

    # Records.

    def read_args(self, key: str) -> tuple[Any, ...]:
        """The command reading a record (reply: ``[value, revision]``)."""
        return ("HMGET", self.name(b"r:", check_key(key)), "v", "rev")

    @staticmethod
    def read_reply(reply: list[Any]) -> Versioned | None:
        """The record an ``HMGET`` of ``read_args`` found."""
        value, revision = reply
        return None if revision is None else Versioned(bytes(value or b""), int(revision))

    def read_version_args(self, key: str) -> tuple[Any, ...]:
        """The command reading a record with its write time (reply: value, revision, time)."""
        return (*self.read_args(key), "t")

    @staticmethod
    def read_version_reply(reply: list[Any]) -> Entry | None:
        """The record an ``HMGET`` of ``read_version_args`` found."""
        value, revision, at = reply
        if revision is None:
            return None
        return Entry(bytes(value or b""), int(revision), _seconds(at))

    def write_call(
        self, key: str, value: bytes, expected: int | None, *, notify: bool = True
    ) -> Call:
        """The write script: compare, write, bump, keep history, publish (unless not
        ``notify``: no channel is passed)."""
        name = check_key(key).encode()  # once for the four names (a save makes one call)
        value = check_value(value)
        expected = check_expected(expected)
        prefix = self.prefix
        keys = [prefix + b"r:" + name, prefix + b"revision", prefix + b"h:" + name]
        args = [
            "" if expected is None else str(expected),
            value,
            self.history,
            prefix + b"n:" + name if notify else b"",
            prefix + b"u:",
            key,
        ]
        return Call("write", keys, args)

    @staticmethod
    def write_reply(key: str, reply: list[Any]) -> int:
        """The new revision; ``Conflict`` carrying what is stored when it did not match."""
        if reply[0] == 1:
            return int(reply[1])
        raise Conflict(key, _versioned(reply[1:]))

    def read_outcomes(self, replies: list[Any | Exception]) -> list[Versioned | Exception | None]:
        """The records pipelined ``read_args`` found; a refused one as its error."""
        return [
            reply
            if isinstance(reply, StoreError)
            else self.reply_error(reply, "read", writes=False)
            if isinstance(reply, Exception)
            else self.read_reply(reply)
            for reply in replies
        ]

    def write_outcomes(
        self, keys: list[str], replies: list[Any | Exception]
    ) -> list[int | Exception]:
        """The revisions of pipelined write scripts, each ``Conflict`` or error as a value."""
        outcomes: list[int | Exception] = []
        for key, reply in zip(keys, replies, strict=True):
            if isinstance(reply, StoreError):
                outcomes.append(reply)
            elif isinstance(reply, Exception):
                outcomes.append(self.reply_error(reply, "write", writes=True))
            else:
                try:
                    outcomes.append(self.write_reply(key, reply))
                except Conflict as conflict:
                    outcomes.append(conflict)
        return outcomes

    def delete_call(self, key: str, expected: int | None) -> Call:
        """The delete script (``expected``: only at that revision)."""
        key = check_key(key)
        expected = check_expected(expected)
        args = [
            "" if expected is None else str(expected),
            self.channel(key),
            self.prefix + b"u:",
            key,
        ]
        return Call("delete", [self.name(b"r:", key)], args)

    @staticmethod
    def delete_reply(key: str, reply: list[Any]) -> bool:
        """True if it existed; ``Conflict`` when the revision did not match."""
        if reply[0] == 2:
            raise Conflict(key, _versioned(reply[1:]))
        return bool(reply[0] == 1)

    def scan_args(self, prefix: str, cursor: bytes | int) -> tuple[Any, ...]:
        """One ``SCAN`` step over the records whose key starts with ``prefix``."""
        head = self.prefix + b"r:"
        pattern = _glob_escape(head + check_prefix(prefix).encode()) + b"*"
        return ("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)

    def scan_keys(self, names: list[Any]) -> list[str]:
        """The store keys of the Redis names one ``SCAN`` step returned."""
        strip = len(self.prefix) + 2
        return [bytes(name)[strip:].decode() for name in names]

    def users_args(self, user_id: str) -> tuple[Any, ...]:
        """The command reading the keys of a user (the set the scripts keep)."""
        return ("SMEMBERS", self.name(b"u:", check_user_id(user_id)))

    @staticmethod
    def users_reply(members: list[Any], prefix: str) -> list[str]:
        """The keys of a ``users_args`` reply that start with ``prefix``, sorted."""
        prefix = check_prefix(prefix)
        return sorted(k for k in (bytes(m).decode() for m in members) if k.startswith(prefix))

    def history_args(self, key: str) -> tuple[Any, ...]:
        """The command reading a key's history, newest first."""
        return ("LRANGE", self.name(b"h:", check_key(key)), 0, -1)

    def forget_args(self, key: str) -> tuple[Any, ...]:
        """The command dropping a key's history (replies how many lists it removed)."""
        return ("DEL", self.name(b"h:", check_key(key)))

    @staticmethod
    def history_reply(entries: list[Any]) -> list[Entry]:
        """The versions of a history list (each ``revision,microseconds:value``, or
        ``revision:value`` when kept before write times were)."""
        versions = []
        for entry in entries:
            head, _, value = bytes(entry).partition(b":")
            revision, _, at = head.partition(b",")
            versions.append(Entry(value, int(revision), _seconds(at or None)))
        return versions

    # Sessions.

    def put_session_call(self, lease_id: str, ttl: float, info: bytes) -> Call:
        """The script writing a lease that expires by the server's clock."""
        lease_id = check_lease_id(lease_id)
        ttl = check_ttl(ttl)
        info = check_value(info, "session info")
        keep_ms = max(1, math.ceil((ttl + max(ttl, _SESSION_GRACE)) * 1000))
        keys = [self.name(b"s:", lease_id), self.prefix + b"session-version"]
        args = [max(1, math.ceil(ttl * 1_000_000)), repr(ttl), info, keep_ms]
        return Call("put_lease", keys, args)

    def get_session_call(self, lease_id: str) -> Call:
        """The script judging a lease by the server's clock."""
        return Call("get_lease", [self.name(b"s:", check_lease_id(lease_id))], [])

    @staticmethod
    def session_reply(reply: list[Any]) -> LeaseView:
        """The lease a ``get_lease`` script reported (``[]``: absent, so expired)."""
        if not reply:
            return LeaseView(exists=False, expired=True, version=0, ttl=None)
        expired, version, ttl = reply
        return LeaseView(exists=True, expired=expired == 1, version=int(version), ttl=float(ttl))

    def drop_session_args(self, lease_id: str) -> tuple[Any, ...]:
        """The command removing a lease record."""
        return ("DEL", self.name(b"s:", check_lease_id(lease_id)))

    # Errors.

    def error(self, exc: BaseException, operation: str, *, sent: bool, writes: bool) -> StoreError:
        """The ``StoreError`` for ``exc`` (``sent``: the command left in full)."""
        where = f"Redis {operation} on {self.where} failed"
        text = self.scrub(str(exc))
        if isinstance(exc, AuthenticationError | AuthorizationError):
            return StoreError(
                f"{where}: the server refused our credentials (check user name and password)",
                retryable=False,
            )
        if isinstance(exc, NoPermissionError):
            problem = f"the Redis user lacks a permission: {text}"
            return StoreError(f"{where}: {problem}", retryable=False)
        if isinstance(exc, MovedError | AskError):
            # Only on the cluster stores' own connection to a slot's primary (replicas=):
            # the slot is served elsewhere now, the command did not run.
            return StoreError(f"{where}: the slot moved, nothing ran: {text}", retryable=True)
        if isinstance(exc, ClusterDownError | TryAgainError | SlotNotCoveredError):
            # Refused (the cluster is failing over or migrating): nothing ran.
            return StoreError(f"{where}: the cluster cannot serve us now: {text}", retryable=True)
        if isinstance(exc, BusyLoadingError | ReadOnlyError | OutOfMemoryError) or (
            isinstance(exc, ResponseError) and text.startswith(_RETRYABLE_REPLIES)
        ):
            return StoreError(f"{where}: the server cannot serve us now: {text}", retryable=True)
        if isinstance(exc, ResponseError):
            return StoreError(f"{where}: {text}", retryable=False)
        if _untrusted_certificate(exc):
            # Nothing was sent (the handshake failed), and trying again cannot help.
            return StoreError(
                f"{where}: the server's TLS certificate is not trusted: {text} (check the "
                "CA file, option ca of rediss://, and the host name)",
                retryable=False,
            )
        unknown = sent and writes
        if isinstance(exc, ClusterError):  # redirected too often: it may have run once
            problem = f"the cluster kept redirecting the command ({text})"
        elif isinstance(exc, redis.exceptions.TimeoutError | TimeoutError):
            problem = f"no reply within {self.timeout:g} s"
        else:
            problem = f"connection failed ({text})"
        if unknown:
            problem += "; the write may or may not have happened"
        return StoreError(f"{where}: {problem}", retryable=True, unknown_outcome=unknown)

    def reply_error(self, exc: BaseException, operation: str, *, writes: bool) -> StoreError:
        """The error for a failure while reading a reply: a refusal (``ResponseError``,
        a loading server) did not run; anything else may have."""
        refused = ResponseError | BusyLoadingError | SlotNotCoveredError
        sent = not isinstance(exc, refused) or isinstance(exc, ClusterError)
        return self.error(exc, operation, sent=sent, writes=writes)

    def scrub(self, text: str) -> str:
        """``text`` with the password (if any) replaced by ``***``."""
        if self._password:
            text = text.replace(self._password, "***")
        return text
