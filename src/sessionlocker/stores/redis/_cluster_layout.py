"""The Redis Cluster key layout: one hash tag per record, per lease and per user.

Under the store's prefix ``P``, the names of a record ``K`` all carry the hash tag
``{=K}``, so the record, its revision counter and its history are in one slot and one
script may touch them all:

- ``P r:{=K}``: the record hash (``v``, ``rev``, ``t``, user ids ``u``), as on one node;
- ``P c:{=K}``: the record's revision counter, kept after a delete (there is no
  store-wide counter: revisions grow per record and are never reused);
- ``P h:{=K}``: the history list; ``P n:{=K}``: the sharded pub/sub channel (SPUBLISH);
- ``P s:{=L}`` and ``P sv:{=L}``: a lease and its version counter;
- ``P u:{=U}``: the keys that list user ``U``, in the user's own slot;
- ``P f:{=K}``: with ``replicas=N``, the fence of ``K``'s slot, set and deleted at once.

The ``=`` keeps a tag from being empty (a key starting with ``}``); a key holding ``}``
ends its tag early, the same way in each of its names, so they still share a slot.

The user index cannot be changed in the record's script (other slot). It is a
superset, kept outside the scripts: a write adds the key to the sets of the users its
new value lists before the script runs and again after it (both idempotent ``SADD``);
``keys_for_user`` keeps a member only if the record lists the user now, and removes
the others (then reads the record again and puts the key back if a write listed the
user meanwhile). So a record that lists a user is always found through the set.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sessionlocker.core.record import check_user_id
from sessionlocker.stores._checks import (
    check_expected,
    check_key,
    check_lease_id,
    check_prefix,
    check_ttl,
    check_value,
)
from sessionlocker.stores.redis._layout import _SESSION_GRACE, Call, RedisLayout, _glob_escape
from sessionlocker.stores.redis._scripts import CLUSTER_FENCE

__all__ = ["ClusterLayout", "users_of"]

#: How long a lease's version counter outlives its last write (ms): a day.
_VERSION_KEEP_MS = 86_400_000


def users_of(value: bytes) -> list[str]:
    """The user ids a record lists, read as the scripts read them (``users_of``)."""
    if b'user_ids":["' not in value:
        return []
    try:
        record = json.loads(value)
    except ValueError:
        return []
    if not isinstance(record, dict) or not isinstance(record.get("user_ids"), list):
        return []
    return [user for user in record["user_ids"] if isinstance(user, str) and user]


class ClusterLayout(RedisLayout):
    """``RedisLayout`` with every name hash-tagged and the cluster's scripts."""

    def name(self, kind: bytes, name: str) -> bytes:
        """The Redis key of ``name`` in the space ``kind``, tagged by ``name``."""
        return self.prefix + kind + b"{=" + name.encode() + b"}"

    def key_of_channel(self, channel: bytes) -> str | None:
        """The key a channel belongs to, or ``None`` for a channel of someone else."""
        head = self.prefix + b"n:{="
        if not channel.startswith(head) or not channel.endswith(b"}"):
            return None
        return channel[len(head) : -1].decode()

    def user_set(self, user_id: str) -> bytes:
        """The set of keys that may list ``user_id``."""
        return self.name(b"u:", check_user_id(user_id))

    def write_call(
        self, key: str, value: bytes, expected: int | None, *, notify: bool = True
    ) -> Call:
        """The cluster write script (see ``_scripts.CLUSTER_WRITE``)."""
        key = check_key(key)
        value = check_value(value)
        expected = check_expected(expected)
        keys = [self.name(b"r:", key), self.name(b"c:", key), self.name(b"h:", key)]
        args = [
            "" if expected is None else str(expected),
            value,
            self.history,
            self.channel(key) if notify else b"",
        ]
        return Call("cluster_write", keys, args)

    def delete_call(self, key: str, expected: int | None) -> Call:
        """The cluster delete script (the counter and history stay)."""
        key = check_key(key)
        expected = check_expected(expected)
        args = ["" if expected is None else str(expected), self.channel(key)]
        return Call("cluster_delete", [self.name(b"r:", key)], args)

    def fence_args(self, key: str) -> tuple[Any, ...]:
        """The replication fence in ``key``'s slot (``_scripts.CLUSTER_FENCE``), sent
        as ``EVAL``: on a direct connection a ``NOSCRIPT`` could not be answered."""
        return ("EVAL", CLUSTER_FENCE, 1, self.name(b"f:", key))

    def index_commands(self, key: str, value: bytes) -> list[tuple[Any, ...]]:
        """The ``SADD`` of ``key`` to the set of each user ``value`` lists."""
        return [("SADD", self.user_set(user), key) for user in users_of(value)]

    def listed_args(self, key: str) -> tuple[Any, ...]:
        """The command reading which users a record lists (reply: JSON list or None)."""
        return ("HGET", self.name(b"r:", key), "u")

    @staticmethod
    def lists(reply: Any, user_id: str) -> bool:
        """Whether a ``listed_args`` reply names ``user_id``."""
        return reply is not None and user_id in json.loads(bytes(reply))

    def scan_match(self, prefix: str) -> bytes:
        """The SCAN pattern of the records whose key starts with ``prefix``."""
        head = self.prefix + b"r:{="
        return _glob_escape(head + check_prefix(prefix).encode()) + b"*"

    def scan_keys(self, names: list[Any]) -> list[str]:
        """The store keys of record names found by SCAN."""
        strip = len(self.prefix) + 4
        return [bytes(name)[strip:-1].decode() for name in names]

    def put_session_call(self, lease_id: str, ttl: float, info: bytes) -> Call:
        """The cluster lease script: the lease and its own version counter."""
        lease_id = check_lease_id(lease_id)
        ttl = check_ttl(ttl)
        info = check_value(info, "session info")
        keep_ms = max(1, math.ceil((ttl + max(ttl, _SESSION_GRACE)) * 1000))
        keys = [self.name(b"s:", lease_id), self.name(b"sv:", lease_id)]
        args = [max(1, math.ceil(ttl * 1_000_000)), repr(ttl), info, keep_ms, _VERSION_KEEP_MS]
        return Call("cluster_put_lease", keys, args)
