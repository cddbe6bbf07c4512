"""A small world of servers on one store, for crash-point and interleaving tests.

A server is one session (lease) with lockers on a shared manual ``Clock``, run by one
of two drivers (``DRIVERS``, chosen by the clock):

- ``inline``: the lease and lockers are stepped here, each store request runs at once;
- ``asyncio``: a real ``AsyncLockerService`` (its frame task, deadline heap, waiters and
  notifications) on the server's own event loop, whose store calls are held until the
  server runs them, so that they can be counted and crashed the same way.

A crash point ``(n, "before")`` kills the server just before its n-th store request
reaches the store; ``(n, "after")`` lets that request commit and kills the server before
it hears the reply (the acknowledgement is lost). A killed server never runs again;
recovery is a new server that takes the records over with ``steal`` (the crashed
process is gone). A server does nothing between calls of ``step``.

Each server offers what ``Purchaser`` and ``Trades`` need of a service (``get``,
``on_message``, ``run_until``), so the real purchase and trade code runs on both.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from sessionlocker.core import transforms as tx
from sessionlocker.core.lease import Lease
from sessionlocker.core.locker import Handler, Locker
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.protocol import Request, Update, Updated
from sessionlocker.core.record import Message, decode
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.core.storable import encode_data
from sessionlocker.drivers.aio import AsyncLockerService
from sessionlocker.drivers.executor import execute
from sessionlocker.drivers.mailbox import Collect, Mail, Tell, addressee
from sessionlocker.errors import StoreError
from sessionlocker.purchases import Credit, Purchaser, Receipt
from sessionlocker.stores import Store
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
#: The drivers a world's servers may run on.
DRIVERS = ["inline", "asyncio"]


class Crash(Exception):
    """The server was killed at its crash point."""


class Clock:
    """A world's shared manual time, and the driver its servers run on."""

    def __init__(self, driver: str = "inline") -> None:
        if driver not in DRIVERS:
            raise ValueError(f"unknown driver {driver!r}")
        self.now = 1000.0
        self.driver = driver
        self.servers: list[BaseServer] = []

    def __call__(self) -> float:
        return self.now

    def close(self) -> None:
        """Stop every server of this world: event loops, watches, and (for the asyncio
        driver) the session record, which a dead process would leave to expire."""
        for server in self.servers:
            server.close()
        self.servers.clear()


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


def Server(  # it stands in for the class the tests construct
    store: Store, clock: Clock, crash_at: tuple[int, str] | None = None
) -> BaseServer:
    """A new server on ``store``, run by ``clock``'s driver; ``crash_at`` kills it."""
    made: BaseServer = (
        AsyncServer(store, clock, crash_at)
        if clock.driver == "asyncio"
        else InlineServer(store, clock, crash_at)
    )
    clock.servers.append(made)
    return made


class BaseServer:
    """What both drivers share: crash points, ``load``, ``run_until``, purchases, trades."""

    names = itertools.count(1)

    def __init__(self, store: Store, clock: Clock, crash_at: tuple[int, str] | None) -> None:
        self.store, self.clock = store, clock
        self.session = f"server-{next(self.names)}"
        self.lockers: dict[str, Locker] = {}
        self.crash_at = crash_at
        self.requests = 0
        self.dead = False

    def _start(self) -> None:
        """Called by subclasses once they can take ``on_message``."""
        self.on_message("note", note)
        self.purchaser = Purchaser(self, grant)
        self.trades = Trades(self, take, put)

    # -- what Purchaser and Trades use
    def get(self, key: str) -> Locker | None:
        return self.lockers.get(key)

    def on_message(self, kind: str, handler: Handler) -> None:
        raise NotImplementedError

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        for _ in range(200):
            if done():
                return True
            self.step()
            self.clock.now += 0.05
        return done()

    # -- driving
    def locker(self, key: str) -> Locker:
        """A new locker for ``key`` on this server (not acquired yet)."""
        raise NotImplementedError

    def load(self, key: str, mode: LoadMode = LoadMode.STEAL) -> Locker:
        locker = self.locker(key)
        locker.acquire(mode)
        self.run_until(lambda: locker.status is not Status.LOADING)
        return locker

    def step(self) -> None:
        """Run the server until nothing more happens now; raises ``Crash``."""
        raise NotImplementedError

    def send(self, key: str, kind: str, body: Any, message_id: str) -> None:
        """``service.send``: a direct delivery to ``key``'s inbox (a store request)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop without writing anything (the test has finished checking the store)."""

    def _execute(self, call: Callable[[], object]) -> object:
        """Run one store request, unless this is the crash point (then raise ``Crash``)."""
        self.requests += 1
        point = self.crash_at
        if point is not None and point[0] == self.requests:
            self.dead = True
            if point[1] == "after":
                call()
            raise Crash(self.session)
        return call()


