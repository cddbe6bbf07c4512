"""Crash at every store request of each exactly-once operation, recover elsewhere, check.

For each operation, a run without a crash counts the victim server's store requests;
then, for every request n and both sides of it (killed before the request reaches the
store, or after it committed but before the reply), the operation runs again on a fresh
store with the victim killed there. A new server then takes over (``steal``), the
platform redelivers what was not acknowledged, and the invariants are checked on what
is stored: each purchase granted exactly once, every acknowledged one present, items
conserved in trades, inboxes and outboxes empty, nothing applied twice.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import Backend, open_backend
from sessionlocker.core.handles import Outcome
from sessionlocker.purchases import Decision
from sessionlocker.stores import MemoryStore, SQLiteStore, Store

from .world import BACKENDS, Clock, Crash, Server, settle, stored

Scenario = Callable[[Store, Clock, dict[str, Any], tuple[int, str] | None], None]


World = tuple[Store, Clock]


@pytest.fixture(params=BACKENDS)
def new_world(
    request: pytest.FixtureRequest, tmp_path: Path, driver: str
) -> Iterator[Callable[[], World]]:
    """Makes a fresh store and clock (on the test's driver); the one before is ended
    first (its servers, then its store), so runs do not pile up server connections."""
    worlds: list[tuple[Backend, Clock]] = []

    def end() -> None:
        while worlds:
            backend, clock = worlds.pop()
            clock.close()
            backend.close()

    def make() -> World:
        end()
        folder = tmp_path / f"run{next(numbers)}"
        folder.mkdir()
        worlds.append((open_backend(request.param, folder), Clock(driver)))
        return worlds[-1][0].store, worlds[-1][1]

    numbers = itertools.count()
    yield make
    end()


def crash_points(scenario: Scenario, new_world: Callable[[], World]) -> list[tuple[int, str]]:
    """Every (request number, side) of the victim in a run without a crash."""
    seen: dict[str, Any] = {}
    scenario(*new_world(), seen, None)
    count = seen["victim"].requests
    assert count >= 3, "the scenario makes too few requests to be a real test"
    return [(n, side) for n in range(1, count + 1) for side in ("before", "after")]


def run_with_crash(
    scenario: Scenario, store: Store, clock: Clock, crash_at: tuple[int, str]
) -> dict[str, Any]:
    """Run ``scenario`` with its victim killed at ``crash_at``.

    Under the asyncio driver on a server store, notifications arrive from the store's
    own threads at varying moments, so a run may make fewer requests than the counting
    run did and end before ``crash_at``; its outcome is still checked. Everywhere else
    the runs are deterministic and the victim must have been killed.
    """
    seen: dict[str, Any] = {}
    try:
        scenario(store, clock, seen, crash_at)
    except Crash:
        seen["crashed"] = True
    deterministic = clock.driver == "inline" or isinstance(store, MemoryStore | SQLiteStore)
    if deterministic:
        assert seen.get("crashed"), f"the victim was not killed at {crash_at}"
    return seen


# --------------------------------------------------------------------- purchases

RECEIPT = {"PurchaseId": "p-1", "ProductId": 7, "PlayerId": "buyer"}


def purchase(store: Store, clock: Clock, seen: dict[str, Any], crash_at: Any) -> None:
    server = seen["victim"] = Server(store, clock, crash_at)
    seen["acked"] = False
    server.load("buyer")
    handle = server.purchaser.submit(RECEIPT)
    server.run_until(lambda: handle.done)
    seen["acked"] = handle.result is Decision.GRANTED
    settle([server], clock, 2.0)


def test_a_purchase_is_granted_exactly_once_whatever_the_crash(
    new_world: Callable[[], World],
) -> None:
    for crash_at in crash_points(purchase, new_world):
        store, clock = new_world()
        seen = run_with_crash(purchase, store, clock, crash_at)
        if seen["acked"]:  # acknowledged: it must be in the committed record already
            assert stored(store, "buyer").data["grants"] == ["p-1"], crash_at
        recovery = Server(store, clock)
        recovery.load("buyer")
        assert recovery.purchaser.process(RECEIPT) is Decision.GRANTED, crash_at
        assert recovery.purchaser.process(RECEIPT) is Decision.GRANTED, crash_at  # again
        settle([recovery], clock)
        record = stored(store, "buyer")
        assert record.data["grants"] == ["p-1"], crash_at
        assert record.data["coins"] == 10, crash_at
        assert [(p.product_id, p.purchase_id) for p in record.purchases] == [("7", "p-1")]


GIFT = {"purchase_id": "g-1", "product_id": "pack", "buyer": "giver", "recipient": "friend"}


def gift(store: Store, clock: Clock, seen: dict[str, Any], crash_at: Any) -> None:
    server = seen["victim"] = Server(store, clock, crash_at)
    seen["acked"] = False
    server.load("giver")
    handle = server.purchaser.submit(GIFT)
    server.run_until(lambda: handle.done)
    seen["acked"] = handle.result is Decision.GRANTED
    settle([server], clock, 2.0)  # delivery to the offline friend's inbox
    server.lockers["giver"].release()
    settle([server], clock, 1.0)


def test_a_gift_to_an_offline_player_arrives_exactly_once_whatever_the_crash(
    new_world: Callable[[], World],
) -> None:
    for crash_at in crash_points(gift, new_world):
        store, clock = new_world()
        seen = run_with_crash(gift, store, clock, crash_at)
        if seen["acked"]:  # the purchase and the gift message are committed together
            giver = stored(store, "giver")
            assert [p.purchase_id for p in giver.purchases] == ["g-1"], crash_at
        recovery = Server(store, clock)
        recovery.load("giver")
        assert recovery.purchaser.process(GIFT) is Decision.GRANTED, crash_at
        settle([recovery], clock)
        recovery.load("friend")
        settle([recovery], clock)
        friend, giver = stored(store, "friend"), stored(store, "giver")
        assert friend.data["grants"] == ["g-1"], crash_at
        assert friend.data["coins"] == 10, crash_at
        assert giver.data["grants"] == [], crash_at
        assert giver.outbox == (), crash_at
        assert friend.inbox == (), crash_at


# --------------------------------------------------------------------- remote changes


def remote_change(victim: str) -> Scenario:
    def scenario(store: Store, clock: Clock, seen: dict[str, Any], crash_at: Any) -> None:
        holder = Server(store, clock, crash_at if victim == "holder" else None)
        sender = Server(store, clock, crash_at if victim == "sender" else None)
        seen["victim"] = holder if victim == "holder" else sender
        holder.load("target")
        sender.send("target", "note", "hello", "m-1")
        seen["sent"] = True
        settle([holder], clock, 2.0)
        holder.lockers["target"].release()
        settle([holder], clock, 1.0)

    return scenario


@pytest.mark.parametrize("victim", ["holder", "sender"])
def test_a_remote_change_is_applied_exactly_once_whatever_the_crash(
    new_world: Callable[[], World], victim: str
) -> None:
    scenario = remote_change(victim)
    if victim == "sender":  # the sender makes one request: before it, or after it committed
        points = [(1, "before"), (1, "after")]
    else:
        points = crash_points(scenario, new_world)
    for crash_at in points:
        store, clock = new_world()
        seen = run_with_crash(scenario, store, clock, crash_at)
        recovery = Server(store, clock)
        if not seen.get("sent"):  # the sender retries with the same id (unknown outcome)
            recovery.send("target", "note", "hello", "m-1")
        recovery.load("target")
        settle([recovery], clock)
        recovery.send("target", "note", "hello", "m-1")  # a late duplicate is dropped too
        settle([recovery], clock)
        record = stored(store, "target")
        assert record.data["notes"] == ["hello"], crash_at
        assert record.inbox == (), crash_at
        assert "m-1" in record.applied, crash_at


# --------------------------------------------------------------------- trades


def trade(victim: str) -> Scenario:
    def scenario(store: Store, clock: Clock, seen: dict[str, Any], crash_at: Any) -> None:
        a = Server(store, clock, crash_at if victim == "a" else None)
        b = Server(store, clock, crash_at if victim == "b" else None)
        seen["victim"] = a if victim == "a" else b
        seen["acked"] = False
        alice, bob = a.load("alice"), b.load("bob")
        alice.edit(lambda data: data["items"].append("sword"))
        bob.edit(lambda data: data["items"].append("shield"))
        settle([a, b], clock, 1.5)
        handle = a.trades.offer("t-1", "alice", "bob", ["sword"], ["shield"])
        a.run_until(lambda: handle.done)
        seen["acked"] = handle.result is Outcome.APPLIED
        settle([a, b], clock, 4.0)

    return scenario


def items_everywhere(store: Store, keys: list[str]) -> Counter[str]:
    """Items in the data of ``keys`` plus those in flight in messages.

    A message delivered but not yet dropped from its sender's outbox is in two places
    with one id, or even applied already: only one copy is ever applied, so a message
    counts once, and not at all once applied (its items are in the data then).
    """
    total: Counter[str] = Counter()
    in_flight = {}
    applied: set[str] = set()
    for key in keys:
        record = stored(store, key)
        if record is None:
            continue
        total.update(record.data["items"])
        applied.update(record.applied)
        for message in (*record.inbox, *record.outbox):
            body = message.body
            in_flight[message.id] = body["give"] if "give" in body else body["items"]
    for message_id in applied:
        in_flight.pop(message_id, None)
    for items in in_flight.values():
        total.update(items)
    return total


@pytest.mark.parametrize("victim", ["a", "b"])
def test_a_trade_moves_each_item_exactly_once_whatever_the_crash(
    new_world: Callable[[], World], victim: str
) -> None:
    scenario = trade(victim)
    for crash_at in crash_points(scenario, new_world):
        store, clock = new_world()
        seen = run_with_crash(scenario, store, clock, crash_at)
        recovery = Server(store, clock)
        if stored(store, "alice") is None or stored(store, "bob") is None:
            continue  # killed before both players existed: nothing to trade
        before = items_everywhere(store, ["alice", "bob"])
        recovery.load("alice")
        recovery.load("bob")
        settle([recovery], clock)
        alice, bob = stored(store, "alice"), stored(store, "bob")
        after = Counter(alice.data["items"]) + Counter(bob.data["items"])
        assert after == before, crash_at  # conserved: nothing lost, nothing doubled
        assert max(after.values(), default=0) <= 1, crash_at
        traded = (alice.data["items"], bob.data["items"]) == (["shield"], ["sword"])
        if seen["acked"]:
            assert traded, crash_at
        assert alice.inbox == alice.outbox == bob.inbox == bob.outbox == (), crash_at
