"""The per-process mailbox: how a live holder learns, in bounded time and on every
store, that another session wrote something it must act on, at a cost per process.

A session that writes a record another session holds in a way the holder must answer
(a release request from ``force``, a message into its inbox, a takeover of its lock)
then appends the record's store key to that session's *mailbox*: a small record at
``mailbox_key(session)``, beside the data, written through the ordinary ``update``. The
holder's service reads its own mailbox once per lease renewal (one ``read``; a
``delete`` only when mail was there) and pokes the lockers it names, each of which then
looks at its record once. So the holder learns within about a third of the lease TTL
whatever the number of lockers it holds, and an idle locker makes no store call at all.
A store that notifies still wakes the holder within milliseconds; the mailbox is the
bound when it does not, or when a notification is lost.

A mailbox is only a hint, read as such: a key posted twice, or for a record the holder
no longer has, costs a look. Order matters only one way: the request, message or lock
is committed before its key is posted, so the look that the post causes finds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

from sessionlocker.core import transforms as tx
from sessionlocker.core.protocol import Keep, Put, Transform, Update, Versioned
from sessionlocker.errors import Conflict, StoreError
from sessionlocker.stores.base import AsyncStore, KeepsHistory, Store, is_async

__all__ = ["PREFIX", "Collect", "Mail", "Tell", "addressee", "mailbox_key", "post"]

#: Mailboxes live under this prefix, outside every namespace (a namespace has no '.'
#: rule, so do not name one ``sessionlocker.mailbox``).
PREFIX = "sessionlocker.mailbox/"


def mailbox_key(lease_id: str) -> str:
    """The store key of ``lease_id``'s mailbox."""
    return PREFIX + lease_id


def _keys(current: Versioned | None) -> list[str]:
    """The store keys in a mailbox (a JSON list); unreadable bytes read as empty."""
    if current is None:
        return []
    try:
        keys = json.loads(current.value)
    except ValueError:
        return []
    return [key for key in keys if isinstance(key, str)] if isinstance(keys, list) else []


def post(store_key: str) -> Transform[bool]:
    """Add ``store_key`` to a mailbox once (True: it was not there yet)."""

    def transform(current: Versioned | None) -> Put[bool] | Keep[bool]:
        keys = _keys(current)
        if store_key in keys:
            return Keep(False)
        return Put(json.dumps([*keys, store_key]).encode(), True)

    return transform


def addressee(outcome: object, own: str) -> str | None:
    """The session a store outcome (a locker's, or a send's) says must be told, if any."""
    session: str | None = None
    if isinstance(outcome, tx.Requested) or (isinstance(outcome, tx.Held) and outcome.asked):
        session = outcome.lock.session
    elif isinstance(outcome, tx.Granted):
        session = outcome.took_from
    elif isinstance(outcome, tx.Delivered):
        session = outcome.holder
    return None if session == own else session


@dataclass(frozen=True, slots=True)
class Tell:
    """``session`` must look at the record at ``store_key``."""

    session: str
    store_key: str

    def request(self) -> Update[bool]:
        """The request posting ``store_key`` to ``session``'s mailbox."""
        return Update(key=mailbox_key(self.session), transform=post(self.store_key))


@dataclass(frozen=True, slots=True)
class Mail:
    """What reading a mailbox found: the store keys posted, and the store errors met
    (a failed read finds no keys; a failed delete leaves them for the next read)."""

    keys: list[str]
    errors: list[StoreError]


@dataclass(frozen=True, slots=True)
class Collect:
    """Read (and empty) ``lease_id``'s mailbox: a call for an executor, returning
    the ``Mail`` found (``acollect`` awaits it on an async store).

    The mailbox is deleted only at the revision read, so a post that lands meanwhile
    stays for the next read; its history entries (SQLite, PostgreSQL) are forgotten too.
    """

    store: Store | AsyncStore
    lease_id: str

    def __call__(self) -> Mail:
        if is_async(self.store):
            raise TypeError(f"{self.store!r} is an AsyncStore: await acollect")
        store = cast("Store", self.store)
        key = mailbox_key(self.lease_id)
        try:
            current = store.read(key)
        except Exception as exc:  # every failure is reported, never raised
            return Mail([], [_store_error(exc)])
        if current is None:
            return Mail([], [])
        try:
            store.delete(key, current.revision)
            if isinstance(store, KeepsHistory):
                store.forget(key)
        except Conflict:  # a post landed since: it stays for the next read
            pass
        except Exception as exc:  # the keys are poked now and read again next time
            return Mail(_keys(current), [_store_error(exc)])
        return Mail(_keys(current), [])

    async def acollect(self, store: AsyncStore) -> Mail:
        """The same read and delete, awaited on ``store`` (this call's async store)."""
        key = mailbox_key(self.lease_id)
        try:
            current = await store.read(key)
        except Exception as exc:  # every failure is reported, never raised
            return Mail([], [_store_error(exc)])
        if current is None:
            return Mail([], [])
        try:
            await store.delete(key, current.revision)
        except Conflict:  # a post landed since: it stays for the next read
            pass
        except Exception as exc:  # the keys are poked now and read again next time
            return Mail(_keys(current), [_store_error(exc)])
        return Mail(_keys(current), [])


def _store_error(exc: Exception) -> StoreError:
    """``exc`` as a ``StoreError``: itself, or one whose outcome is unknown for an
    error the store let escape untranslated."""
    if isinstance(exc, StoreError):
        return exc
    error = StoreError(f"store raised {type(exc).__name__}", unknown_outcome=True)
    error.__cause__ = exc
    return error
