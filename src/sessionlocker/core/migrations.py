"""Save-data versions: migrators from version N to N+1, and patchers within a version.

``Migrations`` is a builder, checked once when a ``Spec`` is made (so a missing step
fails at start-up, not at the first load of an old record)::

    migrations = (
        Migrations()
        .step(1, add_inventory)                    # 1 -> 2
        .step(2, rename_gold, compatible=True)     # 2 -> 3; a version-2 server can still use it
        .patch(3, fix_negative_coins)              # version 3, patch level 1
        .patch(3, reconcile(create))               # version 3, patch level 2
    )

A record keeps ``schema`` (its version), ``patch`` (how many patchers of that version ran)
and ``compatible`` (the oldest version that may load and save it). A migrator or patcher
is a pure function from data to data; it may change the data it is given in place and
return ``None``, or return new data.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sessionlocker.errors import MigrationError, NewerSchema, UsageError

__all__ = ["KeepsHistory", "Migrations", "fill_missing", "reconcile"]

Migrator = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class KeepsHistory:
    """Data with its version numbers, as stored in a record."""

    data: Any
    schema: int
    patch: int
    compatible: int


@dataclass(frozen=True, slots=True)
class _Step:
    migrate: Migrator
    compatible: bool


class Migrations:
    """Migrators (``step``) and patchers (``patch``), chained up to a ``Spec.version``."""

    def __init__(self) -> None:
        self._steps: dict[int, _Step] = {}
        self._patches: dict[int, list[Migrator]] = {}

    def step(self, from_version: int, migrate: Migrator, *, compatible: bool = False) -> Migrations:
        """Register the migrator from ``from_version`` to ``from_version + 1``.

        ``compatible=True`` says a server still at ``from_version`` can load and save
        data of the new version (a field was only added, say).
        """
        _check_version(from_version, "from_version")
        if not callable(migrate):
            raise UsageError(f"the migrator from version {from_version} is not callable")
        if from_version in self._steps:
            raise UsageError(f"a migrator from version {from_version} is already registered")
        self._steps[from_version] = _Step(migrate, compatible)
        return self

    def patch(self, version: int, patcher: Migrator) -> Migrations:
        """Register the next patcher of ``version`` (patch levels count up from 1)."""
        _check_version(version, "version")
        if not callable(patcher):
            raise UsageError(f"a patcher for version {version} is not callable")
        self._patches.setdefault(version, []).append(patcher)
        return self

    def check(self, version: int) -> None:
        """Raise ``UsageError`` unless every step from 1 up to ``version`` is registered."""
        missing = [v for v in range(1, version) if v not in self._steps]
        if missing:
            steps = ", ".join(f"{v} -> {v + 1}" for v in missing)
            raise UsageError(f"migrations to version {version} miss the step(s) {steps}")
        beyond = sorted(
            {v + 1 for v in self._steps if v >= version} | {v for v in self._patches if v > version}
        )
        if beyond:
            raise UsageError(f"migrations reach version(s) {beyond}, past the spec's {version}")

    def patch_level(self, version: int) -> int:
        """How many patchers version ``version`` has."""
        return len(self._patches.get(version, ()))

    def compatible_from(self, version: int) -> int:
        """The oldest version whose servers may load data of ``version``."""
        oldest = version
        while oldest > 1 and self._steps[oldest - 1].compatible:
            oldest -= 1
        return oldest

    def fresh(self, version: int) -> tuple[int, int]:
        """(patch, compatible) for data just made by ``create`` at ``version``."""
        return self.patch_level(version), self.compatible_from(version)

    def upgrade(self, stored: KeepsHistory, version: int) -> KeepsHistory:
        """Bring ``stored`` up to ``version``, or leave it when it is newer but compatible.

        Raises ``NewerSchema`` when code at ``version`` must not touch the data, and
        ``MigrationError`` naming the step when a migrator or patcher raises.
        """
        if stored.schema > version:
            if stored.compatible <= version:
                return stored
            raise NewerSchema(stored.schema, minimum=stored.compatible, running=version)
        data, schema, patch = stored.data, stored.schema, stored.patch
        while True:
            for level, patcher in enumerate(self._patches.get(schema, ())[patch:], patch + 1):
                data = _run(patcher, data, f"patch {level} of version {schema}")
                patch = level
            if schema == version:
                break
            data = _run(self._steps[schema].migrate, data, f"migration {schema} -> {schema + 1}")
            schema, patch = schema + 1, 0
        if (schema, patch) == (stored.schema, stored.patch):
            return stored
        return KeepsHistory(data, schema, patch, self.compatible_from(schema))


def reconcile(create: Callable[[], Any]) -> Migrator:
    """A patcher filling keys missing from the data with ``create()``'s, recursively.

    Existing values are never overwritten (ProfileService's ``Reconcile``).
    """

    def fill(data: Any) -> Any:
        return fill_missing(data, create())

    return fill


def fill_missing(data: Any, template: Any) -> Any:
    """``data`` with the keys of ``template`` it lacks filled in with copies, recursively
    through dicts; nothing existing is overwritten or removed, and lists are not entered
    (their items are the user's). Returns ``data`` itself, unchanged, when nothing is
    missing (``Spec(reconcile=True)`` then writes nothing for it), else a new value.
    """
    if not isinstance(data, dict) or not isinstance(template, dict):
        return data
    filled: dict[str, Any] | None = None
    for name, default in template.items():
        if name not in data:
            value = copy.deepcopy(default)
        else:
            value = fill_missing(data[name], default)
            if value is data[name]:
                continue
        if filled is None:
            filled = dict(data)
        filled[name] = value
    return data if filled is None else filled


def _run(migrate: Migrator, data: Any, step: str) -> Any:
    try:
        result = migrate(data)
    except Exception as exc:  # the user's migrator; the load fails, nothing is written
        raise MigrationError(step, exc) from exc
    return data if result is None else result


def _check_version(version: object, name: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UsageError(f"{name} must be a whole number >= 1, not {version!r}")
