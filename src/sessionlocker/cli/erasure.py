"""``sessionlocker erase --user ID``: remove every record of a user (a data-erasure request)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TextIO

from sessionlocker.cli.options import (
    CommandError,
    add_common,
    admin_spec,
    emit,
    guarded,
    open_admin_store,
    seconds,
    usage,
)
from sessionlocker.cli.records_io import decode_stored
from sessionlocker.drivers.service import LockerService
from sessionlocker.erase import EraseReport, erase_user
from sessionlocker.stores.base import Store
from sessionlocker.stores.user_keys import keys_for_user

__all__ = ["register"]

HELP = """\
Delete every record of --namespace that lists the user id (Locker.add_user_id), each
after taking its lock the way a server does: a release request that a live holder
answers by saving and releasing, waiting up to --timeout per record. A live holder is
never taken over: a record whose lock cannot be had is reported and left untouched,
and the command exits with status 1 (run it again later). A record whose holder's
lease has expired (a crashed server) is taken over.

It asks for confirmation on a terminal (y/N) unless --yes is given, and refuses
without --yes elsewhere. Each run appends one JSON line (who, when, which user, which
keys, the result; never the data) to --audit FILE and logs it on the
'sessionlocker.erase' logger."""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``erase`` subcommand."""
    parser = subcommands.add_parser(
        "erase",
        help="delete every record of a user, each under its lock",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--user", required=True, metavar="ID", help="the user id to erase")
    parser.add_argument("--yes", action="store_true", help="do not ask before erasing")
    parser.add_argument("--audit", type=Path, metavar="FILE", help="append the audit line here")
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for each lock (30)",
    )
    parser.set_defaults(run=guarded(run), parser=parser)


def run(args: argparse.Namespace) -> int:
    """Erase the user's records; exit 1 when some record could not be erased."""
    if not args.user:
        usage("--user must not be empty")
    audit = _open_audit(args.audit)  # before erasing: a run that cannot be audited is refused
    try:
        report = _run(args)
        if report is None:
            return 0
        if audit is not None:
            audit.write(report.audit_line() + "\n")
    finally:
        if audit is not None:
            audit.close()
    emit(args, _human(report), report.as_dict())
    return 0 if report.ok else 1


def _run(args: argparse.Namespace) -> EraseReport | None:
    """Find and erase the records; None when no record lists the user."""
    store = open_admin_store(args)
    try:
        keys = keys_for_user(store, args.user, f"{args.namespace}/")
        if not keys:
            emit(args, f"no record of {args.namespace!r} lists user {args.user!r}", _none(args))
            return None
        if not args.yes:
            shown = ", ".join(key.split("/", 1)[1] for key in keys)
            _confirm(f"erase {len(keys)} record(s) of user {args.user!r}: {shown}? [y/N] ")
        return _erase(store, args, keys)
    finally:
        store.close()


def _open_audit(path: Path | None) -> TextIO | None:
    if path is None:
        return None
    try:
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        usage(f"cannot append to the audit file {path}: {exc.strerror or exc}")


def _erase(store: Store, args: argparse.Namespace, keys: list[str]) -> EraseReport:
    """Run ``erase_user`` with a spec able to load every one of ``keys``."""
    schemas = [1]
    for key in keys:
        stored = store.read(key)
        if stored is not None:
            schemas.append(decode_stored(key.split("/", 1)[1], stored.value).schema)
    spec = dataclasses.replace(admin_spec(args, max(schemas)), poll_period=0.2)
    service = LockerService(store, spec, workers=2)
    try:
        return erase_user(service, args.user, timeout=args.timeout)
    finally:
        service.close()


def _human(report: EraseReport) -> str:
    lines = [f"{k.key}: {k.result}" + (f" ({k.detail})" if k.detail else "") for k in report.keys]
    erased = sum(k.result == "erased" for k in report.keys)
    if report.ok:
        lines.append(f"user {report.user_id!r}: {erased} record(s) erased; none left")
    else:
        lines.append(f"user {report.user_id!r}: {erased} erased; some left (see above)")
    return "\n".join(lines)


def _none(args: argparse.Namespace) -> dict[str, object]:
    return {"user_id": args.user, "namespace": args.namespace, "ok": True, "keys": []}


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        usage("erase needs --yes when not run from a terminal")
    print(question, end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CommandError("not confirmed; nothing changed")
