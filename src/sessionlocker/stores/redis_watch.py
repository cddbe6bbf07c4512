"""``RedisWatch``: wake-ups from Redis pub/sub for a set of keys.

Every write script of ``RedisStore`` publishes on the key's own channel. A watch holds
one pub/sub connection, serviced by one daemon thread that is the only user of that
connection (redis-py's ``PubSub`` is not thread-safe): ``add`` and ``discard`` only
change the wanted set, and the thread brings the subscriptions in line within one
poll interval.

When the connection drops (server restart, ``CLIENT KILL``, a silent network that stops
answering pings) the thread connects again with backoff, subscribes to every wanted
channel, and calls ``wake(key)`` for each key once its subscription is confirmed, since
anything published meanwhile was missed.
"""

from __future__ import annotations

import logging
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

#: How often the thread looks at the wanted set while no message comes (seconds).
POLL = 0.025


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
        self._closed = threading.Event()
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
            self._wanted.add(key)

    def discard(self, key: str) -> None:
        """Stop waking for ``key``; absent is fine."""
        with self._lock:
            self._wanted.discard(key)

    def close(self) -> None:
        """Stop the thread and drop the connection. Idempotent; callable from ``wake``."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._wanted.clear()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
        if self._on_close is not None:
            self._on_close(self)

    # The thread.

    def _run(self) -> None:
        failures = 0  # in a row: a connection that worked starts the backoff again
        while not self._closed.is_set():
            self._worked = False
            try:
                self._serve(resubscribed=failures > 0)
            except (RedisError, OSError) as exc:
                failures = 1 if self._worked else failures + 1
                log.debug("redis watch connection lost (%s); reconnecting", type(exc).__name__)
                self._closed.wait(min(2.0, 0.05 * 2 ** min(failures, 6)))
                continue
            return

    def _serve(self, *, resubscribed: bool) -> None:
        """Keep one connection until it fails (raises) or the watch closes (returns)."""
        pubsub = self._connect().pubsub()  # type: ignore[no-untyped-call]  # redis-py
        subscribed: set[str] = set()
        unconfirmed: set[str] = set()  # to wake with their revision once confirmed
        heard = time.monotonic()
        pinged: float | None = None
        try:
            while not self._closed.is_set():
                with self._lock:
                    wanted = set(self._wanted)
                if wanted - subscribed:
                    added = wanted - subscribed
                    pubsub.subscribe(*(self._channel(key) for key in added))
                    unconfirmed |= added
                    subscribed |= added
                if subscribed - wanted:
                    pubsub.unsubscribe(*(self._channel(key) for key in subscribed - wanted))
                    subscribed &= wanted
                message = pubsub.get_message(timeout=POLL)
                now = time.monotonic()
                if message is not None:
                    heard, pinged = now, None
                    self._worked = True
                    if resubscribed:  # the new connection works: count it once
                        self.reconnects += 1
                        resubscribed = False
                    self._handle(message, unconfirmed)
                elif subscribed and now - heard > self._heartbeat:
                    if pinged is None:
                        pubsub.ping()
                        pinged = now
                    elif now - pinged > self._heartbeat:
                        raise redis.exceptions.TimeoutError("no answer to PING")
        finally:
            pubsub.close()

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
