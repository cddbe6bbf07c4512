"""The pure transforms: each checks the lock it expects and returns an outcome."""

from __future__ import annotations

from typing import Any

from sessionlocker.core import transforms as tx
from sessionlocker.core.protocol import Keep, Put, Transform, Versioned
from sessionlocker.core.record import Lock, Record, ReleaseRequest, Stamp, decode, encode


def stored(record: Record, revision: int = 5) -> Versioned:
    return Versioned(encode(record), revision)


def put(decision: Put[Any] | Keep[Any]) -> tuple[Record, Any]:
    assert isinstance(decision, Put), decision
    return decode(decision.value), decision.outcome


def kept(decision: Put[Any] | Keep[Any]) -> Any:
    assert isinstance(decision, Keep), decision
    return decision.outcome


HELD_BY_B = Record(data={"n": 1}, epoch=4, lock=Lock("B", 4, 10.0))
FREE = Record(data={"n": 1}, epoch=4, stamp=Stamp("B", 4, 9))


def acquire(take_over: Lock | None = None) -> Transform[tx.AcquireOutcome]:
    return tx.acquire(
        session="A", at=20.0, fresh=Record(data=None), fresh_json='{"n":0}', take_over=take_over
    )


def test_acquire_creates_a_missing_record_at_epoch_1() -> None:
    record, outcome = put(acquire()(None))
    assert record.lock == Lock("A", 1, 20.0)
    assert record.epoch == 1
    assert record.data == {"n": 0}
    assert outcome.created
    assert outcome.record.data == {"n": 0}


def test_acquire_takes_a_free_record_and_bumps_the_epoch() -> None:
    record, outcome = put(acquire()(stored(FREE)))
    assert (record.epoch, record.lock) == (5, Lock("A", 5, 20.0))
    assert record.data == {"n": 1}
    assert record.stamp == Stamp("B", 4, 9)  # the stamp names the last data write only
    assert not outcome.created
    assert outcome.data_json == '{"n":1}'


def test_acquire_reports_a_held_record_without_writing() -> None:
    outcome = kept(acquire()(stored(HELD_BY_B)))
    assert outcome == tx.Held(Lock("B", 4, 10.0), requested=False)
    asked = HELD_BY_B.with_(release_requests=(ReleaseRequest("A", 1.0),))
    assert kept(acquire()(stored(asked))).requested


def test_acquire_with_ask_writes_our_release_request_on_a_held_record_once() -> None:
    asking = tx.acquire(
        session="A", at=20.0, fresh=Record(data=None), fresh_json='{"n":0}', ask=True
    )
    record, outcome = put(asking(stored(HELD_BY_B)))
    assert outcome == tx.Held(Lock("B", 4, 10.0), requested=True, asked=True)
    assert record == HELD_BY_B.with_(release_requests=(ReleaseRequest("A", 20.0),))
    assert kept(asking(stored(record))) == tx.Held(Lock("B", 4, 10.0), requested=True)
    taken, granted = put(asking(stored(FREE)))  # a free record is taken, not asked for
    assert isinstance(granted, tx.Granted)
    assert (taken.lock, taken.release_requests) == (Lock("A", 5, 20.0), ())


def test_acquire_takes_over_only_the_exact_lock_it_judged() -> None:
    record, _ = put(acquire(take_over=Lock("B", 4, 10.0))(stored(HELD_BY_B)))
    assert record.lock == Lock("A", 5, 20.0)
    moved_on = HELD_BY_B.with_(epoch=5, lock=Lock("C", 5, 11.0))
    assert isinstance(kept(acquire(take_over=Lock("B", 4, 10.0))(stored(moved_on))), tx.Held)


def test_acquire_clears_release_requests_meant_for_the_old_holder() -> None:
    asked = FREE.with_(release_requests=(ReleaseRequest("C", 1.0),))
    record, _ = put(acquire()(stored(asked)))
    assert record.release_requests == ()


