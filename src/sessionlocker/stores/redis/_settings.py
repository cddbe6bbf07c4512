"""``RedisSettings``: the arguments of both Redis stores, their defaults written once.

``RedisStore`` and ``AsyncRedisStore`` take the same ``host``, ``port`` and keyword
arguments (``RedisOptions``); each turns them into ``RedisSettings``, which makes the
``RedisLayout`` and the connection settings both clients use. The async store's
notification twin (a sync ``RedisStore``) is made from the same settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypedDict, cast

from sessionlocker.stores.redis._layout import RedisLayout
from sessionlocker.stores.redis._replicas import Replication

__all__ = ["RedisOptions", "RedisSettings"]


class RedisOptions(TypedDict, total=False):
    """The keyword arguments of ``RedisStore`` and ``AsyncRedisStore`` (``RedisSettings``)."""

    db: int
    username: str | None
    password: str | None
    tls: bool
    ca_certs: str | None
    prefix: str
    history: int
    timeout: float
    pool: int
    replicas: int
    replica_timeout: float
    sentinels: tuple[tuple[str, int], ...]
    service: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSettings:
    """Where and how a Redis store connects; see ``RedisStore`` for each setting."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_certs: str | None = None
    prefix: str = "sessionlocker:"
    history: int = 0
    timeout: float = 5.0
    pool: int = 8
    #: Replicas that must acknowledge a record command (``_replicas``); 0: off.
    replicas: int = 0
    replica_timeout: float = 1.0
    #: Sentinels to ask for the primary of ``service`` (``host`` and ``port`` unused).
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""

    def layout(self) -> RedisLayout:
        """The key names, checked settings and error translation of a store."""
        if self.sentinels:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            where = f"the primary of {self.service!r} (sentinels {hosts})/{self.db}"
        else:
            where = f"{self.host}:{self.port}/{self.db}"
        return RedisLayout(
            prefix=self.prefix,
            history=self.history,
            timeout=self.timeout,
            where=where,
            password=self.password,
        )

    def replication(self, layout: RedisLayout) -> Replication:
        """How many replicas a record command waits for (checked)."""
        return Replication.checked(
            self.replicas,
            self.replica_timeout,
            fence=layout.prefix + b"fence",
            socket_timeout=layout.timeout,
        )

    def connection_kwargs(
        self, layout: RedisLayout, *, retry: object, ssl_class: type
    ) -> dict[str, Any]:
        """The client's connection arguments (``retry`` and ``ssl_class``, its TLS
        connection class, are the client's own kinds)."""
        return layout.connection_kwargs(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username,
            retry=retry,
            ssl_class=ssl_class if self.tls else None,
            ca_certs=self.ca_certs,
        )

    def options(self, **changes: Any) -> RedisOptions:
        """The keyword arguments (all but ``host`` and ``port``), with ``changes``."""
        values = asdict(replace(self, **changes))
        return cast("RedisOptions", {name: values[name] for name in RedisOptions.__annotations__})
