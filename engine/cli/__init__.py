"""mespot's command line: one `main`, one table of commands, one logging set-up, one exit rule.

    mespot [-v] COMMAND ...        (also python -m engine.cli; run_live.py is `live` on its own)

Each command is a module here with ``add_parser(subparsers)`` (its options, its handler set as
``func``); options several commands share are built in `engine.cli.options` from the
configuration dataclasses' fields and the registries. No library module parses arguments.

Exit status: 0 on success, 2 when an input or option is refused (a `MespotError`, its message
printed as ``error: ...``), 1 when a command reports a failure of its own (e.g. some inputs could
not be extracted), 130 / 143 when stopped by SIGINT / SIGTERM during start-up.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from stream.errors import MespotError

# The commands, in the order `mespot --help` lists them (module names under engine/cli/).
COMMANDS = (
    "extract",
    "synth",
    "baseline",
    "train",
    "eval",
    "export",
    "calibrate",
    "quantize",
    "live",
    "listen",
    "broker",
    "plot",
)


def live_journal_of(argv: Sequence[str]) -> tuple[str, str] | None:
    """(journal file, stream name) a live command line asks for, or None without ``--journal``."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--journal", default=None)
    parser.add_argument("--stream", default="cam0")
    try:
        known, _ = parser.parse_known_args(list(argv))
    except SystemExit:  # a malformed command line: the real parser will say what is wrong
        return None
    return None if known.journal is None else (known.journal, known.stream)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser: with `command` (one of COMMANDS), only that command's, so that
    `mespot extract` does not import what `mespot export` needs (torch: about 2 s of start-up);
    otherwise every command's (``mespot --help``, a misspelt command)."""
    import importlib

    parser = argparse.ArgumentParser(prog="mespot", description="Facial micro/macro-expression spotting.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in (command,) if command in COMMANDS else COMMANDS:
        importlib.import_module(f"engine.cli.{name}").add_parser(sub)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command a command line names: its first word that is not an option (the only global
    option, -v, takes no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def setup_logging(verbose: bool) -> None:
    """The one logging set-up: warnings (details with -v), and the face tracker's native log
    lines kept off stderr unless -v (`stream.native_logs`)."""
    from stream.native_logs import quiet_native_logs

    quiet_native_logs(verbose)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def run_command(args: argparse.Namespace) -> int:
    """A parsed command's handler, with the one mapping from error to exit status."""
    try:
        return args.func(args)
    except MespotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    from engine.startup import startup_signals

    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_of(argv)
    # Building the parser imports the command's module (some import torch): a signal meanwhile
    # exits quietly, and `mespot live` notes it in its journal. `live` stays inside the guard
    # until its own handlers take over (`engine.startup.stop_on_signals`), so that no signal
    # falls between the two; the other commands install theirs, if any, after it.
    with startup_signals(lambda: live_journal_of(argv) if command == "live" else None):
        args = build_parser(command).parse_args(argv)
        args.argv = argv  # recorded in the bundles a command writes
        setup_logging(args.verbose)
        if command == "live":
            return run_command(args)
    return run_command(args)
