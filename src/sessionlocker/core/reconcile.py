"""``Spec(reconcile=True)``: fill what ``create()``'s template has and a record lacks.

As ProfileStore's ``:Reconcile()``: a key added to ``create()`` reaches every old record
at its next load, without a migration. The fill is recursive through dicts: a key
missing at any depth where both the record and the template hold a dict gets a copy of
the template's value. Nothing existing is ever overwritten or removed, whatever its
type, and lists are not entered (their items are the user's).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["reconcile"]


def reconcile(data: Any, template: Any) -> Any:
    """``data`` with the missing keys of ``template`` filled in: ``data`` itself (the
    same object, unchanged) when nothing is missing, else a new value."""
    if not isinstance(data, dict) or not isinstance(template, dict):
        return data
    filled: dict[str, Any] | None = None
    for name, default in template.items():
        if name not in data:
            value = copy.deepcopy(default)
        else:
            value = reconcile(data[name], default)
            if value is data[name]:
                continue
        if filled is None:
            filled = dict(data)
        filled[name] = value
    return data if filled is None else filled
