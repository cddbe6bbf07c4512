"""``sessionlocker send --all`` / ``--keys-from FILE``: one remote change to many records.

Each record gets the change once, as a message in its inbox with the id
``BULK_ID/KEY``: the same id ``send`` uses to never deliver a message twice, so a run
repeated or resumed after a crash cannot deliver to a record again even if the crash
came between a delivery and its note in the progress file.

The progress file (JSON lines) starts with what the run sends (bulk id, kind, body,
namespace, where the keys come from), then one line per record done, written as it is
done. ``--resume`` reads it back: the same run goes on with the same bulk id, skipping
the records already sent (a record that failed, or was missing, is tried again).
A store error stops the run (the file says how far it got); a record that refuses the
message (corrupt, or too large with it) is counted as failed and the run goes on.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sessionlocker.cli.options import CommandError, usage
from sessionlocker.core.record import decode
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import CorruptRecord, DataError

__all__ = [
    "Bulk",
    "Tally",
    "check_resumable",
    "keys_from",
    "new_bulk",
    "read_progress",
    "send_all",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bulk:
    """What a bulk send sends: the header line of its progress file."""

    bulk_id: str
    kind: str
    body: Any
    namespace: str
    keys: str  # "all", or the file the keys were read from

    def message_id(self, key: str) -> str:
        """The id of the message for ``key``: the same in every run of this bulk send."""
        return f"{self.bulk_id}/{key}"

    def header(self) -> dict[str, Any]:
        """The first line of the progress file."""
        return {
            "bulk_id": self.bulk_id,
            "kind": self.kind,
            "body": self.body,
            "namespace": self.namespace,
            "keys": self.keys,
        }


@dataclass(slots=True)
class Tally:
    """How a bulk send went, by record."""

    sent: int = 0
    already: int = 0  #: sent by an earlier run (``--resume``)
    missing: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def as_json(self, bulk: Bulk, total: int) -> dict[str, Any]:
        """The summary for ``--json``."""
        return {
            "bulk_id": bulk.bulk_id,
            "total": total,
            "sent": self.sent,
            "already_sent": self.already,
            "missing": self.missing,
            "failed": dict(self.failed),
        }

    def as_text(self, bulk: Bulk, total: int) -> str:
        """The summary for a person."""
        text = (
            f"bulk {bulk.bulk_id}: {self.sent + self.already:,} of {total:,} records have "
            f"the change ({self.sent:,} sent now, {self.already:,} before); "
            f"{self.missing:,} missing, {len(self.failed):,} failed"
        )
        return text + "".join(f"\n  {key}: {why}" for key, why in self.failed.items())


def new_bulk(kind: str, body: Any, namespace: str, keys: str, bulk_id: str | None) -> Bulk:
    """A new bulk send (a fresh bulk id unless one is given)."""
    if bulk_id is not None and (not bulk_id or "/" in bulk_id):
        usage(f"--id must be a non-empty string without '/', not {bulk_id!r}")
    return Bulk(
        bulk_id=bulk_id or uuid.uuid4().hex,
        kind=kind,
        body=body,
        namespace=namespace,
        keys=keys,
    )


def read_progress(path: Path) -> tuple[Bulk, dict[str, str]]:
    """The bulk send a progress file is about, and each key's last result in it."""
    try:
        lines = path.read_text().splitlines()
        head = json.loads(lines[0])
        bulk = Bulk(**{name: head[name] for name in Bulk.__dataclass_fields__})
        results: dict[str, str] = {}
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                done = json.loads(line)
            except ValueError:
                continue  # a last line cut short by the interruption
            results[str(done["key"])] = str(done["result"])
    except (OSError, IndexError, KeyError, TypeError, ValueError) as exc:
        usage(f"{path} is not a progress file of 'send': {exc!r}")
    return bulk, results


def keys_from(source: str) -> list[str]:
    """The keys listed in ``source`` ('-': stdin), one a line; blanks and '#' lines skipped."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        usage(f"cannot read --keys-from {source}: {exc.strerror}")
    stripped = (line.strip() for line in text.splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


def send_all(
    service: LockerService,
    bulk: Bulk,
    keys: Iterable[str],
    progress: IO[str],
    *,
    done: dict[str, str],
    report: Callable[[int], None],
) -> Tally:
    """Send ``bulk`` to each key not ``sent`` in ``done``, noting each in ``progress``."""
    tally = Tally()
    for number, key in enumerate(_unique(keys), 1):
        if done.get(key) == "sent":
            tally.already += 1
        else:
            result = _send_one(service, bulk, key, tally)
            line = {"key": key, "result": result, "id": bulk.message_id(key)}
            if result == "failed":
                line["error"] = tally.failed[key]
            progress.write(json.dumps(line) + "\n")
            progress.flush()
        report(number)
    return tally


def _send_one(service: LockerService, bulk: Bulk, key: str, tally: Tally) -> str:
    """Deliver to one record (a store error stops the run: it is raised)."""
    versioned = service.store.read(service.spec.store_key(key))
    if versioned is None:
        tally.missing += 1
        return "missing"
    try:
        decode(versioned.value)
        service.send(key, bulk.kind, bulk.body, id=bulk.message_id(key))
    except (CorruptRecord, DataError) as exc:
        tally.failed[key] = f"{type(exc).__name__}: {exc}"
        return "failed"
    tally.sent += 1
    return "sent"


def _unique(keys: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for key in keys:
        if key not in seen:
            seen.add(key)
            yield key


def check_resumable(bulk: Bulk, wanted: Bulk) -> None:
    """Refuse to resume a progress file written for another bulk send."""
    for name in ("kind", "body", "namespace", "keys"):
        if getattr(bulk, name) != getattr(wanted, name):
            raise CommandError(
                f"the progress file is for another send ({name} "
                f"{getattr(bulk, name)!r}, not {getattr(wanted, name)!r})",
                2,
            )
