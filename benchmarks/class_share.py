"""Do a run's class scores tell MEs from MaEs where the expressions are? Per fold bundle of a run.

    python benchmarks/class_share.py RUN ANNOTATIONS --features FEATURE_CACHE

For each fold bundle of a `mespot train --loso` run, its network scores every video; for each
annotated expression, its ME share inside the expression's snippets is mean ME score / (mean
ME + mean MaE score), the quantity `ProposalConfig.me_share_min` draws its line on, and its peak
actionness. Pooled over the folds, separately for the held-out identity's videos and for the
training identities' own: how well the share ranks MEs above MaEs (AUROC), each type's median
share, and each type's median actionness peak. The training side is what a choice may be made
on; the held-out side says whether it carries over.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
from datetime import date
from pathlib import Path

import numpy as np

from engine.bundle import load_bundle
from engine.data import load_dataset
from engine.data.features import dataset_features
from engine.proposals import interval_to_span
from engine.train import predict


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half."""
    if not len(positive) or not len(negative):
        return float("nan")
    above = (positive[:, None] > negative[None]).mean()
    tied = (positive[:, None] == negative[None]).mean()
    return float(above + 0.5 * tied)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a `mespot train --loso` output folder (with folds/)")
    ap.add_argument("annotations", type=Path)
    ap.add_argument("--features", type=Path, required=True)
    args = ap.parse_args()
    paths = sorted((args.run / "folds").glob("*.mespot"))
    if not paths:
        raise SystemExit(f"{args.run}: no folds/*.mespot (run `mespot train --loso` first)")
    dataset = load_dataset("csv", args.annotations)
    media = args.annotations.resolve().parent / "videos"
    # side -> type -> [(share, actionness peak)]
    found: dict[str, dict[str, list[tuple[float, float]]]] = {
        side: {"me": [], "mae": []} for side in ("held-out", "training")
    }
    features = None
    for path in paths:
        bundle = load_bundle(path)
        if features is None:
            features = dataset_features(dataset, media, args.features, bundle.feature_config)
        trained = set(bundle.metadata["train_subjects"])
        network = bundle.network()
        method = bundle.method(network)
        for video in dataset.videos:
            feats = features[video.video]
            cls, act = predict(network, method, feats)  # (T, 2), (T,)
            side = "training" if video.subject in trained else "held-out"
            for iv in video.expressions:
                if iv.offset < feats.first_frame:
                    continue
                inside_frames = dataclasses.replace(iv, onset=max(iv.onset, feats.first_frame), apex=None)
                a, b = interval_to_span(inside_frames, feats.snippet_frames, frame_offset=feats.first_frame)
                inside = cls[a:b]
                inside = inside[~np.isnan(inside).any(axis=1)]  # (L, 2)
                if not len(inside):
                    continue
                means = inside.mean(axis=0)
                share = float(means[0] / max(1e-12, means.sum()))
                found[side][iv.type.value].append((share, float(np.nanmax(act[a:b]))))
    print(f"# class_share {date.today()} on {platform.processor() or platform.machine()}: {args.run}")
    print(
        "| videos | MEs / MaEs | ME-share AUROC, ME vs MaE | median ME share: ME / MaE "
        "| median actionness peak: ME / MaE |"
    )
    print("|---|---|---|---|---|")
    for side, kinds in found.items():
        me, mae = np.asarray(kinds["me"]), np.asarray(kinds["mae"])
        print(
            f"| {side} | {len(me)} / {len(mae)} | {auroc(me[:, 0], mae[:, 0]):.3f} | "
            f"{np.median(me[:, 0]):.3f} / {np.median(mae[:, 0]):.3f} | "
            f"{np.median(me[:, 1]):.3f} / {np.median(mae[:, 1]):.3f} |"
        )


if __name__ == "__main__":
    main()
