"""Metadata tags of a record, as ProfileService's ``MetaTags`` / ``SetMetaTag``.

Tags are a small mapping of names to JSON values kept in the record's ``tags`` field,
beside the data and written in the same save: a place for facts about the record that
are not the user's data (where a profile was last played, a moderation flag, the
version of the game that wrote it). Migrations and patchers never see them: they
change only ``data``. The locker's copy lives in its ``Ledger``; changing a tag marks
a change, saved like any change to the data. The whole mapping is bounded by
``MAX_TAGS_BYTES`` of JSON, checked when a tag is set.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from sessionlocker.core.operations import Operations
from sessionlocker.core.storable import encode_data
from sessionlocker.errors import UsageError

__all__ = ["MAX_TAGS_BYTES", "MAX_TAG_NAME", "TagCalls", "check_tags"]

#: The most bytes of JSON (UTF-8) the whole tags mapping may take.
MAX_TAGS_BYTES = 16_384

#: The longest tag name, in characters.
MAX_TAG_NAME = 100


def check_tags(tags: dict[str, Any]) -> None:
    """Raise ``UsageError`` when ``tags`` would be over ``MAX_TAGS_BYTES`` of JSON
    (``UnstorableData`` when a value is not JSON)."""
    size = len(encode_data(tags).encode("utf-8"))
    if size > MAX_TAGS_BYTES:
        raise UsageError(f"tags would take {size:,} bytes of JSON, over {MAX_TAGS_BYTES:,}")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_TAG_NAME:
        raise UsageError(
            f"a tag name is a non-empty string of at most {MAX_TAG_NAME} characters, not {name!r}"
        )
    return name


class TagCalls:
    """The tag calls of ``Locker``."""

    _ops: Operations

    @property
    def tags(self) -> dict[str, Any]:
        """A copy of the record's tags (empty before the load completes); change them
        with ``set_tag`` and ``remove_tag``, which mark the change for saving."""
        return copy.deepcopy(self._ops.ledger.tags)

    def get_tag(self, name: str, default: Any = None) -> Any:
        """A copy of the value of tag ``name``, or ``default`` when there is none."""
        tags = self._ops.ledger.tags
        return copy.deepcopy(tags[name]) if name in tags else default

    def set_tag(self, name: str, value: Any) -> int:
        """Set tag ``name`` to a copy of ``value`` (JSON); returns the change id.

        Allowed while loading (set again on the loaded record) or loaded; raises
        ``UsageError`` otherwise, for a bad name, or when the tags would grow over
        ``MAX_TAGS_BYTES``; ``UnstorableData`` when ``value`` is not JSON. Nothing
        changes when it raises.
        """
        checked = _check_name(name)
        stored = copy.deepcopy(value)
        check_tags({**self._ops.ledger.tags, checked: stored})

        def change(tags: dict[str, Any]) -> None:
            check_tags({**tags, checked: stored})  # again: the loaded tags may be bigger
            tags[checked] = stored

        return self._change_tags(change, "set a tag")

    def remove_tag(self, name: str) -> int:
        """Remove tag ``name`` (absent is fine); returns the change id, as ``set_tag``."""
        checked = _check_name(name)
        return self._change_tags(lambda tags: tags.pop(checked, None), "remove a tag")

    def _change_tags(self, change: Callable[[dict[str, Any]], object], what: str) -> int:
        return self._ops.edit_ledger(lambda ledger: change(ledger.tags), what)
