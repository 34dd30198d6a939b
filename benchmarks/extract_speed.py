"""`mespot extract` end to end, start-up included, on a 640x360 recording: how many times real time.

    python benchmarks/extract_speed.py [--seconds 60] [--runs 2] [--baseline-repo CHECKOUT]

The recording is `stream_bench.make_video`'s (the real face clip of shared/data played forwards
and backwards, 640x360, 30 fps). Each feature configuration is extracted by a fresh
`mespot extract` process into an empty cache (imports, model loading, decoding, face tracking,
flow, features, writing), alternating between them, twice each; the best run counts. Side by side
in one run: the default configuration (the lean DIS flow), the same with DIS medium (`--flow dis`,
the default until the tenth session), the face mesh on every other frame (`--mesh-every 2`) and
the previous layout (one flow scale, no eye openness, 8-frame snippets), so their ratios hold on a
noisy machine.
"""

from __future__ import annotations

import argparse
import os
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
    "mesh_every 2": ["--mesh-every", "2"],
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
    ap.add_argument(
        "--baseline-repo",
        type=Path,
        default=None,
        help="another checkout of mespot (e.g. a git worktree of an earlier commit): its default "
        "configuration is run in the same rounds, as 'default, BASELINE'",
    )
    args = ap.parse_args()
    runs = {name: ([], options) for name, options in CONFIGS.items()}
    if args.baseline_repo is not None:
        runs[f"default, {args.baseline_repo.name}"] = ([args.baseline_repo.resolve()], [])
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(args.seconds, Path(tmp) / "clip.mp4")
        best: dict[str, float] = {}
        for run in range(args.runs):
            for name, (repo, options) in runs.items():
                out = Path(tmp) / f"out-{run}-{name.replace(' ', '_').replace(',', '')}"
                # `python -m engine.cli` is the `mespot` script; PYTHONPATH picks the checkout
                env = dict(os.environ, PYTHONPATH=str(repo[0])) if repo else None
                command = [sys.executable, "-m", "engine.cli", "extract", str(video), "--out", str(out)]
                t0 = time.perf_counter()
                cwd = repo[0] if repo else None
                subprocess.run([*command, "--quiet", *options], check=True, env=env, cwd=cwd)
                wall = time.perf_counter() - t0
                best[name] = min(best.get(name, float("inf")), wall)
    print(
        f"# extract_speed {date.today()} on {platform.node()} ({platform.machine()}, 2 cores); "
        f"{args.seconds:.0f} s 640x360 recording"
    )
    for name, wall in best.items():
        print(f"{name:24s}: {wall:6.1f} s wall, {args.seconds / wall:5.2f}x real time (best of {args.runs})")
    print(f"ratio default / previous layout: {best['previous layout'] / best['default']:.2f} of its speed")
    print(f"ratio default / dis (medium): {best['dis (medium)'] / best['default']:.2f}x its speed")
    print(f"ratio mesh_every 2 / default: {best['default'] / best['mesh_every 2']:.2f}x its speed")
    if args.baseline_repo is not None:
        base = best[f"default, {args.baseline_repo.name}"]
        print(f"ratio default / default, {args.baseline_repo.name}: {base / best['default']:.2f}x its speed")


if __name__ == "__main__":
    main()
