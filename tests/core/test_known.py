"""A save that knows the bytes it last wrote does not decode them again, and writes
exactly what a save that decodes them would write."""

from __future__ import annotations

from typing import Any

from sessionlocker.core import transforms as tx
from sessionlocker.core.ledger import Meta
from sessionlocker.core.protocol import Keep, Put, Versioned
from sessionlocker.core.record import Lock, Record, ReleaseRequest, decode, encode

HELD_BY_A = Record(data={"n": 0}, epoch=3, lock=Lock("A", 3, 10.0), extra={"later": 1})


def save(seq: int, data_json: str, known: tx.Known | None) -> Any:
    return tx.save(session="A", epoch=3, seq=seq, data_json=data_json, meta=Meta(), known=known)


def written(decision: Put[Any] | Keep[Any]) -> Put[Any]:
    assert isinstance(decision, Put), decision
    return decision


def test_a_chain_of_saves_writes_the_same_bytes_with_or_without_the_known_record() -> None:
    current = Versioned(encode(HELD_BY_A), 1)
    known: tx.Known | None = None
    for seq in range(1, 6):
        data_json = f'{{"n":{seq}}}'
        fast = written(save(seq, data_json, known)(current))
        slow = written(save(seq, data_json, None)(current))
        assert fast.value == slow.value
        assert fast.outcome == slow.outcome
        assert fast.outcome.written is not None
        assert fast.outcome.written.data is None  # the data is never kept twice
        current = Versioned(fast.value, current.revision + 1)
        known = tx.known_after(fast.outcome.written, current, known)
        assert known is not None
        assert known.value is current.value
    record = decode(current.value)
    assert record.data == {"n": 5}
    assert record.extra == {"later": 1}
    assert record.stamp is not None
    assert record.stamp.seq == 5


def test_other_bytes_are_decoded_so_a_release_request_written_since_is_seen() -> None:
    mine = written(save(1, '{"n":1}', None)(Versioned(encode(HELD_BY_A), 1)))
    known = tx.known_after(mine.outcome.written, Versioned(mine.value, 2), None)
    asked = decode(mine.value).with_(release_requests=(ReleaseRequest("B", 11.0),))
    after = written(save(2, '{"n":2}', known)(Versioned(encode(asked), 3)))
    assert after.outcome.asked
    assert decode(after.value).lock is not None  # the holder releases with a save of its own


def test_a_keep_keeps_what_is_known_only_while_the_bytes_are_the_same() -> None:
    mine = written(save(1, '{"n":1}', None)(Versioned(encode(HELD_BY_A), 1)))
    known = tx.known_after(mine.outcome.written, Versioned(mine.value, 2), None)
    assert known is not None
    # A save that wrote nothing (a quiet autosave) keeps what is known, if still stored.
    assert tx.known_after(None, Versioned(bytes(mine.value), 2), known) is known
    assert tx.known_after(None, Versioned(encode(HELD_BY_A), 4), known) is None


def test_a_look_that_finds_a_release_request_hands_its_record_to_the_releasing_save() -> None:
    asked = Versioned(encode(HELD_BY_A.with_(release_requests=(ReleaseRequest("B", 11.0),))), 5)
    look = tx.save(session="A", epoch=3, seq=1, data_json='{"n":0}', only_if_asked=True)
    kept = look(asked)
    assert isinstance(kept, Keep)
    assert kept.outcome.asked
    assert kept.outcome.seen is not None
    assert kept.outcome.seen.data is None  # the data is never kept twice
    known = tx.known_after(None, asked, None, kept.outcome.seen)
    assert known is not None

    def release(known: tx.Known | None) -> Any:
        return tx.save(
            session="A", epoch=3, seq=2, data_json='{"n":9}', release=True, meta=Meta(), known=known
        )

    fast = written(release(known)(asked))
    slow = written(release(None)(asked))
    assert fast.value == slow.value
    assert decode(fast.value).lock is None


def test_a_release_request_reuses_the_record_the_acquire_read() -> None:
    current = Versioned(encode(HELD_BY_A), 7)
    acquire = tx.acquire(
        session="B", at=12.0, fresh=Record(data={}), fresh_json="{}", upgrade=lambda r: r
    )
    held = acquire(current)
    assert isinstance(held, Keep)
    assert isinstance(held.outcome, tx.Held)
    assert held.outcome.record == HELD_BY_A
    # Marked so that using it shows: the request is written on the record handed over.
    seen = tx.Known(current.value, held.outcome.record.with_(extra={"later": "seen"}))
    request = tx.request_release(session="B", at=12.0, seen=seen)
    assert decode(written(request(current)).value).extra == {"later": "seen"}
    other = Versioned(encode(HELD_BY_A.with_(data={"n": 1})), 8)  # other bytes: decoded
    assert decode(written(request(other)).value).extra == {"later": 1}
