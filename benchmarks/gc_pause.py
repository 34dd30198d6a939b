"""Full garbage-collection pauses in a live process, before and after `freeze_startup_heap`.

    python benchmarks/gc_pause.py [--repeats 5] [--seconds 45] [--every 3]

1. Builds what ``run_live.py`` builds before its stream starts (the default bundle on
   onnxruntime, the pipeline with MediaPipe, a ``sim://`` camera) and times full collections
   (``gc.collect()``, which holds the GIL throughout, as the collector's own generation-2 runs do)
   side by side: on the start-up heap as it is, then after `engine.live.freeze_startup_heap`.
2. Runs the live runner on ``sim://`` in real time (30 fps, live policy) for --seconds, forcing a
   full collection every --every seconds from the scoring thread, as the collector would at its
   own moments, and counts the frames the camera lost while the GIL was held (the simulated
   camera holds only its newest frame here, ``buffers=1``, so a pause over a frame period shows):
   alternately without and with the freeze, twice each, in one run.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.live import LiveRunner, freeze_startup_heap  # noqa: E402

# buffers=1: a camera that holds only its newest frame, so any pause over a frame period shows
SOURCE = "sim://?seed=3&buffers=1"


def full_collections(repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` full collections."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gc.collect()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def pause_sizes(repeats: int) -> dict:
    with LiveRunner(SOURCE, None, mode="realtime") as runner:
        gc.collect()
        tracked = len(gc.get_objects())
        before = full_collections(repeats)
        freeze_s = freeze_startup_heap()
        frozen = gc.get_freeze_count()
        after = full_collections(repeats)
        backend = runner.backend.name
    gc.unfreeze()
    return {
        "tracked": tracked,
        "before": before,
        "after": after,
        "freeze_s": freeze_s,
        "frozen": frozen,
        "backend": backend,
    }


def stream_with_collections(seconds: float, every_s: float, freeze: bool) -> dict:
    """A real-time sim:// run with a forced full collection every ``every_s`` seconds."""
    pauses: list[float] = []
    last = [time.monotonic()]

    def on_snippet(_snippet) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            t0 = time.perf_counter()
            gc.collect()
            pauses.append((time.perf_counter() - t0) * 1e3)

    with LiveRunner(SOURCE, None, mode="realtime", duration_s=seconds, on_snippet=on_snippet) as runner:
        if freeze:
            freeze_startup_heap()
        try:
            report = runner.run()
        finally:
            gc.unfreeze()
    return {
        "frames": report.frames,
        "dropped": report.dropped,
        "skipped": report.source_skipped,
        "pauses": pauses,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="full collections timed per case (default 5)")
    ap.add_argument("--seconds", type=float, default=45.0, help="length of each streaming run (default 45)")
    ap.add_argument("--every", type=float, default=3.0, help="seconds between forced collections (default 3)")
    args = ap.parse_args()
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# gc_pause, {date.today()}, {machine}")
    sizes = pause_sizes(args.repeats)
    b, a = float(np.median(sizes["before"])), float(np.median(sizes["after"]))
    print(
        f"\nstart-up heap: {sizes['tracked']} tracked objects (backend {sizes['backend']}); "
        f"freeze: {sizes['frozen']} objects, {sizes['freeze_s'] * 1e3:.0f} ms once"
    )
    print("\n| full collection | median ms | max ms |")
    print("|---|---|---|")
    print(f"| start-up heap as it is | {b:.1f} | {max(sizes['before']):.1f} |")
    print(f"| after freeze_startup_heap | {a:.3f} | {max(sizes['after']):.3f} |")

    print(
        f"\n## {args.seconds:g} s of {SOURCE} in real time, a full collection forced every {args.every:g} s"
    )
    print("\n| run | heap | collections | pause median / max ms | frames | lost by the camera | dropped |")
    print("|---|---|---|---|---|---|---|")
    for i, freeze in enumerate((False, True, False, True), 1):
        r = stream_with_collections(args.seconds, args.every, freeze)
        p = r["pauses"] or [float("nan")]
        print(
            f"| {i} | {'frozen' if freeze else 'as it is'} | {len(r['pauses'])} | "
            f"{np.median(p):.1f} / {max(p):.1f} | {r['frames']} | {r['skipped']} | {r['dropped']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
