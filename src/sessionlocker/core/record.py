"""The stored record: one JSON document per key, with a ``format`` number.

A record holds the user's data and the library's metadata::

    {"format": 1, "data": {...}, "schema": 3, "patch": 1, "compatible": 2, "epoch": 42,
     "lock": {"session": "...", "epoch": 42, "acquired": t} | null,
     "stamp": {"session": "...", "epoch": 42, "seq": 7} | null,
     "release_requests": [{"by": "...", "at": t}],
     "inbox": [{"id": "...", "kind": "...", "body": ..., "at": t}],
     "outbox": [{"id": "...", "kind": "...", "body": ..., "at": t, "to": "key"}],
     "applied": ["op id", ...], "purchases": [[product_id, purchase_id, t], ...],
     "credit": {"product": n}, "user_ids": [...], "tags": {...}}

``schema``, ``patch`` and ``compatible`` are the data's version, patch level and the
oldest version of the code that may load it (see ``migrations``). ``epoch`` is the
fencing counter: +1 at every acquire, never reused. ``inbox`` holds remote changes
anyone may append without the lock; ``outbox`` holds messages the holder committed
and still has to deliver to other records' inboxes; ``applied`` and ``purchases`` are
the bounded histories that make operations exactly-once. ``user_ids`` are the users the
record belongs to (sorted strings; several for a guild or a shared house), which stores
index for ``keys_for_user``. ``stamp`` names the holder write that last changed ``data``
(session, epoch and that holder's save number), so a writer whose reply was lost can
tell, by reading, whether its write committed.
Decoding is strict: anything unexpected raises ``CorruptRecord`` and the stored bytes are
left as they are. That includes what Python's ``json`` lets through: a key repeated at
any depth, a lone surrogate escape, ``NaN``, nesting deeper than ``MAX_DEPTH`` (see
``strictjson``, the one parser every path uses). Fields this version does not know are
kept and written back.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass, field, fields
from typing import Any

from sessionlocker.core.storable import encode_json
from sessionlocker.core.strictjson import MAX_DEPTH, loads
from sessionlocker.errors import CorruptRecord, UsageError

__all__ = [
    "FORMAT",
    "ZLIB",
    "Lock",
    "Message",
    "Purchase",
    "Record",
    "ReleaseRequest",
    "Stamp",
    "check_user_id",
    "decode",
    "decode_json",
    "encode",
]

#: The record format this code reads and writes.
FORMAT = 1

#: ``encoding`` of a record whose data is zlib-compressed JSON, in base64 text.
ZLIB = "zlib"

#: How deep a record may nest: the data's limit plus the envelope around a message body
#: (record, inbox list, message).
RECORD_DEPTH = MAX_DEPTH + 3

_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

_KNOWN = frozenset(
    {
        "format",
        "data",
        "schema",
        "patch",
        "compatible",
        "encoding",
        "epoch",
        "lock",
        "stamp",
        "release_requests",
        "inbox",
        "outbox",
        "applied",
        "purchases",
        "credit",
        "user_ids",
        "tags",
    }
)


@dataclass(frozen=True, slots=True)
class Lock:
    """Who holds the record: a session, in an epoch, since a wall-clock time.

    ``checked`` counts the holder's lease lapses it has confirmed the lock after: the
    holder rewrites it after each lapse, so a takeover judged during the lapse (and
    conditional on the lock as it was) can no longer land.
    """

    session: str
    epoch: int
    acquired: float
    checked: int = 0


@dataclass(frozen=True, slots=True)
class Stamp:
    """The holder write that last changed the data."""

    session: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """Another session asks the holder to save and release."""

    by: str
    at: float


@dataclass(frozen=True, slots=True)
class Message:
    """A remote change: applied once by the record's holder through its ``kind`` handler.

    ``to`` is set only while the message waits in a sender's outbox (the key it goes to).
    """

    id: str
    kind: str
    body: Any
    at: float
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Purchase:
    """One entry of the purchase history."""

    product_id: str
    purchase_id: str
    at: float


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded record. ``data`` is the user's JSON value; the rest is metadata."""

    data: Any
    schema: int = 1
    patch: int = 0
    compatible: int = 1
    encoding: str | None = None
    epoch: int = 0
    lock: Lock | None = None
    stamp: Stamp | None = None
    release_requests: tuple[ReleaseRequest, ...] = ()
    inbox: tuple[Message, ...] = ()
    outbox: tuple[Message, ...] = ()
    applied: tuple[str, ...] = ()
    purchases: tuple[Purchase, ...] = ()
    credit: dict[str, int] = field(default_factory=dict)
    user_ids: tuple[str, ...] = ()
    tags: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def held_by(self, session: str, epoch: int) -> bool:
        """True if the lock is exactly this session in this epoch."""
        return self.lock is not None and (self.lock.session, self.lock.epoch) == (
            session,
            epoch,
        )

    def with_(self, **changes: Any) -> Record:
        """A copy with some fields changed (cheaper than ``dataclasses.replace``, which
        checks and calls ``__init__``: a save makes one copy per write)."""
        copy = object.__new__(Record)
        for name in _FIELDS:
            _set(copy, name, getattr(self, name))
        for name, value in changes.items():
            if name not in _FIELD_SET:
                raise TypeError(f"Record has no field {name!r}")
            _set(copy, name, value)
        return copy


