"""The stored record: encoding round trips and strict decoding."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sessionlocker.core.record import (
    FORMAT,
    ZLIB,
    Lock,
    Message,
    Purchase,
    Record,
    ReleaseRequest,
    Stamp,
    decode,
    encode,
)
from sessionlocker.errors import CorruptRecord


def full_record() -> Record:
    return Record(
        data={"coins": 5, "name": "ñandú", "items": [1, 2.5, None, True]},
        schema=3,
        patch=1,
        epoch=7,
        lock=Lock("s1", 7, 1700000000.5),
        stamp=Stamp("s1", 7, 3),
        release_requests=(ReleaseRequest("s2", 1700000001.0),),
        inbox=(Message("m1", "gift", {"gems": 3}, 5.0),),
        outbox=(Message("m2", "trade", [1, 2], 6.0, to="player:9"),),
        applied=("op-1", "m0"),
        purchases=(Purchase("p", "r1", 1.0),),
        credit={"gem": 2},
        user_ids=("12", "13"),
        tags={"region": "eu"},
    )


def test_round_trip_keeps_every_field() -> None:
    record = full_record()
    assert decode(encode(record)) == record


def test_encoding_is_compact_utf8_json_with_the_format_number() -> None:
    raw = json.loads(encode(full_record()).decode("utf-8"))
    assert raw["format"] == FORMAT
    assert raw["data"]["name"] == "ñandú"
    assert b"\\u00f1" not in encode(full_record())


def test_pre_encoded_data_is_spliced_in() -> None:
    value = encode(Record(data=None), '{"a":[1,2]}')
    assert decode(value).data == {"a": [1, 2]}


def test_unknown_fields_are_kept_and_written_back() -> None:
    raw = json.loads(encode(full_record()))
    raw["future_field"] = {"x": 1}
    record = decode(json.dumps(raw).encode())
    assert record.extra == {"future_field": {"x": 1}}
    assert json.loads(encode(record))["future_field"] == {"x": 1}


def test_missing_metadata_takes_defaults() -> None:
    record = decode(b'{"format": 1, "data": [1]}')
    assert (record.data, record.epoch, record.lock, record.stamp) == ([1], 0, None, None)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not strict JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"data": 1}', "format None"),
        (b'{"format": 2, "data": 1}', "format 2"),
        (b'{"format": 1}', "no 'data'"),
        (b'{"format": 1, "data": NaN}', "NaN is not a JSON number"),
        (b'{"format": 1, "data": [1.5, -1e400]}', "-1e400 is too large"),
        (b'{"format": 1, "data": 1, "epoch": 9, "epoch": 1}', "key 'epoch' appears twice"),
        (b'{"format": 1, "data": {"a": [{"x": 1, "x": 2}]}}', "key 'x' appears twice"),
        (b'{"format": 1, "data": {"s": ["ok", "\\ud800"]}}', "['data']['s'][1] holds a lone"),
        (b'{"format": 1, "data": {"\\udfff": 1}}', "key '\\udfff' at ['data'] holds a lone"),
        (b'{"format": 1, "data": ' + b"[" * 600 + b"]" * 600 + b"}", "more than 503 levels"),
        (b'{"format": 1, "data": ' + b"7" * 5000 + b"}", "4300 digits"),
        (b'{"format": 1, "data": 1, "epoch": -1}', "'epoch'"),
        (b'{"format": 1, "data": 1, "epoch": true}', "'epoch'"),
        (b'{"format": 1, "data": 1, "lock": 5}', "'lock'"),
        (
            b'{"format": 1, "data": 1, "lock": {"session": "", "epoch": 0, "acquired": 0}}',
            "lock.session",
        ),
        (
            b'{"format": 1, "data": 1, "epoch": 2, '
            b'"lock": {"session": "a", "epoch": 1, "acquired": 0}}',
            "lock epoch",
        ),
        (b'{"format": 1, "data": 1, "stamp": {"session": "a", "epoch": 1}}', "'seq'"),
        (b'{"format": 1, "data": 1, "release_requests": {}}', "release_requests"),
        (b'{"format": 1, "data": 1, "release_requests": [{"by": "a"}]}', "release_requests[].at"),
        (b'{"format": 1, "data": 1, "credit": {"gem": 1.5}}', "credit.gem"),
        (b'{"format": 1, "data": 1, "tags": []}', "'tags'"),
        (b'{"format": 1, "data": 1, "inbox": [{"id": "m", "kind": "k", "at": 1}]}', "body"),
        (b'{"format": 1, "data": 1, "inbox": [{"id": "", "kind": "k", "body": 1, "at": 1}]}', "id"),
        (
            b'{"format": 1, "data": 1, "outbox": [{"id": "m", "kind": "k", "body": 1, "at": 1}]}',
            "to",
        ),
        (b'{"format": 1, "data": 1, "applied": [3]}', "applied[]"),
        (b'{"format": 1, "data": 1, "purchases": [["p", "r"]]}', "purchases[]"),
        (b'{"format": 1, "data": 1, "purchases": [["p", 5, 1.0]]}', "purchases[]"),
    ],
)
def test_bad_bytes_are_refused_with_the_reason(value: bytes, says: str) -> None:
    with pytest.raises(CorruptRecord, match=None) as caught:
        decode(value)
    assert says in str(caught.value)


def test_escaped_pairs_and_escaped_backslashes_are_read_as_written() -> None:
    assert decode(b'{"format": 1, "data": ["\\ud83d\\ude00", "\\\\ud800"]}').data == [
        "\U0001f600",
        "\\ud800",
    ]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    deep_text = "[" * 1000
    value = encode(Record(data={"t": deep_text}))
    assert decode(value).data == {"t": deep_text}


def test_held_by_names_session_and_epoch() -> None:
    record = full_record()
    assert record.held_by("s1", 7)
    assert not record.held_by("s1", 6)
    assert not record.held_by("s2", 7)
    assert not Record(data=1).held_by("s1", 0)


def test_data_given_as_bytes_is_spliced_as_the_same_record() -> None:
    record = full_record()
    text = json.dumps(record.data, ensure_ascii=False, separators=(",", ":"))
    as_text = encode(record, text)
    assert encode(record, text.encode("utf-8")) == as_text
    assert decode(as_text) == record


def test_compressed_data_given_as_bytes_round_trips() -> None:
    record = replace(full_record(), encoding=ZLIB)
    text = json.dumps(record.data, ensure_ascii=False, separators=(",", ":"))
    assert encode(record, text.encode("utf-8")) == encode(record, text)
    assert decode(encode(record, text.encode("utf-8"))) == record


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1, 2}, b"raw"])
def test_a_metadata_value_json_refuses_is_refused_as_json_refuses_it(bad: object) -> None:
    record = replace(full_record(), tags={"bad": bad})
    with pytest.raises((ValueError, TypeError)) as caught:
        encode(record)
    with pytest.raises(type(caught.value)):
        json.dumps(bad, allow_nan=False)


def test_metadata_json_changes_silently_is_written_as_json_writes_it() -> None:
    record = replace(full_record(), tags={"pair": (1, 2), "by_id": {7: "x"}})
    assert json.loads(encode(record))["tags"] == {"pair": [1, 2], "by_id": {"7": "x"}}


def test_with_copies_like_replace_and_refuses_unknown_fields() -> None:
    record = full_record()
    copy = record.with_(epoch=8, lock=None, data=None)
    assert copy == replace(record, epoch=8, lock=None, data=None)
    assert record.epoch == 7
    with pytest.raises(TypeError):
        record.with_(nope=1)
