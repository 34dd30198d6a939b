#!/usr/bin/env python3
"""Live / replay entry point: spot facial micro- and macro-expressions and publish them.

    python run_live.py                                   # sim:// (synthetic camera), default model
    python run_live.py --source 0                        # the default camera
    python run_live.py --source rtsp://cam/stream --stream door
    python run_live.py --source clip.mp4 --fast --journal clip.jsonl

Events are printed one per line and published on tcp://127.0.0.1:5556 (snapshots on :5557); read
them with ``mespot listen`` or any ZeroMQ subscriber (docs/events.md). SIGINT / SIGTERM stop the
run cleanly: pending intervals are finalised and published, the journal is flushed. Exit status 0
at a clean end, 2 on bad input (the message names it), 1 when the run failed (or the journal could
not be written), 130 / 143 when SIGINT / SIGTERM came during start-up (the journal notes it). The
same command is ``mespot live``; its options are in engine/cli/live.py, the runner in engine/live.py.
"""

from __future__ import annotations

import sys

from engine.cli import live_journal_of
from engine.startup import startup_signals

if __name__ == "__main__":
    argv = sys.argv[1:]
    # Before the heavy imports: a signal during them exits quietly (engine/startup.py).
    with startup_signals(lambda: live_journal_of(argv)):
        from engine.cli.live import main

        code = main(argv)
    sys.exit(code)
