"""What the fault tests share: a private server per backend for a module, each test on
a namespace of its own, short store timeouts, and the liveness bound they assert.

The bound (``MARGIN`` past a call's timeouts) is generous on purpose: it says a call
ends, not how fast; a busy two-core machine must still pass it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from conftest import skip_loudly, start
from servers import PostgresServer, RedisServer, ServerError
from sessionlocker.core.record import decode
from sessionlocker.stores import open_store

__all__ = [
    "BOUND",
    "MARGIN",
    "TIMEOUT",
    "ended_within",
    "private_server",
    "record_of",
    "store_url",
    "wait_for",
]

#: Every store timeout of these tests (the statement timeout, the connect timeout).
TIMEOUT = 1.0
#: Slack allowed past the timeouts for a loaded machine.
MARGIN = 5.0
#: The longest one store call may take here: its statement, a connection, the slack.
BOUND = 2 * TIMEOUT + 1.0 + MARGIN


def private_server(kind: str) -> RedisServer | PostgresServer:
    """A server of ``kind`` for this module alone (to stop and resume at will)."""
    try:
        return start(kind)
    except ServerError as exc:
        raise skip_loudly(kind, str(exc)) from None


def store_url(kind: str, base: str) -> str:
    """``base`` with a fresh namespace and the short timeouts."""
    if kind == "redis":
        return f"{base}?prefix=t{uuid.uuid4().hex[:10]}:&timeout={TIMEOUT}"
    schema = f"t{uuid.uuid4().hex[:10]}"
    return f"{base}?schema={schema}&timeout={TIMEOUT}&connect_timeout={TIMEOUT}"


def wait_for(done: Callable[[], bool], timeout: float = 60.0, step: float = 0.05) -> None:
    """Wait until ``done()`` (errors count as not yet); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if done():
                return
        except Exception:
            if time.monotonic() >= deadline:
                raise
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(step)


@contextmanager
def ended_within(limit: float) -> Iterator[None]:
    """Assert the block took at most ``limit`` seconds (a liveness bound, not speed)."""
    started = time.monotonic()
    yield
    took = time.monotonic() - started
    assert took <= limit, f"took {took:.2f} s, more than {limit:.2f} s"


def record_of(url: str, key: str) -> object:
    """The decoded record stored at ``key`` (a store key), read directly."""
    store = open_store(url)
    try:
        stored = store.read(key)
        assert stored is not None, key
        return decode(stored.value)
    finally:
        store.close()
