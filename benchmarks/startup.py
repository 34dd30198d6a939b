"""Start-up of a live spotter, stage by stage, in fresh processes; checkouts compared side by side.

    python benchmarks/startup.py [--repo PATH ...] [--rounds 5]

Each round starts one fresh interpreter per checkout (alternating, so machine noise falls on
both alike) that times, as `run_live.py` does them: importing the live runner, reading the
shipped bundle and opening its onnxruntime scorer, building the pipeline (MediaPipe's face
mesh), and the first frame through the face tracker. It also records whether torch was imported.
Prints the median of each stage per checkout; `--repo` defaults to this checkout (give an older
one, e.g. a `git worktree`, to compare).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run inside each checkout; prints one JSON line of stage times (seconds).
PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import engine.live
from engine.bundle import load_bundle
from engine.runtime import open_backend
from stream.pipeline import Pipeline
t1 = time.perf_counter()
bundle = load_bundle(engine.live.default_bundle())
backend = open_backend(bundle, "onnxruntime")
t2 = time.perf_counter()
pipeline = Pipeline(bundle.feature_config)
t3 = time.perf_counter()
import cv2
from stream.frame import Frame
ok, image = cv2.VideoCapture(sys.argv[1]).read()
pipeline.push(Frame(0, 0.0, time.monotonic_ns(), image))
t4 = time.perf_counter()
print(json.dumps({
    "imports": t1 - t0, "bundle + scorer": t2 - t1, "pipeline": t3 - t2, "first frame": t4 - t3,
    "total": t4 - t0, "torch imported": "torch" in sys.modules,
}))
"""


def probe(repo: Path, video: Path) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(video)], cwd=repo, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"probe in {repo} failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process wall"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", action="append", type=Path, help="a mespot checkout (repeat)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--video", type=Path, default=ROOT.parent / "shared" / "data" / "videos" / "single_face.mp4"
    )
    args = parser.parse_args()
    repos = args.repo or [ROOT]
    runs: dict[Path, list[dict]] = {r: [] for r in repos}
    for _ in range(args.rounds):
        for repo in repos:
            runs[repo].append(probe(repo.resolve(), args.video.resolve()))
    stages = ["imports", "bundle + scorer", "pipeline", "first frame", "total", "process wall"]
    print(
        f"# start-up, {date.today()}, {platform.machine()} {platform.system()}, "
        f"median of {args.rounds} fresh processes per checkout, alternating"
    )
    print("| checkout | " + " | ".join(f"{s} s" for s in stages) + " | torch imported |")
    print("|---|" + "---|" * (len(stages) + 1))
    for repo, results in runs.items():
        cells = [f"{statistics.median(r[s] for r in results):.2f}" for s in stages]
        torch_seen = "yes" if any(r["torch imported"] for r in results) else "no"
        print(f"| {repo} | " + " | ".join(cells) + f" | {torch_seen} |")


if __name__ == "__main__":
    main()
