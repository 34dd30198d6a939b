"""`mespot baseline`: the training-free spotter, leave-one-out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.options import (
    add_dataset_options,
    add_feature_options,
    add_group_option,
    annotated_features,
    feature_config,
    load_annotations,
    protocol_header,
    protocol_record,
)


def cmd_baseline(args: argparse.Namespace) -> int:
    import json

    from engine.baseline import loso
    from engine.evaluate import write_megc_csv

    dataset, media = load_annotations(args)
    print(dataset.summary(), file=sys.stderr)
    dataset.folds(args.group)  # before extracting: fewer than two groups fails here
    dataset, features = annotated_features(args, dataset, media, feature_config(args))
    plan = dataset.folds(args.group)  # again: a skipped video may have taken a subject with it
    subject_of = {v.video: v.subject for v in dataset.videos}
    truths = {v.video: list(v.expressions) for v in dataset.videos}
    result = loso(plan, features, subject_of, truths, me_objective=args.me_objective)
    print(
        f"training-free baseline, {protocol_header(dataset, args.group, len(plan))} "
        f"({dataset.name}, {len(dataset.videos)} videos)"
    )
    print(result.report.table())
    if args.report:
        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        (out / "baseline_report.json").write_text(
            json.dumps(
                {
                    "dataset": dataset.name,
                    "annotations": str(Path(args.annotations).resolve()),
                    "feature_config": feature_config(args).to_dict(),
                    "me_objective": args.me_objective,
                    **protocol_record(result.group, result.plan.values()),
                    "pooled": result.report.pooled.to_dict(),
                    "folds": {s: r.pooled.to_dict() for s, r in result.folds.items()},
                    "params_per_fold": result.params_table(),
                },
                indent=2,
            )
        )
        write_megc_csv(out / "baseline_predictions.csv", result.predictions)
        print(f"report and MEGC predictions in {out}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    bl = sub.add_parser(
        "baseline",
        help="training-free region-motion spotting, leave-one-identity-out",
        description="The training-free baseline (engine/baseline.py): its parameters are "
        "chosen on each fold's training identities, then the held-out identity (every subject of "
        "that person) is spotted.",
    )
    add_dataset_options(bl)
    add_group_option(bl)
    bl.add_argument("--report", help="folder for the JSON report and the MEGC predictions CSV")
    bl.add_argument(
        "--me-objective",
        default="overall",
        choices=("overall", "me"),
        help="choose the ME parameter set on overall F1 beside the chosen MaEs (default) or on ME F1",
    )
    add_feature_options(bl)
    bl.set_defaults(func=cmd_baseline)
    return bl
