"""``RedisClusterStore``: the Redis store on a Redis Cluster, through redis-py's
``redis.cluster.RedisCluster`` (it finds the slot owners, follows ``MOVED`` and ``ASK``
during a resharding, and learns the new primaries after a failover).

The key layout (``_cluster_layout``) puts everything one script touches in one slot;
the scripts are the cluster's (``_scripts.CLUSTER_*``): the same compare-write-bump as
on one node, with a revision counter per record instead of one per store, and SPUBLISH
instead of PUBLISH. The user index is kept outside the scripts (see ``_cluster_layout``).

redis-py is told never to send a command twice (``Retry(NoBackoff(), 0)``): a write
whose connection broke may or may not have run, so it is reported as an unknown
outcome, which the driver settles by reading the record again.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any, TypeVar, Unpack

from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError, MovedError, NoScriptError, RedisClusterException, RedisError
from redis.retry import Retry

from sessionlocker.core.protocol import LeaseView, Transform, Updated, Versioned
from sessionlocker.errors import StoreError, UsageError
from sessionlocker.stores._checks import check_count, check_prefix, closed_error
from sessionlocker.stores.base import Entry, Wake, Watch, cas_update
from sessionlocker.stores.redis._cluster_layout import ClusterLayout
from sessionlocker.stores.redis._cluster_watch import ClusterWatch
from sessionlocker.stores.redis._layout import SCRIPTS, Call
from sessionlocker.stores.redis._replicas import Replication
from sessionlocker.stores.redis._settings import RedisOptions
from sessionlocker.stores.redis._store import _reply

__all__ = [
    "RedisClusterStore",
    "cluster_kwargs",
    "cluster_layout",
    "cluster_replication",
    "failed_last",
]

T = TypeVar("T")

#: What redis-py may raise besides ``OSError``: ``SlotNotCoveredError`` is no ``RedisError``.
FAILURES = (RedisError, RedisClusterException, OSError)


def cluster_layout(nodes: Sequence[tuple[str, int]], options: RedisOptions) -> ClusterLayout:
    """The layout of a cluster store (``db`` must be 0: a cluster has only that one)."""
    if not nodes:
        raise UsageError("name at least one cluster node")
    if options.get("db", 0) != 0:
        raise UsageError("a Redis Cluster has only database 0")
    where = "cluster " + ",".join(f"{host}:{port}" for host, port in nodes)
    return ClusterLayout(
        prefix=options.get("prefix", "sessionlocker:"),
        history=options.get("history", 0),
        timeout=options.get("timeout", 5.0),
        where=where,
        password=options.get("password"),
    )


def failed_last(initialize: Any, failed: str | None) -> dict[str, Any]:
    """The argument of ``NodesManager.initialize`` naming the node to ask last, where
    redis-py has it (not in 5.3: there the nodes are asked in their usual order)."""
    if "last_failed_node_name" in inspect.signature(initialize).parameters:
        return {"last_failed_node_name": failed}
    return {}


def cluster_replication(layout: ClusterLayout, options: RedisOptions) -> Replication:
    """How many replicas of a slot's primary a record command waits for (checked)."""
    return Replication.checked(
        options.get("replicas", 0),
        options.get("replica_timeout", 1.0),
        fence=layout.prefix + b"fence",
        socket_timeout=layout.timeout,
    )


def cluster_kwargs(layout: ClusterLayout, options: RedisOptions) -> dict[str, Any]:
    """The arguments both cluster clients take (never retrying a command themselves)."""
    kwargs: dict[str, Any] = {
        "username": options.get("username"),
        "password": options.get("password"),
        "socket_timeout": layout.timeout,
        "socket_connect_timeout": layout.timeout,
        "client_name": "sessionlocker",
    }
    if options.get("tls", False):
        kwargs.update(ssl=True, ssl_ca_certs=options.get("ca_certs"), ssl_check_hostname=True)
    return kwargs


