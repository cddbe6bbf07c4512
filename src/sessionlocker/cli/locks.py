"""``sessionlocker release``: free a record's lock the way a server would take it."""

from __future__ import annotations

import argparse
import sys

from sessionlocker.cli.options import (
    CommandError,
    add_common,
    emit,
    guarded,
    open_admin_store,
    seconds,
    usage,
)
from sessionlocker.cli.records_io import admin_session, holder_state, read_record
from sessionlocker.core.modes import LoadMode
from sessionlocker.errors import LockUnavailable

__all__ = ["register"]

HELP = """\
Free a record's lock. By default this writes a release request and waits (up to
--timeout) for the holder to save and release, exactly as a server's 'force' load does,
except that a live holder is never taken over by timeout: if it does not answer, the
command fails with exit status 1 and the holder keeps the lock. A holder whose session
lease has expired (a crashed server) is taken over.

--steal takes the lock at once without waiting: the holder's unsaved changes are lost
and it finds out at its next save (its writes are fenced off). It asks for confirmation
on a terminal (y/N) unless --yes is given, and refuses without --yes elsewhere.

Either way the tool then releases the record at once, leaving it free."""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``release`` subcommand."""
    parser = subcommands.add_parser(
        "release",
        help="ask a record's holder to release it (or --steal its lock)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("key", metavar="KEY")
    parser.add_argument("--steal", action="store_true", help="take the lock without waiting")
    parser.add_argument("--yes", action="store_true", help="do not ask before --steal")
    parser.add_argument(
        "--timeout", type=seconds, default=60.0, metavar="SECONDS", help="how long to wait (60)"
    )
    parser.set_defaults(run=guarded(run), parser=parser)


def run(args: argparse.Namespace) -> int:
    """Release (or steal and release) the record."""
    store = open_admin_store(args)
    try:
        stored = read_record(store, args, args.key)
        lock = stored.record.lock
        state = holder_state(store, lock)
        if lock is None:
            emit(args, f"{args.key}: not locked", {"key": args.key, "released": None})
            return 0
        if args.steal and not args.yes:
            _confirm(f"steal {args.key!r} from live session {lock.session}? [y/N] ")
        mode = LoadMode.STEAL if args.steal else LoadMode.FORCE
        try:
            with admin_session(store, args, args.key, mode, args.timeout):
                pass
        except LockUnavailable as exc:
            raise CommandError(
                f"{args.key!r}: session {lock.session} did not release within "
                f"{args.timeout:g} s; it keeps the lock (--steal takes it)"
            ) from exc
    finally:
        store.close()
    how = "stolen from" if args.steal else "released by"
    emit(
        args,
        f"{args.key}: {how} {lock.session} ({state}); now free",
        {"key": args.key, "released": lock.session, "holder": state, "stolen": args.steal},
    )
    return 0


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        usage("--steal needs --yes when not run from a terminal")
    print(question, end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CommandError("not confirmed; nothing changed")
