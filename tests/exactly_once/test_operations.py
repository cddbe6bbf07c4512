"""The exactly-once calls one by one: answers, undo, history bound, credit, inbox rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sessionlocker import LockerService, Spec
from sessionlocker.core.handles import Outcome
from sessionlocker.core.locker import Locker
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.record import Message
from sessionlocker.core.states import Status
from sessionlocker.errors import MessageError, UnhandledMessage, UsageError
from sessionlocker.purchases import Decision, Purchaser, Receipt
from sessionlocker.stores import MemoryStore

from .world import SPEC, Clock, Server, settle, stored


@pytest.fixture
def world(new_clock: Callable[[], Clock]) -> tuple[MemoryStore, Clock]:
    return MemoryStore(), new_clock()


def add(amount: int) -> Any:
    def change(data: Any) -> None:
        data["coins"] += amount

    return change


def test_apply_once_answers_only_after_the_write_commits(world: Any) -> None:
    store, clock = world
    server = Server(store, clock)
    locker = server.load("k")
    handle = locker.apply_once("op-1", add(5))
    assert not handle.done  # applied in memory, not yet committed
    assert locker.data["coins"] == 5
    server.step()
    assert handle.result is Outcome.APPLIED
    assert stored(store, "k").data["coins"] == 5
    assert stored(store, "k").applied == ("op-1",)
    again = locker.apply_once("op-1", add(5))
    server.step()
    assert again.result is Outcome.ALREADY_APPLIED
    assert locker.data["coins"] == 5


def test_an_operation_known_from_the_loaded_record_is_already_applied_at_once(world: Any) -> None:
    store, clock = world
    first = Server(store, clock)
    first.load("k").apply_once("op-1", add(5))
    first.step()
    first.lockers["k"].release()
    first.step()
    second = Server(store, clock).load("k", LoadMode.REPEAT)
    handle = second.apply_once("op-1", add(5))
    assert handle.result is Outcome.ALREADY_APPLIED
    assert second.data["coins"] == 5


def test_an_operation_whose_session_is_lost_before_saving_is_not_done(world: Any) -> None:
    store, clock = world
    victim, thief = Server(store, clock), Server(store, clock)
    locker = victim.load("k")
    thief.load("k", LoadMode.STEAL)
    handle = locker.apply_once("op-1", add(5))
    victim.step()
    assert locker.status is Status.LOST
    assert handle.result is Outcome.NOT_DONE
    assert stored(store, "k").applied == ()


def test_a_raising_operation_is_undone_and_not_recorded(world: Any) -> None:
    store, clock = world
    server = Server(store, clock)
    locker = server.load("k")
    root = locker.data

    def half(data: Any) -> None:
        data["coins"] += 100
        locker.credit_give("gem", 3)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        locker.apply_once("op-1", half)
    assert locker.data is root
    assert locker.data["coins"] == 0
    assert locker.credit_query("gem") == 0
    assert locker.apply_once("op-1", add(1)) is not None  # the id is still free
    server.step()
    assert stored(store, "k").data["coins"] == 1


def test_operations_asked_for_while_loading_run_on_the_loaded_data(world: Any) -> None:
    store, clock = world
    holder, waiter = Server(store, clock), Server(store, clock)
    holder.load("k").apply_once("op-1", add(5))
    holder.step()
    locker = waiter.locker("k")
    locker.acquire(LoadMode.FORCE)
    early = locker.apply_once("op-1", add(5))
    fresh = locker.apply_once("op-2", add(1))
    assert not early.done
    settle([holder, waiter], clock, 3.0)
    assert locker.status is Status.LOADED
    assert early.result is Outcome.ALREADY_APPLIED
    assert fresh.result is Outcome.APPLIED
    assert stored(store, "k").data["coins"] == 6


def test_the_history_is_bounded_by_history_limit(world: Any) -> None:
    store, clock = world
    server = Server(store, clock)
    locker = server.load("k")
    for n in range(SPEC.history_limit + 5):
        locker.apply_once(f"op-{n}", add(1))
    server.step()
    applied = stored(store, "k").applied
    assert len(applied) == SPEC.history_limit
    assert applied[0] == "op-5"
    # the documented consequence: an id that fell out is applied again
    assert locker.apply_once("op-0", add(1)) is not None
    server.step()
    assert stored(store, "k").data["coins"] == SPEC.history_limit + 6


def test_credit_is_saved_with_the_data_and_fires_its_event(world: Any) -> None:
    store, clock = world
    server = Server(store, clock)
    locker = server.load("k")
    seen: list[int] = []
    locker.on("credit", lambda lk: seen.append(lk.credit_query(7)))
    assert locker.credit_give(7, 3) == 3
    assert locker.credit_use("7", 2)
    assert not locker.credit_use(7, 5)
    assert locker.credit_query(7) == 1
    locker.force_save()
    server.step()
    assert seen == [1, 1]  # fired at the next callback point, after both changes
    assert stored(store, "k").credit == {"7": 1}
    with pytest.raises(UsageError, match="whole number"):
        locker.credit_give(7, 0)
    locker.release()
    server.step()
    with pytest.raises(UsageError, match="not loaded"):
        locker.credit_give(7, 1)


def test_a_message_without_a_handler_stays_in_the_inbox_and_is_reported(world: Any) -> None:
    store, clock = world
    server = Server(store, clock)
    server.send("k", "unknown-kind", {"x": 1}, "m-1")
    errors: list[Exception | None] = []
    locker = server.locker("k")
    locker.on("error", lambda lk: errors.append(lk.error))
    locker.acquire()
    settle([server], clock, 2.0)
    assert locker.status is Status.LOADED
    assert [str(error) for error in errors] == ["no handler for messages of kind 'unknown-kind'"]
    assert isinstance(errors[0], UnhandledMessage)
    assert not isinstance(errors[0], UsageError)  # not a misuse: code may handle it later
    assert (errors[0].kind, errors[0].message_id) == ("unknown-kind", "m-1")
    assert [m.id for m in stored(store, "k").inbox] == ["m-1"]


def test_a_raising_handler_is_undone_and_its_message_kept(world: Any) -> None:
    store, clock = world
    server = Server(store, clock)

    def bad(locker: Locker, message: Message) -> None:
        locker.data["coins"] = 99
        raise ValueError("bad body")

    server.on_message("bad", bad)
    server.send("k", "bad", 1, "m-bad")
    server.send("k", "note", "ok", "m-ok")
    locker = server.load("k", LoadMode.REPEAT)
    settle([server], clock, 2.0)
    record = stored(store, "k")
    assert record.data["coins"] == 0
    assert record.data["notes"] == ["ok"]
    assert [m.id for m in record.inbox] == ["m-bad"]
    assert "bad body" in str(locker.error)
    assert isinstance(locker.error, MessageError)
    assert locker.error.message_id == "m-bad"


def test_receipts_parse_both_spellings_and_refuse_what_is_missing() -> None:
    roblox = Receipt.parse({"PurchaseId": "p", "ProductId": 12, "PlayerId": 34})
    assert roblox == Receipt("p", "12", "34")
    plain = Receipt.parse({"purchase_id": "p", "product_id": "x", "buyer": "b", "recipient": "c"})
    assert plain.recipient == "c"
    with pytest.raises(UsageError, match="'buyer'"):
        Receipt.parse({"purchase_id": "p", "product_id": "x"})
    with pytest.raises(UsageError, match="mapping"):
        Receipt.parse(["p"])  # type: ignore[arg-type]


def test_a_purchase_for_a_buyer_not_loaded_here_is_not_processed_yet() -> None:
    spec = Spec("shop", lambda: {"coins": 0}, lease=2.0, autosave_period=5.0)
    with LockerService(MemoryStore(), spec) as service:
        purchaser = Purchaser(service, lambda data, receipt: None)
        receipt = {"purchase_id": "p", "product_id": "x", "buyer": "nobody"}
        assert purchaser.process(receipt) is Decision.NOT_PROCESSED_YET
        assert not purchaser.has_incomplete()


def test_a_grant_that_raises_is_not_processed_yet_and_grants_nothing() -> None:
    spec = Spec("shop", lambda: {"coins": 0}, lease=2.0, autosave_period=5.0)

    def grant(data: Any, receipt: Receipt) -> None:
        data["coins"] += 1
        raise KeyError("no such product")

    with LockerService(MemoryStore(), spec) as service, service.session("b") as locker:
        purchaser = Purchaser(service, grant)
        handle = purchaser.submit({"purchase_id": "p", "product_id": "x", "buyer": "b"})
        assert handle.result is Decision.NOT_PROCESSED_YET
        assert "no such product" in str(handle.error)
        assert locker.data == {"coins": 0}
        assert locker.purchases == []


def test_service_send_reaches_a_local_holder_without_waiting_for_autosave() -> None:
    spec = Spec("mail", lambda: {"notes": []}, lease=2.0, autosave_period=60.0)
    with LockerService(MemoryStore(), spec) as service:
        service.on_message(
            "note", lambda locker, message: locker.data["notes"].append(message.body)
        )
        with service.session("k") as locker:
            message_id = service.send("k", "note", "hi")
            assert service.send("k", "note", "hi", id=message_id) == message_id  # no double
            assert service.run_until(lambda: not locker.changes_pending and locker.data["notes"], 5)
            assert locker.data["notes"] == ["hi"]
        with pytest.raises(UsageError, match="kind"):
            service.send("k", "", 1)
