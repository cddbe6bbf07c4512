"""What one simulated game server does with its players, on top of a ``LockerService``.

The parent process (``sim.run``) tells a server which players join and leave, which
purchases arrive and which trades to offer; the server plays every loaded player (a
change every few frames) and writes to its history what it observed (a load, with the
epoch and the count it saw; the end of a locker) and what it acknowledged (a change
confirmed saved, a purchase answered ``granted``, a trade offer committed).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sessionlocker.core.handles import Outcome
from sessionlocker.core.locker import Locker
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.record import Message
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.purchases import Decision, Purchaser, Receipt
from sessionlocker.sim.history import HistoryWriter
from sessionlocker.trades import Trades

__all__ = ["BONUS", "Server", "grant_item", "put_items", "take_items"]

#: The kind of the admin process's remote changes.
BONUS = "sim.bonus"
#: Seconds between two play changes of a loaded player.
CHANGE_EVERY = (0.05, 0.2)


def grant_item(data: Any, receipt: Receipt) -> None:
    """A purchase grants coins and one unique item, and is noted in ``grants``."""
    data["grants"].append(receipt.purchase_id)
    data["items"].append(f"item-{receipt.purchase_id}")
    data["coins"] += 10


def take_items(data: Any, items: Any) -> bool:
    """Remove ``items`` from the player's items, or change nothing if one is missing."""
    owned: list[str] = data["items"]
    if not isinstance(items, list) or any(item not in owned for item in items):
        return False
    for item in items:
        owned.remove(item)
    return True


def put_items(data: Any, items: Any) -> None:
    """Add ``items`` to the player's items."""
    data["items"].extend(items)


@dataclass
class Player:
    """One player this server was told to hold."""

    locker: Locker
    wanted: bool = True
    next_change: float = 0.0


class Server:
    """Holds the players it is told to, plays them, grants and trades exactly once."""

    def __init__(self, service: LockerService, history: HistoryWriter, seed: int) -> None:
        self.service = service
        self.history = history
        self.rng = random.Random(seed)
        self.players: dict[str, Player] = {}
        self.purchaser = Purchaser(service, grant_item)
        self.trades = Trades(service, take_items, put_items)
        service.on_message(BONUS, self._bonus)

    # ------------------------------------------------------------------ commands

    def command(self, command: dict[str, Any]) -> None:
        """Carry out one command of the parent (``join``, ``leave``, ``purchase``, ``trade``)."""
        kind = command.get("do")
        if kind == "join":
            self.join(str(command["key"]))
        elif kind == "leave":
            self.leave(str(command["key"]))
        elif kind == "purchase":
            self.purchase(command["receipt"])
        elif kind == "trade":
            self.offer(str(command["trade"]), str(command["a"]), str(command["b"]), command)

    def join(self, key: str) -> None:
        """Open ``key`` with ``force``: whoever holds it is asked to let go."""
        player = self.players.get(key)
        if player is None:
            player = Player(self.service.locker(key))
            self.players[key] = player
            self._watch(key, player.locker)
        player.wanted = True
        if player.locker.status is Status.IDLE or player.locker.status in _ENDED:
            player.locker.acquire(LoadMode.FORCE)

    def leave(self, key: str) -> None:
        """Save and release ``key``."""
        player = self.players.get(key)
        if player is not None:
            player.wanted = False
            player.locker.release()

    def purchase(self, body: dict[str, Any]) -> None:
        """Submit a receipt; note it when the answer is ``granted``."""
        receipt = Receipt.parse(body)
        handle = self.purchaser.submit(receipt)

        def answered(decision: Decision) -> None:
            if decision is Decision.GRANTED:
                self.history.write(
                    "granted",
                    purchase=receipt.purchase_id,
                    buyer=receipt.buyer,
                    recipient=receipt.recipient or receipt.buyer,
                )

        handle.on_done(answered)

    def offer(self, trade_id: str, a: str, b: str, command: dict[str, Any]) -> None:
        """Offer one of ``a``'s items for the items ``b`` is believed to own."""
        player = self.players.get(a)
        if player is None or player.locker.status is not Status.LOADED:
            return
        owned = player.locker.data["items"]
        if not owned:
            return
        give = [self.rng.choice(owned)]
        handle = self.trades.offer(trade_id, a, b, give, command["want"])

        def answered(outcome: Outcome) -> None:
            if outcome is Outcome.APPLIED:
                self.history.write("offered", trade=trade_id, a=a, b=b, give=give)

        handle.on_done(answered)

    # ------------------------------------------------------------------ frames

    def step(self, now: float) -> None:
        """Play every loaded player; reopen a wanted player whose locker ended."""
        for key, player in self.players.items():
            locker = player.locker
            if locker.status is Status.LOADED and now >= player.next_change:
                self._play(key, locker)
                player.next_change = now + self.rng.uniform(*CHANGE_EVERY)

    def _play(self, key: str, locker: Locker) -> None:
        data = locker.data
        n = int(data["count"]) + 1
        epoch = locker.token
        data["count"] = n
        data["log"].append([self.history.worker, n, epoch])
        change = locker.mark_changed()

        def saved(ok: bool) -> None:
            if ok:
                self.history.write("confirmed", key=key, n=n, epoch=epoch)

        locker.when_saved(change, saved)

    def _watch(self, key: str, locker: Locker) -> None:
        def loaded(_: Locker) -> None:
            data = locker.data
            self.history.write(
                "loaded", key=key, epoch=locker.token, count=data["count"], items=data["items"]
            )

        locker.on("loaded", loaded)
        for how in ("released", "replaced", "lost", "failed"):
            locker.on(how, self._ended(key, how))

    def _ended(self, key: str, how: str) -> Callable[[Locker], None]:
        def ended(locker: Locker) -> None:
            error = None if locker.error is None else str(locker.error)
            self.history.write("ended", key=key, how=how, error=error)

        return ended

    def _bonus(self, locker: Locker, message: Message) -> None:
        locker.data["coins"] += int(message.body["amount"])
        locker.data["bonuses"].append(message.id)


_ENDED = (Status.IDLE, Status.LOST, Status.FAILED)
