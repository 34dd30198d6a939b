"""How many 30 fps live streams one machine holds: N spotters at once, each `run_live.py
--realtime` on its own recording, counting the frames each dropped.

    python benchmarks/live_streams.py [--seconds 30] [--streams 1 2 3 4]

Each spotter replays `stream_bench.make_video`'s 640x360, 30 fps recording of a real face paced at
its frame rate (the live policy: a frame the pipeline cannot take in time is dropped and counted),
with the bundled model (or `--bundle`, `--backend`), publishing on its own endpoints. Reported per N: every
spotter's dropped frames and processing rate (from its end-of-stream summary line).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import make_video

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) frames, .* dropped (\d+)")


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def run(n: int, video: Path, extra: list[str]) -> list[tuple[int, int]]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "run_live.py"),
                "--source",
                str(video),
                "--realtime",
                "--stream",
                f"cam{i}",
                "--pub",
                free_endpoint(),
                "--snapshot",
                "none",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    out = []
    for p in procs:
        text, _ = p.communicate(timeout=600)
        line = next((ln for ln in text.splitlines() if ": end of stream;" in ln), "")
        m = SUMMARY.search(line)
        if p.returncode != 0 or m is None:
            raise RuntimeError(f"a spotter failed (exit {p.returncode}):\n{text[-2000:]}")
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--bundle", help="the bundle the spotters run (default: the bundled one)")
    ap.add_argument("--backend", default="auto", help="scoring backend (auto, tensorrt, onnxruntime, torch)")
    args = ap.parse_args()
    extra = ["--backend", args.backend, *(["--bundle", args.bundle] if args.bundle else [])]
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {date.today()}; "
          f"{args.seconds:g} s recordings, 640x360 at 30 fps, paced in real time")  # fmt: skip
    print("| streams | frames dropped per spotter (of frames offered) | all frames kept |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(args.seconds, Path(tmp) / "face.mp4")
        for n in args.streams:
            results = run(n, video, extra)
            drops = ", ".join(f"{d} of {f + d}" for f, d in results)
            print(f"| {n} | {drops} | {'yes' if all(d == 0 for _, d in results) else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