def test_only_the_grant_of_a_free_unrequested_record_is_quiet() -> None:
    """Nobody waits for the grant of a free record (a waiter waits for a release); a
    takeover, or a grant over someone's release request, still wakes the watchers."""
    free = acquire()(stored(FREE))
    asked = acquire()(stored(FREE.with_(release_requests=(ReleaseRequest("C", 1.0),))))
    taken = acquire(take_over=Lock("B", 4, 10.0))(stored(HELD_BY_B))
    created = acquire()(None)
    assert isinstance(free, Put)
    assert free.quiet
    assert isinstance(asked, Put)
    assert not asked.quiet
    assert isinstance(taken, Put)
    assert not taken.quiet
    assert isinstance(created, Put)
    assert not created.quiet


def test_acquire_finds_its_own_lock_after_a_lost_reply() -> None:
    first, _ = put(acquire()(stored(FREE)))
    again = kept(acquire()(stored(first)))
    assert isinstance(again, tx.Granted)
    assert again.record.epoch == 5


def test_acquire_refuses_corrupt_bytes_and_unstorable_stored_data() -> None:
    assert isinstance(kept(acquire()(Versioned(b"garbage", 1))), tx.Refused)
    surrogate = Versioned(b'{"format": 1, "data": "\\ud800"}', 1)
    outcome = kept(acquire()(surrogate))
    assert isinstance(outcome, tx.Refused)
    assert "lone surrogate" in str(outcome.error)


MINE = Record(data={"n": 1}, epoch=5, lock=Lock("A", 5, 20.0), stamp=Stamp("A", 5, 1))


def save(seq: int = 2, **flags: bool) -> Transform[tx.SaveOutcome]:
    return tx.save(session="A", epoch=5, seq=seq, data_json='{"n":2}', **flags)


def test_save_writes_data_and_stamp_while_held() -> None:
    record, outcome = put(save()(stored(MINE)))
    assert record.data == {"n": 2}
    assert record.stamp == Stamp("A", 5, 2)
    assert record.lock == MINE.lock
    assert outcome == tx.Saved(released=False, asked=False, held=True)


def test_save_with_release_clears_the_lock_in_the_same_write() -> None:
    record, outcome = put(save(release=True)(stored(MINE)))
    assert record.lock is None
    assert record.epoch == 5
    assert outcome == tx.Saved(released=True, asked=False, held=False)


def test_save_reports_a_release_request_but_keeps_the_lock() -> None:
    """The holder must stop being available before a write releases its lock: a save
    that is not a release only says it was asked; the release is a save of its own."""
    asked = MINE.with_(release_requests=(ReleaseRequest("B", 1.0),))
    record, outcome = put(save()(stored(asked)))
    assert record.lock == MINE.lock
    assert record.release_requests == asked.release_requests
    assert outcome == tx.Saved(released=False, asked=True, held=True)
    assert kept(save()(stored(record))) == tx.Saved(released=False, asked=True, held=True)
    released, outcome = put(save(seq=3, release=True)(stored(record)))
    assert released.lock is None
    assert released.release_requests == ()
    assert outcome == tx.Saved(released=True, asked=False, held=False)


def test_save_never_writes_over_another_lock() -> None:
    stolen = MINE.with_(epoch=6, lock=Lock("B", 6, 30.0))
    assert kept(save()(stored(stolen))) == tx.Lost(Lock("B", 6, 30.0))
    assert kept(save()(None)) == tx.Lost(None)
    assert kept(save()(Versioned(b"junk", 1))) == tx.Lost(None)
    released = MINE.with_(lock=None)
    assert kept(save()(stored(released))) == tx.Lost(None)


def test_save_finds_its_own_stamp_after_a_lost_reply() -> None:
    committed, _ = put(save()(stored(MINE)))
    assert kept(save()(stored(committed))) == tx.Saved(released=False, asked=False, held=True)
    released, _ = put(save(release=True)(stored(MINE)))
    assert kept(save(release=True)(stored(released))).released
    taken_after = committed.with_(epoch=6, lock=Lock("B", 6, 30.0))
    outcome = kept(save()(stored(taken_after)))
    assert outcome == tx.Saved(released=False, asked=False, held=False)


def test_a_quiet_save_writes_nothing_and_says_whether_it_was_asked() -> None:
    assert kept(save(only_if_asked=True)(stored(MINE))) == tx.Saved(
        released=False, asked=False, held=True
    )
    asked = MINE.with_(release_requests=(ReleaseRequest("B", 1.0),))
    outcome = kept(save(only_if_asked=True)(stored(asked)))
    assert outcome == tx.Saved(released=False, asked=True, held=True)


