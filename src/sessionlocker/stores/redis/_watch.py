"""``RedisWatch``: wake-ups from Redis pub/sub for a set of keys.

Every write script of ``RedisStore`` publishes on the key's own channel. A watch holds
one pub/sub connection, serviced by one daemon thread that is the only user of that
connection (redis-py's ``PubSub`` is not thread-safe): ``add`` and ``discard`` change
the wanted set and poke the thread through a socket pair, and the thread, which waits
on that pair and on the pub/sub socket together, brings the subscriptions in line at
once. A new subscription is sent as soon as the key is added, not at a next poll: a
waiter that starts watching just before the holder's release would otherwise hear of
it only that much later.

When the connection drops (server restart, ``CLIENT KILL``, a silent network that stops
answering pings) the thread connects again with backoff, subscribes to every wanted
channel, and calls ``wake(key)`` for each key once its subscription is confirmed, since
anything published meanwhile was missed.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import RedisError

from sessionlocker.errors import SessionLockerError, UsageError
from sessionlocker.stores._checks import check_key
from sessionlocker.stores.base import Wake

__all__ = ["RedisWatch"]

log = logging.getLogger("sessionlocker.stores.redis")

#: How long the thread may wait for the rest of a message it has begun to read (seconds).
READ_TIMEOUT = 0.025

#: The longest the thread sleeps with nothing to do: it looks at the heartbeat then.
IDLE = 1.0


class RedisWatch:
    """A ``Watch`` for ``RedisStore`` (see ``sessionlocker.stores.base.Notifying``).

    ``connect`` makes a new client for the pub/sub connection; ``channel`` names the
    channel of a key and ``key_of`` reads the key back from a channel. Subscribing takes
    a moment, so once a key's subscription is confirmed the watch reads its revision
    with ``revision_of`` and wakes with it: a write made before the subscription was
    heard is noticed that way (a watcher that has seen that revision ignores it). ``heartbeat`` is
    how long the connection may stay silent before a PING must prove it alive.
    """

    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        channel: Callable[[str], bytes],
        key_of: Callable[[bytes], str | None],
        wake: Wake,
        *,
        revision_of: Callable[[str], int | None],
        heartbeat: float,
        on_close: Callable[[RedisWatch], None] | None = None,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._key_of = key_of
        self._wake = wake
        self._revision_of = revision_of
        self._heartbeat = heartbeat
        self._on_close = on_close
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        #: Bumped at every change of ``_wanted``: the thread copies the set only then.
        self._changes = 0
        self._closed = threading.Event()
        self._poke_in, self._poke_out = socket.socketpair()
        self._poke_in.setblocking(False)
        self._poke_out.setblocking(False)
        #: Times the thread connected again after a failure and heard back; tests read it.
        self.reconnects = 0
        self._worked = False
        self._thread = threading.Thread(target=self._run, name="sessionlocker-redis-watch")
        self._thread.daemon = True
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else f"keys={len(self._wanted)}"
        return f"<RedisWatch {state}>"

    def add(self, key: str) -> None:
        """Wake for writes to ``key`` from the moment its subscription is confirmed."""
        key = check_key(key)
        with self._lock:
            if self._closed.is_set():
                raise UsageError("this watch is closed")
            new = key not in self._wanted
            if new:
                self._wanted.add(key)
                self._changes += 1
        if new:
            self._poke()

    def discard(self, key: str) -> None:
        """Stop waking for ``key``; absent is fine."""
        with self._lock:
            if key not in self._wanted:
                return
            self._wanted.discard(key)
            self._changes += 1
        self._poke()

    def close(self) -> None:
        """Stop the thread and drop the connection. Idempotent; callable from ``wake``."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._wanted.clear()
        self._poke()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
        if self._on_close is not None:
            self._on_close(self)

    def _poke(self) -> None:
        """Wake the thread now (from any thread) to look at the wanted set."""
        with contextlib.suppress(OSError):  # full (the thread wakes anyway), or closed
            self._poke_out.send(b"!")

    # The thread.

    def _run(self) -> None:
        failures = 0  # in a row: a connection that worked starts the backoff again
        try:
            while not self._closed.is_set():
                self._worked = False
                try:
                    self._serve(resubscribed=failures > 0)
                except (RedisError, OSError) as exc:
                    failures = 1 if self._worked else failures + 1
                    kind = type(exc).__name__
                    log.debug("redis watch connection lost (%s); reconnecting", kind)
                    self._closed.wait(min(2.0, 0.05 * 2 ** min(failures, 6)))
                    continue
                return
        finally:
            self._poke_in.close()
            self._poke_out.close()

    def _serve(self, *, resubscribed: bool) -> None:
        """Keep one connection until it fails (raises) or the watch closes (returns)."""
        pubsub = self._connect().pubsub()  # type: ignore[no-untyped-call]  # redis-py
        subscribed: set[str] = set()
        unconfirmed: set[str] = set()  # to wake with their revision once confirmed
        heard = time.monotonic()
        pinged: float | None = None
        seen = -1  # the ``_changes`` the subscriptions were last brought in line with
        try:
            while not self._closed.is_set():
                # A plain read: a change made just after it pokes, and is seen next turn.
                if self._changes != seen:
                    with self._lock:
                        wanted, seen = set(self._wanted), self._changes
                    added, dropped = wanted - subscribed, subscribed - wanted
                    if added:
                        pubsub.subscribe(*(self._channel(key) for key in added))
                        unconfirmed |= added
                        subscribed |= added
                    if dropped:
                        pubsub.unsubscribe(*(self._channel(key) for key in dropped))
                        subscribed -= dropped
                connection = pubsub.connection
                if connection is not None and connection.can_read(timeout=0):
                    # Something has arrived (maybe only part of a message: allow the rest).
                    message = pubsub.get_message(timeout=READ_TIMEOUT)
                    if message is not None:
                        heard, pinged = time.monotonic(), None
                        self._worked = True
                        if resubscribed:  # the new connection works: count it once
                            self.reconnects += 1
                            resubscribed = False
                        self._handle(message, unconfirmed)
                        continue
                now = time.monotonic()
                due = now + IDLE
                if subscribed:
                    if pinged is None and now - heard > self._heartbeat:
                        pubsub.ping()
                        pinged = now
                    elif pinged is not None and now - pinged > self._heartbeat:
                        raise redis.exceptions.TimeoutError("no answer to PING")
                    due = min(due, (heard if pinged is None else pinged) + self._heartbeat)
                self._sleep(connection, max(0.0, due - now) + 0.001)
        finally:
            pubsub.close()

    def _sleep(self, connection: Any, seconds: float) -> None:
        """Wait until the pub/sub socket has data, a poke comes, or ``seconds`` pass."""
        # poll, not select: select cannot watch a descriptor above 1023.
        waiting = select.poll()
        waiting.register(self._poke_in, select.POLLIN)
        sock = getattr(connection, "_sock", None)  # redis-py's socket, once connected
        if sock is not None:
            waiting.register(sock, select.POLLIN)
        ready = waiting.poll(seconds * 1000)
        if any(fd == self._poke_in.fileno() for fd, _ in ready):
            with contextlib.suppress(OSError):  # drained (BlockingIOError)
                while self._poke_in.recv(4096):
                    pass

    def _handle(self, message: dict[str, Any], unconfirmed: set[str]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if not isinstance(channel, bytes):
            return
        key = self._key_of(channel)
        if key is None:
            return
        if kind == "subscribe" and key in unconfirmed:
            unconfirmed.discard(key)
            try:
                revision = self._revision_of(key)
            except SessionLockerError:  # the watcher then looks at the record itself
                revision = None
            self._call_wake(key, revision)
        elif kind == "message":
            data = message.get("data")
            revision = int(data) if isinstance(data, bytes) and data.isdigit() else None
            self._call_wake(key, revision)

    def _call_wake(self, key: str, revision: int | None) -> None:
        with self._lock:
            if key not in self._wanted:
                return
        try:
            self._wake(key, revision)
        except Exception:  # a broken callback must not end the watch
            log.exception("key=%s the wake callback failed", key, extra={"key": key})
