"""`mespot extract` end to end, start-up included, on a 640x360 recording: how many times real time.

    python benchmarks/extract_speed.py [--seconds 60]

The recording is `stream_bench.make_video`'s (the real face clip of shared/data played forwards
and backwards, 640x360, 30 fps). Each feature configuration is extracted by a fresh
`mespot extract` process into an empty cache (imports, model loading, decoding, face tracking,
flow, features, writing), alternating between them, twice each; the best run counts. Side by side
in one run: the default configuration (the lean DIS flow), the same with DIS medium (`--flow dis`,
the default until the tenth session) and the previous layout (one flow scale, no eye openness,
8-frame snippets), so their ratios hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import make_video

CONFIGS = {
    "default": [],
    "dis (medium)": ["--flow", "dis"],
    "previous layout": [
        "--flow-scales-s",
        "0.1",
        "--no-eye-openness",
        "--hop-s",
        "0.26667",
        "--window-s",
        "0.26667",
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    mespot = Path(sys.executable).with_name("mespot")
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(args.seconds, Path(tmp) / "clip.mp4")
        best: dict[str, float] = {}
        for run in range(args.runs):
            for name, options in CONFIGS.items():
                out = Path(tmp) / f"out-{run}-{name.replace(' ', '_')}"
                t0 = time.perf_counter()
                subprocess.run(
                    [str(mespot), "extract", str(video), "--out", str(out), "--quiet", *options], check=True
                )
                wall = time.perf_counter() - t0
                best[name] = min(best.get(name, float("inf")), wall)
    print(
        f"# extract_speed {date.today()} on {platform.node()} ({platform.machine()}, 2 cores); "
        f"{args.seconds:.0f} s 640x360 recording"
    )
    for name, wall in best.items():
        print(f"{name:16s}: {wall:6.1f} s wall, {args.seconds / wall:5.2f}x real time (best of {args.runs})")
    print(f"ratio default / previous layout: {best['previous layout'] / best['default']:.2f} of its speed")
    print(f"ratio default / dis (medium): {best['dis (medium)'] / best['default']:.2f}x its speed")


if __name__ == "__main__":
    main()
