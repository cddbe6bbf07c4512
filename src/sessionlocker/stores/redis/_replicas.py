"""``Replication``: a record command counts only once ``replicas`` replicas have it.

With ``replicas=N`` (N > 0) every record command (read, write, delete, erase of kept
versions) goes to the primary as three commands on one connection, in one round trip:

1. the command itself;
2. ``PUBLISH <prefix>fence ""``: a command the primary propagates to its replicas, so
   this connection's replication offset is now at least everything the primary holds,
   including what another client wrote and our command read or found in its way;
3. ``WAIT N ms``: the number of replicas that acknowledged that offset, waiting up to
   ``replica_timeout``.

Fewer than N acknowledgements: the write is an unknown outcome (the primary may have it,
a failover may lose it), a read is refused (what it saw may be lost). Either is a
retryable ``StoreError``; the core re-reads the record to settle an unknown outcome,
and that re-read is fenced and waited for too, so an outcome is settled only on what N
replicas hold. The fence matters: without it, ``WAIT`` only covers this connection's
own last write, not what a conflict reply or a read returned.

The sync and the async stores share this; each sends ``commands`` over one held
connection and hands the replies to ``settle``. On a Redis Cluster, ``PUBLISH`` (and
``SPUBLISH``) travel over the cluster bus, not the replication stream, so they move no
replication offset: the cluster stores send their own fence (``commands(fence=...)``),
a script that sets and deletes a key in the record's slot, on the slot's primary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessionlocker.errors import StoreError, UsageError
from sessionlocker.stores._checks import check_count, check_seconds

__all__ = ["Replication"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Replication:
    """How many replicas must acknowledge a record command, and for how long to wait."""

    #: 0: off (one command, counted once the primary has it).
    replicas: int = 0
    #: Seconds ``WAIT`` waits for the acknowledgements.
    timeout: float = 1.0
    #: The channel of the fence ``PUBLISH`` (nobody listens to it).
    fence: bytes = b"sessionlocker:fence"

    @classmethod
    def checked(
        cls, replicas: int, timeout: float, *, fence: bytes, socket_timeout: float
    ) -> Replication:
        """A ``Replication``, its settings checked (``UsageError`` naming the bad one):
        ``WAIT`` must end before the socket gives up on its reply."""
        replicas = check_count(replicas, "replicas", 0)
        timeout = check_seconds(timeout, "replica_timeout")
        if replicas and not 0 < timeout < socket_timeout:
            raise UsageError(
                f"replica_timeout must be above 0 and below timeout ({socket_timeout:g} s), "
                f"not {timeout:g}"
            )
        return cls(replicas=replicas, timeout=timeout, fence=fence)

    @property
    def on(self) -> bool:
        return self.replicas > 0

    def commands(
        self, command: tuple[Any, ...], *, fence: tuple[Any, ...] | None = None
    ) -> list[tuple[Any, ...]]:
        """``command``, then the fence (``PUBLISH`` to ``self.fence`` unless another
        ``fence`` command is given) and ``WAIT`` when on."""
        if not self.on:
            return [command]
        milliseconds = max(1, round(self.timeout * 1000))
        fence = ("PUBLISH", self.fence, b"") if fence is None else fence
        return [command, fence, ("WAIT", self.replicas, milliseconds)]

    def settle(self, replies: list[Any], *, where: str, operation: str, writes: bool) -> Any:
        """The command's reply, once the replicas acknowledged it.

        ``replies`` are the replies of ``commands`` in order (an error reply as its
        exception): the command's own error is raised as is, for the caller to
        translate; too few acknowledgements raise a retryable ``StoreError``, an
        unknown outcome for a write.
        """
        first = replies[0]
        if isinstance(first, BaseException):
            raise first
        if len(replies) == 1:  # not waited for
            return first
        # A failed fence leaves WAIT counting only this connection's own last write.
        acknowledged = replies[1] if isinstance(replies[1], BaseException) else replies[2]
        if isinstance(acknowledged, BaseException) or int(acknowledged) < self.replicas:
            got = acknowledged if isinstance(acknowledged, int) else f"an error ({acknowledged})"
            problem = (
                f"Redis {operation} on {where}: {got} of {self.replicas} replicas "
                f"acknowledged within {self.timeout:g} s"
            )
            if writes:
                problem += "; the primary may have the write, a failover may lose it"
            raise StoreError(problem, retryable=True, unknown_outcome=writes)
        return first
