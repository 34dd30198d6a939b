"""`mespot eval`: a bundle on a dataset, or a leave-one-out run from its fold bundles."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from engine.cli.options import add_dataset_options, annotated_features, load_annotations, protocol_header

log = logging.getLogger(__name__)


def retune_fold(bundle, network, dataset, features, trained_on, base, fields: list[str]):
    """A fold's operating point chosen again on its training subjects' videos (`--retune`).

    Args:
        bundle, network: the fold's bundle and its network.
        dataset, features: the dataset and its features (video id -> features).
        trained_on: the fold's training subjects (bundle metadata).
        base: the bundle's operating point (the fields not on the grid keep its values).
        fields: FIELD=V1,V2,... pairs (values JSON, else text).

    Returns:
        (the chosen ProposalConfig, its overall F1 on the training subjects' videos): the F1 is
        the number a choice between retuned runs may be made on.
    """
    from engine.train import choose_operating_point, predict
    from stream.errors import ConfigError

    method = bundle.method(network)
    grid = dict(method.operating_grid())
    for pair in fields:
        name, sep, raw = pair.partition("=")
        if not sep or not name or not raw:
            raise ConfigError(f"--retune {pair!r}: expected FIELD=V1,V2,...")
        try:  # JSON values, which may hold commas themselves: offset_shift_s=[0,0],[-0.067,0.27]
            values = json.loads(f"[{raw}]")
        except json.JSONDecodeError:  # plain text values: type_rule=apex,duration
            values = [_json_or_text(item) for item in raw.split(",")]
        grid[name] = tuple(tuple(v) if isinstance(v, list) else v for v in values)
    train_videos = [
        (v, features[v.video]) for v in dataset.videos if v.subject in trained_on and v.video in features
    ]
    if not train_videos:
        raise ConfigError(f"{bundle.path}: --retune needs its training subjects' videos in the dataset")
    scores = {r.video: predict(network, method, f) for r, f in train_videos}
    point, report = choose_operating_point(train_videos, scores, base, grid, lookahead_s=bundle.lookahead_s)
    log.info(
        "%s: retuned on %d training videos, train F1 %.3f", bundle.path, len(train_videos), report.overall.f1
    )
    return point, report.overall.f1


def _json_or_text(item: str):
    try:
        return json.loads(item)
    except json.JSONDecodeError:
        return item


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a bundle on a dataset, or re-evaluate a LOSO run from its per-fold bundles."""
    from engine.bundle import load_bundle
    from engine.evaluate import evaluate_folds, write_megc_csv
    from engine.latency import LATENCY_BUDGET_S, event_latency, pooled
    from engine.train import spot_and_evaluate
    from stream.errors import ConfigError

    dataset, media = load_annotations(args)
    run = Path(args.run)
    if (run / "loso_report.json").is_file():
        folds_dir = run / "folds"
        paths = sorted(folds_dir.glob("*.mespot")) if folds_dir.is_dir() else []
        if not paths:
            raise ConfigError(f"{run}: a LOSO run without per-fold bundles in {folds_dir}")
        plan = [(load_bundle(p), None) for p in paths]
        # runs from before leave-one-identity-out held out single subjects
        group = json.loads((run / "loso_report.json").read_text()).get("group", "subject")
    elif (run / "bundle.json").is_file():
        plan = [(load_bundle(run), args.subjects)]
        group = None
    else:
        raise ConfigError(f"{run}: neither a bundle (bundle.json) nor a LOSO run (loso_report.json)")
    identity_of = {v.subject: v.identity for v in dataset.videos}
    reports, predictions, per_fold, shared_identities = {}, {}, {}, {}
    per_fold_points: dict[str, dict] = {}
    train_f1: dict[str, float] = {}
    latencies = []
    for bundle, subjects in plan:
        meta = bundle.metadata
        # a fold's bundle: its held-out subjects (every subject of the held-out identity)
        held_out_subjects = meta.get("held_out_subjects") or (
            [meta["held_out_subject"]] if meta.get("held_out_subject") is not None else None
        )
        held_out = meta.get("held_out", meta.get("held_out_subject"))
        trained_on = set(meta.get("train_subjects") or [])
        if args.every_video:  # a fold network on other videos: its held-out mark only names it
            wanted = set(args.subjects or [v.subject for v in dataset.videos])
        else:
            wanted = set(held_out_subjects or subjects or [v.subject for v in dataset.videos])
        if (args.every_video or not held_out_subjects) and wanted & trained_on:
            log.warning(
                "%s: evaluating on subjects named like its training subjects: %s",
                bundle.path,
                sorted(wanted & trained_on),
            )
        shared = sorted(
            {identity_of[s] for s in wanted - trained_on if s in identity_of}
            & {identity_of[s] for s in trained_on if s in identity_of}
        )
        if shared:
            log.warning(
                "%s: identities %s are both evaluated and in its training subjects (other variants of "
                "the same people): this is not a leave-one-identity-out evaluation",
                bundle.path,
                shared,
            )
        dataset, features = annotated_features(args, dataset, media, bundle.feature_config)
        videos = [
            (v, features[v.video]) for v in dataset.videos if v.subject in wanted and v.video in features
        ]
        if not videos:
            raise ConfigError(f"{bundle.path}: no video of subject(s) {sorted(wanted)} in {args.annotations}")
        network = bundle.network()
        point = bundle.proposal_config()
        if args.retune:
            if not held_out_subjects:
                raise ConfigError("--retune: only for a leave-one-out run folder (fold bundles)")
            point, train_f1[held_out] = retune_fold(
                bundle, network, dataset, features, trained_on, point, args.retune
            )
            per_fold_points[held_out] = point.to_dict()
        scores, preds, report = spot_and_evaluate(network, bundle.method(network), point, videos)
        latencies.append(event_latency(videos, scores, point, lookahead_s=bundle.lookahead_s))
        key = held_out if held_out is not None else "all"
        if args.every_video and group:  # the same videos under every fold network: name them per fold
            report = dataclasses.replace(report, videos={f"{key}/{v}": t for v, t in report.videos.items()})
            preds = {f"{key}/{v}": p for v, p in preds.items()}
        reports[key] = report
        predictions.update(preds)
        per_fold[key] = {"bundle": str(bundle.path), **report.pooled.to_dict()}
        if shared:
            shared_identities[key] = shared
    counts = evaluate_folds(reports) if len(reports) > 1 else next(iter(reports.values()))
    latency = pooled(latencies)
    held = f", {protocol_header(dataset, group, len(reports))}" if group is not None else ""
    print(f"{run}: {len(reports)} model(s) on {len(predictions)} videos ({dataset.name}{held})")
    print(counts.table())
    if args.every_video and len(reports) > 1:  # every fold network on every video: one line each
        for key, report in reports.items():
            c = report.pooled
            print(f"  {key}: ME F1 {c.me.f1:.3f}, MaE F1 {c.mae.f1:.3f}, overall F1 {c.overall.f1:.3f}")
    print(
        f"estimated live event latency (budget ME {LATENCY_BUDGET_S['me']:g} s, "
        f"MaE {LATENCY_BUDGET_S['mae']:g} s): {latency.summary()}"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_report.json").write_text(
        json.dumps(
            {
                "run": str(run.resolve()),
                "dataset": dataset.name,
                "group": group,
                "report": counts.to_dict(),
                "folds": per_fold,
                # the live online spotter replayed on these videos' scores (engine/latency.py)
                "event_latency": latency.to_dict(),
                # identities evaluated although other variants of them were trained on
                "shared_identities": shared_identities,
                "retune": args.retune or [],
                "operating_points": per_fold_points,
                # each fold's F1 on its own training subjects at the retuned point
                "train_f1": train_f1,
            },
            indent=2,
        )
    )
    write_megc_csv(out / "predictions.csv", predictions)
    print(f"metrics and MEGC predictions in {out}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ev = sub.add_parser(
        "eval",
        help="evaluate a model bundle, or re-evaluate a LOSO run from its per-fold bundles",
        description="Score a dataset with a bundle at its stored operating point (or, for a LOSO "
        "run folder, each fold's bundle on its held-out identity or subject), and write the per-fold "
        "and pooled metrics and the MEGC predictions. Features are extracted with the bundle's own feature "
        "configuration.",
    )
    ev.add_argument("run", help="a bundle folder (bundle.json) or a `mespot train --loso` output folder")
    add_dataset_options(ev)
    ev.add_argument("--subjects", nargs="+", help="for a bundle: only these subjects (default: all)")
    ev.add_argument(
        "--every-video",
        action="store_true",
        help="a fold's bundle, or each fold of a leave-one-out run: score every video of the "
        "dataset (or --subjects), not only the held-out identity: fold networks on another set of "
        "people; for a run, the counts are pooled over its fold networks and each is printed",
    )
    ev.add_argument(
        "--retune",
        action="append",
        metavar="FIELD=V1,V2,...",
        help="leave-one-out runs: choose each fold's operating point again on its own training "
        "subjects, over the method's grid with this proposal field's values (JSON each, e.g. "
        "offset_shift_s=[0,0],[-0.067,0.27]; else text) added or replaced; repeat for several "
        "fields. The held-out subjects never reach the choice.",
    )
    ev.add_argument("--out", required=True, help="folder for eval_report.json and predictions.csv")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_eval)
    return ev
