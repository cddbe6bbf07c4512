"""``sessionlocker export`` and ``sessionlocker import``: records as JSON lines.

``export`` writes one line per record: ``{"key": KEY, "record": {...}}``, the record
as stored (its JSON object, data included). ``import`` reads those lines, and plain
ones, ``{"key": KEY, "data": DATA}``, which become new records at ``--data-version``
(default 1), as ``sessionlocker.testing.seed`` would write them. Progress goes to
stderr (see ``display``), the summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, Any

from sessionlocker.cli.display import Progress
from sessionlocker.cli.options import (
    CommandError,
    add_common,
    complain,
    emit,
    empty_namespace,
    guarded,
    open_admin_store,
    store_key,
    usage,
)
from sessionlocker.core import strictjson
from sessionlocker.core.record import RECORD_DEPTH, Record, decode_json, encode
from sessionlocker.core.spec import check_key
from sessionlocker.core.storable import encode_data
from sessionlocker.errors import Conflict, CorruptRecord, UnstorableData, UsageError
from sessionlocker.stores.base import Store

__all__ = ["register"]

EXPORT_HELP = """\
Write every record of a namespace (whose key starts with PREFIX) as JSON lines to
--out (default stdout), with progress on stderr. Reads only; a record changing while
the export runs is exported as it was when read. A corrupt record is not exported: it
is named on stderr, the others are exported, and the exit status is 1."""

IMPORT_HELP = """\
Read JSON lines (from --in, default stdin) and create one record per line in the
namespace. A line is either plain data, {"key": "alice", "data": {"coins": 5}}, which
becomes a new record at --data-version (the Spec version whose shape the data has;
a server migrates it from there at its first load), or a line written by 'export',
{"key": "alice", "record": {...}}, created exactly as exported. A key that already
exists is skipped and counted, never overwritten (change an existing record with
'edit' or 'restore', which go through its lock). Locks and release requests in the
file are dropped: imported records are free. Every line is checked first: a bad one
(its line number and what is wrong on stderr) stops the import with exit status 2
before anything is written."""

#: What a line of ``import`` looks like, for error messages.
LINE_FORMS = '{"key": ..., "data": ...} or {"key": ..., "record": ...} (from export)'

#: Said on stderr when ``import`` reads a terminal.
READING_TERMINAL = (
    "sessionlocker import: reading JSON lines from the terminal; end with Ctrl-D "
    "(Ctrl-Z then Enter on Windows), or give --in FILE"
)


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
    parser.add_argument(
        "--data-version",
        type=int,
        default=1,
        metavar="N",
        help="the schema version of plain data lines (default: 1); exported lines keep theirs",
    )
    parser.set_defaults(run=guarded(run_import), parser=parser)


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
        progress = Progress("export", len(names))
        try:
            for name in names:
                try:
                    line = _line(store, name, head)
                except CommandError as exc:  # corrupt: named, and the others go on
                    complain("export", str(exc))
                    corrupt += 1
                    continue
                if line is not None:
                    out.write(line)
                    written += 1
                    progress(written)
        finally:
            progress.close()
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
    try:  # parsed once, and checked as the strict decoder checks every record
        raw = strictjson.loads(versioned.value, max_depth=RECORD_DEPTH)
        decode_json(raw)
    except CorruptRecord as exc:  # before ValueError: it is one
        raise CommandError(f"record {key!r} is corrupt, left as it is: {exc}") from exc
    except ValueError as exc:
        problem = f"stored bytes are not strict JSON: {exc}"
        raise CommandError(f"record {key!r} is corrupt, left as it is: {problem}") from exc
    return json.dumps({"key": key, "record": raw}) + "\n"


def _create(path: str) -> IO[str]:
    try:
        return Path(path).open("w", encoding="utf-8")
    except OSError as exc:
        usage(f"cannot write {path}: {exc.strerror or exc}")


def run_import(args: argparse.Namespace) -> int:
    """Create the records."""
    if args.data_version < 1:
        usage(f"--data-version must be 1 or more, not {args.data_version}")
    if args.source is None and sys.stdin.isatty():
        print(READING_TERMINAL, file=sys.stderr, flush=True)
    source: IO[str] = sys.stdin if args.source is None else _open(args.source)
    with source:  # every line is checked before anything is written
        records = _read_all(source, args.data_version)
    store = open_admin_store(args)
    created = skipped = 0
    try:
        with Progress("import", len(records)) as progress:
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
        return Path(path).open(encoding="utf-8")
    except OSError as exc:
        usage(f"cannot read {path}: {exc.strerror}")


def _read_all(source: IO[str], version: int) -> list[tuple[str, bytes]]:
    """Every line's key and record bytes; the first bad line stops it all (exit 2)."""
    records: list[tuple[str, bytes]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            key, value = _parse(line, version)
        except ValueError as exc:
            usage(f"line {number}: {exc}")
        if key in first_line:
            usage(f"line {number}: key {_short(key)} is already on line {first_line[key]}")
        first_line[key] = number
        records.append((key, value))
    return records


def _parse(line: str, version: int) -> tuple[str, bytes]:
    """The key and the record's bytes to store, from a plain or an exported line.

    ``ValueError`` says what is wrong, in words for the operator.
    """
    try:
        item: Any = strictjson.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos + 1})") from None
    except ValueError as exc:
        raise ValueError(f"not strict JSON: {exc}") from None
    if not isinstance(item, dict):
        raise ValueError(f"a line is a JSON object {LINE_FORMS}, not {_json_type(item)}")
    fields = set(item)
    if fields not in ({"key", "data"}, {"key", "record"}):
        raise ValueError(f"{_fields_problem(fields)}: a line is {LINE_FORMS}")
    try:
        key = check_key(item["key"])
    except UsageError as exc:
        raise ValueError(f'"key": {exc}') from None
    if "data" in item:
        return key, _fresh(item["data"], version)
    return key, _exported(item["record"])


def _fresh(data: Any, version: int) -> bytes:
    """A new, free record holding ``data`` at schema ``version`` (as ``seed`` makes)."""
    try:
        text = encode_data(data)
    except UnstorableData as exc:
        raise ValueError(f'"data" cannot be stored: {exc}') from None
    return encode(Record(data=None, schema=version, compatible=version), text)


def _exported(raw: Any) -> bytes:
    """The record of an exported line, its lock and release requests dropped."""
    try:
        record = decode_json(raw)
    except CorruptRecord as exc:
        hint = '; for plain data write {"key": ..., "data": ...}'
        raise ValueError(f'"record" is not an exported record: {exc}{hint}') from None
    return encode(record.with_(lock=None, release_requests=()))


def _fields_problem(fields: set[str]) -> str:
    if "key" not in fields:
        return 'no "key"'
    if {"data", "record"} <= fields:
        return 'both "data" and "record"'
    unknown = sorted(fields - {"key", "data", "record"})
    if unknown:
        return f"unknown field {_short(unknown[0])}"
    return 'no "data"'


def _json_type(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def _short(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters."""
    shown = text if len(text) <= limit else text[: limit - 3] + "..."
    return repr(shown)
