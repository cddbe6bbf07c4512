"""The locker state machine, driven by the loopback rig (no threads, no real clock)."""

from __future__ import annotations

from typing import Any

import pytest

from sessionlocker.core.locker import Locker
from sessionlocker.core.modes import Attempt
from sessionlocker.core.protocol import LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.core.record import Record, decode, encode
from sessionlocker.core.states import EVENTS, TRANSITIONS, Status
from sessionlocker.errors import (
    CorruptRecord,
    LockLost,
    LockUnavailable,
    StoreError,
    UnstorableData,
    UsageError,
)
from sessionlocker.stores import FaultyStore, MemoryStore, cas_update

from .rig import Clock, Rig, log, new_world, run


def loaded(rig: Rig, key: str = "k", mode: Any = "repeat") -> Locker:
    locker = rig.locker(key)
    locker.acquire(mode)
    rig.step()
    assert locker.status is Status.LOADED, locker.error
    return locker


def record(store: MemoryStore, key: str = "k") -> Record:
    stored = store.read(f"t/{key}")
    assert stored is not None
    return decode(stored.value)


def change(locker: Locker, token: str) -> list[bool]:
    locker.data["log"].append(token)
    answers: list[bool] = []
    locker.when_saved(locker.mark_changed(), answers.append)
    return answers


