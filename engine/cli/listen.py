"""`mespot listen`: print a spotter's events; send it commands."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from stream.errors import ConfigError
from stream.listen import (
    Listener,
    Received,
    default_snapshot,
    format_command_reply,
    format_item,
    send_command,
)
from stream.publish import DEFAULT_ENDPOINT, DEFAULT_SNAPSHOT_ENDPOINT, TOPICS, CurveClient

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``listen`` to a command's subparsers (sets ``func=run_listen``)."""
    p = subparsers.add_parser(
        "listen",
        help="print the events a mespot publisher sends (recovering missed ones)",
        description=(
            "Subscribe to a mespot publisher and print its events, status messages and gap "
            "reports. Missed messages are fetched from the snapshot endpoint."
        ),
    )
    add_listen_arguments(p)
    p.set_defaults(func=run_listen)
    return p


def add_listen_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "endpoint", nargs="?", default=DEFAULT_ENDPOINT, help=f"PUB endpoint (default {DEFAULT_ENDPOINT})"
    )
    p.add_argument(
        "--snapshot",
        default=None,
        help=f"snapshot endpoint (default: the endpoint's port + 1, {DEFAULT_SNAPSHOT_ENDPOINT} by default)",
    )
    p.add_argument("--no-snapshot", action="store_true", help="report gaps without recovering them")
    p.add_argument("--stream", default=None, help="take only this stream (default: all)")
    p.add_argument(
        "--topics",
        nargs="+",
        choices=TOPICS,
        default=["event", "status"],
        help="topics to print (default: event status)",
    )
    p.add_argument("--heartbeats", action="store_true", help="print heartbeats too")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=int, default=None, help="exit after this many messages")
    p.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")
    p.add_argument(
        "--command",
        dest="send_command",  # not "command": the subcommand goes there (engine/cli/__init__.py)
        default=None,
        metavar="NAME",
        help="send this command (e.g. neutral_restart) to the snapshot endpoint, print the reply and exit "
        "(0: ok, 1: refused, 2: no reply within --timeout, default 5 s)",
    )
    p.add_argument(
        "--curve-secret-key",
        "--curve-secret",
        dest="curve_secret",
        default=None,
        metavar="FILE",
        help="CURVE: this client's secret certificate (.key_secret); its public key must be among the "
        "publisher's --curve-public-keys",
    )
    p.add_argument(
        "--curve-public-keys",
        "--curve-server-key",
        dest="curve_server_key",
        default=None,
        metavar="FILE",
        help="CURVE: the publisher's public certificate (.key)",
    )


def run_listen(args: argparse.Namespace) -> int:
    """Handler of ``mespot listen``: 0 when done, 1 when --count was not reached in --timeout.

    With ``--command NAME``: 0 when the command was carried out, 1 when it was refused, 2 when no
    reply came within --timeout.
    """
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count {args.count}: must be >= 1")
    snapshot = None if args.no_snapshot else (args.snapshot or default_snapshot(args.endpoint))
    curve = None
    if args.curve_server_key or args.curve_secret:
        if not (args.curve_server_key and args.curve_secret):
            raise ConfigError(
                "CURVE needs both --curve-secret-key (this client's .key_secret) and --curve-public-keys "
                "(the publisher's .key)"
            )
        try:
            curve = CurveClient.from_files(args.curve_server_key, args.curve_secret)
        except (OSError, ValueError) as exc:  # zmq.auth's errors on a missing or damaged file
            raise ConfigError(f"CURVE keys {args.curve_server_key}, {args.curve_secret}: {exc}") from exc
    if getattr(args, "send_command", None) is not None:
        return _run_command(args, snapshot, curve)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    printed = 0
    with Listener(
        args.endpoint,
        snapshot,
        topics=args.topics,
        stream=args.stream,
        catch_up=[t for t in ("event",) if t in args.topics],
        curve=curve,
        heartbeats=args.heartbeats,
    ) as listener:
        try:
            while args.count is None or printed < args.count:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                item = listener.recv(remaining)
                if item is None:
                    continue
                print(format_item(item, args.json), flush=True)
                if isinstance(item, Received):
                    printed += 1
        except KeyboardInterrupt:
            return 0
    return 1 if args.count is not None and printed < args.count else 0


def _run_command(args: argparse.Namespace, endpoint: str | None, curve: CurveClient | None) -> int:
    if endpoint is None:
        raise ConfigError("--command needs the snapshot endpoint (give --snapshot; not --no-snapshot)")
    timeout_s = 5.0 if args.timeout is None else args.timeout
    try:
        reply = send_command(endpoint, args.send_command, timeout_s, curve, stream=args.stream)
    except TimeoutError as exc:
        print(f"mespot listen: {exc}", file=sys.stderr, flush=True)
        return 2
    print(format_command_reply(reply, args.json), flush=True)
    return 0 if reply.get("ok") else 1
