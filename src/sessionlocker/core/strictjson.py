"""Strict JSON reading: the one parser for stored records and the JSON the CLI reads.

Python's ``json.loads`` is lenient where a record must not be: a repeated key keeps
its last value without a word (so ``"epoch":9,"epoch":1`` would let the fencing epoch
go backwards), ``\\ud800`` escapes give strings that cannot be written back as UTF-8,
``NaN``, ``Infinity`` and ``1e400`` (which overflows to infinity) are read as numbers
that cannot be written back, and a deep enough nesting raises
``RecursionError``. ``loads`` refuses each of these with a ``ValueError`` saying which.

``too_deep`` measures nesting on the JSON text at C speed (the brackets outside
strings), so that both the reader and the storability check refuse the same depth.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "loads", "too_deep"]

#: The deepest nesting of lists and objects data may have (the data itself is level 1).
#: Well below what Python's ``json`` can read and write, so every stored record can be
#: read back by every reader, envelope included.
MAX_DEPTH = 500

_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_SQUARE = bytes.maketrans(b"{}", b"[]")  # nesting is counted alike for lists and objects
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``text``; ``ValueError`` for anything a record may not hold.

    Refused: text that is not UTF-8 (bytes that do not decode, a ``str`` holding a lone
    surrogate), text that is not JSON, ``NaN``/``Infinity`` and numbers too large for a
    float, a key repeated in an object (at any depth), a string holding a lone
    surrogate escape, nesting deeper than ``max_depth``, and integers too long for
    ``int`` to read.
    """
    try:
        raw = text.encode("utf-8") if isinstance(text, str) else text
    except UnicodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc}") from exc
    value = _fast_loads(raw, max_depth)
    if value is not _UNSURE:
        return value
    try:
        text = raw.decode("utf-8")
    except UnicodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc}") from exc
    if too_deep(raw, max_depth):
        raise ValueError(f"it nests lists and objects more than {max_depth} levels deep")
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_float=_float, object_pairs_hook=_object
        )
    except RecursionError as exc:  # the limit above should make this unreachable
        raise ValueError("it nests too deep for Python's json") from exc
    if raw.find(b"\\") >= 0 and _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(value)
    return value


#: What ``_fast_loads`` returns when it cannot vouch for the text.
_UNSURE = object()


def _no_fast_loads(raw: bytes, max_depth: int) -> Any:
    return _UNSURE


def _orjson_loads(raw: bytes, max_depth: int) -> Any:
    """The value of ``raw`` when orjson reads it and writes it back byte for byte.

    Such text holds nothing ``loads`` refuses: a repeated key, NaN, a number too large
    for a float, a lone surrogate or a 65-bit integer would not come back the same (or
    orjson refuses it). Anything else (other spacing, ``1e+16``, an escaped ``\\u00e9``)
    is read by the strict parser below, which alone names what is wrong.
    """
    try:
        value = orjson.loads(raw)
        same = orjson.dumps(value) == raw
    except Exception:  # refused, too deep for orjson, a str holding surrogates: be strict
        return _UNSURE
    if not same or too_deep(raw, max_depth):
        return _UNSURE
    return value


try:
    import orjson
except ImportError:  # the `fast` extra is not installed
    _fast_loads: Callable[[bytes, int], Any] = _no_fast_loads
else:
    _fast_loads = _orjson_loads


def too_deep(raw: bytes, limit: int) -> bool:
    """True if the JSON text ``raw`` nests lists and objects deeper than ``limit``.

    Brackets inside strings are counted first (one C-speed pass); only when that count
    says too deep are the strings cut out and the brackets counted again.
    """
    brackets = raw.translate(_SQUARE, _NOT_BRACKET)
    if len(brackets) <= limit or _depth_over(brackets, limit) is False:
        return False
    return _depth_over(_STRING.sub(b"", raw).translate(_SQUARE, _NOT_BRACKET), limit) is True


def _depth_over(brackets: bytes, limit: int) -> bool | None:
    """Whether the brackets nest deeper than ``limit``; None if they do not pair up."""
    for _ in range(limit):
        peeled = brackets.replace(b"[]", b"")  # one level: the pairs with nothing inside
        if not peeled:
            return False
        if len(peeled) == len(brackets):
            return None
        brackets = peeled
    return True


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large to be read as a float")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _refuse_lone_surrogates(value: Any) -> None:
    """Raise naming the first string (or key) that is not valid UTF-8, by its path."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _utf8(item, f"the string at {path or 'the top'}")
        elif isinstance(item, dict):
            for key in item:
                _utf8(key, f"the key {key!r} at {path or 'the top'}")
            stack.extend((v, f"{path}[{k!r}]") for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))


def _utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} holds a lone surrogate escape ({exc.reason})") from exc
