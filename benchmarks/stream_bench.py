"""Stream benchmark: replay throughput and live-paced latency of the feature pipeline.

    python benchmarks/stream_bench.py [--seconds 20] [--live-seconds 60] [--flow dis]

Input: a 640x360 real-face video made by playing shared/data/videos/single_face.mp4 forwards and
backwards (continuous motion, real frames) for --seconds, written to a temporary mp4.

1. Replay: capture thread -> resample -> face -> align -> flow -> features -> snippets, as fast as
   possible, unthreaded and with the two pipeline halves on two threads, side by side in one run.
   Reports source frames per second, the ratio, and per-stage milliseconds per frame.
2. Live-paced: the same frames released at 30 fps on the wall clock into a live-policy capture
   (keep newest, count drops), processed frame by frame with Pipeline.push as a live runner does.
   Reports dropped frames and the per-frame processing time p50 / p95 / p99 / max.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from stream.capture import Capture
from stream.config import FeatureConfig
from stream.frame import Frame, SourceEvent, SourceEventKind
from stream.pipeline import Pipeline
from stream.sources import PacedSource, open_source

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data" / "videos"


def make_video(seconds: float, out: Path) -> Path:
    cap = cv2.VideoCapture(str(SHARED / "single_face.mp4"))
    frames = []
    ok, img = cap.read()
    while ok:
        frames.append(img)
        ok, img = cap.read()
    loop = frames + frames[-2:0:-1]
    n = int(seconds * 30)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 360))
    for i in range(n):
        writer.write(loop[i % len(loop)])
    writer.release()
    return out


def replay(path: Path, config: FeatureConfig, threaded: bool) -> dict[str, object]:
    with open_source(path) as src, Capture(src, policy="replay") as capture, Pipeline(config) as pipe:
        t0 = time.perf_counter()
        snippets = sum(1 for o in pipe.run(capture, threaded=threaded) if hasattr(o, "valid"))
        elapsed = time.perf_counter() - t0
        return {
            "fps": pipe.times.source_frames / elapsed,
            "frames": pipe.times.source_frames,
            "snippets": snippets,
            "stages": pipe.times.per_frame_ms(),
        }


def live_paced(path: Path, config: FeatureConfig) -> dict[str, object]:
    per_frame: list[float] = []
    with (
        PacedSource(open_source(path)) as src,
        Capture(src, policy="live", queue_size=8) as capture,
        Pipeline(config) as pipe,
    ):
        for item in capture:
            t0 = time.perf_counter()
            pipe.push(item)
            if isinstance(item, Frame):
                per_frame.append((time.perf_counter() - t0) * 1000)
            if isinstance(item, SourceEvent) and item.kind == SourceEventKind.END:
                break
        dropped = capture.dropped
    ms = np.array(per_frame)
    return {
        "frames": len(ms),
        "dropped": dropped,
        "p50": np.percentile(ms, 50),
        "p95": np.percentile(ms, 95),
        "p99": np.percentile(ms, 99),
        "max": ms.max(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the replay video")
    ap.add_argument("--live-seconds", type=float, default=60.0, help="length of the live-paced run (0: skip)")
    ap.add_argument("--flow", default="dis")
    ap.add_argument("--repeats", type=int, default=2, help="replay runs of each mode, interleaved")
    args = ap.parse_args()
    config = FeatureConfig(flow=args.flow)
    print(
        f"# stream_bench {date.today()} on {platform.node()} ({platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores), flow={args.flow}, python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(args.seconds, Path(tmp) / "replay.mp4")
        print(f"\n## replay: {args.seconds:.0f} s of 640x360 video, {int(args.seconds * 30)} frames")
        results: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeats):  # interleaved so both modes see the same machine noise
            for threaded in (False, True):
                results[threaded].append(replay(video, config, threaded))
        for threaded in (False, True):
            best = max(results[threaded], key=lambda r: r["fps"])
            fps = [f"{r['fps']:.0f}" for r in results[threaded]]
            stages = ", ".join(f"{k} {v:.2f}" for k, v in best["stages"].items())
            print(
                f"{'threaded  ' if threaded else 'unthreaded'}: {best['fps']:.0f} frames/s "
                f"({best['fps'] / 30:.1f}x real time; runs: {', '.join(fps)}); ms/frame: {stages}"
            )
        ratio = max(r["fps"] for r in results[True]) / max(r["fps"] for r in results[False])
        print(f"threaded / unthreaded: {ratio:.2f}x")
        if args.live_seconds > 0:
            live_video = make_video(args.live_seconds, Path(tmp) / "live.mp4")
            r = live_paced(live_video, config)
            print(
                f"\n## live-paced: 30 fps for {args.live_seconds:.0f} s, live policy, Pipeline.push per frame"
            )
            print(
                f"frames {r['frames']}, dropped {r['dropped']}; per-frame processing ms: p50 {r['p50']:.2f}, "
                f"p95 {r['p95']:.2f}, p99 {r['p99']:.2f}, max {r['max']:.2f} (budget 33.3)"
            )


if __name__ == "__main__":
    main()
