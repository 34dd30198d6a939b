"""Extraction throughput against its own floor: decoding, decoding plus face tracking, and the
whole pipeline, side by side in one process.

    python benchmarks/pipeline_throughput.py [--seconds 20] [--repeats 2]

On `stream_bench.make_video`'s 640x360, 30 fps recording of a real face: (a) decode every frame
(`open_source`), (b) decode and run the face tracker on every frame in one thread (what the
pipeline cannot go below), (c) `stream.pipeline.extract` in replay mode (decode, resample, face,
alignment, flow, features, snippets; its two halves in two threads) with the default feature
configuration (``flow="dis-lean"``: DIS with sparser patches and fewer iterations,
`stream.flow.DISFlow`), (d) the same with ``flow_compose`` (the 0.2 s flow chained from two 0.1 s
fields instead of estimated), (e) with ``flow="dis"`` (DIS medium, the default until the tenth
session) and (f) with ``mesh_every=2`` (the face mesh on every other frame, its landmarks kept
between). Each measured `--repeats` times, interleaved; the best run counts.
Prints frames per second, times real time, the ratios of (c) to (f) to (b), and each pipeline's
own per-stage milliseconds per frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import make_video

from stream.config import FeatureConfig
from stream.face import FaceTracker
from stream.pipeline import Pipeline, stream_snippets
from stream.sources import open_source


def frames_of(src):
    """Every item a source gives until its end."""
    while (item := src.read()) is not None:
        yield item


def decode(video: Path) -> int:
    n = 0
    with open_source(video) as src:
        for item in frames_of(src):
            n += hasattr(item, "image")
    return n


def decode_and_track(video: Path) -> int:
    n = 0
    tracker = FaceTracker()
    try:
        with open_source(video) as src:
            for item in frames_of(src):
                if hasattr(item, "image"):
                    tracker.process(item)
                    n += 1
    finally:
        tracker.close()
    return n


STAGES: dict[str, dict[str, float]] = {}


def pipeline(video: Path, config: FeatureConfig | None = None, label: str = "default") -> int:
    import stream.pipeline as sp

    frames = 0
    original = sp.Pipeline.__exit__

    def keep_times(self: Pipeline, *exc: object) -> None:  # the stage times of the last run
        STAGES[label] = dict(self.times.per_frame_ms())
        original(self, *exc)

    sp.Pipeline.__exit__ = keep_times  # type: ignore[method-assign]
    try:
        for out in stream_snippets(video, config or FeatureConfig(), policy="replay"):
            frames += 0 if isinstance(out, sp.StatusEvent) else 1
    finally:
        sp.Pipeline.__exit__ = original  # type: ignore[method-assign]
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(args.seconds, Path(tmp) / "face.mp4")
        runs = {
            "decode": decode,
            "decode + face tracker": decode_and_track,
            "extract (whole pipeline)": pipeline,
            "extract, flow_compose": lambda v: pipeline(v, FeatureConfig(flow_compose=True), "flow_compose"),
            "extract, dis (medium)": lambda v: pipeline(v, FeatureConfig(flow="dis"), "dis"),
            "extract, mesh_every 2": lambda v: pipeline(v, FeatureConfig(mesh_every=2), "mesh_every 2"),
        }
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn(video)
                elapsed = time.perf_counter() - t0
                best[name] = min(best.get(name, float("inf")), elapsed)
    frames = args.seconds * 30
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {date.today()}; "
          f"{args.seconds:g} s of 640x360 at 30 fps, best of {args.repeats}")  # fmt: skip
    print("| stage | s | frames/s | x real time |")
    print("|---|---|---|---|")
    for name, s in best.items():
        print(f"| {name} | {s:.2f} | {frames / s:.0f} | {args.seconds / s:.1f} |")
    for name in [n for n in best if n.startswith("extract")]:
        ratio = best["decode + face tracker"] / best[name]
        print(f"\n{name} / (decode + face tracker) rate: {ratio:.2f}")
    for label, stages in STAGES.items():
        print(
            f"{label} pipeline stages, ms per frame (last run): "
            + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
        )


if __name__ == "__main__":
    main()
