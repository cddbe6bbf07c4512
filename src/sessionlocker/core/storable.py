"""What can be stored: JSON values only, checked with the path to the first bad one.

``json.dumps`` alone is not enough: it turns integer keys into strings and tuples into
lists without a word, so data would come back different from what was saved. The
check here refuses those too, as well as NaN and infinities, cycles, and strings that
are not valid UTF-8 (lone surrogates).
"""

from __future__ import annotations

import json
import math
from typing import Any

from sessionlocker.errors import UnstorableData

__all__ = ["check_storable", "encode_data"]


def encode_data(data: Any) -> str:
    """The data as compact JSON text, after ``check_storable``."""
    check_storable(data)
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def check_storable(data: Any) -> None:
    """Raise ``UnstorableData`` naming the path of the first value JSON cannot keep."""
    _check(data, "data", set())


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
