"""``sessionlocker``: the command-line entry point.

Each subcommand is a module with ``register(subcommands)``, which adds its parser and
sets two defaults on it: ``run``, a function from the parsed arguments to an exit
code, and ``parser``, the subcommand's own parser (for its error messages).
Adding a subcommand means writing such a module and listing it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from sessionlocker.cli import bench, changes, erase, locks, migrate, records, simulate, transfer
from sessionlocker.cli import versions as versions_command

__all__ = ["COMMANDS", "build_parser", "main"]

#: The subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (
    simulate,
    migrate,
    bench,
    records,
    locks,
    changes,
    transfer,
    versions_command,
    erase,
)

DESCRIPTION = """\
Session-locked documents: a process takes exclusive, crash-safe ownership of a stored
record, autosaves it, and hands it to the next owner."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sessionlocker",
        description=DESCRIPTION,
        epilog="Run 'sessionlocker COMMAND --help' for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subcommands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for command in COMMANDS:
        command.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    0: success; 1: the command ran and found a problem; 2: bad command line.
    """
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # say so in the subcommand's words, with its usage line
            command: argparse.ArgumentParser = getattr(args, "parser", parser)
            command.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except SystemExit as exc:  # a subcommand refused an argument with parser.error()
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("sessionlocker: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    try:
        return version("sessionlocker")
    except PackageNotFoundError:
        return "(version unknown: not installed as a package)"


if __name__ == "__main__":
    sys.exit(main())