class CountingStore(MemoryStore):
    """Counts round trips: update runs as read + conditional write (no native update)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.reads = self.writes = 0

    def read(self, key: str) -> Versioned | None:
        self.reads += 1
        return super().read(key)

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        self.writes += 1
        return super().write(key, value, expected, notify=notify)

    def update(
        self, key: str, transform: Transform[Any], known: Versioned | None = None
    ) -> Updated[Any]:
        return cas_update(self, key, transform, known)


# ---------------------------------------------------------------- loading and saving


def test_intent_is_declared_and_progress_happens_only_in_update() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = rig.locker("k")
    assert locker.data == {"log": []}  # a transient copy exists before any load
    locker.acquire()
    assert locker.status is Status.LOADING
    assert store.read("t/k") is None
    rig.step()
    assert locker.status is Status.LOADED
    assert locker.token == 1
    assert record(store).lock is not None


def test_no_lock_is_taken_before_the_session_lease_is_written() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = rig.locker("k")
    locker.acquire()
    assert locker.update(clock.now) == []  # the lease is not renewed yet
    assert locker.next_deadline() is None
    rig.step()
    assert isinstance(rig.sent[0], Update)
    assert store.get_lease("A").exists


def test_an_uncontended_save_is_one_conditional_write_and_no_read() -> None:
    clock = Clock()
    store = CountingStore(clock)
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    store.reads = store.writes = 0
    answers = change(locker, "x")
    locker.force_save()
    rig.step()
    assert answers == [True]
    assert (store.reads, store.writes) == (0, 1)


def test_a_release_with_pending_changes_is_one_write() -> None:
    clock = Clock()
    store = CountingStore(clock)
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    store.reads = store.writes = 0
    answers = change(locker, "x")
    locker.release()
    rig.step()
    assert (store.reads, store.writes) == (0, 1)
    assert answers == [True]
    assert locker.status is Status.IDLE
    assert record(store).lock is None
    assert record(store).data == {"log": ["x"]}


def test_autosave_saves_changes_and_confirms_them() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    answers = change(locker, "a")
    run([rig], clock, 0.3)
    assert answers == []  # not saved yet: the autosave period is 0.5 s
    run([rig], clock, 0.3)
    assert answers == [True]
    assert record(store).data == {"log": ["a"]}


def test_an_autosave_with_nothing_new_writes_nothing() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    loaded(rig)
    revision = store.read("t/k").revision  # type: ignore[union-attr]
    run([rig], clock, 2.0)
    assert store.read("t/k").revision == revision  # type: ignore[union-attr]


def test_lockers_are_reusable_after_release_and_the_epoch_grows() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    events: list[str] = []
    for name in ("released", "idle", "loaded"):
        locker.on(name, lambda _, name=name: events.append(name))  # type: ignore[misc]
    change(locker, "first")
    locker.release()
    rig.step()
    assert events == ["released", "idle"]
    assert locker.token is None
    locker.acquire()
    assert locker.data == {"log": []}  # a fresh transient copy until loaded
    rig.step()
    assert events[-1] == "loaded"
    assert locker.token == 2
    assert log(locker) == ["first"]


def test_edits_made_before_the_load_completes_are_merged_after_it() -> None:
    store, clock = new_world()
    store.write("t/k", encode(Record(data={"log": ["stored"]})), None)
    rig = Rig(store, "A", clock)
    locker = rig.locker("k")
    locker.acquire()
    answers: list[bool] = []
    locker.when_saved(locker.edit(lambda data: data["log"].append("offline")), answers.append)
    assert log(locker) == ["offline"]
    rig.step()
    assert log(locker) == ["stored", "offline"]
    assert answers == [True]  # saved right after the load
    assert record(store).data == {"log": ["stored", "offline"]}


def test_changes_from_an_ended_session_are_never_confirmed_by_a_later_one() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    other = Rig(store, "B", clock)
    locker = loaded(rig)
    lost_change = locker.mark_changed()
    loaded(other, mode="steal")
    locker.force_save()
    rig.step()
    assert locker.status is Status.LOST
    locker.acquire("steal")
    rig.step()
    change(locker, "later")
    locker.force_save()
    rig.step()
    answers: list[bool] = []
    locker.when_saved(lost_change, answers.append)
    assert answers == [False]


# ---------------------------------------------------------------- load modes


def test_repeat_waits_for_the_holder_to_release() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    holder = loaded(a)
    change(holder, "from A")
    waiter = b.locker("k")
    waiter.acquire("repeat")
    run([a, b], clock, 0.5)
    assert waiter.status is Status.WAITING
    holder.release()
    run([a, b], clock, 0.3)
    assert waiter.status is Status.LOADED
    assert log(waiter) == ["from A"]


def test_a_dead_holder_is_taken_over_after_its_lease_not_before() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    holder = loaded(a)
    answers = change(holder, "confirmed")
    holder.force_save()
    a.step()
    assert answers == [True]
    died = clock.now  # A stops here: no more renewals, no more saves
    waiter = b.locker("k")
    waiter.acquire("repeat")
    while waiter.status is not Status.LOADED:
        run([b], clock, 0.05)
        assert clock.now - died < 1.5
    assert clock.now - died >= 0.6  # A's last renewal was at most a third of a lease before
    assert log(waiter) == ["confirmed"]


def test_force_asks_the_holder_who_saves_and_releases() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    holder = loaded(a)
    events: list[str] = []
    holder.on("replaced", lambda _: events.append("replaced"))
    answers = change(holder, "unsaved at request time")
    waiter = b.locker("k")
    waiter.acquire("force")
    run([a, b], clock, 0.6)
    assert waiter.status is Status.LOADED
    assert holder.status is Status.IDLE
    assert events == ["replaced"]
    assert answers == [True]
    assert log(waiter) == ["unsaved at request time"]


def test_force_takes_over_a_live_holder_that_does_not_answer() -> None:
    store, clock = new_world()
    slow = Rig(store, "A", clock, SPEC_SLOW_SAVES, mail=False)  # never hears the request
    b = Rig(store, "B", clock, SPEC_SLOW_SAVES)
    holder = loaded(slow)
    answers = change(holder, "never saved")
    waiter = b.locker("k")
    waiter.acquire("force")
    started = clock.now
    while waiter.status is not Status.LOADED:
        run([slow, b], clock, 0.05)
        assert clock.now - started < 2.0
    assert clock.now - started >= SPEC_SLOW_SAVES.force_timeout
    assert holder.status is Status.LOADED  # it does not know yet
    holder.force_save()
    slow.step()
    assert holder.status is Status.LOST
    assert isinstance(holder.error, LockLost)
    assert answers == [False]
    assert log(waiter) == []  # the stale holder's change never landed
    assert record(store).lock.session == "B"  # type: ignore[union-attr]


def test_steal_takes_at_once_and_the_old_holder_never_writes_again() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    holder = loaded(a)
    thief = loaded(b, mode="steal")
    assert thief.token == 2
    stale = change(holder, "stale")
    revision = store.read("t/k").revision  # type: ignore[union-attr]
    holder.force_save()
    a.step()
    assert holder.status is Status.LOST
    assert stale == [False]
    assert store.read("t/k").revision == revision  # type: ignore[union-attr]


def test_cancel_gives_up_at_once_without_writing() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    loaded(a)
    revision = store.read("t/k").revision  # type: ignore[union-attr]
    waiter = b.locker("k")
    waiter.acquire("cancel")
    b.step()
    assert waiter.status is Status.IDLE
    assert isinstance(waiter.error, LockUnavailable)
    assert store.read("t/k").revision == revision  # type: ignore[union-attr]


def test_a_mode_callable_decides_at_each_attempt() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    loaded(a)
    seen: list[Attempt] = []

    def decide(attempt: Attempt) -> str:
        seen.append(attempt)
        return "steal" if attempt.number == 3 else "repeat"

    waiter = b.locker("k")
    waiter.acquire(decide)
    run([a, b], clock, 0.5)
    assert waiter.status is Status.LOADED
    assert [attempt.number for attempt in seen] == [1, 2, 3]
    assert seen[0].lock.session == "A"
    assert seen[2].waited > seen[0].waited


def test_a_failing_mode_callable_cancels_the_load() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    loaded(a)
    waiter = b.locker("k")
    waiter.acquire(lambda attempt: "sideways")
    b.step()
    assert waiter.status is Status.IDLE
    assert isinstance(waiter.error, LockUnavailable)


def test_cancelling_a_force_load_withdraws_its_release_request() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock, SPEC_SLOW_SAVES), Rig(store, "B", clock, SPEC_SLOW_SAVES)
    loaded(a)
    waiter = b.locker("k")
    waiter.acquire("force")
    b.step()
    assert record(store).release_requests
    waiter.release()
    b.step()
    assert waiter.status is Status.IDLE
    assert record(store).release_requests == ()


# ---------------------------------------------------------------- leases and fencing


def test_a_holder_that_cannot_renew_stops_being_available_before_takeover() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    holder = loaded(a)
    last_renewal = clock.now
    assert holder.is_available(clock.now)
    waiter = b.locker("k")
    waiter.acquire("repeat")
    unavailable_at = taken_at = None
    while taken_at is None:
        clock.now += 0.01
        b.step()  # A is frozen: it neither renews nor saves
        if unavailable_at is None and not holder.is_available(clock.now):
            unavailable_at = clock.now
        if waiter.status is Status.LOADED:
            taken_at = clock.now
    assert unavailable_at is not None
    assert unavailable_at - last_renewal == pytest.approx(2 / 3, abs=0.02)
    assert taken_at >= last_renewal + 1.0
    assert taken_at > unavailable_at


def test_a_save_with_an_unknown_outcome_is_resolved_by_reading_again() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    answers = change(locker, "x")
    flaky = LoseOneReply(store)
    rig.store = flaky
    locker.force_save()
    rig.step()
    assert answers == []  # committed, but not confirmed on an unknown outcome
    assert isinstance(locker.error, StoreError)
    revision = store.read("t/k").revision  # type: ignore[union-attr]
    run([rig], clock, 0.3)
    assert answers == [True]
    assert store.read("t/k").revision == revision  # not written a second time


class LoseOneReply(MemoryStore):
    """Commits the first update, then raises as if its reply was lost."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.lost = False

    def update(
        self, key: str, transform: Transform[Any], known: Versioned | None = None
    ) -> Updated[Any]:
        result = self.inner.update(key, transform, known)
        if not self.lost:
            self.lost = True
            raise StoreError("reply lost", unknown_outcome=True)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_store_errors_are_retried_with_backoff_and_keep_the_change() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    answers = change(locker, "x")
    errors: list[object] = []
    locker.on("error", lambda locker: errors.append(locker.error))
    failing = FailFirst(store, times=4)
    rig.store = failing
    locker.force_save()
    run([rig], clock, 2.0, tick=0.01)
    assert answers == [True]
    assert len(errors) == 4
    assert record(store).data == {"log": ["x"]}


