"""Client-side deadlines: end a call whose server stopped answering.

A server that is stopped (SIGSTOP) or behind a network that silently drops packets
keeps its connections open: the client's kernel still holds the TCP connection (a
stopped server's kernel even ACKs what is sent and answers keepalives), so neither the
server's statement timeout nor TCP keepalives nor ``tcp_user_timeout`` end a call
waiting for its reply. Only the client can.

A call runs between ``start`` and ``end`` of a ``Deadlines``. When it is still running
at its deadline, a daemon thread shuts its socket down (``shutdown(SHUT_RDWR)``): the
client library's wait for the socket wakes up at once, finds the connection closed and
raises its "connection lost" error. ``end`` then says the call expired, so the caller
reports a timeout and discards the connection (it is unusable anyway). The event loop
does the same with ``expire`` on a timer (``loop.call_later``), no thread involved.

Calls are kept in a set; the thread sleeps until the earliest deadline and is woken
only when a call comes with an earlier one than it sleeps for, so a call costs a lock
and a set insertion, not a thread switch.
"""

from __future__ import annotations

import socket
import threading
import time

__all__ = ["DEADLINES", "Deadlines", "Pending", "expire"]


class Pending:
    """One running call: the socket it waits on, its deadline, whether it expired."""

    __slots__ = ("due", "expired", "fd")

    def __init__(self, fd: int, due: float) -> None:
        self.fd = fd
        self.due = due
        self.expired = False


def expire(pending: Pending) -> None:
    """End ``pending``'s wait: shut its socket down (the descriptor stays open)."""
    if pending.expired:
        return
    pending.expired = True
    try:
        sock = socket.socket(fileno=pending.fd)
    except OSError:
        return  # not a socket any more: nothing waits on it
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer: the wait has ended by itself
    finally:
        sock.detach()  # the client library owns the descriptor


class Deadlines:
    """The calls running under a deadline, and the thread that expires the late ones."""

    def __init__(self) -> None:
        self._wake = threading.Condition(threading.Lock())
        self._pending: set[Pending] = set()
        self._sleeping_until = float("inf")
        self._thread: threading.Thread | None = None

    def start(self, fd: int, seconds: float) -> Pending:
        """A call on socket ``fd`` starts; it is expired if still running in ``seconds``."""
        pending = Pending(fd, time.monotonic() + seconds)
        with self._wake:
            self._pending.add(pending)
            if self._thread is None or not self._thread.is_alive():  # first call, or forked
                self._thread = threading.Thread(
                    target=self._run, name="sessionlocker-deadlines", daemon=True
                )
                self._thread.start()
            elif pending.due < self._sleeping_until:
                self._wake.notify()
        return pending

    def end(self, pending: Pending) -> bool:
        """The call is over; True when it had expired (its socket was shut down)."""
        with self._wake:
            self._pending.discard(pending)
            return pending.expired

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for pending in [p for p in self._pending if p.due <= now]:
                    self._pending.discard(pending)
                    expire(pending)
                due = min((p.due for p in self._pending), default=float("inf"))
                self._sleeping_until = due
                self._wake.wait(None if due == float("inf") else due - now)


#: The one watchdog of the process, shared by every store.
DEADLINES = Deadlines()
