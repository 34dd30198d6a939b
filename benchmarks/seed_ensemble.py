"""Several trained networks averaged: leave-one-identity-out runs of one recipe (different seeds)
combined fold by fold, against each run alone.

    python benchmarks/seed_ensemble.py RUN_A RUN_B [RUN_C ...] ANNOTATIONS --features FEATURE_CACHE \
        [--test OTHER_ANNOTATIONS]

`mespot train --ensemble N` trains such an ensemble as one bundle (and, with ``--loso``, one run);
this script combines runs already trained, to measure what averaging them would give.

The runs must share their folds (`mespot train --loso` with the same data and grouping, another
`--seed`). Per fold: every run's fold network scores every video; the ensemble's scores are the
mean of the networks' class scores and actionness, snippet by snippet, computed as a bundle of
`mespot train --ensemble` computes them (`engine.models.NetworkEnsemble` through
`engine.train.predict`); its operating point is
chosen on the fold's training identities' ensemble scores with the method's grid, as `loso` does
for one network (`choose_operating_point`, the live latency budget included); the held-out
identity is spotted at that point. Each run alone goes through the same code, so its line
reproduces the run's own pooled figure (a check on the script). With ``--test``, every fold's
ensemble and every fold network alone also score another set of people at their fold's point,
pooled over the folds (as `mespot eval RUN TEST --every-video`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from datetime import date
from pathlib import Path

import numpy as np

from engine.bundle import load_bundle
from engine.data import load_dataset
from engine.data.features import dataset_features
from engine.evaluate import evaluate, evaluate_folds
from engine.models import NetworkEnsemble
from engine.train import choose_operating_point, predict, spot


def report_of(videos, scores, point):
    preds = {r.video: spot(scores[r.video], (r, f), point) for r, f in videos}
    truths = {r.video: list(r.expressions) for r, _ in videos}
    return evaluate(preds, truths, {r.video: f.fps for r, f in videos})


def line(name: str, report, train_f1: float | None = None) -> str:
    p = report.pooled
    extra = f" | {train_f1:.3f}" if train_f1 is not None else ""
    return (
        f"| {name} | {p.me.recall:.3f} / {p.me.precision:.3f} / {p.me.f1:.3f} | "
        f"{p.mae.recall:.3f} / {p.mae.precision:.3f} / {p.mae.f1:.3f} | "
        f"{p.overall.recall:.3f} / {p.overall.precision:.3f} / **{p.overall.f1:.3f}**{extra} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", type=Path, nargs="+", help="two or more run folders, then the annotation file")
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--test", type=Path, help="another annotated set scored by every fold's networks")
    args = ap.parse_args()
    *runs, annotations = args.paths
    if len(runs) < 2:
        ap.error("give at least two runs of one recipe and the annotation file")
    t0 = time.monotonic()
    dataset = load_dataset("csv", annotations)
    media = annotations.resolve().parent / "videos"
    test_set = load_dataset("csv", args.test) if args.test else None
    folds = sorted(p.name for p in (runs[0] / "folds").glob("*.mespot"))
    names = [r.name for r in runs] + ["ensemble"]
    held: dict[str, dict] = {n: {} for n in names}
    unseen: dict[str, dict] = {n: {} for n in names}
    train_f1: dict[str, list[float]] = {n: [] for n in names}
    loaded: dict = {}  # feature config (or ("test", config)) -> video id -> features
    for fold in folds:
        bundles = [load_bundle(r / "folds" / fold) for r in runs]
        config = bundles[0].feature_config
        if any(b.feature_config != config for b in bundles):
            raise SystemExit(f"{fold}: the runs' fold bundles were trained on different features")
        if config not in loaded:  # every fold of one recipe reads the same cache: once
            loaded[config] = dataset_features(dataset, media, args.features, config)
        features = loaded[config]
        trained = set(bundles[0].metadata["train_subjects"])
        train = [(v, features[v.video]) for v in dataset.videos if v.subject in trained]
        test = [(v, features[v.video]) for v in dataset.videos if v.subject not in trained]
        nets = [(b.network(), b) for b in bundles]
        # the pair as a bundle of `--ensemble` scores it: one NetworkEnsemble, one predict
        nets.append((NetworkEnsemble([n for n, _ in nets]).eval(), bundles[0]))
        scored = [{r.video: predict(n, b.method(n), f) for r, f in train + test} for n, b in nets]
        other = []
        if test_set is not None:
            if ("test", config) not in loaded:
                other_media = args.test.resolve().parent / "videos"
                loaded["test", config] = dataset_features(test_set, other_media, args.features, config)
            other_features = loaded["test", config]
            other = [(v, other_features[v.video]) for v in test_set.videos if v.video in other_features]
            other_scored = [{r.video: predict(n, b.method(n), f) for r, f in other} for n, b in nets]
        base, grid = bundles[0].train_config.proposals, bundles[0].method().operating_grid()
        for i, name in enumerate(names):
            point, train_report = choose_operating_point(
                train, scored[i], base, grid, lookahead_s=bundles[0].lookahead_s
            )
            train_f1[name].append(train_report.overall.f1)
            held[name][fold] = report_of(test, scored[i], point)
            if other:
                rep = report_of(other, other_scored[i], point)
                unseen[name][fold] = dataclasses.replace(
                    rep, videos={f"{fold}/{v}": t for v, t in rep.videos.items()}
                )
        print(f"{fold}: " + ", ".join(f"{n} {held[n][fold].overall.f1:.3f}" for n in names), flush=True)
    print(
        f"\n# seed_ensemble {date.today()}: {', '.join(str(r) for r in runs)}; {time.monotonic() - t0:.0f} s"
    )
    print("| networks | ME R / P / F1 | MaE R / P / F1 | overall R / P / F1 | train F1 |")
    print("|---|---|---|---|---|")
    for name in names:
        print(line(name, evaluate_folds(held[name]), float(np.mean(train_f1[name]))))
    if test_set is not None:
        print(f"\n{args.test}: every fold's networks at their fold's point, pooled over the folds")
        print("| networks | ME R / P / F1 | MaE R / P / F1 | overall R / P / F1 |")
        print("|---|---|---|---|")
        for name in names:
            print(line(name, evaluate_folds(unseen[name])))


if __name__ == "__main__":
    main()
