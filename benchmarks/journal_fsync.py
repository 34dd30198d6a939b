"""The cost of `--journal-fsync`: events published with a journal, without and with an fsync per
line, side by side in one run.

    python benchmarks/journal_fsync.py [--events 500] [--rounds 3] [--folder DIR]

Each round publishes `--events` events through `Publisher.publish_event` and waits for them to be
sent (`flush`), once per setting, alternating; the journal goes to `--folder` (default: a
temporary folder, which is the file system whose fsync is measured). Reports the median time per
event and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from stream.intervals import ExpressionType, Interval
from stream.publish import Publisher


def per_event_ms(folder: Path, events: int, fsync: bool, round_: int) -> float:
    journal = folder / f"journal-{int(fsync)}-{round_}.jsonl"
    with Publisher("cam0", "tcp://127.0.0.1:*", None, journal=journal, journal_fsync=fsync) as pub:
        t0 = time.perf_counter()
        for k in range(events):
            pub.publish_event(
                Interval(20 * k, 20 * k + 9, ExpressionType.ME, apex=20 * k + 4, score=0.7), fps=30.0
            )
        if not pub.flush(60.0):
            raise RuntimeError("publisher did not send everything within 60 s")
        elapsed = time.perf_counter() - t0
    return elapsed / events * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--folder", type=Path, help="where the journals go (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        results: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for fsync in (False, True):
                results[fsync].append(per_event_ms(Path(tmp), args.events, fsync, r))
        fs = os.statvfs(tmp)
        where = f"{tmp} ({fs.f_bsize} B blocks)"
    plain, synced = statistics.median(results[False]), statistics.median(results[True])
    print(
        f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {date.today()}; journal in {where}"
    )
    print(f"| journal | ms per event (median of {args.rounds} rounds of {args.events}) |")
    print("|---|---|")
    print(f"| written, fsynced on close | {plain:.3f} |")
    print(f"| `--journal-fsync` | {synced:.3f} |")
    print(f"ratio: {synced / plain:.1f}x")


if __name__ == "__main__":
    main()