class FailFirst(LoseOneReply):
    def __init__(self, inner: MemoryStore, times: int) -> None:
        super().__init__(inner)
        self.left = times

    def update(
        self, key: str, transform: Transform[Any], known: Versioned | None = None
    ) -> Updated[Any]:
        if self.left:
            self.left -= 1
            raise StoreError("try later")
        return self.inner.update(key, transform, known)


class RefusedSession(LoseOneReply):
    """Every session write is refused for good (a wrong password, say) until ``mend``."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.refused = 0
        self.mended = False

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        if not self.mended:
            self.refused += 1
            raise StoreError("password authentication failed", retryable=False)
        self.inner.put_lease(lease_id, ttl, info)


def test_a_load_fails_at_once_when_the_session_record_cannot_be_written() -> None:
    store, clock = new_world()
    refusing = RefusedSession(store)
    rig = Rig(refusing, "A", clock)
    locker = rig.locker("k")
    locker.acquire()
    run([rig], clock, 0.5, tick=0.01)
    assert locker.status is Status.FAILED
    assert locker.failure == "store_error"
    assert isinstance(locker.error, StoreError)
    assert "password authentication failed" in str(locker.error)
    assert refusing.refused >= 1
    assert store.read("t/k") is None  # nothing was written
    # The lease keeps trying; once the store takes it, a new load works.
    refusing.mended = True
    run([rig], clock, 1.0, tick=0.01)
    assert rig.lease.error is None
    assert rig.lease.available(clock.now)
    again = rig.locker("k")
    again.acquire()
    run([rig], clock, 0.5, tick=0.01)
    assert again.status is Status.LOADED


def test_a_load_waits_while_session_writes_fail_in_a_way_retrying_can_mend() -> None:
    store, clock = new_world()
    failing = FaultyStore(store, fail_rate=1.0)
    rig = Rig(failing, "A", clock)
    locker = rig.locker("k")
    locker.acquire()
    run([rig], clock, 0.5, tick=0.01)
    assert locker.status is Status.LOADING
    assert rig.lease.error is not None
    assert rig.lease.error.retryable


# ---------------------------------------------------------------- bad input


def test_unstorable_data_is_refused_and_the_last_good_value_kept() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    change(locker, "good")
    locker.force_save()
    rig.step()
    before = store.read("t/k")
    locker.data["bad"] = {1: "integer key"}
    answers: list[bool] = []
    locker.when_saved(locker.mark_changed(), answers.append)
    locker.force_save()
    rig.step()
    assert isinstance(locker.error, UnstorableData)
    assert locker.error.path == "data['bad']"
    assert store.read("t/k") == before
    assert locker.status is Status.LOADED
    del locker.data["bad"]
    locker.force_save()
    rig.step()
    assert answers == [True]


def test_release_with_unstorable_data_releases_keeping_the_last_good_value() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    change(locker, "good")
    locker.force_save()
    rig.step()
    answers = change(locker, float("nan"))  # type: ignore[arg-type]
    locker.release()
    rig.step()
    assert locker.status is Status.IDLE
    assert answers == [False]
    assert record(store).data == {"log": ["good"]}
    assert record(store).lock is None


def test_a_corrupt_record_fails_the_load_and_is_left_untouched() -> None:
    store, clock = new_world()
    store.write("t/k", b'{"format": 1, "data": {}, "epoch": "seven"}', None)
    before = store.read("t/k")
    rig = Rig(store, "A", clock)
    locker = rig.locker("k")
    failed: list[str] = []
    locker.on("failed", lambda locker: failed.append(locker.failure or ""))
    locker.acquire()
    rig.step()
    assert locker.status is Status.FAILED
    assert locker.failure == "corrupt"
    assert isinstance(locker.error, CorruptRecord)
    assert failed == ["corrupt"]
    assert store.read("t/k") == before


@pytest.mark.parametrize("key", ["", 5, "x" * 201, "tab\there"])
def test_bad_keys_are_refused(key: Any) -> None:
    store, clock = new_world()
    with pytest.raises(UsageError):
        Rig(store, "A", clock).locker(key)


def test_misuse_raises_and_leaves_the_state_unchanged() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    with pytest.raises(UsageError, match="loaded"):
        locker.acquire()
    with pytest.raises(UsageError, match="no change"):
        locker.when_saved(99, print)
    with pytest.raises(UsageError, match="unknown event"):
        locker.on("exploded", print)
    with pytest.raises(UsageError, match="no request in flight"):
        locker.handle(None, clock.now)
    assert locker.status is Status.LOADED
    idle = rig.locker("other")
    with pytest.raises(UsageError, match="unknown load mode"):
        idle.acquire("sometimes")
    assert idle.status is Status.IDLE


def test_the_transition_table_covers_every_status() -> None:
    sources = {source for source, _ in TRANSITIONS}
    targets = set(TRANSITIONS.values())
    assert sources | targets == set(Status)
    assert {Status.IDLE, Status.LOST, Status.FAILED} <= targets


from sessionlocker.core.spec import Spec  # noqa: E402

SPEC_SLOW_SAVES = Spec(
    "t", lambda: {"log": []}, lease=1.0, autosave_period=60.0, force_timeout=0.6, poll_period=0.1
)


class ClocklessStore(MemoryStore):
    """A store with no clock of its own: it cannot say whether a lease expired."""

    def get_lease(self, lease_id: str) -> LeaseView:
        view = super().get_lease(lease_id)
        return LeaseView(exists=view.exists, expired=None, version=view.version, ttl=view.ttl)


def test_without_a_store_clock_the_waiter_watches_the_lease_for_a_full_ttl() -> None:
    clock = Clock()
    store = ClocklessStore(clock=clock)
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    holder = loaded(a)
    waiter = b.locker("k")
    waiter.acquire("repeat")
    last_renewal, version = clock.now, store.get_lease("A").version
    for _ in range(60):  # A renews: its session record keeps moving
        run([a, b], clock, 0.05)
        if store.get_lease("A").version != version:
            last_renewal, version = clock.now, store.get_lease("A").version
    assert waiter.status is Status.WAITING
    while waiter.status is not Status.LOADED:
        run([b], clock, 0.05)
        assert clock.now - last_renewal < 2.5
    # a full TTL of the waiter's own time with the record unchanged, counted from when
    # the waiter first saw the last version (at or after the last renewal)
    assert clock.now - last_renewal >= 1.0
    assert holder.status is Status.LOADED  # frozen; it finds out at its next save
    holder.force_save()
    a.step()
    assert holder.status is Status.LOST


def test_every_lifecycle_callback_fires_in_order() -> None:
    store, clock = new_world()
    a, b = Rig(store, "A", clock), Rig(store, "B", clock)
    seen: list[str] = []
    locker = a.locker("k")
    for name in sorted(EVENTS - {"error"}):
        locker.on(name, lambda _, name=name: seen.append(name))  # type: ignore[misc]
    locker.acquire()
    a.step()
    change(locker, "x")
    locker.force_save()
    a.step()
    assert seen == ["loaded", "before_save", "saved"]
    seen.clear()
    b.locker("k").acquire("force")  # a release request; A answers at its next save
    run([a, b], clock, 0.6)
    assert b.lockers[0].status is Status.LOADED
    # a look that finds the request (nothing new to save), then the releasing save
    assert seen == ["before_save", "before_save", "saved", "replaced", "idle"]
    seen.clear()
    locker.acquire("steal")
    a.step()
    b.lockers[0].force_save()
    b.step()
    assert b.lockers[0].status is Status.LOST
    seen.clear()
    locker.release()
    a.step()
    assert seen == ["before_save", "saved", "released", "idle"]
    seen.clear()
    store.write("t/bad", b"[]", None)
    broken = a.locker("bad")
    broken.on("failed", lambda _: seen.append("failed"))
    broken.acquire()
    a.step()
    assert seen == ["failed"]


def test_before_save_can_write_final_state_into_the_save() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    locker = loaded(rig)
    locker.on("before_save", lambda locker: locker.data["log"].append("stamped"))
    locker.release()
    rig.step()
    assert record(store).data == {"log": ["stamped"]}
