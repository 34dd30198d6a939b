"""What labels per clip carry, against labels per whole video (`mespot train --clip-s`).

    python benchmarks/clip_labels.py data/synthspot-v2/annotations.csv --features features/ \
        [--clip-s 10 30]

Cuts every video of a CSV dataset into clips as training does (`engine.data.clips`, the default
feature configuration's snippet grid, read from the feature cache) and prints, per clip length and
for whole videos, how many clips there are, their median length and the share of clips whose
labels say: no expression, MaE only, ME only, both. Whole-video labels that are "both" for every
expression video carry one bit; the shares show what finer grains add.
"""

from __future__ import annotations

import argparse
import platform
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np

from engine.data import load_dataset
from engine.data.clips import cut_into_clips
from engine.data.features import dataset_features
from engine.data.labels import video_level_vector

KINDS = {(0, 0): "none", (0, 1): "MaE only", (1, 0): "ME only", (1, 1): "both"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("annotations", type=Path, help="a generic CSV dataset (videos/ beside it)")
    ap.add_argument("--features", type=Path, required=True, help="feature cache folder")
    ap.add_argument("--clip-s", type=float, nargs="+", default=[30.0, 10.0], help="clip lengths (s)")
    args = ap.parse_args()
    dataset = load_dataset("csv", args.annotations)
    feats = dataset_features(dataset, args.annotations.parent / "videos", args.features)
    print(f"# clip labels, {date.today()}, {platform.node()}: {args.annotations}")
    print("| grain | clips | median length | " + " | ".join(KINDS.values()) + " |")
    print("|---|---|---|" + "---|" * len(KINDS))
    for clip_s in [None, *args.clip_s]:
        counts: Counter = Counter()
        lengths = []
        for record in dataset.videos:
            f = feats[record.video]
            clips = [(record, f)] if clip_s is None else cut_into_clips(record, f, clip_s)
            for clip, part in clips:
                counts[tuple(int(x) for x in video_level_vector(clip))] += 1
                lengths.append(len(part.valid) * part.snippet_s)
        total = sum(counts.values())
        shares = " | ".join(f"{counts[k] / total:.2f}" for k in KINDS)
        grain = "whole video" if clip_s is None else f"{clip_s:g} s"
        print(f"| {grain} | {total} | {np.median(lengths):.1f} s | {shares} |")


if __name__ == "__main__":
    main()