class InlineServer(BaseServer):
    """Lease and lockers stepped here; each request runs at once."""

    def __init__(self, store: Store, clock: Clock, crash_at: tuple[int, str] | None) -> None:
        super().__init__(store, clock, crash_at)
        self.lease = Lease(self.session, SPEC.lease, b"{}", clock=clock, wall=clock)
        self.handlers: dict[str, Handler] = {}
        self._start()

    def on_message(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def locker(self, key: str) -> Locker:
        locker = Locker(key, SPEC, self.lease, handlers=self.handlers)
        self.lockers[key] = locker
        return locker

    def step(self) -> None:
        if self.dead:
            raise Crash(self.session)
        for _ in range(50):
            busy = False
            renewal = self.lease.update(self.clock.now)
            if renewal is not None:
                result = execute(self.store, renewal)
                self.lease.handle(result if isinstance(result, StoreError) else None, self.clock())
                self._check_mail()
            for locker in list(self.lockers.values()):
                for request in locker.update(self.clock.now):
                    result = self._run(request)
                    locker.handle(result, self.clock.now)
                    self._tell(request, result)
                    busy = True
            if not busy:
                return

    def send(self, key: str, kind: str, body: Any, message_id: str) -> None:
        message = Message(message_id, kind, body, self.clock())
        transform = tx.deliver(
            message=message, fresh=SPEC.fresh(None), fresh_json=encode_data(SPEC.create())
        )
        request = Update(key=SPEC.store_key(key), transform=transform)
        self._tell(request, self._run(request))

    def _check_mail(self) -> None:
        """As the drivers do with each renewal: poke the lockers our mailbox names."""
        mail = self._execute(Collect(self.store, self.session))
        for locker in self.lockers.values():
            if isinstance(mail, Mail) and locker.store_key in mail.keys:
                locker.poke()

    def _tell(self, request: Request, result: object) -> None:
        """As the drivers do: post to the mailbox of a session a result names."""
        if isinstance(request, Update) and isinstance(result, Updated):
            session = addressee(result.outcome, self.session)
            if session is not None:
                self._run(Tell(session, request.key).request())

    def _run(self, request: Request) -> object:
        return self._execute(lambda: execute(self.store, request))


class HeldCalls:
    """An executor that keeps store calls until their server runs them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[[], object], Callable[[object], None]]] = []

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        self.calls.append((call, done))

    def shutdown(self) -> None:
        self.calls.clear()  # a stopped server's calls never reach the store


class AsyncServer(BaseServer):
    """A real ``AsyncLockerService`` on this server's own event loop.

    ``step`` runs the loop: the frame task runs a frame at the clock's time, the held
    store calls run (counted for crash points), their results wake the frame task, and
    so on until a frame asks for nothing more. Lease renewals are store requests here
    too, so they are crash points as well.
    """

    def __init__(self, store: Store, clock: Clock, crash_at: tuple[int, str] | None) -> None:
        super().__init__(store, clock, crash_at)
        self.held = HeldCalls()
        self.loop = asyncio.new_event_loop()
        self.service = AsyncLockerService(
            store, SPEC, self.session, clock=clock, wall=clock, executor=self.held
        )
        self.loop.run_until_complete(self._begin())
        self._start()

    async def _begin(self) -> None:
        self.service.start()

    def get(self, key: str) -> Locker | None:
        return self.service.get(key)

    def on_message(self, kind: str, handler: Handler) -> None:
        self.service.on_message(kind, handler)

    def locker(self, key: str) -> Locker:
        locker = self.service.locker(key)
        self.lockers[key] = locker
        return locker

    def step(self) -> None:
        if self.dead:
            raise Crash(self.session)
        self.loop.run_until_complete(self._step())

    async def _step(self) -> None:
        for _ in range(50):
            await self._next_frame()
            if not self.held.calls:
                return
            while self.held.calls:
                call, done = self.held.calls.pop(0)
                done(self._execute(call))

    async def _next_frame(self) -> None:
        """Wait until the frame task has run one more frame, at the clock's time now."""
        checks = iter([False])  # false when asked at once; true after the next frame
        self.service.wake()
        await self.service.wait_until(lambda: next(checks, True))

    def send(self, key: str, kind: str, body: Any, message_id: str) -> None:
        send = self.service.frames.send
        self._execute(lambda: send(key, kind, body, id=message_id))

    def close(self) -> None:
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()
        self.held.calls.clear()
        self.service.frames.close(0)  # watches and pool; its last calls are held, not run


def settle(servers: list[BaseServer], clock: Clock, seconds: float = 6.0) -> None:
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
