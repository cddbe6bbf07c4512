"""``PostgreSQLSettings``: the arguments of both PostgreSQL stores, their defaults once.

``PostgreSQLStore`` and ``AsyncPostgreSQLStore`` take the same ``conninfo`` and keyword
arguments (``PostgreSQLOptions``); each turns them into ``PostgreSQLSettings``, which
makes the ``PostgreSQLLayout`` both send their statements with. The async store's
notification twin (a sync ``PostgreSQLStore``) is made from the same settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, cast

from sessionlocker.stores._checks import check_count
from sessionlocker.stores.postgresql._layout import PostgreSQLLayout

__all__ = ["PostgreSQLOptions", "PostgreSQLSettings"]


class PostgreSQLOptions(TypedDict, total=False):
    """The keyword arguments of both PostgreSQL stores (``PostgreSQLSettings``)."""

    table: str
    schema: str
    prefix: str
    history: int
    pool_size: int
    timeout: float
    connect_timeout: float
    application_name: str
    connect: Mapping[str, str] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgreSQLSettings:
    """Where the records live and how to connect; see ``PostgreSQLStore`` for each."""

    conninfo: str = field(default="", repr=False)
    table: str = "sessionlocker_records"
    schema: str = "public"
    prefix: str = ""
    history: int = 10
    pool_size: int = 8
    timeout: float = 10.0
    connect_timeout: float = 5.0
    application_name: str = "sessionlocker"
    connect: Mapping[str, str] | None = field(default=None, repr=False)

    def layout(self) -> PostgreSQLLayout:
        """The names, statements, checked settings and error translation of a store."""
        return PostgreSQLLayout(
            self.conninfo,
            table=self.table,
            schema=self.schema,
            prefix=self.prefix,
            history=self.history,
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            application_name=self.application_name,
            connect=self.connect,
        )

    @property
    def pool_limit(self) -> int:
        """``pool_size``, checked (at least one connection)."""
        return check_count(self.pool_size, "pool_size", 1)

    def options(self, **changes: Any) -> PostgreSQLOptions:
        """The keyword arguments (all but ``conninfo``), with ``changes``."""
        changed = replace(self, **changes)
        names = PostgreSQLOptions.__annotations__
        return cast("PostgreSQLOptions", {name: getattr(changed, name) for name in names})