#: Record's fields, and how a copy's are set (it is frozen): see ``Record.with_``.
_FIELDS = tuple(f.name for f in fields(Record))
_FIELD_SET = frozenset(_FIELDS)
_set = object.__setattr__


def encode(record: Record, data_json: str | bytes | None = None) -> bytes:
    """The record as UTF-8 JSON bytes.

    ``data_json``, when given, is the data already encoded (a save encodes the data
    once, then splices it into each attempt's record): text, or better its UTF-8 bytes
    (``storable.encode_data_bytes``), used as they are.
    """
    meta: dict[str, Any] = {
        **record.extra,
        "format": FORMAT,
        "schema": record.schema,
        "patch": record.patch,
        "compatible": record.compatible,
        "epoch": record.epoch,
        "lock": None if record.lock is None else _lock_json(record.lock),
        "stamp": None if record.stamp is None else _stamp_json(record.stamp),
        "release_requests": [{"by": r.by, "at": r.at} for r in record.release_requests],
        "inbox": [_message_json(m) for m in record.inbox],
        "outbox": [_message_json(m) for m in record.outbox],
        "applied": list(record.applied),
        "purchases": [[p.product_id, p.purchase_id, p.at] for p in record.purchases],
        "credit": record.credit,
        "user_ids": list(record.user_ids),
        "tags": record.tags,
    }
    if record.encoding is not None:
        meta["encoding"] = record.encoding
    if data_json is None:
        data = _JSON.encode(record.data).encode("utf-8")
    elif isinstance(data_json, str):
        data = data_json.encode("utf-8")
    else:
        data = data_json
    if record.encoding == ZLIB:
        data = b'"' + base64.b64encode(zlib.compress(data)) + b'"'
    return b"".join((encode_json(meta)[:-1], b',"data":', data, b"}"))


def decode(value: bytes) -> Record:
    """Parse and check stored bytes; raise ``CorruptRecord`` saying what is wrong."""
    try:
        raw = loads(value, max_depth=RECORD_DEPTH)
    except ValueError as exc:
        raise CorruptRecord(f"stored bytes are not strict JSON: {exc}") from exc
    return decode_json(raw)


def decode_json(raw: Any) -> Record:
    """Check a record already parsed from JSON; raise ``CorruptRecord`` saying what is wrong."""
    if not isinstance(raw, dict):
        raise CorruptRecord(f"a record is a JSON object, found {type(raw).__name__}")
    fmt = raw.get("format")
    if fmt != FORMAT:
        raise CorruptRecord(f"record format {fmt!r} is not {FORMAT}, the one this code reads")
    if "data" not in raw:
        raise CorruptRecord("record has no 'data'")
    schema = _int(raw, "schema", 1)
    encoding = raw.get("encoding")
    record = Record(
        data=_unpack(raw["data"], encoding),
        encoding=encoding,
        schema=schema,
        patch=_int(raw, "patch", 0),
        compatible=_int(raw, "compatible", schema),
        epoch=_int(raw, "epoch", 0),
        lock=_lock(raw.get("lock")),
        stamp=_stamp(raw.get("stamp")),
        release_requests=tuple(_request(r) for r in _list(raw, "release_requests")),
        inbox=tuple(_message(m, "inbox[]", to=False) for m in _list(raw, "inbox")),
        outbox=tuple(_message(m, "outbox[]", to=True) for m in _list(raw, "outbox")),
        applied=tuple(_op_id(op) for op in _list(raw, "applied")),
        purchases=tuple(_purchase(p) for p in _list(raw, "purchases")),
        credit=_credit(raw.get("credit", {})),
        user_ids=_user_ids(_list(raw, "user_ids")),
        tags=_dict(raw, "tags"),
        extra={k: v for k, v in raw.items() if k not in _KNOWN},
    )
    if not 1 <= record.compatible <= record.schema:
        raise CorruptRecord(f"'compatible' {record.compatible} is not within 1..{record.schema}")
    if record.lock is not None and record.lock.epoch != record.epoch:
        raise CorruptRecord(f"lock epoch {record.lock.epoch} is not the record's {record.epoch}")
    return record


