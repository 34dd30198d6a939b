"""Neutral baseline on faces the model never saw: F1 with and without it.

    python benchmarks/neutral_unseen.py data/synthspot-v1 --features FEATURES \
        [--outside data/unseen-face] [--method gim] [--seconds 2]

Two tests, each trained and evaluated twice (neutral baseline off / on), everything else equal:

1. Unseen photos: SynthSpot-v1's subjects are variants of a few base photos (subjects.json).
   For each photo, train on the subjects made from the other photos and test on that photo's
   subjects (leave one photo out); counts pooled over the photos.
2. A face outside the training set: train on all of SynthSpot-v1 and test on a dataset made
   with `mespot synth` from another photo (e.g. ``--faces bundled:single_face``).

The operating point is chosen on the training videos each time, never on the test videos.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import time
from datetime import date
from pathlib import Path

from engine.data import load_dataset
from engine.data.features import dataset_features
from engine.evaluate import Report, evaluate_folds
from engine.methods import METHODS, build_method
from engine.models import NetworkConfig
from engine.train import TrainConfig, choose_operating_point, predict, spot_and_evaluate, train
from stream.config import FeatureConfig


def run(train_videos, test_videos, config: TrainConfig) -> Report:
    """Train, choose the operating point on the training videos, evaluate the test videos."""
    network, _ = train(train_videos, config, progress=False)
    method = build_method(config.method, network, config.method_options)
    scores = {r.video: predict(network, method, f) for r, f in train_videos}
    point, _ = choose_operating_point(train_videos, scores, config.proposals)
    return spot_and_evaluate(network, method, point, test_videos)[2]


def row(name: str, tag: str, report: Report) -> str:
    p = report.pooled
    cells = [f"{t.recall:.3f} / {t.precision:.3f} / {t.f1:.3f}" for t in (p.me, p.mae, p.overall)]
    return f"| {name} | {tag} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path, help="SynthSpot-v1 folder (annotations.csv, subjects.json)")
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--outside", type=Path, help="a `mespot synth` dataset made from another photo")
    ap.add_argument("--method", default="gim")
    ap.add_argument("--seconds", type=float, default=2.0, help="resting seconds of the neutral baseline")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    fconfig = FeatureConfig()
    dataset = load_dataset("csv", args.dataset / "annotations.csv")
    feats = dataset_features(dataset, args.dataset / "videos", args.features, fconfig)
    videos = [(r, feats[r.video]) for r in dataset.videos if r.video in feats]
    photo_of = {s["name"]: s["base"] for s in json.loads((args.dataset / "subjects.json").read_text())}
    photos = sorted(set(photo_of.values()))
    network = "gim" if args.method == "gim" else "mcwes"
    schedule = dict(METHODS.get(args.method).training_defaults)
    base = TrainConfig(**schedule, method=args.method, network=NetworkConfig(network=network))

    outside = None
    if args.outside is not None:
        out_set = load_dataset("csv", args.outside / "annotations.csv")
        out_feats = dataset_features(out_set, args.outside / "videos", args.features, fconfig)
        outside = [(r, out_feats[r.video]) for r in out_set.videos if r.video in out_feats]

    print(f"neutral baseline on unseen faces: {args.method}, resting window {args.seconds} s")
    print(f"{date.today()}, {platform.machine()} {platform.processor() or ''}, photos {photos}")
    print()
    print("| test | neutral | ME R / P / F1 | MaE R / P / F1 | overall R / P / F1 |")
    print("|---|---|---|---|---|")
    for neutral in (None, args.seconds):
        config = dataclasses.replace(base, network=dataclasses.replace(base.network, neutral_s=neutral))
        tag = "off" if neutral is None else f"{neutral:g} s"
        t0 = time.monotonic()
        folds = {}
        for photo in photos:
            test = [(r, f) for r, f in videos if photo_of[r.subject] == photo]
            rest = [(r, f) for r, f in videos if photo_of[r.subject] != photo]
            folds[photo] = run(rest, test, config)
        print(row(f"leave one photo out ({len(photos)} folds)", tag, evaluate_folds(folds)))
        if outside is not None:
            print(row(f"outside face ({args.outside.name})", tag, run(videos, outside, config)))
        print(f"(neutral {tag}: {time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
