"""``AsyncRedisClusterStore``: the Redis Cluster store on ``redis.asyncio.cluster``.

The same layout, scripts, replies and error translation as ``RedisClusterStore``;
notifications come from the ``ClusterWatch`` of a sync twin (it connects only when a
watch is made), as ``AsyncRedisStore`` does on one node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from typing import Any, TypeVar, Unpack

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, MovedError, NoScriptError, SlotNotCoveredError

from sessionlocker.core.protocol import LeaseView, Transform, Updated, Versioned
from sessionlocker.errors import StoreError
from sessionlocker.stores._checks import check_count, check_prefix, closed_error
from sessionlocker.stores.base import Entry, Wake, Watch, async_cas_update
from sessionlocker.stores.redis._async import _reply
from sessionlocker.stores.redis._cluster import (
    FAILURES,
    RedisClusterStore,
    cluster_kwargs,
    cluster_layout,
    cluster_replication,
    failed_last,
)
from sessionlocker.stores.redis._layout import SCRIPTS, Call
from sessionlocker.stores.redis._settings import RedisOptions

__all__ = ["AsyncRedisClusterStore"]

T = TypeVar("T")


def _release(node: ClusterNode, connection: Any) -> None:
    """Give ``connection`` back to ``node``'s free list (redis-py 5.3 has no
    ``ClusterNode.release``; later ones also drop a connection due to reconnect)."""
    release = getattr(node, "release", None)
    if release is not None:
        release(connection)
    else:
        node._free.append(connection)


class AsyncRedisClusterStore:
    """An ``AsyncStore`` (and ``Notifying``) on a Redis Cluster; the arguments are
    ``RedisClusterStore``'s. Use it from one event loop. Nothing connects until the
    first call."""

    def __init__(self, nodes: Sequence[tuple[str, int]], **options: Unpack[RedisOptions]) -> None:
        self._nodes = [(str(host), check_count(port, "port", 1)) for host, port in nodes]
        self._layout = layout = cluster_layout(self._nodes, options)
        self._replication = cluster_replication(layout, options)
        pool = check_count(options.get("pool", 8), "pool", 1)
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self._nodes],
            retry=Retry(NoBackoff(), 0),  # we classify and the driver retries, with backoff
            max_connections=max(pool, 32),
            **cluster_kwargs(layout, options),
        )
        watcher_options: RedisOptions = {**options, "pool": 1}
        self._watcher = RedisClusterStore(self._nodes, **watcher_options)
        self._closed = False

    def __repr__(self) -> str:
        layout = self._layout
        prefix = layout.prefix.decode()
        return (
            f"AsyncRedisClusterStore({layout.where!r}, prefix={prefix!r}, history={layout.history})"
        )

    @property
    def prefix(self) -> str:
        """The prefix of every Redis key and channel this store uses."""
        return self._layout.prefix.decode()

    async def _execute(self, operation: str, *args: Any, writes: bool = False) -> Any:
        if self._closed:
            raise closed_error()
        try:
            return await self._client.execute_command(*args)
        except NoScriptError:
            raise
        except FAILURES as exc:
            raise self._layout.reply_error(exc, operation, writes=writes) from exc

    async def _replicated(self, operation: str, key: str, *args: Any, writes: bool = False) -> Any:
        """A command on record ``key`` (see ``RedisClusterStore._replicated``)."""
        if not self._replication.on:
            return await self._execute(operation, *args, writes=writes)
        try:
            return await self._on_primary(operation, key, args, writes=writes)
        except (MovedError, AskError):
            await self._refresh()
        return await self._on_primary(operation, key, args, writes=writes, last=True)

    async def _refresh(self, failed: str | None = None) -> None:
        """Ask the cluster for its slot map again (``RedisClusterStore._refresh``)."""
        with suppress(*FAILURES):
            initialize = self._client.nodes_manager.initialize
            await initialize(**failed_last(initialize, failed))

    async def _on_primary(
        self, operation: str, key: str, args: tuple[Any, ...], *, writes: bool, last: bool = False
    ) -> Any:
        """``args``, the fence and ``WAIT`` on one connection to the primary of ``key``'s
        slot (see ``RedisClusterStore._on_primary``)."""
        if self._closed:
            raise closed_error()
        layout = self._layout
        commands = self._replication.commands(args, fence=layout.fence_args(key))
        try:
            await self._client.initialize()
            node = self._client.get_node_from_key(layout.name(b"r:", key).decode())
            if node is None:  # only a replica may be missing; typed Optional anyway
                raise SlotNotCoveredError(f"no primary for {key!r}")
            connection = node.acquire_connection()
        except FAILURES as exc:
            await self._refresh()  # the primary may be gone: the next call asks the cluster
            raise layout.error(exc, operation, sent=False, writes=writes) from exc
        try:
            try:
                await connection.send_packed_command(connection.pack_commands(commands))
            except FAILURES as exc:
                await connection.disconnect()  # the command may have left in full
                await self._refresh(node.name)
                raise layout.error(exc, operation, sent=True, writes=writes) from exc
            try:
                replies = [await _reply(connection) for _ in commands]
            except FAILURES as exc:
                await connection.disconnect()
                await self._refresh(node.name)
                raise layout.reply_error(exc, operation, writes=writes) from exc
        finally:
            _release(node, connection)
        try:
            return self._replication.settle(
                replies, where=layout.where, operation=operation, writes=writes
            )
        except (MovedError, AskError) as exc:
            if not last:
                raise
            raise layout.reply_error(exc, operation, writes=writes) from exc
        except NoScriptError:
            raise
        except FAILURES as exc:  # an error reply: the command did not run
            raise layout.reply_error(exc, operation, writes=writes) from exc

    async def _script(self, call: Call, *, writes: bool, key: str | None = None) -> Any:
        """Run ``call``; with ``key``, as a command on that record (``_replicated``)."""
        text, sha = SCRIPTS[call.script]
        keys, args, name = call.keys, call.args, call.script

        async def run(*command: Any) -> Any:
            if key is None:
                return await self._execute(name, *command, writes=writes)
            return await self._replicated(name, key, *command, writes=writes)

        try:
            return await run("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:  # a new or restarted node lacks it: EVAL sends and caches it
            return await run("EVAL", text, len(keys), *keys, *args)

    # Records.

    async def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the server's time (``TIME``) of that write."""
        reply = await self._replicated("read", key, *self._layout.read_version_args(key))
        return self._layout.read_version_reply(reply)

    async def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        reply = await self._replicated("read", key, *self._layout.read_args(key))
        return self._layout.read_reply(reply)

    async def write(
        self, key: str, value: bytes, expected: int | None, *, notify: bool = True
    ) -> int:
        """Write if the stored revision is ``expected`` (see ``RedisClusterStore.write``)."""
        call = self._layout.write_call(key, value, expected, notify=notify)
        index = self._layout.index_commands(key, value)
        for command in index:  # a failure here: the record was not touched
            await self._execute("write", *command)
        revision = self._layout.write_reply(key, await self._script(call, writes=True, key=key))
        for command in index:  # committed: a failure here must not fail the write
            with suppress(StoreError):
                await self._execute("write", *command)
        return revision

    async def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """``async_cas_update`` on the write script: with ``known``, one round trip."""
        return await async_cas_update(self, key, transform, known)

    async def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key`` (only at revision ``expected`` when given); True if it existed."""
        call = self._layout.delete_call(key, expected)
        return self._layout.delete_reply(key, await self._script(call, writes=True, key=key))

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key starting with ``prefix``, gathered by SCAN on every primary."""
        if self._closed:
            raise closed_error()
        match = self._layout.scan_match(prefix)
        try:
            names = [name async for name in self._client.scan_iter(match=match, count=1000)]
        except FAILURES as exc:
            raise self._layout.reply_error(exc, "keys", writes=False) from exc
        for key in dict.fromkeys(self._layout.scan_keys(names)):
            yield key

    async def keys_for_user(self, user_id: str, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix`` whose record lists ``user_id``, sorted
        (see ``RedisClusterStore.keys_for_user``)."""
        layout = self._layout
        user_set = layout.user_set(user_id)
        members = await self._execute("keys_for_user", "SMEMBERS", user_set)
        found = []
        for key in layout.users_reply(members, ""):
            listed = await self._execute("keys_for_user", *layout.listed_args(key))
            if layout.lists(listed, user_id):
                found.append(key)
                continue
            await self._execute("keys_for_user", "SREM", user_set, key, writes=True)
            listed = await self._execute("keys_for_user", *layout.listed_args(key))
            if layout.lists(listed, user_id):
                await self._execute("keys_for_user", "SADD", user_set, key, writes=True)
                found.append(key)
        prefix = check_prefix(prefix)
        return sorted(key for key in found if key.startswith(prefix))

    async def history(self, key: str) -> list[Entry]:
        """The last ``history`` versions written to ``key``, newest first."""
        entries = await self._execute("history", *self._layout.history_args(key))
        return self._layout.history_reply(entries)

    # Leases.

    async def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of its node's clock."""
        await self._script(self._layout.put_session_call(lease_id, ttl, info), writes=True)

    async def get_lease(self, lease_id: str) -> LeaseView:
        """What the cluster knows of a lease, judged by its node's clock."""
        reply = await self._script(self._layout.get_session_call(lease_id), writes=False)
        return self._layout.session_reply(reply)

    async def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record; absent is fine."""
        args = self._layout.drop_session_args(lease_id)
        await self._execute("drop_lease", *args, writes=True)

    # Notifications.

    def watch(self, wake: Wake) -> Watch:
        """A new watch (``RedisClusterStore.watch``): its own client and thread."""
        if self._closed:
            raise closed_error()
        return self._watcher.watch(wake)

    async def aclose(self) -> None:
        """Close every watch and connection; later calls raise. Idempotent."""
        self._closed = True
        await asyncio.to_thread(self._watcher.close)
        with suppress(*FAILURES):
            await self._client.aclose()
