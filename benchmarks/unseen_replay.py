"""A bundle replayed through `run_live.py` on people it has never seen: F1 and false alarms.

    python benchmarks/unseen_replay.py data/unseen data/unseen-quiet [--bundle B] [--out FILE]

Each video of the first dataset (annotations.csv + videos/, made with `mespot synth` from faces
and a seed outside the training recipe) is replayed with ``run_live.py --fast --journal``, a
separate process per video exactly as a user runs it; the events in the journal are scored
against the annotations (IoU >= 0.5, counts pooled over the videos). Every video of the second
dataset holds no expression: each event there is a false alarm, reported per minute of video.
Latency is not measured here (``--fast`` replays as fast as it can): `benchmarks/live_bench.py`
measures it at real-time pace.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2

from engine.data import load_dataset
from engine.evaluate import evaluate
from stream.intervals import ExpressionType, Interval

ROOT = Path(__file__).resolve().parent.parent


def replay(video: Path, bundle: str | None, journal: Path) -> list[Interval]:
    """Run `run_live.py --fast` on one recording; the interval events its journal holds."""
    cmd = [sys.executable, str(ROOT / "run_live.py"), "--source", str(video), "--fast"]
    cmd += ["--journal", str(journal), "--snapshot", "none", "--pub", "tcp://127.0.0.1:*", "--quiet"]
    if bundle:
        cmd += ["--bundle", bundle]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"run_live.py on {video} exited {done.returncode}: {done.stderr[-2000:]}")
    events = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        msg = json.loads(line)
        if msg.get("kind") == "event":
            events.append(
                Interval(
                    msg["onset_frame"],
                    msg["offset_frame"],
                    ExpressionType(msg["type"]),
                    apex=msg.get("apex_frame"),
                    score=msg.get("score") or 0.0,
                )
            )
    return events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("annotated", help="dataset folder of unseen people (annotations.csv, videos/)")
    ap.add_argument("quiet", help="dataset folder of expression-free videos (annotations.csv, videos/)")
    ap.add_argument("--bundle", default=None, help="model bundle (default: the bundled one)")
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    args = ap.parse_args()

    start = time.monotonic()
    result: dict = {"date": date.today().isoformat(), "machine": platform.machine(), "bundle": args.bundle}
    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset("csv", Path(args.annotated) / "annotations.csv")
        preds, truths, fps = {}, {}, {}
        for rec in data.videos:
            preds[rec.video] = replay(
                Path(args.annotated) / "videos" / f"{rec.video}.mp4",
                args.bundle,
                Path(tmp) / f"{rec.video}.jsonl",
            )
            truths[rec.video] = list(rec.expressions)
            fps[rec.video] = rec.fps
            print(
                f"{rec.video}: {len(preds[rec.video])} events, {len(truths[rec.video])} expressions",
                file=sys.stderr,
            )
        report = evaluate(preds, truths, fps)
        result["annotated"] = {
            "videos": len(truths),
            "expressions": sum(len(v) for v in truths.values()),
            **report.pooled.to_dict(),
        }
        print(report.table(), file=sys.stderr)
        quiet = sorted((Path(args.quiet) / "videos").glob("*.mp4"))
        alarms, minutes = 0, 0.0
        for video in quiet:
            events = replay(video, args.bundle, Path(tmp) / f"quiet-{video.stem}.jsonl")
            alarms += len(events)
            cap = cv2.VideoCapture(str(video))
            minutes += cap.get(cv2.CAP_PROP_FRAME_COUNT) / cap.get(cv2.CAP_PROP_FPS) / 60.0
            cap.release()
            print(f"{video.name}: {len(events)} events", file=sys.stderr)
        result["quiet"] = {
            "videos": len(quiet),
            "minutes": round(minutes, 2),
            "false_alarms": alarms,
            "per_minute": round(alarms / minutes, 3) if minutes else None,
        }
    result["wall_s"] = round(time.monotonic() - start, 1)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
