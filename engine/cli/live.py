"""`mespot live` and `run_live.py`: the live spotter from the command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time

import numpy as np

from engine.bundle import load_bundle
from engine.live import LiveRunner, default_bundle, freeze_startup_heap
from engine.preview import Preview
from engine.sinks import ConsoleSink, Sink
from engine.startup import stop_on_signals
from stream.errors import ConfigError, MespotError
from stream.publish import DEFAULT_ENDPOINT, DEFAULT_SNAPSHOT_ENDPOINT, CurveServer, Publisher

log = logging.getLogger(__name__)


def add_live_arguments(p: argparse.ArgumentParser, *, verbose_flag: bool = True) -> None:
    """The options of ``run_live.py`` and ``mespot live``.

    Args:
        p: the parser to add them to.
        verbose_flag: add ``-v/--verbose`` (``mespot`` has its own, before the command).
    """
    p.add_argument(
        "--source",
        default="sim://",
        help="camera index, rtsp:// URL, video file, frame folder or sim://... "
        "(default sim://, the built-in synthetic camera)",
    )
    p.add_argument("--bundle", default=None, help="model bundle folder (default: the bundled model)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "tensorrt", "onnxruntime", "torch"),
        help="scoring backend (default auto: tensorrt, else onnxruntime, else torch)",
    )
    p.add_argument("--pub", default=DEFAULT_ENDPOINT, help=f"PUB endpoint (default {DEFAULT_ENDPOINT})")
    p.add_argument(
        "--snapshot",
        default=DEFAULT_SNAPSHOT_ENDPOINT,
        help=f"snapshot endpoint, or 'none' (default {DEFAULT_SNAPSHOT_ENDPOINT})",
    )
    p.add_argument(
        "--stream", default="cam0", metavar="NAME", help="stream name in the topics (default cam0)"
    )
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime",
        dest="mode",
        action="store_const",
        const="realtime",
        help="recordings: paced at their frame rate, live policy (the default)",
    )
    pace.add_argument(
        "--fast",
        dest="mode",
        action="store_const",
        const="fast",
        help="recordings: every frame, as fast as possible (replay policy, nothing dropped)",
    )
    p.set_defaults(mode="realtime")
    p.add_argument(
        "--journal",
        default=None,
        metavar="FILE",
        help="append events and status events to this JSON-lines file",
    )
    p.add_argument(
        "--journal-fsync",
        action="store_true",
        help="fsync the journal after every line, before the message is published (every published "
        "event is on disk; costs one fsync per event and status event)",
    )
    p.add_argument(
        "--continue-without-journal",
        action="store_true",
        help="when the journal cannot be written (disk full, read-only, removed), go on publishing "
        "without it and exit 0 (default: stop the run, exit 1)",
    )
    p.add_argument(
        "--curve-secret-key",
        default=None,
        metavar="FILE",
        help="CURVE: the publisher's secret certificate (a .key_secret of zmq.auth.create_certificates); "
        "both endpoints then encrypt",
    )
    p.add_argument(
        "--curve-public-keys",
        default=None,
        metavar="DIR",
        help="CURVE: a folder of the allowed clients' public certificates (.key); only they get in, "
        "and they may send commands (default with --curve-secret-key: any client, encryption only)",
    )
    p.add_argument(
        "--allow-local-commands",
        action="store_true",
        help="take commands (neutral_restart) from unauthenticated clients on localhost "
        "(default: only from CURVE clients of --curve-public-keys)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds of stream (media time)",
    )
    p.add_argument(
        "--source-fps",
        type=float,
        default=None,
        metavar="FPS",
        help="frame rate of a frame folder (default 30)",
    )
    p.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="keep the endpoints open S seconds after the end (late subscribers fetch the snapshot)",
    )
    p.add_argument("--preview", action="store_true", help="show a window: face crop, scores, intervals")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    if verbose_flag:
        p.add_argument("-v", "--verbose", action="store_true", help="log details")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``mespot live`` to a command's subparsers (handler in ``func``)."""
    p = subparsers.add_parser(
        "live",
        help="spot expressions live (camera, RTSP, file, sim://) and publish them over ZeroMQ",
        description="Run a model bundle on a live source or a recording and publish per-snippet "
        "scores, finalised intervals and status events over ZeroMQ (docs/events.md). With no "
        "options: the synthetic camera sim:// with the bundled model on tcp://127.0.0.1:5556.",
    )
    add_live_arguments(p, verbose_flag=False)
    p.set_defaults(func=cmd_live)
    return p


def cmd_live(args: argparse.Namespace) -> int:
    """Handler of ``mespot live``."""
    stop, received = threading.Event(), []
    stop_on_signals(stop, received)
    return run_live(args, stop, received)


def _print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def curve_server_from_args(args: argparse.Namespace) -> CurveServer | None:
    """The CURVE keys ``--curve-secret-key`` / ``--curve-public-keys`` name, or None (plain TCP).

    Raises:
        ConfigError: one option without the other's precondition, or unreadable key files.
    """
    secret, public = getattr(args, "curve_secret_key", None), getattr(args, "curve_public_keys", None)
    if secret is None:
        if public is not None:
            raise ConfigError("--curve-public-keys needs --curve-secret-key (the publisher's own keys)")
        return None
    try:
        return CurveServer.from_files(secret, public)
    except (OSError, ValueError) as exc:  # zmq.auth's own errors on a missing or damaged file
        raise ConfigError(f"--curve-secret-key {secret}: cannot load the CURVE keys: {exc}") from exc


