"""What can be stored: JSON values only, checked with the path to the first bad one.

``json.dumps`` alone is not enough: it turns integer keys into strings and tuples into
lists without a word, so data would come back different from what was saved. The
check here refuses those too, as well as NaN and infinities, cycles, and strings that
are not valid UTF-8 (lone surrogates).

The check runs on every save, so it is done at C speed first: the strict dump refuses
non-finite numbers, cycles and foreign types; encoding the text as UTF-8 refuses lone
surrogates; and reading the text back and comparing it with the data refuses what the
dump changes silently (tuples, keys that are not strings). Only when that fast check
fails does the walk in Python run, to name the path of the bad value. The walk is the
definition of what is storable: when the fast check fails but the walk accepts (an
integer too long for ``json``, say), the walk's verdict stands. The fast check accepts
nothing the walk refuses, short of a value whose own ``__eq__`` claims it equals the
list or string it was dumped as (a tuple subclass that says it equals any list).
"""

from __future__ import annotations

import json
import math
from typing import Any

from sessionlocker.errors import UnstorableData

__all__ = ["check_storable", "encode_data"]

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def encode_data(data: Any) -> str:
    """The data as compact JSON text, after checking it is storable (see the module)."""
    text = _fast_encode(data)
    if text is not None:
        return text
    check_storable(data, fast=False)
    return _ENCODER.encode(data)  # the walk accepted it: encode as before, errors and all


def check_storable(data: Any, *, fast: bool = True) -> None:
    """Raise ``UnstorableData`` naming the path of the first value JSON cannot keep.

    ``fast=False`` skips the C-speed check and walks the data at once.
    """
    if fast and _fast_encode(data) is not None:
        return
    _check(data, "data", set())


def _fast_encode(data: Any) -> str | None:
    """The JSON text if the C-speed check passes; None if it cannot vouch for the data."""
    try:
        text = _ENCODER.encode(data)
        text.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
        same = json.loads(text) == data
    except Exception:  # anything (a value's own __eq__ raising, say): the walk decides
        return None
    return text if same is True else None


def _check(value: Any, path: str, open_containers: set[int]) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnstorableData(path, f"{value!r} is not a finite number")
        return
    if isinstance(value, str):
        _check_text(value, path)
        return
    if isinstance(value, dict | list):
        _check_container(value, path, open_containers)
        return
    raise UnstorableData(path, f"{type(value).__name__} is not a JSON type")


def _check_container(
    value: dict[Any, Any] | list[Any], path: str, open_containers: set[int]
) -> None:
    marker = id(value)
    if marker in open_containers:
        raise UnstorableData(path, "the value contains itself (a cycle)")
    open_containers.add(marker)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnstorableData(path, f"key {key!r} is a {type(key).__name__}, not a string")
            _check_text(key, f"{path} key {key!r}")
            _check(item, f"{path}[{key!r}]", open_containers)
    else:
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", open_containers)
    open_containers.discard(marker)


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableData(path, f"string is not valid UTF-8 ({exc.reason})") from exc
