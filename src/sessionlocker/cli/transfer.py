"""``sessionlocker export`` and ``sessionlocker import``: records as JSON lines.

One line per record: ``{"key": KEY, "record": {...}}``, the record as stored (its
JSON object, data included). Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sessionlocker.cli.options import (
    CommandError,
    add_common,
    emit,
    empty_namespace,
    guarded,
    open_admin_store,
    store_key,
    usage,
)
from sessionlocker.cli.records_io import decode_stored
from sessionlocker.core import strictjson
from sessionlocker.core.record import RECORD_DEPTH, decode, encode
from sessionlocker.errors import Conflict, CorruptRecord
from sessionlocker.stores.base import Store

__all__ = ["register"]

EXPORT_HELP = """\
Write every record of a namespace (whose key starts with PREFIX) as JSON lines to
--out (default stdout), with progress on stderr. Reads only; a record changing while
the export runs is exported as it was when read. A corrupt record is not exported: it
is named on stderr, the others are exported, and the exit status is 1."""

IMPORT_HELP = """\
Read JSON lines written by 'export' (from --in, default stdin) and create each record
in the namespace. A key that already exists is skipped and counted, never overwritten
(change an existing record with 'edit' or 'restore', which go through its lock). Locks
and release requests in the file are dropped: imported records are free. A bad line
stops the import with exit status 2 before anything is written."""

#: Report progress every this many records.
EVERY = 1000


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``export`` and ``import`` subcommands."""
    parser = subcommands.add_parser(
        "export",
        help="write a namespace's records as JSON lines",
        description=EXPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, spec=False)
    parser.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    parser.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(run=guarded(run_export), parser=parser)

    parser = subcommands.add_parser(
        "import",
        help="create records from JSON lines (existing keys are skipped)",
        description=IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, spec=False)
    parser.add_argument("--in", dest="source", metavar="FILE", help="read here, not stdin")
    parser.set_defaults(run=guarded(run_import), parser=parser)


def _progress(verb: str, total: int | None) -> Callable[[int], None]:
    def show(done: int) -> None:
        if done % EVERY == 0 or done == total:
            of = "" if total is None else f"/{total:,}"
            print(f"{verb}: {done:,}{of} records", file=sys.stderr, flush=True)

    return show


def run_export(args: argparse.Namespace) -> int:
    """Write the lines."""
    store = open_admin_store(args, read_only=True)
    head = f"{args.namespace}/"
    written = corrupt = 0
    try:
        names = sorted(store.keys(head + args.prefix))
        if not names and (empty := empty_namespace(store, args)) is not None:
            raise CommandError(empty)
        out = sys.stdout if args.out is None else _create(args.out)
        progress = _progress("export", len(names))
        try:
            for name in names:
                try:
                    line = _line(store, name, head)
                except CommandError as exc:  # corrupt: named, and the others go on
                    print(f"sessionlocker export: {exc}", file=sys.stderr)
                    corrupt += 1
                    continue
                if line is not None:
                    out.write(line)
                    written += 1
                    progress(written)
        finally:
            if out is not sys.stdout:
                out.close()
    finally:
        store.close()
    if args.out is not None:
        emit(args, f"exported {written:,} records to {args.out}", {"exported": written})
    if corrupt:
        raise CommandError(f"{corrupt:,} corrupt record(s) not exported (named above)")
    return 0


def _line(store: Store, name: str, head: str) -> str | None:
    """The JSON line of record ``name``; None when it is gone; ``CommandError`` if corrupt."""
    versioned = store.read(name)
    if versioned is None:
        return None  # deleted since the keys were listed
    key = name[len(head) :]
    decode_stored(key, versioned.value)  # checked by the strict decoder, like every path
    record = strictjson.loads(versioned.value, max_depth=RECORD_DEPTH)
    return json.dumps({"key": key, "record": record}) + "\n"


def _create(path: str) -> IO[str]:
    try:
        return Path(path).open("w", encoding="utf-8")
    except OSError as exc:
        usage(f"cannot write {path}: {exc.strerror or exc}")


def run_import(args: argparse.Namespace) -> int:
    """Create the records."""
    source: IO[str] = sys.stdin if args.source is None else _open(args.source)
    with source:  # every line is checked before anything is written
        records = [_parse(line, n) for n, line in enumerate(source, 1) if line.strip()]
    store = open_admin_store(args)
    created = skipped = 0
    progress = _progress("import", len(records))
    try:
        for key, value in records:
            try:
                store.write(store_key(args, key), value, None)
                created += 1
            except Conflict:
                skipped += 1
            progress(created + skipped)
    finally:
        store.close()
    emit(
        args,
        f"imported {created:,} records; {skipped:,} skipped (the key exists)",
        {"imported": created, "skipped": skipped},
    )
    return 0


def _open(path: str) -> IO[str]:
    try:
        return Path(path).open()
    except OSError as exc:
        usage(f"cannot read {path}: {exc.strerror}")


def _parse(line: str, number: int) -> tuple[str, bytes]:
    """The key and the record's bytes to store, lock and release requests dropped."""
    try:
        item: Any = strictjson.loads(line)
        key = item["key"]
        record = decode(json.dumps(item["record"]).encode())
    except (ValueError, KeyError, TypeError, CorruptRecord) as exc:
        usage(f"line {number} is not an exported record: {exc}")
    if not isinstance(key, str) or not key:
        usage(f"line {number}: the key must be a non-empty string")
    try:
        return key, encode(record.with_(lock=None, release_requests=()))
    except ValueError as exc:
        raise CommandError(f"line {number}: {exc}") from exc
