"""How right PWES's MPLG pseudo labels are, on the training identities of each fold of a run.

    python benchmarks/pwes_pseudo_labels.py RUN ANNOTATIONS --features DIR [--seed 0]

RUN is a `mespot train --method pwes --loso` report folder. For each fold, the fold's bundle
(its final weights) makes MPLG labels of every training video, exactly as training does after
pre-training (`PwesMethod.refresh_pseudo_labels`: eval mode, the method's own options); they are
compared with the frame-annotated truth (`engine.data.labels.full_labels`), which training never
sees. Reported, pooled over folds:

- the share of valid snippets each label source marks foreground (points, MPLG's additions);
- the precision of MPLG's added foreground: inside an expression of the same type, inside one of
  the other type, or in background;
- the recall of true expression snippets by points plus MPLG, per type.

The weights are the end of training, not the epochs MPLG ran in, so this describes the labels
the last epochs trained on. Labels are made on training identities only; nothing is held out.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from engine.bundle import load_bundle
from engine.cli.options import fold_file_name
from engine.data import load_dataset
from engine.data.features import dataset_features
from engine.data.labels import BACKGROUND, MAE, ME, full_labels
from engine.train import network_inputs
from stream.config import FeatureConfig


def fold_counts(run: Path, fold: str, held_out: list[str], dataset, feats: dict, seed: int) -> Counter:
    bundle = load_bundle(run / "folds" / f"{fold_file_name(fold)}.mespot")
    network = bundle.network()
    method = bundle.method(network)
    train = [v for v in dataset.videos if v.subject not in held_out]
    videos = [(v, network_inputs(feats[v.video], bundle.network_config)) for v in train]
    rng = np.random.default_rng(seed)
    targets = [method.targets(v, f, rng) for v, f in videos]
    labelled = method.refresh_pseudo_labels(network, videos, targets)
    c: Counter = Counter()
    for (video, f), tgt in zip(videos, labelled, strict=True):
        valid = np.asarray(f.valid, dtype=bool)
        truth = full_labels(video, len(valid), f.snippet_s).argmax(axis=1)  # (T,)
        points = tgt["points"][:, ME : MAE + 1] > 0  # (T, 2)
        pseudo = tgt["pseudo"] > 0  # (T, 3)
        c["valid"] += int(valid.sum())
        c["point"] += int((points.any(1) & valid).sum())
        c["bg_label"] += int((pseudo[:, BACKGROUND] & valid).sum())
        for cls, name in ((ME, "me"), (MAE, "mae")):
            added = pseudo[:, cls] & ~points[:, cls - ME] & valid
            other = MAE if cls == ME else ME
            c[f"{name}_added"] += int(added.sum())
            c[f"{name}_added_right"] += int((added & (truth == cls)).sum())
            c[f"{name}_added_other"] += int((added & (truth == other)).sum())
            c[f"{name}_added_bg"] += int((added & (truth == BACKGROUND)).sum())
            c[f"{name}_true"] += int(((truth == cls) & valid).sum())
            c[f"{name}_true_labelled"] += int(((truth == cls) & valid & pseudo[:, cls]).sum())
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("annotations", type=Path)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--media", type=Path, help="videos folder (default: beside the annotations)")
    ap.add_argument("--seed", type=int, default=0, help="the point draw")
    args = ap.parse_args()
    report = json.loads((args.run / "loso_report.json").read_text())
    dataset = load_dataset("csv", args.annotations)
    media = args.media or args.annotations.resolve().parent / "videos"
    config = FeatureConfig.from_dict(report["feature_config"])  # every fold's, read once
    feats = dataset_features(dataset, media, args.features, config)
    total: Counter = Counter()
    for fold, held_out in report["fold_subjects"].items():
        total += fold_counts(args.run, fold, held_out, dataset, feats, args.seed)

    def share(a: str, b: str) -> str:
        return f"{total[a] / max(total[b], 1):.3f}"

    print(
        f"# pwes_pseudo_labels {args.run.name}: training identities of {len(report['fold_subjects'])} folds"
    )
    print(
        f"valid snippets {total['valid']}; points {share('point', 'valid')}; "
        f"background labels {share('bg_label', 'valid')}"
    )
    head = ["type", "true share", "MPLG added share", "added: same type", "other type", "background"]
    print("| " + " | ".join([*head, "truth labelled"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for name in ("me", "mae"):
        cells = [
            share(f"{name}_true", "valid"),
            share(f"{name}_added", "valid"),
            *(share(f"{name}_added_{k}", f"{name}_added") for k in ("right", "other", "bg")),
            share(f"{name}_true_labelled", f"{name}_true"),
        ]
        print(f"| {name.upper()} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
