"""A change to the operating-point search, measured on the networks of a finished leave-one-out run.

    python benchmarks/refit_fold_points.py RUN ANNOTATIONS --features FEATURE_CACHE \\
        [--variant 'NAME={"FIELD": [V1, V2, ...], ...}' ...]

For each fold bundle of a `mespot train --loso` run: its network scores its training identities'
and its held-out identity's videos; the operating point is chosen again on the training
identities only (`engine.train.choose_operating_point`, the live latency budget included) over
the method's current grid, and again for each ``--variant`` with its fields of the grid replaced;
the held-out videos are spotted at each point. The held-out reports are pooled over the folds
(as `mespot train --loso` pools them), beside the same pooling at the points the run stored, so
that every row comes from the same networks and one run of this script. The networks are not
retrained: what differs between the rows is the operating-point search alone, and the held-out
identity still chooses nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

from engine.bundle import load_bundle
from engine.data import load_dataset
from engine.data.features import dataset_features
from engine.evaluate import Report, evaluate, evaluate_folds
from engine.train import choose_operating_point, predict, spot


def _row(name: str, pooled: Report, train_f1: float) -> str:
    def f(m) -> str:
        return f"{m.recall:.3f} / {m.precision:.3f} / {m.f1:.3f}"

    p = pooled.pooled
    return f"| {name} | {f(p.me)} | {f(p.mae)} | {f(p.overall)} | {train_f1:.3f} |"


def _report(videos, scores, point) -> Report:
    """The report of the videos spotted at ``point`` from their scores."""
    preds = {r.video: spot(scores[r.video], (r, f), point) for r, f in videos}
    return evaluate(
        preds, {r.video: list(r.expressions) for r, _ in videos}, {r.video: f.fps for r, f in videos}
    )


def _variant(spec: str) -> tuple[str, dict]:
    """NAME={"FIELD": [V1, ...], ...} -> (NAME, {FIELD: (V1, ...)}); JSON lists become tuples."""
    name, _, raw = spec.partition("=")
    try:
        fields = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--variant {spec!r}: {exc}") from None
    if (
        not name
        or not isinstance(fields, dict)
        or not all(isinstance(v, list) and v for v in fields.values())
    ):
        raise SystemExit(f'--variant {spec!r}: expected NAME={{"FIELD": [V1, ...], ...}}')
    return name, {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) for k, v in fields.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a `mespot train --loso` output folder (with folds/)")
    ap.add_argument("annotations", type=Path)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='another grid: NAME={"FIELD": [V1, ...]} replaces those fields (repeatable)',
    )
    args = ap.parse_args()
    variants = [("chosen again, current grid", {})] + [_variant(spec) for spec in args.variant]
    paths = sorted((args.run / "folds").glob("*.mespot"))
    if not paths:
        raise SystemExit(f"{args.run}: no folds/*.mespot (run `mespot train --loso` first)")
    dataset = load_dataset("csv", args.annotations)
    media = args.annotations.resolve().parent / "videos"
    print(f"# refit_fold_points {date.today()} on {platform.processor() or platform.machine()}: {args.run}")
    print(f"# variants: {variants}")
    stored_reports: dict[str, Report] = {}
    stored_train: list[float] = []
    held: dict[str, dict[str, Report]] = {name: {} for name, _ in variants}
    trained_f1: dict[str, list[float]] = {name: [] for name, _ in variants}
    features = None
    t0 = time.perf_counter()
    for path in paths:
        bundle = load_bundle(path)
        if features is None:
            features = dataset_features(dataset, media, args.features, bundle.feature_config)
        trained = set(bundle.metadata["train_subjects"])
        train = [(v, features[v.video]) for v in dataset.videos if v.subject in trained]
        test = [(v, features[v.video]) for v in dataset.videos if v.subject not in trained]
        network = bundle.network()
        method = bundle.method(network)
        train_scores = {r.video: predict(network, method, f) for r, f in train}
        test_scores = {r.video: predict(network, method, f) for r, f in test}
        stored = bundle.operating_point
        stored_reports[path.stem] = _report(test, test_scores, stored)
        stored_train.append(_report(train, train_scores, stored).pooled.overall.f1)
        line = [
            f"{path.stem}: stored held-out F1 {stored_reports[path.stem].pooled.overall.f1:.3f} "
            f"(train {stored_train[-1]:.3f})"
        ]
        for name, fields in variants:
            grid = {**method.operating_grid(), **fields}
            point, report = choose_operating_point(
                train, train_scores, bundle.train_config.proposals, grid, lookahead_s=bundle.lookahead_s
            )
            held[name][path.stem] = _report(test, test_scores, point)
            trained_f1[name].append(report.pooled.overall.f1)
            changed = {k: v for k, v in point.to_dict().items() if stored.to_dict().get(k) != v}
            line.append(
                f"  {name}: held-out {held[name][path.stem].pooled.overall.f1:.3f} (train "
                f"{trained_f1[name][-1]:.3f}); point changes {changed}"
            )
        print("\n".join(line) + f" [{time.perf_counter() - t0:.0f} s]", flush=True)
    print("\n| points | ME R / P / F1 | MaE R / P / F1 | overall R / P / F1 | train F1 (mean) |")
    print("|---|---|---|---|---|")
    print(_row("as stored by the run", evaluate_folds(stored_reports), sum(stored_train) / len(stored_train)))
    for name, _ in variants:
        print(_row(name, evaluate_folds(held[name]), sum(trained_f1[name]) / len(trained_f1[name])))


if __name__ == "__main__":
    main()
