"""The start-up check of what the server offers against a failover.

A save is acknowledged when its commit returns. Whether that acknowledgement survives
the promotion of a standby depends on two server settings:

- ``synchronous_standby_names`` must name at least one standby, else replication is
  asynchronous and a commit returns before any standby has it;
- ``synchronous_commit`` must be ``on`` (the standby flushed it), ``remote_apply``
  (it applied it) or ``remote_write`` (its operating system has it); ``local`` or
  ``off`` return before the standby has it.

``check_replication`` reads both, with the number of streaming standbys, once per store
(at its first call) and logs a warning naming the setting when an acknowledged save
could be lost on failover: that is, when the server has streaming standbys or the
store's URL names several hosts (a deployment that expects failovers). A single server
with neither gets no warning: there is nothing to fail over to.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg.rows import TupleRow

__all__ = ["check_replication", "replication_warning"]

log = logging.getLogger("sessionlocker.stores.postgresql")

_QUERY = (
    "SELECT current_setting('synchronous_standby_names'), "
    "current_setting('synchronous_commit'), "
    "(SELECT count(*) FROM pg_stat_replication)"
)
_UNSAFE_COMMITS = frozenset({"off", "local"})


def replication_warning(
    *, names: str, commit: str, standbys: int, several_hosts: bool, where: str
) -> str | None:
    """The warning for these settings, or ``None`` when acknowledgements survive failover."""
    if standbys == 0 and not several_hosts:
        return None
    if not names.strip():
        problem = "synchronous_standby_names is empty (asynchronous replication)"
    elif commit in _UNSAFE_COMMITS:
        problem = f"synchronous_commit is {commit!r}"
    else:
        return None
    return (
        f"PostgreSQL {where}: acknowledged saves can be lost on failover: {problem}; "
        "set synchronous_standby_names to name a standby and synchronous_commit to "
        "'on' or 'remote_apply' (see docs/scaling.md)"
    )


def check_replication(
    connection: psycopg.Connection[TupleRow], *, several_hosts: bool, where: str
) -> str | None:
    """Read the settings on ``connection``, log the warning if any, and return it."""
    row = connection.execute(_QUERY).fetchone()
    if row is None:
        return None
    warning = replication_warning(
        names=str(row[0]),
        commit=str(row[1]),
        standbys=int(row[2]),
        several_hosts=several_hosts,
        where=where,
    )
    if warning is not None:
        log.warning("%s", warning)
    return warning
