"""Which keys belong to a user: from the store's index, or by reading every record.

Stores with a ``UserIndex`` (SQLite, PostgreSQL, Redis) answer from it in one query.
Any other store (memory, or a store behind a wrapper such as ``FaultyStore``) is
scanned: every key under the prefix is read and decoded, and the records listing the
user are kept. A record that does not decode is skipped (it lists no one we can trust).
"""

from __future__ import annotations

from sessionlocker.core.record import check_user_id, decode
from sessionlocker.errors import CorruptRecord
from sessionlocker.stores._checks import check_prefix
from sessionlocker.stores.base import AsyncStore, Store, UserIndex

__all__ = ["akeys_for_user", "keys_for_user", "scan_keys_for_user"]


def keys_for_user(store: Store, user_id: str, prefix: str = "") -> list[str]:
    """The keys starting with ``prefix`` whose record lists ``user_id``, sorted."""
    if isinstance(store, UserIndex):
        return store.keys_for_user(check_user_id(user_id), check_prefix(prefix))
    return scan_keys_for_user(store, user_id, prefix)


def scan_keys_for_user(store: Store, user_id: str, prefix: str = "") -> list[str]:
    """``keys_for_user`` by reading every record under ``prefix`` (no index needed)."""
    user_id = check_user_id(user_id)
    found = []
    for key in store.keys(check_prefix(prefix)):
        stored = store.read(key)
        if stored is None:
            continue
        try:
            record = decode(stored.value)
        except CorruptRecord:
            continue
        if user_id in record.user_ids:
            found.append(key)
    return sorted(found)


async def akeys_for_user(store: AsyncStore, user_id: str, prefix: str = "") -> list[str]:
    """``scan_keys_for_user`` awaited on an async store (async stores have no index)."""
    user_id = check_user_id(user_id)
    found = []
    async for key in store.keys(check_prefix(prefix)):
        stored = await store.read(key)
        if stored is None:
            continue
        try:
            record = decode(stored.value)
        except CorruptRecord:
            continue
        if user_id in record.user_ids:
            found.append(key)
    return sorted(found)
