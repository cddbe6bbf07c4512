"""``ClusterWatch``: wake-ups from sharded pub/sub (``SSUBSCRIBE``, Redis >= 7).

The cluster scripts SPUBLISH on each key's channel, in the key's slot, so only the
slot's own node carries the message. A watch holds a redis-py cluster client and its
``ClusterPubSub`` (one connection per node that owns a watched channel), serviced by one
daemon thread, the only user of both. ``add`` and ``discard`` change the wanted set and
poke the thread.

Topology changes: about once a ``heartbeat`` (at most a second) the thread asks the
cluster who owns each watched channel; when an owner changed (a failover, a slot moved)
or a connection failed, it drops the pub/sub, subscribes to every wanted channel again
on the new owners and calls ``wake(key, revision)`` for each key once its subscription
is confirmed, since anything published meanwhile was missed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from sessionlocker.errors import SessionLockerError, UsageError
from sessionlocker.stores._checks import check_key
from sessionlocker.stores.base import Wake

__all__ = ["ClusterWatch"]

log = logging.getLogger("sessionlocker.stores.redis")

#: How long one wait for a message lasts (seconds): also how soon a new key is subscribed.
POLL = 0.02

_FAILURES = (RedisError, RedisClusterException, OSError)


class TopologyChanged(RedisError):
    """A watched channel has a new owner: subscribe again (never leaves the thread)."""


class ClusterWatch:
    """A ``Watch`` for ``RedisClusterStore``; the arguments are ``RedisWatch``'s, with
    ``connect`` making a new ``RedisCluster`` client."""

    def __init__(
        self,
        connect: Callable[[], RedisCluster],
        channel: Callable[[str], bytes],
        key_of: Callable[[bytes], str | None],
        wake: Wake,
        *,
        revision_of: Callable[[str], int | None],
        heartbeat: float,
        on_close: Callable[[ClusterWatch], None] | None = None,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._key_of = key_of
        self._wake = wake
        self._revision_of = revision_of
        self._check_every = min(heartbeat, 1.0)
        self._on_close = on_close
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._closed = threading.Event()
        self._poked = threading.Event()
        #: Times the thread subscribed again after a failure or a topology change.
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name="sessionlocker-cluster-watch")
        self._thread.daemon = True
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else f"keys={len(self._wanted)}"
        return f"<ClusterWatch {state}>"

    def add(self, key: str) -> None:
        """Wake for writes to ``key`` from the moment its subscription is confirmed."""
        key = check_key(key)
        with self._lock:
            if self._closed.is_set():
                raise UsageError("this watch is closed")
            self._wanted.add(key)
        self._poked.set()

    def discard(self, key: str) -> None:
        """Stop waking for ``key``; absent is fine."""
        with self._lock:
            self._wanted.discard(key)
        self._poked.set()

    def close(self) -> None:
        """Stop the thread and drop the connections. Idempotent; callable from ``wake``."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._wanted.clear()
        self._poked.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
        if self._on_close is not None:
            self._on_close(self)

    # The thread.

    def _run(self) -> None:
        failures = 0
        while not self._closed.is_set():
            try:
                self._serve()
            except _FAILURES as exc:
                failures = 1 if isinstance(exc, TopologyChanged) else failures + 1
                log.debug("cluster watch resubscribing (%s)", type(exc).__name__)
                self.reconnects += 1
                self._closed.wait(min(2.0, 0.05 * 2 ** min(failures, 6)))
                continue
            return

    def _serve(self) -> None:
        """Keep one client and pub/sub until it fails or the topology changes (raises)
        or the watch closes (returns)."""
        client = self._connect()
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]  # redis-py
        owners: dict[str, str] = {}  # key -> name of the node its subscription is on
        checked = time.monotonic()
        try:
            while not self._closed.is_set():
                with self._lock:
                    wanted = set(self._wanted)
                added = wanted - owners.keys()
                if added:
                    for key in added:
                        node = client.get_node_from_key(self._channel(key))  # type: ignore[no-untyped-call]
                        owners[key] = node.name
                    pubsub.ssubscribe(*(self._channel(key) for key in added))
                removed = owners.keys() - wanted
                if removed:
                    pubsub.sunsubscribe(*(self._channel(key) for key in removed))
                    for key in removed:
                        del owners[key]
                if not owners:
                    self._poked.wait(self._check_every)
                    self._poked.clear()
                    continue
                message = pubsub.get_sharded_message(timeout=POLL)
                if message is not None:
                    self._handle(message)
                if time.monotonic() - checked > self._check_every:
                    self._check_owners(client, owners)
                    checked = time.monotonic()
        finally:
            with contextlib.suppress(*_FAILURES):
                pubsub.close()
            with contextlib.suppress(*_FAILURES):
                client.close()

    def _check_owners(self, client: RedisCluster, owners: dict[str, str]) -> None:
        """Raise ``TopologyChanged`` when a watched channel's slot has a new owner."""
        client.nodes_manager.initialize()
        for key, name in owners.items():
            node = client.get_node_from_key(self._channel(key))  # type: ignore[no-untyped-call]
            if node.name != name:
                raise TopologyChanged(f"the slot of {key!r} moved from {name}")

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if not isinstance(channel, bytes):
            return
        key = self._key_of(channel)
        if key is None:
            return
        if kind == "ssubscribe":
            try:
                revision = self._revision_of(key)
            except SessionLockerError:  # the watcher then looks at the record itself
                revision = None
            self._call_wake(key, revision)
        elif kind == "smessage":
            data = message.get("data")
            revision = int(data) if isinstance(data, bytes) and data.isdigit() else None
            self._call_wake(key, revision)
        elif kind == "sunsubscribe":  # the server dropped it: its slot moved away
            with self._lock:
                still = key in self._wanted
            if still:
                raise TopologyChanged(f"the server unsubscribed {key!r}")

    def _call_wake(self, key: str, revision: int | None) -> None:
        with self._lock:
            if key not in self._wanted:
                return
        try:
            self._wake(key, revision)
        except Exception:  # a broken callback must not end the watch
            log.exception("key=%s the wake callback failed", key, extra={"key": key})
