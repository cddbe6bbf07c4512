"""Requests on the wire, counted by the server itself (Redis and PostgreSQL).

``CountingStore`` counts calls of the ``Store`` protocol. A backend may spend more
than one network round trip on one call: a generic ``update`` without a known
revision reads, then writes. So for the servers the round-trip benchmark also asks
the server what it executed:

- Redis: a ``MONITOR`` connection sees every command clients send (commands a Lua
  script runs inside the server are marked ``lua`` and left out). A marker command
  tells when everything sent so far has been seen.
- PostgreSQL: ``pg_stat_statements`` (when the server loads it: ``bench/run.py``'s
  throwaway server does) counts statements, ``BEGIN`` and ``COMMIT`` included, each
  one round trip with psycopg; its own queries are left out.

Elsewhere (memory, SQLite: no network) ``wire_counter`` returns ``None``.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any, Protocol, cast

from sessionlocker.benchmarks.common import backend_name
from sessionlocker.benchmarks.raw import without_query

__all__ = ["WireCounter", "wire_counter"]


class WireCounter(Protocol):
    """Counts requests a server received from clients since the last ``take``."""

    def take(self) -> int:
        """Requests since the last ``take`` (or since the counter was made)."""
        ...

    def last_commands(self) -> dict[str, int]:
        """What the last ``take`` counted, by command name (empty when unknown)."""
        ...

    def close(self) -> None:
        """Disconnect."""
        ...


def wire_counter(url: str) -> WireCounter | None:
    """A counter for the server at ``url``, or ``None`` when it cannot count."""
    name = backend_name(url)
    try:
        if name == "redis":
            return RedisWire(without_query(url))
        if name == "postgresql":
            return PostgresWire(without_query(url))
    except Exception:  # no MONITOR permission, no pg_stat_statements: not counted
        return None
    return None


class RedisWire:
    """Counts client commands seen by ``MONITOR``, up to a marker ``ECHO``."""

    def __init__(self, url: str) -> None:
        import redis  # noqa: PLC0415 (optional extra: only for a Redis URL)

        self._client: Any = cast(Any, redis.Redis.from_url(url))
        self._monitor: Any = self._client.monitor()
        self._connection = self._monitor.__enter__()
        self._lock = threading.Condition()
        self._seen: Counter[str] = Counter()
        self._last: Counter[str] = Counter()
        self._markers: set[str] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.take()

    def _read(self) -> None:
        try:
            while True:
                command = self._connection.next_command()
                self._note(command)
        except Exception:  # the connection was closed by ``close``
            return

    def _note(self, command: dict[str, Any]) -> None:
        text = str(command.get("command", ""))
        with self._lock:
            if text.startswith("ECHO sessionlocker-bench-marker-"):
                self._markers.add(text.rsplit(maxsplit=1)[-1])
                self._lock.notify_all()
            elif command.get("client_type") != "lua":
                self._seen[text.split(" ", 1)[0].upper()] += 1

    def take(self) -> int:
        marker = f"sessionlocker-bench-marker-{uuid.uuid4().hex}"
        self._client.echo(marker)
        with self._lock:
            if not self._lock.wait_for(lambda: marker in self._markers, timeout=10):
                raise TimeoutError("MONITOR did not show the marker within 10 s")
            self._last, self._seen = self._seen, Counter()
        return self._last.total()

    def last_commands(self) -> dict[str, int]:
        return dict(self._last)

    def close(self) -> None:
        self._monitor.__exit__(None, None, None)
        self._client.close()
        self._reader.join(timeout=5)


class PostgresWire:
    """Counts statements in ``pg_stat_statements``, leaving its own queries out."""

    _QUERY = (
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
        "WHERE query NOT ILIKE '%pg_stat_statements%'"
    )

    def __init__(self, url: str) -> None:
        import psycopg  # noqa: PLC0415 (optional extra: only for a PostgreSQL URL)

        self._connection: Any = psycopg.connect(url, autocommit=True)
        self._last = self._total()

    def _total(self) -> int:
        return int(self._connection.execute(self._QUERY).fetchone()[0])

    def take(self) -> int:
        total = self._total()
        taken, self._last = total - self._last, total
        return taken

    def last_commands(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self._connection.close()
