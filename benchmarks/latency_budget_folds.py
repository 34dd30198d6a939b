"""Does the live latency budget change training's operating points? Per fold bundle of a run.

    python benchmarks/latency_budget_folds.py RUN ANNOTATIONS --features FEATURE_CACHE

For each fold bundle of a `mespot train --loso` run: its network's scores of its training
identities' videos, the operating point `choose_operating_point` picks on them with and without
`engine.latency.LATENCY_BUDGET_S`, whether both equal the point the run stored, and the estimated
event latency (`engine.latency.event_latency`) of that point on the training and the held-out
videos.
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

from engine.bundle import load_bundle
from engine.data import load_dataset
from engine.data.features import dataset_features
from engine.latency import event_latency
from engine.train import choose_operating_point, predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("annotations", type=Path)
    ap.add_argument("--features", type=Path, required=True)
    args = ap.parse_args()
    dataset = load_dataset("csv", args.annotations)
    media = args.annotations.resolve().parent / "videos"
    print(f"# latency_budget_folds {date.today()}: {args.run}")
    for path in sorted((args.run / "folds").glob("*.mespot")):
        bundle = load_bundle(path)
        features = dataset_features(dataset, media, args.features, bundle.feature_config)
        trained = set(bundle.metadata["train_subjects"])
        train = [(v, features[v.video]) for v in dataset.videos if v.subject in trained]
        test = [(v, features[v.video]) for v in dataset.videos if v.subject not in trained]
        network = bundle.network()
        method = bundle.method(network)
        scores = {r.video: predict(network, method, f) for r, f in train}
        test_scores = {r.video: predict(network, method, f) for r, f in test}
        grid, base = method.operating_grid(), bundle.train_config.proposals
        t0 = time.perf_counter()
        free, report = choose_operating_point(train, scores, base, grid, latency_budget=None)
        held, _ = choose_operating_point(train, scores, base, grid, lookahead_s=bundle.lookahead_s)
        same = free == held == bundle.operating_point
        on_train = event_latency(train, scores, held, lookahead_s=bundle.lookahead_s)
        on_test = event_latency(test, test_scores, held, lookahead_s=bundle.lookahead_s)
        print(
            f"{path.name}: same point with and without the budget, as stored: {same}; train F1 "
            f"{report.overall.f1:.3f}; training videos: {on_train.summary()}; held-out videos: "
            f"{on_test.summary()} [{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )


if __name__ == "__main__":
    main()