def test_release_request_is_added_once_and_withdrawn() -> None:
    request = tx.request_release(session="A", at=3.0)
    record, outcome = put(request(stored(HELD_BY_B)))
    assert record.release_requests == (ReleaseRequest("A", 3.0),)
    assert outcome == tx.Requested(Lock("B", 4, 10.0))
    assert kept(request(stored(record))) == tx.Requested(Lock("B", 4, 10.0))
    withdrawn, _ = put(tx.withdraw(session="A")(stored(record)))
    assert withdrawn.release_requests == ()
    assert kept(tx.withdraw(session="A")(stored(withdrawn))) == tx.Withdrawn()


def test_release_request_needs_no_write_when_free_or_ours() -> None:
    request = tx.request_release(session="A", at=3.0)
    assert kept(request(None)) == tx.Free()
    assert kept(request(stored(FREE))) == tx.Free()
    assert kept(request(stored(MINE))) == tx.Free()
    assert isinstance(kept(request(Versioned(b"junk", 1))), tx.Refused)


def test_a_late_save_never_overwrites_a_newer_save_of_the_same_holder() -> None:
    newer, _ = put(save(seq=7)(stored(MINE)))
    late = kept(save(seq=3)(stored(newer)))
    assert late == tx.Saved(released=False, asked=False, held=True)


def test_withdraw_clears_our_lock_and_our_requests_but_no_one_elses() -> None:
    ours = MINE.with_(release_requests=(ReleaseRequest("A", 1.0), ReleaseRequest("C", 2.0)))
    cleaned, _ = put(tx.withdraw(session="A")(stored(ours)))
    assert cleaned.lock is None
    assert cleaned.release_requests == (ReleaseRequest("C", 2.0),)
    assert cleaned.stamp == MINE.stamp
    assert kept(tx.withdraw(session="A")(stored(HELD_BY_B))) == tx.Withdrawn()


def test_a_recheck_after_a_lapse_rewrites_the_lock_so_an_older_takeover_fails() -> None:
    record, outcome = put(save(only_if_asked=True, checked=1)(stored(MINE)))
    assert record.lock == Lock("A", 5, 20.0, checked=1)
    assert outcome.held
    taker = tx.acquire(
        session="B", at=30.0, fresh=Record(data=None), fresh_json="{}", take_over=MINE.lock
    )
    assert isinstance(kept(taker(stored(record))), tx.Held)  # judged on the lock before the rewrite
    assert isinstance(put(taker(stored(MINE)))[1], tx.Granted)  # without the rewrite it would land
    assert kept(save(seq=3, only_if_asked=True, checked=1)(stored(record))).held  # no rewrite


def test_an_acquire_run_after_it_expires_writes_nothing() -> None:
    now = [20.0]
    late = tx.acquire(
        session="A",
        at=20.0,
        fresh=Record(data=None),
        fresh_json="{}",
        expires=25.0,
        wall=lambda: now[0],
    )
    assert isinstance(put(late(stored(FREE)))[1], tx.Granted)
    now[0] = 25.5
    assert kept(late(stored(FREE))) == tx.Expired()
    assert kept(late(None)) == tx.Expired()


def test_confirm_rewrites_our_lock_or_reports_it_lost() -> None:
    check = tx.confirm(session="A", epoch=5, checked=2)
    record, outcome = put(check(stored(MINE)))
    assert record.lock == Lock("A", 5, 20.0, checked=2)
    assert isinstance(outcome, tx.Granted)
    assert outcome.record.data == MINE.data
    taken = MINE.with_(epoch=6, lock=Lock("B", 6, 30.0))
    assert kept(check(stored(taken))) == tx.Lost(Lock("B", 6, 30.0))
    assert kept(check(stored(MINE.with_(lock=None)))) == tx.Lost(None)
    assert kept(check(None)) == tx.Lost(None)


def test_a_fencing_withdraw_always_writes() -> None:
    record, outcome = put(tx.withdraw(session="A", fence=True)(stored(HELD_BY_B)))
    assert record == HELD_BY_B
    assert outcome == tx.Withdrawn()
    cleaned, _ = put(tx.withdraw(session="A", fence=True)(stored(MINE)))
    assert cleaned.lock is None
