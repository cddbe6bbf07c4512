"""The strict parser: what Python's json lets through is refused, with the reason."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sessionlocker.core.strictjson import MAX_DEPTH, loads, too_deep


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"a": 1, "b": {"c": 1, "c": 1}}', "the key 'c' appears twice"),
        ('[{"x": [{"k": 1, "k": 2}]}]', "the key 'k' appears twice"),
        ('["ok", {"k": "\\udbff"}]', "the string at [1]['k'] holds a lone surrogate"),
        ('{"\\ud800x": 1}', "the key '\\ud800x' at the top holds a lone surrogate"),
        ('"\\udc00\\ud800"', "lone surrogate"),
        ('"raw \udc80 surrogate"', "not UTF-8"),
        (b'"\xc3"', "not UTF-8"),
        ("[NaN]", "NaN is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("[1e309]", "1e309 is too large"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"more than {MAX_DEPTH} levels"),
        ("1" * 4301, "4300"),
        ("{", "Expecting"),
    ],
)
def test_refused_with_the_reason(text: str | bytes, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        loads(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"\\ud83d\\ude00"', "\U0001f600"),
        ('"\\\\ud800"', "\\ud800"),
        ('{"a": 1, "b": {"a": 2}}', {"a": 1, "b": {"a": 2}}),
        ("[1.5, 1e308, -0.0]", [1.5, 1e308, -0.0]),
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH, None),
    ],
)
def test_what_is_plain_json_is_read_as_json_reads_it(text: str, value: Any) -> None:
    assert loads(text) == (json.loads(text) if value is None else value)


def test_depth_is_counted_outside_strings_only() -> None:
    assert too_deep(b"[[[]]]", 2)
    assert not too_deep(b"[[[]]]", 3)
    assert not too_deep(b'[{"s": "[[[[{{{{"}, ["]]]]"]]', 3)
    assert too_deep(b'[{"s": "]]"}, [[{"t": "[["}]]]', 3)
