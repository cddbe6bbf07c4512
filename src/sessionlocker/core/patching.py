"""JSON merge patches (RFC 7396) and the built-in remote change that applies one.

A merge patch is a JSON document shaped like the data: an object's members replace
the data's members of the same name (recursively for objects), ``null`` removes a
member, and anything else (a list, a number, a string) replaces the value whole.

``PATCH_KIND`` is a message kind every locker applies without a handler being
registered: ``sessionlocker edit`` and ``sessionlocker send KEY sessionlocker.patch``
use it to change a record that a live server holds, through that server's own save
(its validator runs; the message is applied exactly once, like any remote change).
A handler registered for the same kind with ``on_message`` takes precedence.
"""

from __future__ import annotations

from typing import Any, Protocol

from sessionlocker.core.record import Message
from sessionlocker.errors import UsageError

__all__ = ["BUILTIN_HANDLERS", "PATCH_KIND", "apply_patch", "diff", "merge_patch"]

#: The kind of the built-in remote change whose body is a merge patch of the data.
PATCH_KIND = "sessionlocker.patch"


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` applied (RFC 7396).

    An object target is changed in place and returned (so the data's root object stays
    the same object); anything else is replaced by the result.
    """
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for name, value in patch.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = merge_patch(target.get(name), value)
    return target


def diff(old: Any, new: Any) -> Any:
    """The merge patch that turns ``old`` into ``new``.

    Raises ``UsageError`` when ``new`` holds a ``null`` a merge patch cannot express
    (it would mean "remove"): a member set to null, or null inside a changed value.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        patch: dict[str, Any] = {name: None for name in old if name not in new}
        for name, value in new.items():
            if name not in old:
                patch[name] = _whole(value, name)
            elif old[name] != value:
                patch[name] = _nested(old[name], value, name)
        return patch
    return _whole(new, "the data")


def _nested(old: Any, new: Any, where: str) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        try:
            return diff(old, new)
        except UsageError as exc:
            raise UsageError(f"{where}.{exc}") from None
    return _whole(new, where)


def _whole(value: Any, where: str) -> Any:
    if value is None or (isinstance(value, dict) and _has_null(value)):
        raise UsageError(f"{where}: a merge patch cannot set null (null means remove)")
    return value


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_null(item) for item in value.values())
    return False


class _HasData(Protocol):
    data: Any


def apply_patch(locker: _HasData, message: Message) -> None:
    """The handler of ``PATCH_KIND``: merge the message's body into the locker's data."""
    locker.data = merge_patch(locker.data, message.body)


#: Handlers every locker has, beside those registered with ``on_message``.
BUILTIN_HANDLERS = {PATCH_KIND: apply_patch}
