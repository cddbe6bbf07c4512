"""What can be stored: JSON values only, checked with the path to the first bad one.

``json.dumps`` alone is not enough: it turns integer keys into strings and tuples into
lists without a word, so data would come back different from what was saved. The
check here refuses those too, as well as NaN and infinities, cycles, and strings that
are not valid UTF-8 (lone surrogates), lists and objects nested more than ``MAX_DEPTH``
(500) levels deep, and integers too long to be read back (more digits than
``sys.get_int_max_str_digits()``, 4300 by default).

The check runs on every save, so it is done at C speed first: the strict dump refuses
non-finite numbers, cycles and foreign types; encoding the text as UTF-8 refuses lone
surrogates; reading the text back and comparing it with the data refuses what the dump
changes silently (tuples, keys that are not strings); counting the brackets of the text
refuses too deep a nesting. Only when that fast check fails does the walk in Python run
(without recursion, so deep data cannot overflow the stack), to name the path of the
bad value. The walk is the definition of what is storable: when the fast check fails
but the walk accepts, the walk's verdict stands. The fast check accepts nothing the
walk refuses, short of a value whose own ``__eq__`` claims it equals the list or string
it was dumped as (a tuple subclass that says it equals any list).

With orjson installed (the ``fast`` extra) the C-speed check is orjson's dump, its
read-back and the comparison, several times faster; when orjson cannot vouch for the
data (it refuses integers outside 64 bits and nesting past 254 levels, and changes
what it cannot keep: NaN becomes null, a tuple a list, a date a string) the check
above runs as without it, so the verdicts are exactly the same with or without
orjson. Only the text of some floats differs (``1e16`` against ``1e+16``): the same
number either way.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

from sessionlocker.core.strictjson import MAX_DEPTH, too_deep
from sessionlocker.errors import UnstorableData

__all__ = ["check_storable", "encode_data", "encode_data_bytes", "encode_json"]

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def encode_data(data: Any) -> str:
    """The data as compact JSON text, after checking it is storable (see the module)."""
    return encode_data_bytes(data).decode("utf-8")


def encode_data_bytes(data: Any) -> bytes:
    """``encode_data`` as the UTF-8 bytes the check produced (no second encoding)."""
    raw = _fast_encode(data)
    if raw is not None:
        return raw
    check_storable(data, fast=False)
    # The walk accepted it: encode as before, errors and all.
    return _ENCODER.encode(data).encode("utf-8")


def encode_json(value: Any) -> bytes:
    """``value`` (the library's own JSON: a record's metadata) as compact UTF-8 JSON,
    exactly what ``json.dumps`` would write, raising what it raises; at C speed (orjson)
    when the storability check vouches for the value, the text of some floats aside."""
    raw = _fast_encode(value)
    if raw is not None:
        return raw
    return _ENCODER.encode(value).encode("utf-8")


def check_storable(data: Any, *, fast: bool = True) -> None:
    """Raise ``UnstorableData`` naming the path of the first value JSON cannot keep.

    ``fast=False`` skips the C-speed check and walks the data at once.
    """
    if fast and _fast_encode(data) is not None:
        return
    _check(data, "data")


def _json_encode(data: Any) -> bytes | None:
    """The JSON text's UTF-8 bytes if the C-speed check passes; None if it cannot vouch
    for the data."""
    try:
        text = _ENCODER.encode(data)
        raw = text.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
        same = json.loads(text) == data
    except Exception:  # anything (a value's own __eq__ raising, say): the walk decides
        return None
    if same is not True or too_deep(raw, MAX_DEPTH):
        return None
    return raw


def _orjson_encode(data: Any) -> bytes | None:
    """``_json_encode`` with orjson first: its bytes when they give the data back unchanged."""
    try:
        raw = orjson.dumps(data)
        same = orjson.loads(raw) == data
    except Exception:  # too deep, too long an integer, a foreign type: let json decide
        return _json_encode(data)
    return raw if same is True else _json_encode(data)


try:
    import orjson
except ImportError:  # the `fast` extra is not installed
    _fast_encode: Callable[[Any], bytes | None] = _json_encode
else:
    _fast_encode = _orjson_encode


def _check(data: Any, root: str) -> None:
    """The walk, depth first in document order, without recursion (data may be deep)."""
    pending: list[tuple[Any, str, int]] = [(data, root, 1)]
    open_containers: set[int] = set()
    while pending:
        value, path, depth = pending.pop()
        if value is _CLOSE:
            open_containers.discard(depth)
        elif isinstance(value, dict | list):
            pending.append((_CLOSE, path, id(value)))
            pending.extend(reversed(_children(value, path, depth, open_containers)))
        else:
            _check_scalar(value, path)


#: Marks, on the walk's stack, where a container's items end (its id rides as ``depth``).
_CLOSE = object()


def _check_scalar(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        _check_int(value, path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UnstorableData(path, f"{value!r} is not a finite number")
    elif isinstance(value, str):
        _check_text(value, path)
    else:
        raise UnstorableData(path, f"{type(value).__name__} is not a JSON type")


def _check_int(value: int, path: str) -> None:
    try:
        str(value)
    except ValueError as exc:  # past sys.get_int_max_str_digits(): json cannot read it back
        digits = sys.get_int_max_str_digits()
        raise UnstorableData(
            path, f"the integer has more than {digits} digits, too long for JSON to read back"
        ) from exc


def _children(
    value: dict[Any, Any] | list[Any], path: str, depth: int, open_containers: set[int]
) -> list[tuple[Any, str, int]]:
    if depth > MAX_DEPTH:
        raise UnstorableData(_short(path), f"lists and objects nest more than {MAX_DEPTH} deep")
    marker = id(value)
    if marker in open_containers:
        raise UnstorableData(path, "the value contains itself (a cycle)")
    open_containers.add(marker)
    if isinstance(value, list):
        return [(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
    for key in value:
        if not isinstance(key, str):
            raise UnstorableData(path, f"key {key!r} is a {type(key).__name__}, not a string")
        _check_text(key, f"{path} key {key!r}")
    return [(item, f"{path}[{key!r}]", depth + 1) for key, item in value.items()]


def _short(path: str) -> str:
    """A very long path cut in the middle (a path 500 levels deep fills a screen)."""
    return path if len(path) <= 120 else f"{path[:60]}...{path[-57:]}"


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableData(path, f"string is not valid UTF-8 ({exc.reason})") from exc
