"""``sessionlocker history`` and ``sessionlocker restore``: the history entries of a record.

The store keeps them (SQLite and PostgreSQL: the last 10 by default, ``history=N`` in
the URL; Redis only with ``history=N``). ``restore`` never overwrites the record
directly: it loads it in a session, as a server does (the holder is asked to save and
release first), sets the data to the old version's, and saves.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from sessionlocker.cli.display import Column, table
from sessionlocker.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    add_common,
    admin_spec,
    complain,
    emit,
    empty_namespace,
    guarded,
    open_admin_store,
    seconds,
    store_key,
    usage,
)
from sessionlocker.cli.records_io import admin_session, read_record
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.record import Record, decode
from sessionlocker.erase import erased_at
from sessionlocker.errors import CorruptRecord, LockUnavailable
from sessionlocker.history import select, version_at
from sessionlocker.stores.base import Entry, KeepsHistory, Store

__all__ = ["register"]

HISTORY_HELP = """\
List the versions the store keeps of a record, newest first: when the store wrote it
(UTC), revision, lock epoch, size, data version, who held the lock when it was written,
and the start of the data. --before and --after (ISO 8601 times with a zone, such as
2026-12-01T10:00Z) keep the versions written strictly between; --limit the newest N.
A key erased by 'sessionlocker erase' says so (its versions went with it). A corrupt
version is listed as such and named on stderr, and the exit status is then 1."""

RESTORE_HELP = """\
Put back the data of an older version: REVISION (from 'history'), or --at TIME, the
version that was current at that instant (the newest written at or before it; ISO 8601
with a zone, such as 2026-12-01T10:00Z). The record is loaded
through a session, as a server loads it: a live holder gets a release request and the
command waits (up to --timeout) for it to save and release, so nothing it saved is
overwritten unseen (its last save stays in the history). The old data is then written
as a normal save, and the record released. Everything else (inbox, purchases, credit)
stays as it is now. An old version of another data version is migrated with --spec;
without --spec such a restore is refused."""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``history`` and ``restore`` subcommands."""
    parser = subcommands.add_parser(
        "history",
        help="list the history entries of a record",
        description=HISTORY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, spec=False)
    parser.add_argument("key", metavar="KEY")
    parser.add_argument("--before", metavar="TIME", help="only versions written before TIME")
    parser.add_argument("--after", metavar="TIME", help="only versions written after TIME")
    parser.add_argument("--limit", type=int, metavar="N", help="at most the newest N")
    parser.set_defaults(run=guarded(run_history), parser=parser)

    parser = subcommands.add_parser(
        "restore",
        help="put back an older version's data, through a session",
        description=RESTORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("key", metavar="KEY")
    parser.add_argument("revision", metavar="REVISION", nargs="?")
    parser.add_argument("--at", metavar="TIME", help="the version current at TIME")
    parser.add_argument(
        "--timeout", type=seconds, default=60.0, metavar="SECONDS", help="how long to wait (60)"
    )
    parser.set_defaults(run=guarded(run_restore), parser=parser)


def _versions(store: Store, args: argparse.Namespace) -> list[Entry]:
    if not isinstance(store, KeepsHistory):
        raise CommandError(f"this store ({type(store).__name__}) keeps no versions")
    return store.history(store_key(args, args.key))


def run_history(args: argparse.Namespace) -> int:
    """Print the versions."""
    before = None if args.before is None else parse_time(args.before, "--before")
    after = None if args.after is None else parse_time(args.after, "--after")
    if args.limit is not None and args.limit < 1:
        usage("--limit must be a whole number >= 1")
    store = open_admin_store(args, read_only=True)
    try:
        kept = _versions(store, args)
        erased = None if kept else erased_at(store, store_key(args, args.key))
        empty = None if kept or erased else empty_namespace(store, args)
    finally:
        store.close()
    if erased is not None:
        at, session = erased
        raise CommandError(
            f"{args.key!r} was erased at {_iso(at)} (session {session}); "
            "its history entries were dropped with it"
        )
    if empty is not None:
        raise CommandError(f"no versions of {args.key!r}: {empty}")
    if not kept:
        raise CommandError(f"no versions of {args.key!r} are kept (is history on?)")
    versions = select(kept, before=before, after=after, limit=args.limit)
    rows = [_row(v) for v in versions]
    lines = [table(HISTORY_COLUMNS, [_cells(row) for row in rows])]
    if not rows:
        lines.append(f"(none of the {len(kept)} history entries was written in that time)")
    emit(args, "\n".join(lines), rows)
    corrupt = [row for row in rows if "error" in row]
    for row in corrupt:
        complain("history", f"record {args.key!r} revision {row['revision']} is {row['error']}")
    return EXIT_FAILED if corrupt else EXIT_OK


#: The columns of ``history``.
HISTORY_COLUMNS = (
    Column(title="WRITTEN (UTC)"),
    Column(title="REVISION", right=True),
    Column(title="EPOCH", right=True),
    Column(title="BYTES", right=True),
    Column(title="SCHEMA", right=True),
    Column(title="HELD BY"),
    Column(title="DATA"),
)


def _cells(row: dict[str, Any]) -> list[str]:
    data = json.dumps(row.get("data"), sort_keys=True)
    data = data if len(data) <= 60 else data[:57] + "..."
    return [
        row["written"] or "-",
        str(row["revision"]),
        str(row.get("epoch", "?")),
        f"{row['bytes']:,}",
        str(row.get("schema", "?")),
        row.get("held_by") or "-",
        row.get("error", data),
    ]


def parse_time(text: str, option: str) -> float:
    """Epoch seconds of an ISO 8601 time that names its zone (``2026-12-01T10:00Z``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        usage(f"{option} {text!r} is not an ISO 8601 time (such as 2026-12-01T10:00Z)")
    if moment.tzinfo is None:
        usage(f"{option} {text!r} needs a time zone (Z for UTC, or +01:00...)")
    return moment.timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row(version: Entry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "revision": version.revision,
        "bytes": len(version.value),
        "written": None if version.written is None else _iso(version.written),
    }
    try:
        record = decode(version.value)
    except CorruptRecord as exc:
        row["error"] = f"corrupt, left as it is: {exc}"
        return row
    row.update(
        epoch=record.epoch,
        schema=record.schema,
        held_by=None if record.lock is None else record.lock.session,
        data=record.data,
    )
    return row


def run_restore(args: argparse.Namespace) -> int:
    """Load, replace the data, save."""
    if (args.revision is None) == (args.at is None):
        usage("give either REVISION or --at TIME")
    at = None if args.at is None else parse_time(args.at, "--at")
    revision = None if args.revision is None else _revision(args.revision)
    store = open_admin_store(args)
    try:
        current = read_record(store, args, args.key).record
        revision, old = _old_record(store, args, revision, at)
        data = _data_for(args, old, current, revision)
        try:
            with admin_session(store, args, args.key, LoadMode.FORCE, args.timeout) as locker:
                locker.data = data
                locker.mark_changed()
        except LockUnavailable as exc:
            raise CommandError(
                f"{args.key!r} was not released within {args.timeout:g} s; nothing restored"
            ) from exc
        after = read_record(store, args, args.key).versioned.revision
    finally:
        store.close()
    emit(
        args,
        f"{args.key}: data of revision {revision} restored (now revision {after})",
        {"key": args.key, "restored": revision, "revision": after},
    )
    return 0


def _revision(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        usage(f"REVISION is a whole number from 'history', not {text!r}")


def _old_record(
    store: Store, args: argparse.Namespace, revision: int | None, at: float | None
) -> tuple[int, Record]:
    """The revision asked for (or current at ``at``) and its record."""
    versions = _versions(store, args)
    if at is not None:
        found = version_at(versions, at)
        if found is None:
            raise CommandError(
                f"no history entry of {args.key!r} is known to be current at {args.at} "
                "(every kept one is newer, or undated)"
            )
        revision = found.revision
    for version in versions:
        if version.revision == revision:
            try:
                return revision, decode(version.value)
            except CorruptRecord as exc:
                raise CommandError(f"revision {revision} is corrupt: {exc}") from exc
    kept = ", ".join(str(v.revision) for v in versions) or "none"
    return usage(f"{args.key!r} has no kept revision {revision} (kept: {kept})")


def _data_for(args: argparse.Namespace, old: Record, current: Record, revision: int) -> Any:
    """The old data, at the current record's data version."""
    if old.schema == current.schema:
        return old.data
    if not args.spec:
        raise CommandError(
            f"revision {revision} holds data version {old.schema}, the record is at "
            f"{current.schema}: give --spec so the old data can be migrated"
        )
    return admin_spec(args).upgrade(old).data
