"""Only plain JSON can be stored; the error names the path of the first bad value.

Every test runs twice: with orjson (the ``fast`` extra) doing the C-speed check, and with
the ``json`` module alone, as without the extra: the verdicts must be the same.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionlocker.core import storable
from sessionlocker.core.storable import check_storable, encode_data, encode_data_bytes
from sessionlocker.core.strictjson import MAX_DEPTH
from sessionlocker.errors import DataError, UnstorableData


@pytest.fixture(autouse=True, params=["orjson", "json"])
def fast_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The C-speed check on orjson, then on the json module alone (no ``fast`` extra)."""
    if request.param == "json":
        monkeypatch.setattr(storable, "_fast_encode", storable._json_encode)
    else:
        pytest.importorskip("orjson")
        assert storable._fast_encode is storable._orjson_encode
    return str(request.param)


class Color(enum.Enum):
    RED = "red"


class Named(enum.StrEnum):
    ONE = "one"


@dataclasses.dataclass
class Point:
    x: int


def nested(levels: int) -> list[Any]:
    """A list nested ``levels`` deep (itself level 1), built without recursion."""
    outer: list[Any] = []
    inner = outer
    for _ in range(levels - 1):
        inner.append([])
        inner = inner[0]
    return outer


def cyclic() -> dict[str, Any]:
    data: dict[str, Any] = {"a": {"b": []}}
    data["a"]["b"].append(data)
    return data


@pytest.mark.parametrize(
    ("data", "path", "problem"),
    [
        ({"x": math.nan}, "data['x']", "finite"),
        ({"x": [1, math.inf]}, "data['x'][1]", "finite"),
        ({"x": -math.inf}, "data['x']", "finite"),
        ({1: "a"}, "data", "not a string"),
        ({"x": {None: 1}}, "data['x']", "not a string"),
        ({"t": (1, 2)}, "data['t']", "tuple"),
        ({"s": {1, 2}}, "data['s']", "set"),
        ({"b": b"bytes"}, "data['b']", "bytes"),
        ({"o": object()}, "data['o']", "object"),
        (cyclic(), "data['a']['b'][0]", "cycle"),
        ({"s": "bad \ud800 text"}, "data['s']", "UTF-8"),
        ({"bad \udfff key": 1}, "data key", "UTF-8"),
        ({"deep": nested(MAX_DEPTH)}, "data['deep'][0][0]", f"more than {MAX_DEPTH} deep"),
        ({"deep": nested(5000)}, "data['deep'][0][0]", f"more than {MAX_DEPTH} deep"),
        ({"n": [1, 10**4300]}, "data['n'][1]", "more than 4300 digits"),
        ({"n": -(10**5000)}, "data['n']", "more than 4300 digits"),
        ({"d": datetime.date(2026, 1, 2)}, "data['d']", "date"),
        ({"d": datetime.datetime(2026, 1, 2, 3, 4)}, "data['d']", "datetime"),
        ({"d": decimal.Decimal("1.5")}, "data['d']", "Decimal"),
        ({"u": uuid.UUID(int=1)}, "data['u']", "UUID"),
        ({"p": Point(1)}, "data['p']", "Point"),
        ({"e": Color.RED}, "data['e']", "Color"),
        ({"x": [1, [math.nan]]}, "data['x'][1][0]", "finite"),
        ({"big": 2**64, "t": (1,)}, "data['t']", "tuple"),
        ([{"k": 1}, ("t",)], "data[1]", "tuple"),
    ],
)
def test_unstorable_values_are_named_by_path(data: Any, path: str, problem: str) -> None:
    with pytest.raises(UnstorableData) as caught:
        check_storable(data)
    assert caught.value.path.startswith(path)
    assert problem in caught.value.problem
    assert isinstance(caught.value, DataError)
    assert isinstance(caught.value, ValueError)


def test_plain_json_is_encoded_compactly() -> None:
    data = {"a": [1, 2.5, None, True, "ü"], "b": {"c": {}}}
    assert encode_data(data) == '{"a":[1,2.5,null,true,"ü"],"b":{"c":{}}}'


def test_what_both_checks_accept_beyond_plain_types() -> None:
    data = {"s": Named.ONE, "big": 2**70, "deep": nested(300), "f": 1e16}
    text = encode_data(data)
    assert json.loads(text) == data
    assert json.loads(text)["s"] == "one"


def test_data_exactly_at_the_depth_limit_is_stored_and_read_back() -> None:
    data = {"deep": nested(MAX_DEPTH - 1)}
    assert json.loads(encode_data(data)) == data
    check_storable(data, fast=False)


def test_a_deep_refusal_names_a_shortened_path() -> None:
    with pytest.raises(UnstorableData) as caught:
        encode_data(nested(10_000))
    assert "..." in caught.value.path
    assert len(caught.value.path) <= 120


def test_the_same_object_twice_is_not_a_cycle() -> None:
    shared = [1]
    check_storable({"a": shared, "b": shared})


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
odd = st.tuples(st.integers()) | st.sets(st.integers(), max_size=2) | st.binary(max_size=3)
keys = st.text(max_size=4) | st.integers() | st.none() | st.booleans() | st.floats()
values = st.recursive(
    scalars | odd,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


def walk_verdict(data: Any) -> str | None:
    """The walk's verdict alone: None when storable, else the refused path."""
    try:
        check_storable(data, fast=False)
    except UnstorableData as exc:
        return exc.path
    return None


@settings(max_examples=400, deadline=None)
@given(values)
def test_the_fast_check_agrees_with_the_walk_on_any_value(data: Any) -> None:
    expected = walk_verdict(data)
    if expected is None:
        text = encode_data(data)
        plain = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        assert json.loads(text) == data
        if storable._fast_encode is storable._json_encode:
            assert text == plain  # orjson writes some floats differently: 1e16, not 1e+16
        assert encode_data_bytes(data) == text.encode("utf-8")
        check_storable(data)
    else:
        for check in (encode_data, encode_data_bytes, check_storable):
            with pytest.raises(UnstorableData) as caught:
                check(data)
            assert caught.value.path == expected


@pytest.mark.parametrize(
    "data",
    [
        {"k": ["a", ("b",)]},
        {"k": {"n": {2: 1}}},
        {"k": [{"1": 1, 1: 2}]},
        {"k": [True, {False: 0}]},
        {"k": "\udc80"},
    ],
)
def test_what_json_would_change_silently_is_refused_by_the_fast_check_too(data: Any) -> None:
    with pytest.raises(UnstorableData) as caught:
        encode_data(data)
    assert caught.value.path == walk_verdict(data)


class Touchy(dict[str, Any]):
    """A dict that refuses to be compared: the walk, not the fast check, decides."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing")

    __hash__ = None  # type: ignore[assignment]


def test_a_value_whose_comparison_raises_is_judged_by_the_walk() -> None:
    assert encode_data({"t": Touchy(a=1)}) == '{"t":{"a":1}}'
    with pytest.raises(UnstorableData) as caught:
        encode_data({"t": Touchy(a=(1,))})
    assert caught.value.path == "data['t']['a']"
