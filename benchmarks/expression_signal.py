"""How strongly expressions stand out, in the features and in a model's scores, per set of faces.

    python benchmarks/expression_signal.py --loso reports/RUN \
        --annotations data/synthspot-v2/annotations.csv \
        --test engine/assets/default.mespot data/unseen/annotations.csv \
        --features features/ [--gains 1 1.5 2]

Answers "why does a model find fewer expressions on these faces?" with numbers:

- per held-out identity of a leave-one-identity-out run (each fold's bundle on its own held-out
  faces) and per subject of a test set (one bundle on faces it never saw): the median over
  snippets without an expression of the mean absolute motion feature, the median peak of it
  inside each ME and MaE, their ratio (how far an expression rises above the face's own
  background), and the median peak actionness the model gives each type against the 99th
  percentile of its actionness on expression-free snippets;
- for the test set, the bundle's F1 at its own operating point with every motion feature
  multiplied by each of ``--gains``: if a test face's expressions were simply smaller in the
  features (a scale the network was not trained on), a gain would bring them back; if they are
  buried in the face's own motion noise, it brings false alarms instead.

Snippets within two of an expression are left out of the background. Offline scoring equals the
live runner's (docs/architecture.md), so these are the scores a replay gives.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np

from engine.bundle import load_bundle
from engine.data import load_dataset
from engine.data.features import dataset_features
from engine.train import predict, spot_and_evaluate


def signal_rows(bundle_path: Path, annotations: Path, features: Path, subjects: set[str] | None) -> dict:
    """Background level, expression peaks and scores of one bundle on some subjects' videos."""
    bundle = load_bundle(bundle_path)
    dataset = load_dataset("csv", annotations)
    feats = dataset_features(dataset, annotations.parent / "videos", features, bundle.feature_config)
    network = bundle.network()
    method = bundle.method(network)
    peaks: dict[str, list[float]] = {"me": [], "mae": []}
    act_peaks: dict[str, list[float]] = {"me": [], "mae": []}
    background, act_background = [], []
    for video in dataset.videos:
        if subjects is not None and video.subject not in subjects:
            continue
        f = feats[video.video]
        _, act = predict(network, method, f)
        n = len(act)
        magnitude = np.abs(f.motion).mean(axis=1)  # (T,)
        near = np.zeros(n, bool)
        for iv in video.expressions:
            a = max(0, int((iv.onset - f.first_frame) / f.snippet_frames))
            b = min(n, int((iv.offset - f.first_frame) / f.snippet_frames) + 1)
            if b <= a:
                continue
            near[max(0, a - 2) : min(n, b + 2)] = True
            peaks[iv.type.value].append(float(magnitude[a:b].max()))
            act_peaks[iv.type.value].append(float(np.nanmax(act[a:b])))
        quiet = np.asarray(f.valid, bool) & ~near
        background.extend(magnitude[quiet])
        act_background.extend(act[quiet])
    bg = float(np.median(background))
    row = {
        "background motion": bg,
        "actionness p99 without expression": float(np.nanpercentile(act_background, 99)),
    }
    for kind in ("me", "mae"):
        p = np.asarray(peaks[kind])
        row[f"{kind} n"] = len(p)
        row[f"{kind} motion peak"] = float(np.median(p)) if len(p) else float("nan")
        row[f"{kind} peak / background"] = row[f"{kind} motion peak"] / bg
        row[f"{kind} actionness peak"] = float(np.median(act_peaks[kind])) if len(p) else float("nan")
    return row


def gain_rows(bundle_path: Path, annotations: Path, features: Path, gains: list[float]) -> list[dict]:
    """The bundle's F1 on a test set with the motion features scaled."""
    bundle = load_bundle(bundle_path)
    dataset = load_dataset("csv", annotations)
    feats = dataset_features(dataset, annotations.parent / "videos", features, bundle.feature_config)
    network = bundle.network()
    method = bundle.method(network)
    point = bundle.proposal_config()
    rows = []
    for gain in gains:
        videos = [
            (v, dataclasses.replace(feats[v.video], motion=feats[v.video].motion * gain))
            for v in dataset.videos
        ]
        _, _, report = spot_and_evaluate(network, method, point, videos)
        pooled = report.pooled
        rows.append({"gain": gain, **{k: getattr(pooled, k) for k in ("me", "mae", "overall")}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loso", type=Path, help="a `mespot train --loso` run folder")
    ap.add_argument("--annotations", type=Path, help="the annotations the --loso run was trained on")
    ap.add_argument(
        "--test", nargs=2, type=Path, metavar=("BUNDLE", "ANNOTATIONS"), help="a bundle and a test set"
    )
    ap.add_argument("--features", type=Path, required=True, help="feature cache folder")
    ap.add_argument("--gains", type=float, nargs="*", default=[1.0, 1.5, 2.0, 2.5, 3.0])
    args = ap.parse_args()
    rows: list[tuple[str, dict]] = []
    if args.loso:
        report = json.loads((args.loso / "loso_report.json").read_text())
        for name, subjects in report["fold_subjects"].items():
            fold = args.loso / "folds" / f"{name}.mespot"
            rows.append(
                (f"held out: {name}", signal_rows(fold, args.annotations, args.features, set(subjects)))
            )
    if args.test:
        bundle, annotations = args.test
        dataset = load_dataset("csv", annotations)
        rows.append(
            (f"test: all of {annotations.parent.name}", signal_rows(bundle, annotations, args.features, None))
        )
        for subject in sorted({v.subject for v in dataset.videos}):
            rows.append((f"test: {subject}", signal_rows(bundle, annotations, args.features, {subject})))
    print(f"# expression signal, {date.today()}, {platform.node()}")
    print("| faces | background motion | ME peak (x background) | MaE peak (x background) | "
          "ME / MaE actionness peak | actionness p99 without expression | ME / MaE n |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for label, r in rows:
        print(
            f"| {label} | {r['background motion']:.3f} "
            f"| {r['me motion peak']:.3f} ({r['me peak / background']:.2f}) "
            f"| {r['mae motion peak']:.3f} ({r['mae peak / background']:.2f}) "
            f"| {r['me actionness peak']:.3f} / {r['mae actionness peak']:.3f} "
            f"| {r['actionness p99 without expression']:.3f} | {r['me n']} / {r['mae n']} |"
        )
    if args.test:
        bundle, annotations = args.test
        print(
            f"\n# {bundle} on {annotations.parent.name}, motion features scaled (operating point as stored)"
        )
        print("| gain | ME TP / FP / FN, F1 | MaE TP / FP / FN, F1 | overall F1 |")
        print("|---|---|---|---|")
        for r in gain_rows(bundle, annotations, args.features, args.gains):
            me, mae = r["me"], r["mae"]
            print(
                f"| {r['gain']:g} | {me.tp} / {me.fp} / {me.fn}, {me.f1:.3f} "
                f"| {mae.tp} / {mae.fp} / {mae.fn}, {mae.f1:.3f} | {r['overall'].f1:.3f} |"
            )


if __name__ == "__main__":
    main()