class RedisClusterStore:
    """A ``Store`` (and ``Notifying``) on a Redis Cluster.

    ``nodes`` are some of the cluster's nodes as ``(host, port)`` (the client learns the
    rest); the keyword arguments are ``RedisStore``'s (``db`` must be 0; ``pool`` bounds
    the connections of each node). ``replicas=N`` counts a record command only once N
    replicas of its slot's primary acknowledged it (``_replicated``). Nothing connects
    until the first call.
    """

    def __init__(self, nodes: Sequence[tuple[str, int]], **options: Unpack[RedisOptions]) -> None:
        self._nodes = [(str(host), check_count(port, "port", 1)) for host, port in nodes]
        self._layout = cluster_layout(self._nodes, options)
        self._replication = cluster_replication(self._layout, options)
        self._options = options
        self._pool = check_count(options.get("pool", 8), "pool", 1)
        self._client: RedisCluster | None = None
        self._connecting = threading.Lock()
        self._watches: set[ClusterWatch] = set()
        self._closed = False

    def __repr__(self) -> str:
        layout = self._layout
        prefix = layout.prefix.decode()
        return f"RedisClusterStore({layout.where!r}, prefix={prefix!r}, history={layout.history})"

    @property
    def prefix(self) -> str:
        """The prefix of every Redis key and channel this store uses."""
        return self._layout.prefix.decode()

    def connect(self) -> RedisCluster:
        """A new redis-py cluster client for this store's nodes (it connects lazily)."""
        return RedisCluster(
            startup_nodes=[
                ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in self._nodes
            ],
            retry=Retry(NoBackoff(), 0),  # we classify and the driver retries, with backoff
            max_connections=max(self._pool, 32),
            **cluster_kwargs(self._layout, self._options),
        )

    # Talking to the cluster.

    def _cluster(self) -> RedisCluster:
        """The store's client, made on first use (making it asks a node for the slots)."""
        with self._connecting:
            if self._client is None:
                self._client = self.connect()
            return self._client

    def _execute(self, operation: str, *args: Any, writes: bool = False) -> Any:
        """Send one command to the slot's primary and read its reply, translating every
        failure (a broken connection during a write: unknown outcome)."""
        if self._closed:
            raise closed_error()
        try:
            return self._cluster().execute_command(*args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            raise
        except FAILURES as exc:
            raise self._layout.reply_error(exc, operation, writes=writes) from exc

    def _replicated(self, operation: str, key: str, *args: Any, writes: bool = False) -> Any:
        """A command on record ``key``; with ``replicas=N`` counted once N replicas of
        the slot's primary have it: the command, the fence and ``WAIT`` (``_replicas``)
        in one round trip on one connection to that primary. A ``MOVED`` or ``ASK``
        reply (nothing ran) refreshes the slot map and tries once more; a failed
        connection refreshes it for the next call."""
        if not self._replication.on:
            return self._execute(operation, *args, writes=writes)
        try:
            return self._on_primary(operation, key, args, writes=writes)
        except (MovedError, AskError):
            self._refresh()
        return self._on_primary(operation, key, args, writes=writes, last=True)

    def _refresh(self, failed: str | None = None) -> None:
        """Ask the cluster for its slot map again (best effort), as redis-py does after a
        redirection or a failed connection; ``failed``: the node to ask last."""
        with suppress(*FAILURES):
            initialize = self._cluster().nodes_manager.initialize
            initialize(**failed_last(initialize, failed))

    def _on_primary(
        self, operation: str, key: str, args: tuple[Any, ...], *, writes: bool, last: bool = False
    ) -> Any:
        """``args``, the fence and ``WAIT`` on the primary of ``key``'s slot (a ``MOVED``
        or ``ASK`` reply raised as is unless ``last``)."""
        if self._closed:
            raise closed_error()
        layout = self._layout
        commands = self._replication.commands(args, fence=layout.fence_args(key))
        cluster = self._cluster()
        try:
            node = cluster.get_node_from_key(layout.name(b"r:", key))  # type: ignore[no-untyped-call]
            pool = cluster.get_redis_connection(node).connection_pool
            connection: Any = pool.get_connection()
        except FAILURES as exc:
            self._refresh()  # the primary may be gone: the next call asks the cluster
            raise layout.error(exc, operation, sent=False, writes=writes) from exc
        try:
            try:
                connection.send_packed_command(connection.pack_commands(commands))
            except FAILURES as exc:
                connection.disconnect()  # the command may have left in full
                self._refresh(node.name)
                raise layout.error(exc, operation, sent=True, writes=writes) from exc
            try:
                replies = [_reply(connection) for _ in commands]
            except FAILURES as exc:
                connection.disconnect()
                self._refresh(node.name)
                raise layout.reply_error(exc, operation, writes=writes) from exc
        finally:
            pool.release(connection)
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

    def _script(self, call: Call, *, writes: bool, key: str | None = None) -> Any:
        """Run ``call``; with ``key``, as a command on that record (``_replicated``)."""
        text, sha = SCRIPTS[call.script]
        keys, args, name = call.keys, call.args, call.script

        def run(*command: Any) -> Any:
            if key is None:
                return self._execute(name, *command, writes=writes)
            return self._replicated(name, key, *command, writes=writes)

        try:
            return run("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:  # a new or restarted node lacks it: EVAL sends and caches it
            return run("EVAL", text, len(keys), *keys, *args)

    # Records.

    def _revision(self, key: str) -> int | None:
        revision = self._execute("read", "HGET", self._layout.name(b"r:", key), "rev")
        return None if revision is None else int(revision)

    def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the server's time (``TIME``) of that write."""
        reply = self._replicated("read", key, *self._layout.read_version_args(key))
        return self._layout.read_version_reply(reply)

    def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        return self._layout.read_reply(self._replicated("read", key, *self._layout.read_args(key)))

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """Write if the stored revision is ``expected`` (``None``: the key must be absent).

        The user index is brought up to date before and after the script (idempotent);
        returns the new revision; raises ``Conflict`` carrying what is stored now.
        """
        call = self._layout.write_call(key, value, expected, notify=notify)
        index = self._layout.index_commands(key, value)
        for command in index:  # a failure here: the record was not touched
            self._execute("write", *command)
        revision = self._layout.write_reply(key, self._script(call, writes=True, key=key))
        # The write committed: the second, idempotent SADD only narrows a race with
        # keys_for_user, so its failure must not report the write as failed.
        for command in index:
            with suppress(StoreError):
                self._execute("write", *command)
        return revision

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """``cas_update`` on the write script: with ``known``, one round trip uncontended."""
        return cas_update(self, key, transform, known)

    def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key`` (only at revision ``expected`` when given); True if it existed.
        Its revision counter and history stay."""
        call = self._layout.delete_call(key, expected)
        return self._layout.delete_reply(key, self._script(call, writes=True, key=key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, gathered now by SCAN on every primary."""
        if self._closed:
            raise closed_error()
        match = self._layout.scan_match(prefix)
        try:
            names = list(self._cluster().scan_iter(match=match, count=1000))
        except FAILURES as exc:
            raise self._layout.reply_error(exc, "keys", writes=False) from exc
        return iter(list(dict.fromkeys(self._layout.scan_keys(names))))

    def keys_for_user(self, user_id: str, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix`` whose record lists ``user_id``, sorted.

        The user's set may name records that no longer list the user: each is checked,
        and removed from the set (then checked again, and put back if a write listed
        the user meanwhile).
        """
        layout = self._layout
        members = self._execute("keys_for_user", "SMEMBERS", layout.user_set(user_id))
        found = []
        for key in layout.users_reply(members, ""):
            if layout.lists(self._execute("keys_for_user", *layout.listed_args(key)), user_id):
                found.append(key)
                continue
            self._execute("keys_for_user", "SREM", layout.user_set(user_id), key, writes=True)
            if layout.lists(self._execute("keys_for_user", *layout.listed_args(key)), user_id):
                self._execute("keys_for_user", "SADD", layout.user_set(user_id), key, writes=True)
                found.append(key)
        prefix = check_prefix(prefix)
        return sorted(key for key in found if key.startswith(prefix))

    def history(self, key: str) -> list[Entry]:
        """The last ``history`` versions written to ``key``, newest first."""
        entries = self._execute("history", *self._layout.history_args(key))
        return self._layout.history_reply(entries)

    def forget(self, key: str) -> int:
        """Drop every history entry of ``key`` (an erasure); how many were dropped."""
        dropped = len(self.history(key))
        self._replicated("forget", key, *self._layout.forget_args(key), writes=True)
        return dropped

    # Leases.

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of its node's clock."""
        self._script(self._layout.put_session_call(lease_id, ttl, info), writes=True)

    def get_lease(self, lease_id: str) -> LeaseView:
        """What the cluster knows of a lease, judged by its node's clock."""
        reply = self._script(self._layout.get_session_call(lease_id), writes=False)
        return self._layout.session_reply(reply)

    def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record; absent is fine."""
        self._execute("drop_lease", *self._layout.drop_session_args(lease_id), writes=True)

    # Notifications.

    def watch(self, wake: Wake) -> Watch:
        """A new watch over sharded pub/sub: its own client and thread until ``close()``."""
        if self._closed:
            raise closed_error()
        if not callable(wake):
            raise UsageError(f"wake must be callable, not {type(wake).__name__}")
        made = ClusterWatch(
            self.connect,
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
        if self._client is not None:
            with suppress(*FAILURES):  # best effort; the servers forget us anyway
                self._client.close()
