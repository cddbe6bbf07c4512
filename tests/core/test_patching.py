"""Merge patches (RFC 7396) and the diff the admin ``edit`` command sends."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionlocker.core.patching import diff, merge_patch
from sessionlocker.errors import UsageError

# RFC 7396, appendix A (a selection).
CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
]


@pytest.mark.parametrize(("target", "patch", "result"), CASES)
def test_rfc_7396_examples(target: object, patch: object, result: object) -> None:
    assert merge_patch(copy.deepcopy(target), patch) == result


def test_an_object_is_patched_in_place() -> None:
    data = {"gold": 1, "items": ["sword"]}
    assert merge_patch(data, {"gold": 5}) is data
    assert data == {"gold": 5, "items": ["sword"]}


def test_diff_of_nested_objects_is_minimal() -> None:
    old = {"gold": 1, "bag": {"a": 1, "b": 2}, "gone": True}
    new = {"gold": 1, "bag": {"a": 1, "b": 3}, "level": 2}
    assert diff(old, new) == {"bag": {"b": 3}, "level": 2, "gone": None}


def test_diff_refuses_a_null_it_cannot_express() -> None:
    with pytest.raises(UsageError, match=r"bag\.b: a merge patch cannot set null"):
        diff({"bag": {"b": 1}}, {"bag": {"b": None}})
    with pytest.raises(UsageError, match="x: a merge patch cannot set null"):
        diff({}, {"x": {"y": None}})
    assert diff({}, {"x": [None]}) == {"x": [None]}  # inside a list, null is a value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=12,
)
no_null_dicts = st.recursive(
    st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=12,
)


@given(old=json_values, new=no_null_dicts)
def test_applying_the_diff_gives_the_new_value(old: object, new: object) -> None:
    assert merge_patch(copy.deepcopy(old), diff(old, new)) == new
