"""Random interleavings: receipts, duplicate deliveries, gifts, sends and crashes across
three servers on one store, with the exactly-once invariants checked throughout.

Hypothesis picks the order. Servers are stepped on a shared fake clock (by either
driver, see ``world``); a crash drops a server for good (a new one takes its slot);
loads use ``steal``, so a live holder loses its lock at any point too. At each
acknowledgement the committed record must already hold the purchase; at the end a
recovery server loads every player, every receipt is delivered once more, and each
purchase id and each message must have been applied exactly once, with every inbox
and outbox empty.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from backends import open_backend
from sessionlocker.purchases import Decision
from sessionlocker.stores import Store

from .world import BACKENDS, Clock, Server, settle, stored

PLAYERS = ["p0", "p1", "p2"]
slots = st.integers(0, 2)
players = st.sampled_from(PLAYERS)


class Interleavings(RuleBasedStateMachine):
    backend = "memory"
    driver = "inline"

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.opened = open_backend(self.backend, Path(self.folder.name))
        self.store: Store = self.opened.store
        self.clock = Clock(self.driver)
        self.servers = [Server(self.store, self.clock) for _ in range(3)]
        self.receipts: dict[str, dict[str, str]] = {}
        self.sent: dict[str, str] = {}
        self.granted_early: list[str] = []

    @rule(slot=slots, player=players)
    def load(self, slot: int, player: str) -> None:
        server = self.servers[slot]
        locker = server.lockers.get(player)
        if locker is None or locker.status.value not in ("loaded", "loading", "releasing"):
            server.load(player)

    @rule(slot=slots, player=players)
    def release(self, slot: int, player: str) -> None:
        locker = self.servers[slot].lockers.get(player)
        if locker is not None:
            locker.release()

    @rule(slot=slots, player=players, recipient=st.none() | players, new=st.booleans())
    def receipt(self, slot: int, player: str, recipient: str | None, new: bool) -> None:
        if new or not self.receipts:
            purchase_id = f"r{len(self.receipts)}"
            receipt = {"purchase_id": purchase_id, "product_id": "pack", "buyer": player}
            if recipient is not None:
                receipt["recipient"] = recipient
            self.receipts[purchase_id] = receipt
        else:  # the platform delivers an earlier receipt again, maybe to another server
            receipt = self.receipts[sorted(self.receipts)[slot % len(self.receipts)]]
        handle = self.servers[slot].purchaser.submit(receipt)

        def acknowledged(decision: Decision) -> None:
            if decision is Decision.GRANTED:
                record = stored(self.store, receipt["buyer"])
                ids = [p.purchase_id for p in record.purchases]
                assert receipt["purchase_id"] in ids, "granted before it was committed"
                self.granted_early.append(receipt["purchase_id"])

        handle.on_done(acknowledged)

    @rule(slot=slots, player=players)
    def send(self, slot: int, player: str) -> None:
        message_id = f"m{len(self.sent)}"
        self.sent[message_id] = player
        self.servers[slot].send(player, "note", message_id, message_id)

    @rule(slot=slots)
    def resend(self, slot: int) -> None:
        if self.sent:  # a sender retrying after an unknown outcome: same id
            message_id = sorted(self.sent)[slot % len(self.sent)]
            self.servers[slot].send(self.sent[message_id], "note", message_id, message_id)

    @rule(slot=slots)
    def crash(self, slot: int) -> None:
        self.servers[slot].dead = True
        self.servers[slot] = Server(self.store, self.clock)

    @rule(ticks=st.integers(1, 30))
    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            for server in self.servers:
                server.step()
            self.clock.now += 0.1

    @invariant()
    def no_grant_twice(self) -> None:
        for player in PLAYERS:
            record = stored(self.store, player)
            if record is not None:
                grants = Counter(record.data["grants"])
                assert all(n == 1 for n in grants.values()), (player, grants)

    def teardown(self) -> None:
        try:
            self.recover_and_check()
        finally:
            self.clock.close()
            self.opened.close()
            self.folder.cleanup()

    def recover_and_check(self) -> None:
        recovery = Server(self.store, self.clock)
        for player in PLAYERS:
            recovery.load(player)
        for receipt in self.receipts.values():
            handle = recovery.purchaser.submit(receipt)
            recovery.run_until(lambda h=handle: h.done)
            assert handle.result is Decision.GRANTED, receipt
        settle([recovery], self.clock, 8.0)
        for player in PLAYERS:  # gifts to players loaded before their giver recovered
            recovery.lockers[player].poke()
        settle([recovery], self.clock, 8.0)
        grants: Counter[str] = Counter()
        notes: Counter[str] = Counter()
        for player in PLAYERS:
            record = stored(self.store, player)
            grants.update(record.data["grants"])
            notes.update(record.data["notes"])
            assert record.inbox == (), (player, record.inbox)
            assert record.outbox == (), (player, record.outbox)
        assert grants == Counter(self.receipts.keys()), "each purchase granted exactly once"
        assert notes == Counter(self.sent.keys()), "each message applied exactly once"
        assert set(self.granted_early) <= set(grants)


@pytest.mark.parametrize("backend", BACKENDS)
def test_interleavings(backend: str, driver: str) -> None:
    """Many examples on memory; fewer on the backends with real I/O, same rules."""
    examples = int(os.environ.get("EXACTLY_ONCE_EXAMPLES", "60"))
    if backend != "memory":
        examples = max(1, examples // 6)
    attributes = {"backend": backend, "driver": driver}
    machine = type(f"Interleavings_{backend}_{driver}", (Interleavings,), attributes)
    machine.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=int(os.environ.get("EXACTLY_ONCE_STEPS", "40")),
        deadline=None,
    )
    machine.TestCase().runTest()
