"""Only plain JSON can be stored; the error names the path of the first bad value."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sessionlocker.core.storable import check_storable, encode_data
from sessionlocker.errors import DataError, UnstorableData


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


def test_the_same_object_twice_is_not_a_cycle() -> None:
    shared = [1]
    check_storable({"a": shared, "b": shared})
