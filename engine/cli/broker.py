"""`mespot broker`: one endpoint for many spotters."""

from __future__ import annotations

import argparse
import sys


def cmd_broker(args: argparse.Namespace) -> int:
    """Handler of ``mespot broker``: forward until SIGINT / SIGTERM, then exit 0."""
    import threading

    from engine.startup import stop_on_signals
    from stream.broker import DEFAULT_BROKER_ENDPOINT, DEFAULT_BROKER_SNAPSHOT, Broker, SpotterEndpoints

    spotters = [SpotterEndpoints.parse(text) for text in args.spotter]
    snapshot = DEFAULT_BROKER_SNAPSHOT if args.snapshot is None else args.snapshot
    broker = Broker(
        spotters,
        args.pub or DEFAULT_BROKER_ENDPOINT,
        None if snapshot == "none" else snapshot,
        request_timeout_s=args.request_timeout_s,
    )
    stop = threading.Event()
    stop_on_signals(stop)
    if not args.quiet:
        print(
            f"broker: {len(spotters)} spotter(s) -> publishing on {broker.endpoint}, "
            f"snapshots on {broker.snapshot_endpoint or 'none'}",
            file=sys.stderr,
            flush=True,
        )
    try:
        broker.run_forever(stop)
    finally:
        broker.close()
    if not args.quiet:
        print(
            f"broker: stopped; {broker.forwarded} messages forwarded from streams {sorted(broker.owner)}, "
            f"{broker.dropped_requests} requests dropped",
            file=sys.stderr,
        )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    br = sub.add_parser(
        "broker",
        help="one endpoint for many spotters: forward their events and snapshots",
        description="Connect to several spotters' PUB and snapshot endpoints and offer one PUB "
        "and one snapshot endpoint in their place (docs/events.md, 'Many spotters: the broker'). "
        "Runs until Ctrl-C or SIGTERM.",
    )
    br.add_argument(
        "--spotter",
        action="append",
        required=True,
        metavar="PUB[,SNAPSHOT]",
        help="a spotter's endpoints, e.g. tcp://10.0.0.5:5556,tcp://10.0.0.5:5557 (repeat per spotter)",
    )
    br.add_argument("--pub", default=None, help="the broker's PUB endpoint (default tcp://127.0.0.1:5656)")
    br.add_argument(
        "--snapshot",
        default=None,
        help="the broker's snapshot endpoint, or 'none' (default tcp://127.0.0.1:5657)",
    )
    br.add_argument(
        "--request-timeout-s",
        type=float,
        default=5.0,
        help="how long a spotter may take to answer (default 5)",
    )
    br.add_argument("--quiet", action="store_true", help="print nothing but errors")
    br.set_defaults(func=cmd_broker)
    return br