def run_live(
    args: argparse.Namespace, stop: threading.Event | None = None, signals: list[int] | None = None
) -> int:
    """Run the live command (`add_live_arguments`): 0 at a clean end, 2 on bad input, 1 on failure,
    130 / 143 when SIGINT / SIGTERM came during start-up (before the first frame).

    Args:
        args: the parsed options.
        stop: set it to stop (the signal handlers' event); None: run to the end.
        signals: the signals received so far (`stop_on_signals`), to tell a stop during start-up.
    """
    if getattr(args, "verbose", False):
        logging.getLogger().setLevel(logging.INFO)
    stop = stop or threading.Event()
    quiet = args.quiet
    sinks: list[Sink] = [] if quiet else [ConsoleSink(args.stream)]
    try:
        if args.linger < 0:
            raise ConfigError(f"--linger {args.linger}: must be >= 0")
        snapshot = None if str(args.snapshot).lower() == "none" else args.snapshot
        bundle = load_bundle(args.bundle) if args.bundle else load_bundle(default_bundle())
        curve = curve_server_from_args(args)
        keep_going = getattr(args, "continue_without_journal", False)

        def on_journal_error(problem: str) -> None:
            _print_err(f"error: {problem}" + ("; going on without it" if keep_going else "; stopping"))
            if not keep_going:
                stop.set()

        # Bind before opening the source: a busy port fails before a camera is opened.
        publisher = Publisher(
            args.stream,
            args.pub,
            snapshot,
            journal=args.journal,
            curve=curve,
            journal_fsync=getattr(args, "journal_fsync", False),
            on_journal_error=on_journal_error,
            allow_local_commands=getattr(args, "allow_local_commands", False),
        )
    except MespotError as exc:
        log.error("%s", exc)
        _print_err(f"error: {exc}")
        return 2
    try:
        runner = LiveRunner(
            args.source,
            bundle,
            mode=args.mode,
            backend=args.backend,
            publisher=publisher,
            stop=stop,
            duration_s=args.duration,
            source_fps=args.source_fps,
            sinks=sinks,
        )
    except MespotError as exc:
        publisher.close()
        _print_err(f"error: {exc}")
        return 2
    if stop.is_set() and signals:
        # A signal during start-up: nothing was read; say so in the journal and leave quietly.
        name = signal.Signals(signals[0]).name
        with contextlib.suppress(MespotError):
            publisher.publish_status(
                "source", capture_ns=time.monotonic_ns(), detail=f"stopped during start-up ({name})"
            )
        runner.close()
        if not quiet:
            _print_err(f"stopped during start-up ({name})")
        return 128 + signals[0]
    with runner:
        if args.preview:
            pipeline = runner.pipeline

            def face() -> np.ndarray | None:
                aligned = pipeline.last_aligned
                return None if aligned is None else aligned.crop

            preview = Preview.open(
                runner.snippet_s, runner.fps, runner.proposal_config.thresholds, face=face, on_closed=stop.set
            )
            if preview is not None:
                runner.add_sink(preview)
        if not quiet:
            _print_err(
                f"live: {runner.source.name} ({runner.policy}) with {runner.bundle.path.name} on "
                f"{runner.backend.name}; publishing {args.stream} on {publisher.endpoint}"
                + (f", snapshots on {publisher.snapshot_endpoint}" if snapshot else "")
                + (f", journal {args.journal}" if args.journal else "")
            )
        # Start-up is over: keep its objects out of every later full collection (GC pauses).
        freeze_startup_heap()
        report = runner.run()
        if args.linger > 0 and not stop.is_set():
            # The endpoints stay up so that late subscribers can still fetch the snapshot; a
            # signal ends the wait.
            if not quiet:
                _print_err(f"lingering {args.linger:g} s for late subscribers")
            stop.wait(args.linger)
    journal_failed = publisher.journal_error is not None and not getattr(
        args, "continue_without_journal", False
    )
    if journal_failed:
        report.end_reason, report.error = "error", publisher.journal_error
    if not quiet:
        _print_err(report.summary())
        truth = runner.truth()
        if truth is not None and report.media_s > 0:
            from engine.evaluate import evaluate

            preds = [e.interval for e in report.events]
            result = evaluate({"sim": preds}, {"sim": truth}, runner.fps)
            _print_err(
                f"against the simulation's ground truth ({len(truth)} expressions): "
                f"ME F1 {result.me.f1:.2f}, MaE F1 {result.mae.f1:.2f}, overall F1 {result.overall.f1:.2f}"
            )
    return 1 if report.end_reason == "error" else 0


def main(argv: list[str] | None = None) -> int:
    """``run_live.py`` / ``python -m engine.live``."""
    parser = argparse.ArgumentParser(
        prog="run_live.py",
        description="Spot facial micro- and macro-expressions live and publish them over ZeroMQ.",
    )
    add_live_arguments(parser)
    args = parser.parse_args(argv)
    from stream.native_logs import quiet_native_logs

    quiet_native_logs(args.verbose)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stop, received = threading.Event(), []
    stop_on_signals(stop, received)
    return run_live(args, stop, received)
