"""A small world of servers on one store, for crash-point and interleaving tests.

A ``Server`` is one session (lease) with lockers, driven inline: each store request
runs at once on the real store, unless a crash point says otherwise. A crash point
``(n, "before")`` kills the server just before its n-th request reaches the store;
``(n, "after")`` lets that request commit and kills the server before it hears the
reply (the acknowledgement is lost). A killed server never runs again; recovery is a
new server that takes the records over with ``steal`` (the crashed process is gone).

The server offers what ``Purchaser`` and ``Trades`` need of a service (``get``,
``on_message``, ``run_until``), so the real purchase and trade code runs here.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessionlocker.core import transforms as tx
from sessionlocker.core.lease import Lease
from sessionlocker.core.locker import Locker
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.operations import Handler
from sessionlocker.core.protocol import Request, Update
from sessionlocker.core.record import Message, decode
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.core.storable import encode_data
from sessionlocker.drivers.executor import execute
from sessionlocker.errors import StoreError
from sessionlocker.purchases import Credit, Purchaser, Receipt
from sessionlocker.stores import MemoryStore, SQLiteStore, Store, open_store
from sessionlocker.trades import Trades

SPEC = Spec(
    "eo",
    lambda: {"coins": 0, "grants": [], "items": [], "notes": []},
    lease=5.0,
    autosave_period=1.0,
    force_timeout=1.0,
    poll_period=0.2,
)


#: Every backend the exactly-once suite runs on; server backends need their URL set
#: (the test command starts the servers and sets it).
BACKENDS = ["memory", "sqlite", "redis", "postgresql"]
_URLS = {"redis": "SESSIONLOCKER_REDIS_URL", "postgresql": "SESSIONLOCKER_POSTGRES_URL"}


def make_store(name: str, folder: Path) -> Store:
    """A fresh, empty store of backend ``name`` (a new prefix on a shared server)."""
    if name == "memory":
        return MemoryStore()
    if name == "sqlite":
        return SQLiteStore(folder / "store.db")
    url = os.environ.get(_URLS[name])
    if not url:
        pytest.skip(f"{name.upper()} BACKEND NOT TESTED: {_URLS[name]} is not set")
    joiner = "&" if "?" in url else "?"
    return open_store(f"{url}{joiner}prefix=eo{uuid.uuid4().hex[:10]}")


class Crash(Exception):
    """The server was killed at its crash point."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def grant(data: Any, receipt: Receipt) -> object:
    """The game's grant: 10 coins per coin pack; credit for a 'gems' product."""
    if receipt.product_id == "gems":
        return Credit(5)
    data["coins"] += 10
    data["grants"].append(receipt.purchase_id)
    return None


def take(data: Any, items: Any) -> bool:
    if not all(data["items"].count(item) >= items.count(item) for item in set(items)):
        return False
    for item in items:
        data["items"].remove(item)
    return True


def put(data: Any, items: Any) -> None:
    data["items"].extend(items)


def note(locker: Locker, message: Message) -> None:
    """A remote change: append the message body to the notes."""
    locker.data["notes"].append(message.body)


class Server:
    """One session on ``store``; requests run inline; ``crash_at`` kills it."""

    names = itertools.count(1)

    def __init__(self, store: Store, clock: Clock, crash_at: tuple[int, str] | None = None) -> None:
        self.store, self.clock = store, clock
        self.session = f"server-{next(self.names)}"
        self.lease = Lease(self.session, SPEC.lease, b"{}", clock=clock, wall=clock)
        self.lockers: dict[str, Locker] = {}
        self.handlers: dict[str, Handler] = {"note": note}
        self.crash_at = crash_at
        self.requests = 0
        self.dead = False
        self.purchaser = Purchaser(self, grant)
        self.trades = Trades(self, take, put)

    # -- what Purchaser and Trades use
    def get(self, key: str) -> Locker | None:
        return self.lockers.get(key)

    def on_message(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        for _ in range(200):
            if done():
                return True
            self.step()
            self.clock.now += 0.05
        return done()

    # -- driving
    def load(self, key: str, mode: LoadMode = LoadMode.STEAL) -> Locker:
        locker = Locker(key, SPEC, self.lease, handlers=self.handlers)
        self.lockers[key] = locker
        locker.acquire(mode)
        self.run_until(lambda: locker.status is not Status.LOADING)
        return locker

    def step(self) -> None:
        """Run lease and lockers until nothing more happens now; raises ``Crash``."""
        if self.dead:
            raise Crash(self.session)
        for _ in range(50):
            busy = False
            renewal = self.lease.update(self.clock.now)
            if renewal is not None:
                result = execute(self.store, renewal)
                self.lease.handle(result if isinstance(result, StoreError) else None, self.clock())
            for locker in list(self.lockers.values()):
                for request in locker.update(self.clock.now):
                    locker.handle(self._execute(request), self.clock.now)
                    busy = True
            if not busy:
                return

    def send(self, key: str, kind: str, body: Any, message_id: str) -> None:
        """``service.send``: a direct delivery to ``key``'s inbox (a store request)."""
        message = Message(message_id, kind, body, self.clock())
        transform = tx.deliver(
            message=message, fresh=SPEC.fresh(None), fresh_json=encode_data(SPEC.create())
        )
        self._execute(Update(key=SPEC.store_key(key), transform=transform))

    def _execute(self, request: Request) -> object:
        self.requests += 1
        point = self.crash_at
        if point is not None and point[0] == self.requests:
            self.dead = True
            if point[1] == "after":
                execute(self.store, request)
            raise Crash(self.session)
        return execute(self.store, request)


def settle(servers: list[Server], clock: Clock, seconds: float = 6.0) -> None:
    """Run the live servers until every save and delivery is done."""
    end = clock.now + seconds
    while clock.now < end:
        for server in servers:
            server.step()
        clock.now += 0.05


def stored(store: Store, key: str) -> Any:
    """The committed record at ``key`` (decoded), or None."""
    current = store.read(SPEC.store_key(key))
    return None if current is None else decode(current.value)
