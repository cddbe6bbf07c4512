"""``AsyncRedisStore``: the Redis store on ``redis.asyncio``, for the event loop.

The same layout, Lua scripts, replies and error translation as ``RedisStore``: both
build every call with ``_layout.RedisLayout`` and differ only in how the bytes
travel (awaited here). So a sync and an async store on the same server and prefix see
the same records, revisions and sessions, and wake each other.

Notifications use the sync ``RedisWatch`` of a sync ``RedisStore`` twin on the same
server (it connects only when a watch is made): a pub/sub connection serviced by one
thread, whose ``wake`` may come from that thread, as ``Notifying`` allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from typing import Any, TypeVar, Unpack

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from sessionlocker.core.protocol import LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.errors import StoreError
from sessionlocker.stores._batch import CasBatch
from sessionlocker.stores._checks import check_count, closed_error
from sessionlocker.stores.base import Entry, Outcome, Wake, Watch, async_cas_update
from sessionlocker.stores.redis._layout import SCRIPTS, Call, eval_, evalsha, packed
from sessionlocker.stores.redis._sentinel import close_async_pool, make_async_pool
from sessionlocker.stores.redis._settings import RedisOptions, RedisSettings
from sessionlocker.stores.redis._store import RedisStore, settle_each

__all__ = ["AsyncRedisStore"]

T = TypeVar("T")


async def _reply(connection: Any) -> Any:
    """The next reply on ``connection``; an error reply as its exception, not raised."""
    try:
        return await connection.read_response()
    except ResponseError as exc:
        return exc


class AsyncRedisStore:
    """An ``AsyncStore`` (and ``Notifying``) on one Redis server; the arguments are
    ``RedisStore``'s. ``pool`` connections are shared by the tasks of one event loop;
    use the store from that loop only. Nothing connects until the first call.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 6379, **options: Unpack[RedisOptions]
    ) -> None:
        settings = RedisSettings(host=host, port=port, **options)
        self._layout = layout = settings.layout()
        kwargs = settings.connection_kwargs(
            layout,
            retry=Retry(NoBackoff(), 0),  # we classify and the driver retries, with backoff
            ssl_class=redis.asyncio.SSLConnection,
        )
        self._replication = settings.replication(layout)
        self._pool = make_async_pool(
            settings.sentinels,
            settings.service,
            pool=check_count(settings.pool, "pool", 1),
            **kwargs,
        )
        self._watcher = RedisStore(host, port, **settings.options(pool=1))
        self._closed = False

    def __repr__(self) -> str:
        layout = self._layout
        prefix = layout.prefix.decode()
        return f"AsyncRedisStore({layout.where!r}, prefix={prefix!r}, history={layout.history})"

    @property
    def prefix(self) -> str:
        """The prefix of every Redis key and channel this store uses."""
        return self._layout.prefix.decode()

    # Talking to the server.

    async def _execute(
        self, operation: str, *args: Any, writes: bool = False, replicated: bool = False
    ) -> Any:
        """Send one command and read its reply, translating every failure as
        ``RedisStore._execute`` does (a lost reply to a write: unknown outcome;
        ``replicated``: counted once ``replicas`` replicas have it)."""
        if self._closed:
            raise closed_error()
        layout = self._layout
        commands = self._replication.commands(args) if replicated else [args]
        try:
            connection = await self._pool.get_connection()
        except (RedisError, OSError) as exc:
            raise layout.error(exc, operation, sent=False, writes=writes) from exc
        try:
            try:
                await connection.send_packed_command(connection.pack_commands(commands))
            except (RedisError, OSError) as exc:
                await connection.disconnect()
                # Pipelined, the command may have left in full before the fence failed.
                sent = len(commands) > 1
                raise layout.error(exc, operation, sent=sent, writes=writes) from exc
            try:
                replies = [await _reply(connection) for _ in commands]
            except (RedisError, OSError) as exc:
                await connection.disconnect()
                raise layout.reply_error(exc, operation, writes=writes) from exc
        finally:
            await self._pool.release(connection)
        try:
            return self._replication.settle(
                replies, where=layout.where, operation=operation, writes=writes
            )
        except NoScriptError:
            raise
        except (RedisError, OSError) as exc:  # an error reply: the command did not run
            raise layout.reply_error(exc, operation, writes=writes) from exc

    async def _script(self, call: Call, *, writes: bool, replicated: bool = False) -> Any:
        text, sha = SCRIPTS[call.script]
        keys, args, name = call.keys, call.args, call.script
        how = {"writes": writes, "replicated": replicated}
        try:
            return await self._execute(name, "EVALSHA", sha, len(keys), *keys, *args, **how)
        except NoScriptError:  # a restarted server forgot it: EVAL sends it and caches it
            return await self._execute(name, "EVAL", text, len(keys), *keys, *args, **how)

    async def _pipeline(
        self, operation: str, commands: list[tuple[Any, ...]], *, writes: bool
    ) -> list[Any]:
        """``RedisStore._pipeline`` awaited: one round trip, a reply (or error) each."""
        if self._closed:
            raise closed_error()
        if not commands:
            return []
        layout = self._layout
        sent = commands + self._replication.commands(commands[-1])[1:]  # fence, WAIT
        try:
            connection = await self._pool.get_connection()
            await connection.connect()
        except (RedisError, OSError) as exc:
            raise layout.error(exc, operation, sent=False, writes=writes) from exc
        replies: list[Any] = []
        try:
            try:
                await connection.send_packed_command(packed(connection, sent))
                for _ in sent:
                    replies.append(await _reply(connection))
            except (RedisError, OSError) as exc:  # part may have run: unknown for writes
                await connection.disconnect()
                error = layout.error(exc, operation, sent=True, writes=writes)
                replies.extend([error] * (len(sent) - len(replies)))
        finally:
            await self._pool.release(connection)
        return settle_each(
            self._replication,
            replies,
            len(commands),
            where=layout.where,
            operation=operation,
            writes=writes,
        )

    async def _scripts(self, calls: list[Call], *, writes: bool) -> list[Any]:
        """``RedisStore._scripts`` awaited."""
        name = calls[0].script
        replies = await self._pipeline(name, [evalsha(call) for call in calls], writes=writes)
        forgot = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if forgot:
            again = await self._pipeline(name, [eval_(calls[i]) for i in forgot], writes=writes)
            for i, reply in zip(forgot, again, strict=True):
                replies[i] = reply
        return replies

    # Records.

    async def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the server's time (``TIME``) of that write."""
        reply = await self._execute("read", *self._layout.read_version_args(key), replicated=True)
        return self._layout.read_version_reply(reply)

    async def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        reply = await self._execute("read", *self._layout.read_args(key), replicated=True)
        return self._layout.read_reply(reply)

    async def write(
        self, key: str, value: bytes, expected: int | None, *, notify: bool = True
    ) -> int:
        """Write if the stored revision is ``expected``; ``Conflict`` carries what is stored."""
        call = self._layout.write_call(key, value, expected, notify=notify)
        return self._layout.write_reply(key, await self._script(call, writes=True, replicated=True))

    async def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """``async_cas_update`` on the write script: with ``known``, one round trip."""
        return await async_cas_update(self, key, transform, known)

    async def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """``RedisStore.update_many`` awaited: the same pipelines, the same results."""
        batch = CasBatch(updates)
        layout = self._layout
        try:
            keys = batch.reads()
            reads = [layout.read_args(key) for key in keys]
            batch.read(layout.read_outcomes(await self._pipeline("read", reads, writes=False)))
            while not batch.done:
                writes = batch.writes()
                calls = [
                    layout.write_call(k, a.value, a.expected, notify=a.notify) for k, a in writes
                ]
                replies = await self._scripts(calls, writes=True)
                batch.wrote(layout.write_outcomes([key for key, _ in writes], replies))
        except StoreError as exc:  # nothing of that round was sent
            batch.fail(exc)
        return batch.results()

    async def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key`` (only at revision ``expected`` when given); True if it existed."""
        call = self._layout.delete_call(key, expected)
        return self._layout.delete_reply(
            key, await self._script(call, writes=True, replicated=True)
        )

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key starting with ``prefix``, gathered by SCAN when iteration starts."""
        found: dict[str, None] = {}  # SCAN may return a key twice; keep the first
        cursor: bytes | int = 0
        while True:
            cursor, names = await self._execute("keys", *self._layout.scan_args(prefix, cursor))
            found.update(dict.fromkeys(self._layout.scan_keys(names)))
            if int(cursor) == 0:
                break
        for key in found:
            yield key

    async def history(self, key: str) -> list[Entry]:
        """The last ``history`` versions written to ``key``, newest first."""
        entries = await self._execute("history", *self._layout.history_args(key))
        return self._layout.history_reply(entries)

    # Sessions.

    async def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of the server's clock."""
        await self._script(self._layout.put_session_call(lease_id, ttl, info), writes=True)

    async def get_lease(self, lease_id: str) -> LeaseView:
        """What the server knows of a session; expired once its clock reached the expiry."""
        reply = await self._script(self._layout.get_session_call(lease_id), writes=False)
        return self._layout.session_reply(reply)

    async def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record; absent is fine."""
        args = self._layout.drop_session_args(lease_id)
        await self._execute("drop_lease", *args, writes=True)

    # Notifications.

    def watch(self, wake: Wake) -> Watch:
        """A new watch (``RedisStore.watch``): its own connection and thread."""
        if self._closed:
            raise closed_error()
        return self._watcher.watch(wake)

    async def aclose(self) -> None:
        """Close every watch and connection; later calls raise. Idempotent."""
        self._closed = True
        await asyncio.to_thread(self._watcher.close)  # joins watch threads
        with suppress(RedisError, OSError):  # best effort; the server forgets us anyway
            await close_async_pool(self._pool)
