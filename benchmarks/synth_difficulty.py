"""How hard a synthetic dataset is: each event's peak facial motion against the background.

    python benchmarks/synth_difficulty.py DATASET_DIR --features FEATURE_CACHE

For every event of DATASET_DIR/annotations.csv (ME, MaE) and distractors.csv (blink, head,
light): over the snippets from onset // g to offset // g + 1, the largest snippet-mean flow
magnitude of any ROI, divided by that ROI's 99th percentile over the video's snippets that no
event touches. Features come from the cache `mespot extract` / `mespot baseline` fill (default
feature configuration), extracting what is missing.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np

from engine.data import load_dataset
from engine.data.features import dataset_features
from stream.features import ROI_SETS, feature_names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--features", type=Path, required=True)
    args = ap.parse_args()
    ds = load_dataset("csv", args.dataset / "annotations.csv")
    feats = dataset_features(ds, args.dataset / "videos", args.features)
    names, _ = feature_names(ROI_SETS.build("mesh17"))
    mag = [i for i, n in enumerate(names) if n.endswith(".mag")]
    events: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for name in ("annotations.csv", "distractors.csv"):
        for row in csv.DictReader((args.dataset / name).open()):
            if row.get("type"):
                events[row["video"]].append((row["type"], int(row["onset"]), int(row["offset"])))
    ratios: dict[str, list[float]] = defaultdict(list)
    for video, f in feats.items():
        g = f.snippet_frames
        m = f.motion[:, mag]  # (T, R) snippet-mean magnitude per ROI
        busy = np.zeros(len(m), bool)
        spans = [(kind, int(on // g), int(off // g) + 1) for kind, on, off in events[video]]
        for _, a, b in spans:
            busy[a:b] = True
        background = np.percentile(m[~busy & f.valid], 99, axis=0)  # (R,)
        for kind, a, b in spans:
            ratios[kind].append(float((m[a:b] / background).max()))
    print(f"# synth_difficulty {date.today()}: {args.dataset}")
    print("| event | count | median peak / background p99 | share above 1 | share above 2 |")
    print("|---|---|---|---|---|")
    for kind in ("me", "mae", "blink", "head", "light"):
        r = np.array(ratios[kind])
        if r.size:
            print(f"| {kind} | {r.size} | {np.median(r):.2f} | {np.mean(r > 1):.2f} | {np.mean(r > 2):.2f} |")


if __name__ == "__main__":
    main()
