"""The read-only calls of ``LockerService``: ``keys_for_user``, ``view`` and ``history``.

Each is one blocking store call that takes no lock and writes nothing, safe from any
thread; the asyncio driver has awaited twins and shares ``snapshot_of``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic

from sessionlocker.core.protocol import Versioned
from sessionlocker.core.snapshot import Snapshot, view_snapshot
from sessionlocker.core.spec import D, Spec, check_key
from sessionlocker.history import Moment, PastVersion, kept_versions, past_version, select
from sessionlocker.stores import Store
from sessionlocker.stores.base import Entry, read_entry
from sessionlocker.stores.user_keys import keys_for_user

__all__ = ["StoreReads", "snapshot_of"]


class StoreReads(Generic[D]):
    """``keys_for_user``, ``view`` and ``history`` over ``store`` for ``spec``."""

    spec: Spec[D]

    if TYPE_CHECKING:  # given by LockerService

        @property
        def store(self) -> Store: ...

        def _check_open(self) -> None: ...

    def keys_for_user(self, user_id: str) -> list[str]:
        """The keys of this namespace whose record lists ``user_id`` (``add_user_id``), sorted.

        Uses the store's index where it has one (SQLite, PostgreSQL, Redis: one query);
        otherwise (memory, a wrapped store) reads and decodes every record of the
        namespace. Blocks for that store call; safe from any thread. Raises ``StoreError``.
        """
        self._check_open()
        prefix = self.spec.store_key("")
        found = keys_for_user(self.store, user_id, prefix)
        return [key[len(prefix) :] for key in found]

    def view(self, key: str) -> Snapshot | None:
        """The record at ``key`` as stored now, without taking its lock; ``None`` if absent.

        Whoever holds it (another server, this one, nobody), nothing is written: the
        data is migrated in memory to ``Spec.version``, as a load would. One store read,
        blocking; safe from any thread. Raises ``CorruptRecord``, ``NewerSchema`` or
        ``MigrationError`` as a load would, and ``StoreError``.
        """
        self._check_open()
        return snapshot_of(
            key, self.spec, read_entry(self.store, self.spec.store_key(check_key(key)))
        )

    def history(
        self,
        key: str,
        *,
        before: Moment | None = None,
        after: Moment | None = None,
        limit: int | None = None,
    ) -> list[PastVersion]:
        """The history entries the store keeps of ``key``, newest first, with their write times.

        ``before`` and ``after`` (epoch seconds or aware ``datetime``) keep those written
        strictly between; ``limit`` the newest that many. Blocking; raises ``UsageError``
        when the store keeps no history, and ``StoreError``.
        """
        self._check_open()
        versions = kept_versions(self.store, self.spec.store_key(check_key(key)))
        chosen = select(versions, before=before, after=after, limit=limit)
        return [past_version(key, version) for version in chosen]


def snapshot_of(key: str, spec: Spec, stored: Entry | None) -> Snapshot | None:
    """The view of the record ``stored`` at ``key`` (``None`` when absent)."""
    if stored is None:
        return None
    return view_snapshot(key, spec, Versioned(stored.value, stored.revision), stored.written)