def _unpack(data: Any, encoding: Any) -> Any:
    if encoding is None:
        return data
    if encoding != ZLIB or not isinstance(data, str):
        raise CorruptRecord(f"unknown data encoding {encoding!r}")
    try:
        return loads(zlib.decompress(base64.b64decode(data, validate=True)))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise CorruptRecord(f"compressed data cannot be read: {exc}") from exc


def _lock_json(lock: Lock) -> dict[str, Any]:
    return {
        "session": lock.session,
        "epoch": lock.epoch,
        "acquired": lock.acquired,
        "checked": lock.checked,
    }


def _message_json(message: Message) -> dict[str, Any]:
    out = {"id": message.id, "kind": message.kind, "body": message.body, "at": message.at}
    if message.to is not None:
        out["to"] = message.to
    return out


def _stamp_json(stamp: Stamp) -> dict[str, Any]:
    return {"session": stamp.session, "epoch": stamp.epoch, "seq": stamp.seq}


def _int(raw: dict[str, Any], name: str, default: int) -> int:
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptRecord(f"'{name}' must be a whole number >= 0, found {value!r}")
    return value


def _number(raw: dict[str, Any], name: str, where: str) -> float:
    value = raw.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise CorruptRecord(f"'{where}.{name}' must be a number, found {value!r}")
    return float(value)


def _str(raw: dict[str, Any], name: str, where: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise CorruptRecord(f"'{where}.{name}' must be a non-empty string, found {value!r}")
    return value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CorruptRecord(f"'{where}' must be an object, found {value!r}")
    return value


def _list(raw: dict[str, Any], name: str) -> list[Any]:
    value = raw.get(name, [])
    if not isinstance(value, list):
        raise CorruptRecord(f"'{name}' must be a list, found {type(value).__name__}")
    return value


def _dict(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return _obj(raw.get(name, {}), name)


def _lock(value: Any) -> Lock | None:
    if value is None:
        return None
    raw = _obj(value, "lock")
    return Lock(
        _str(raw, "session", "lock"),
        _int(raw, "epoch", -1),
        _number(raw, "acquired", "lock"),
        _int(raw, "checked", 0),
    )


def _stamp(value: Any) -> Stamp | None:
    if value is None:
        return None
    raw = _obj(value, "stamp")
    return Stamp(_str(raw, "session", "stamp"), _int(raw, "epoch", -1), _int(raw, "seq", -1))


def _request(value: Any) -> ReleaseRequest:
    raw = _obj(value, "release_requests[]")
    return ReleaseRequest(
        _str(raw, "by", "release_requests[]"), _number(raw, "at", "release_requests[]")
    )


def _message(value: Any, where: str, *, to: bool) -> Message:
    raw = _obj(value, where)
    if "body" not in raw:
        raise CorruptRecord(f"'{where}' has no 'body'")
    return Message(
        _str(raw, "id", where),
        _str(raw, "kind", where),
        raw["body"],
        _number(raw, "at", where),
        _str(raw, "to", where) if to else None,
    )


def _op_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise CorruptRecord(f"'applied[]' must be a non-empty string, found {value!r}")
    return value


def _purchase(value: Any) -> Purchase:
    ok = isinstance(value, list) and len(value) == 3
    if ok:
        product, purchase, at = value
        ok = isinstance(product, str) and isinstance(purchase, str)
        ok = ok and isinstance(at, int | float) and not isinstance(at, bool)
    if not ok:
        raise CorruptRecord(f"'purchases[]' must be [product_id, purchase_id, time], not {value!r}")
    return Purchase(product, purchase, float(at))


def _user_ids(values: list[Any]) -> tuple[str, ...]:
    """The user ids, sorted and without repeats (stores index them from the bytes)."""
    for value in values:
        if not isinstance(value, str) or not value:
            raise CorruptRecord(f"'user_ids[]' must be a non-empty string, found {value!r}")
    return tuple(sorted(set(values)))


def _credit(value: Any) -> dict[str, int]:
    credit = _obj(value, "credit")
    for product, amount in credit.items():
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise CorruptRecord(f"'credit.{product}' must be a whole number, found {amount!r}")
    return credit


def check_user_id(user_id: object) -> str:
    """``user_id`` if it is a non-empty string; ``UsageError`` otherwise."""
    if not isinstance(user_id, str) or not user_id:
        raise UsageError(f"a user id must be a non-empty string, not {user_id!r}")
    return user_id
