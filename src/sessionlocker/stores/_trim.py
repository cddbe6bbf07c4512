"""When a write trims its key's history back to the depth kept (SQLite, PostgreSQL).

Trimming (finding the oldest version to keep, deleting the older ones) cost about as
much as copying the version itself, at every write. One write in ``TRIM_EVERY``, at
random, trims instead, so a key holds its ``history`` versions plus, on average, that
many more not yet trimmed; reading the history returns the newest ``history`` only, so
nothing a caller sees changes. At random, not by revision: revisions are store-wide, and
keys written in turn would each get the same remainder (one key never trimmed).
"""

from __future__ import annotations

import random

__all__ = ["TRIM_EVERY", "trim_now"]

#: On average, one write in this many trims its key's history.
TRIM_EVERY = 16


def trim_now() -> bool:
    """Should this write trim its key's history?"""
    return random.random() * TRIM_EVERY < 1.0
