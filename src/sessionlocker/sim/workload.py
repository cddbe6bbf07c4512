"""The players' side of the simulation: where each player is, and what happens to them.

Each tick, ``Workload.tick`` moves players (join, hop to another server, leave, return),
brings purchases to the buyer's current server (re-delivering them until a server
answers ``granted``, sometimes twice at once, and once more after that), sends admin
bonuses straight to the store (``LockerService.send``), and offers trades between
players on different servers. It writes what it did to the parent's history.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sessionlocker.core.record import decode
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import SessionLockerError
from sessionlocker.sim.history import Event, HistoryWriter
from sessionlocker.sim.server import BONUS

__all__ = ["Rates", "Workload"]


@dataclass(frozen=True)
class Rates:
    """How often things happen, per second (per player where it says so)."""

    hop: float = 0.25  # per player
    leave: float = 0.04  # per player
    come_back: float = 0.5  # per absent player
    purchase: float = 0.15  # per player
    gift_share: float = 0.25
    duplicate_share: float = 0.3
    redeliver_after: float = 0.7
    bonus: float = 2.0
    trade: float = 1.0


@dataclass
class Pending:
    """A purchase the platform keeps re-delivering until it is told ``granted``."""

    receipt: dict[str, Any]
    next_delivery: float
    granted: bool = False


@dataclass
class Workload:
    """The players' moves and the purchases, bonuses and trades, driven by the parent."""

    keys: Sequence[str]
    admin: LockerService
    history: HistoryWriter
    rng: random.Random
    rates: Rates = field(default_factory=Rates)
    #: each player's server (by name), or None while away
    where: dict[str, str | None] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    _serial: int = 0

    def tick(self, now: float, dt: float, live: Sequence[str], send: Sender) -> None:
        """One step of ``dt`` seconds; ``live`` are the servers that take commands now."""
        if not live:
            return
        for key in self.keys:
            self._move(key, now, dt, live, send)
        present = [key for key in self.keys if self.where.get(key) in live]
        if present and self._chance(self.rates.purchase * len(self.keys), dt):
            self._new_purchase(now, present)
        self._redeliver(now, send)
        if self._chance(self.rates.bonus, dt):
            self._bonus()
        if len(present) >= 2 and self._chance(self.rates.trade, dt):
            self._trade(present, send)

    def place(self, key: str, server: str, send: Sender, how: str) -> None:
        """Send ``key`` to ``server`` (it opens it with ``force``) and note why."""
        self.where[key] = server
        self.history.write(how, key=key, server=server)
        self._count(how)
        send(server, {"do": "join", "key": key})

    def heard(self, event: Event) -> None:
        """A server's history line: a ``granted`` answer stops the re-deliveries."""
        if event["event"] == "granted":
            pending = self.pending.get(str(event["purchase"]))
            if pending is not None and not pending.granted:
                pending.granted = True
                self._count("granted")

    # ------------------------------------------------------------------ moves

    def _move(self, key: str, now: float, dt: float, live: Sequence[str], send: Sender) -> None:
        server = self.where.get(key)
        if server is None:
            if self._chance(self.rates.come_back, dt):
                self.place(key, self.rng.choice(live), send, "join")
        elif server in live and self._chance(self.rates.leave, dt):
            self.where[key] = None
            self.history.write("leave", key=key, server=server)
            send(server, {"do": "leave", "key": key})
        elif len(live) > 1 and self._chance(self.rates.hop, dt):
            target = self.rng.choice([name for name in live if name != server])
            self.place(key, target, send, "hop")

    # ------------------------------------------------------------------ purchases

    def _new_purchase(self, now: float, present: Sequence[str]) -> None:
        self._serial += 1
        buyer = self.rng.choice(present)
        receipt: dict[str, Any] = {
            "purchase_id": f"{self.history.worker}-p{self._serial}",
            "product_id": "gems",
            "buyer": buyer,
        }
        if self.rng.random() < self.rates.gift_share:
            receipt["recipient"] = self.rng.choice(self.keys)
        self.pending[receipt["purchase_id"]] = Pending(receipt, now)
        self._count("purchases")

    def _redeliver(self, now: float, send: Sender) -> None:
        for pid, pending in list(self.pending.items()):
            if now < pending.next_delivery:
                continue
            server = self.where.get(pending.receipt["buyer"])
            if server is None:
                continue
            copies = 2 if self.rng.random() < self.rates.duplicate_share else 1
            for _ in range(copies):
                if send(server, {"do": "purchase", "receipt": pending.receipt}):
                    self._count("deliveries")
            pending.next_delivery = now + self.rates.redeliver_after
            if pending.granted:
                del self.pending[pid]  # one more delivery after the grant, then done

    # ------------------------------------------------------------------ admin and trades

    def _bonus(self) -> None:
        self._serial += 1
        key = self.rng.choice(self.keys)
        message_id = f"{self.history.worker}-b{self._serial}"
        try:
            self.admin.send(key, BONUS, {"amount": 1}, id=message_id, timeout=2.0)
        except SessionLockerError:
            return  # not acknowledged: the checker does not expect it
        self.history.write("sent", key=key, id=message_id)
        self._count("bonuses")

    def _trade(self, present: Sequence[str], send: Sender) -> None:
        a, b = self.rng.sample(list(present), 2)
        if self.where.get(a) == self.where.get(b):
            return
        try:
            stored = self.admin.store.read(self.admin.spec.store_key(b))
        except SessionLockerError:
            return  # the store is failing over: no trade this time
        items = [] if stored is None else decode(stored.value).data.get("items", [])
        if not items:
            return
        self._serial += 1
        trade = f"{self.history.worker}-t{self._serial}"
        server = self.where[a]
        if server is not None and send(
            server,
            {"do": "trade", "trade": trade, "a": a, "b": b, "want": [self.rng.choice(items)]},
        ):
            self._count("trades")

    def _chance(self, rate: float, dt: float) -> bool:
        return self.rng.random() < rate * dt

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


#: ``send(server_name, command) -> delivered``
Sender = Callable[[str, dict[str, Any]], bool]
