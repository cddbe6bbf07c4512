"""``RedisStore``: records and leases in Redis, written by atomic Lua scripts.

Layout, under the store's key prefix ``P`` (default ``sessionlocker:``):

- ``P r:<key>``: a hash with the value ``v``, its revision ``rev`` and the server's time
  of the write ``t`` (microseconds since the epoch);
- ``P revision``: the counter revisions come from, so they only grow, across keys and
  across a delete and re-create;
- ``P h:<key>``: the last N versions of the key, newest first (``history=N``; off by
  default), each ``revision,time:value``, kept also after a delete;
- ``P s:<session>`` and ``P session-version``: leases and their version counter;
- ``P n:<key>``: the pub/sub channel every write and delete of the key publishes on;
- ``P u:<user id>``: the keys whose record lists that user id (``keys_for_user``), kept
  by the write and delete scripts, which also keep the record's user ids in field ``u``.

Every conditional write is one script (``_scripts``): compare the revision, write,
bump, record history, publish. Session expiry is judged by the server's clock (``TIME``
inside a script); Redis key expiry only cleans up a lease some time after it expired,
so no client clock is ever involved.

Errors of redis-py become ``StoreError`` here: connection failures, timeouts and a busy,
loading or read-only server are retryable; a write whose reply was lost has an unknown
outcome. Messages name the server by host, port and database, never by credentials.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any, TypeVar, Unpack

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from sessionlocker.core.protocol import LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.errors import StoreError, UsageError
from sessionlocker.stores._batch import CasBatch
from sessionlocker.stores._checks import check_count, closed_error
from sessionlocker.stores.base import Entry, Outcome, Wake, Watch, cas_update
from sessionlocker.stores.redis._layout import SCRIPTS, Call, eval_, evalsha, packed
from sessionlocker.stores.redis._replicas import Replication
from sessionlocker.stores.redis._sentinel import close_pool, make_pool
from sessionlocker.stores.redis._settings import RedisOptions, RedisSettings
from sessionlocker.stores.redis._watch import RedisWatch

__all__ = ["RedisStore", "settle_each"]

T = TypeVar("T")


def _reply(connection: Any) -> Any:
    """The next reply on ``connection``; an error reply as its exception, not raised."""
    try:
        return connection.read_response()
    except ResponseError as exc:
        return exc


def settle_each(
    replication: Replication,
    replies: list[Any],
    count: int,
    *,
    where: str,
    operation: str,
    writes: bool,
) -> list[Any]:
    """The replies of ``count`` pipelined commands, each once the replicas acknowledged
    the fence after them (one ``WAIT`` for all, ``replies``' tail), or its error."""
    tail = replies[count:]
    settled: list[Any] = []
    for reply in replies[:count]:
        try:
            settled.append(
                replication.settle([reply, *tail], where=where, operation=operation, writes=writes)
            )
        except (RedisError, OSError, StoreError) as exc:
            settled.append(exc)
    return settled


class RedisStore:
    """A ``Store`` (and ``Notifying``) on one Redis server.

    ``timeout`` bounds every socket connect and reply, so a call never hangs; ``pool``
    is the number of connections, to size like the driver's worker threads (callers
    beyond it wait up to ``timeout`` for a free one). ``history`` keeps that many
    versions per key (see ``history``). ``tls`` speaks TLS (``rediss://``), verifying
    the server against the system's CAs or the file ``ca_certs``. ``replicas=N``
    counts a record command only once N replicas acknowledged it within
    ``replica_timeout`` seconds (``_replicas``). With ``sentinels`` (``(host, port)``
    pairs) and ``service``, ``host`` and ``port`` are unused: the store talks to the
    primary those sentinels name for ``service``, following it across failovers
    (``_sentinel``).

    Redis Cluster is not supported: a script touches the key and the counter, which
    live in different slots. Nothing connects until the first call. What is not I/O
    (names, script arguments, replies, errors) is ``_layout.RedisLayout``, shared
    with ``AsyncRedisStore``.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 6379, **options: Unpack[RedisOptions]
    ) -> None:
        settings = RedisSettings(host=host, port=port, **options)
        self._layout = layout = settings.layout()
        self._connection_kwargs = settings.connection_kwargs(
            layout,
            retry=Retry(NoBackoff(), 0),  # we classify and the driver retries, with backoff
            ssl_class=redis.SSLConnection,
        )
        self._replication = settings.replication(layout)
        self._sentinels = (settings.sentinels, settings.service)
        # redis-py leaves the pool's methods unannotated, hence the ignores below.
        self._pool = make_pool(
            *self._sentinels,
            pool=check_count(settings.pool, "pool", 1),
            **self._connection_kwargs,
        )
        self._watches: set[RedisWatch] = set()
        self._closed = False

    def __repr__(self) -> str:
        layout = self._layout
        prefix = layout.prefix.decode()
        return f"RedisStore({layout.where!r}, prefix={prefix!r}, history={layout.history})"

    @property
    def prefix(self) -> str:
        """The prefix of every Redis key and channel this store uses."""
        return self._layout.prefix.decode()

    # Talking to the server.

    def _execute(
        self, operation: str, *args: Any, writes: bool = False, replicated: bool = False
    ) -> Any:
        """Send one command and read its reply, translating every failure.

        A failure before the command was sent in full has a known outcome (nothing ran);
        a lost reply to a ``writes`` command has an unknown one. ``replicated``: with
        ``replicas=N``, the reply counts once N replicas have it (``_replicas``): the
        fence and ``WAIT`` go on the same connection, in the same round trip.
        """
        if self._closed:
            raise closed_error()
        layout = self._layout
        commands = self._replication.commands(args) if replicated else [args]
        try:
            connection = self._pool.get_connection()
        except (RedisError, OSError) as exc:
            raise layout.error(exc, operation, sent=False, writes=writes) from exc
        try:
            try:
                connection.send_packed_command(connection.pack_commands(commands))
            except (RedisError, OSError) as exc:
                connection.disconnect()
                # Pipelined, the command may have left in full before the fence failed.
                sent = len(commands) > 1
                raise layout.error(exc, operation, sent=sent, writes=writes) from exc
            try:
                replies = [_reply(connection) for _ in commands]
            except (RedisError, OSError) as exc:
                connection.disconnect()
                raise layout.reply_error(exc, operation, writes=writes) from exc
        finally:
            self._pool.release(connection)
        try:
            return self._replication.settle(
                replies, where=layout.where, operation=operation, writes=writes
            )
        except NoScriptError:
            raise
        except (RedisError, OSError) as exc:  # an error reply: the command did not run
            raise layout.reply_error(exc, operation, writes=writes) from exc

    def _script(self, call: Call, *, writes: bool, replicated: bool = False) -> Any:
        text, sha = SCRIPTS[call.script]
        keys, args, name = call.keys, call.args, call.script
        how = {"writes": writes, "replicated": replicated}
        try:
            return self._execute(name, "EVALSHA", sha, len(keys), *keys, *args, **how)
        except NoScriptError:  # a restarted server forgot it: EVAL sends it and caches it
            return self._execute(name, "EVAL", text, len(keys), *keys, *args, **how)

    def _pipeline(
        self, operation: str, commands: list[tuple[Any, ...]], *, writes: bool
    ) -> list[Any]:
        """Send ``commands`` together on one connection and read every reply: one round
        trip. A refused command's reply is its ``ResponseError``; once the connection
        breaks, every reply not read yet is the ``StoreError`` of that (for ``writes``,
        with an unknown outcome). With ``replicas=N`` one fence and one ``WAIT`` follow
        the whole pipeline, and each reply counts only once they were acknowledged
        (``_replicas``). Raises only when no command was sent.
        """
        if self._closed:
            raise closed_error()
        if not commands:
            return []
        layout = self._layout
        sent = commands + self._replication.commands(commands[-1])[1:]  # fence, WAIT
        try:
            connection = self._pool.get_connection()
            connection.connect()
        except (RedisError, OSError) as exc:
            raise layout.error(exc, operation, sent=False, writes=writes) from exc
        replies: list[Any] = []
        try:
            try:
                connection.send_packed_command(packed(connection, sent))
                for _ in sent:
                    replies.append(_reply(connection))
            except (RedisError, OSError) as exc:  # part may have run: unknown for writes
                connection.disconnect()
                error = layout.error(exc, operation, sent=True, writes=writes)
                replies.extend([error] * (len(sent) - len(replies)))
        finally:
            self._pool.release(connection)
        return settle_each(
            self._replication,
            replies,
            len(commands),
            where=layout.where,
            operation=operation,
            writes=writes,
        )

    def _scripts(self, calls: list[Call], *, writes: bool) -> list[Any]:
        """``_script`` for many calls, pipelined (``EVAL`` again those the server forgot)."""
        replies = self._pipeline(calls[0].script, [evalsha(call) for call in calls], writes=writes)
        forgot = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if forgot:
            again = self._pipeline(
                calls[0].script, [eval_(calls[i]) for i in forgot], writes=writes
            )
            for i, reply in zip(forgot, again, strict=True):
                replies[i] = reply
        return replies

    # Records.

    def _revision(self, key: str) -> int | None:
        """The revision stored at ``key`` (one small read, for a new subscription)."""
        revision = self._execute("read", "HGET", self._layout.name(b"r:", key), "rev")
        return None if revision is None else int(revision)

    def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the server's time (``TIME``) of that write
        (``None`` for a record written before write times were kept)."""
        reply = self._execute("read", *self._layout.read_version_args(key), replicated=True)
        return self._layout.read_version_reply(reply)

    def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        reply = self._execute("read", *self._layout.read_args(key), replicated=True)
        return self._layout.read_reply(reply)

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """Write if the stored revision is ``expected`` (``None``: the key must be absent).

        One script compares, writes, bumps the revision and publishes (not when
        ``notify`` is False). Returns the new revision; raises ``Conflict`` carrying what
        is stored now.
        """
        call = self._layout.write_call(key, value, expected, notify=notify)
        return self._layout.write_reply(key, self._script(call, writes=True, replicated=True))

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """``cas_update`` on the write script: with ``known``, one round trip uncontended."""
        return cas_update(self, key, transform, known)

    def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """Every update as ``update`` runs it, pipelined (``Batching``): one pipeline
        of reads for those without ``known``, then one pipeline of write scripts per
        round (a conflicted update runs again in the next). Each keeps its own
        conditional write and its own reply; a broken connection fails the updates
        whose replies had not come (a write's outcome then unknown)."""
        batch = CasBatch(updates)
        layout = self._layout
        try:
            keys = batch.reads()
            replies = self._pipeline("read", [layout.read_args(k) for k in keys], writes=False)
            batch.read(layout.read_outcomes(replies))
            while not batch.done:
                writes = batch.writes()
                calls = [
                    layout.write_call(k, a.value, a.expected, notify=a.notify) for k, a in writes
                ]
                replies = self._scripts(calls, writes=True)
                batch.wrote(layout.write_outcomes([key for key, _ in writes], replies))
        except StoreError as exc:  # nothing of that round was sent
            batch.fail(exc)
        return batch.results()

    def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key``; True if it existed.

        With ``expected`` the key is removed only at that revision: another revision
        raises ``Conflict`` carrying what is stored. An absent key returns False. The
        key's history stays (it is the way back from a mistaken delete).
        """
        call = self._layout.delete_call(key, expected)
        return self._layout.delete_reply(key, self._script(call, writes=True, replicated=True))

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, gathered now by SCAN (never KEYS).

        SCAN walks the keyspace in small steps without blocking the server; a key
        written or deleted during the walk may or may not be listed.
        """
        found: dict[str, None] = {}  # SCAN may return a key twice; keep the first
        cursor: bytes | int = 0
        while True:
            cursor, names = self._execute("keys", *self._layout.scan_args(prefix, cursor))
            found.update(dict.fromkeys(self._layout.scan_keys(names)))
            if int(cursor) == 0:
                return iter(list(found))

    def keys_for_user(self, user_id: str, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix`` whose record lists ``user_id``, sorted.

        One SMEMBERS of the user's set, which the write and delete scripts keep in the
        same atomic step as the record.
        """
        members = self._execute("keys_for_user", *self._layout.users_args(user_id))
        return self._layout.users_reply(members, prefix)

    def history(self, key: str) -> list[Entry]:
        """The last ``history`` versions written to ``key``, newest first."""
        entries = self._execute("history", *self._layout.history_args(key))
        return self._layout.history_reply(entries)

    def forget(self, key: str) -> int:
        """Drop every history entry of ``key`` (an erasure); how many were dropped."""
        dropped = len(self.history(key))
        self._execute("forget", *self._layout.forget_args(key), writes=True, replicated=True)
        return dropped

    # Sessions.

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of the server's clock."""
        self._script(self._layout.put_session_call(lease_id, ttl, info), writes=True)

    def get_lease(self, lease_id: str) -> LeaseView:
        """What the server knows of a session; expired once its clock reached the expiry.

        An expired record stays readable (``exists``) for a while, then Redis removes
        it; an absent one reads as expired.
        """
        reply = self._script(self._layout.get_session_call(lease_id), writes=False)
        return self._layout.session_reply(reply)

    def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record; absent is fine."""
        self._execute("drop_lease", *self._layout.drop_session_args(lease_id), writes=True)

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

        sentinels = self._sentinels

        def connect() -> redis.Redis:
            return redis.Redis(connection_pool=make_pool(*sentinels, pool=1, **kwargs))

        made = RedisWatch(
            connect,
            self._layout.channel,
            self._layout.key_of_channel,
            wake,
            revision_of=self._revision,
            heartbeat=self._layout.timeout,
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
            close_pool(self._pool)
