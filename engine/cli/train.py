"""`mespot train`: a spotting network from weak labels, once or leave-one-out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.options import (
    METHOD_NETWORKS,
    add_dataset_options,
    add_feature_options,
    add_group_option,
    annotated_features,
    feature_config,
    fold_file_name,
    load_annotations,
    lookahead_option,
    parse_options,
    protocol_header,
    protocol_record,
    run_metadata,
)


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of ``mespot train``; under ``torchrun`` every process trains, rank 0 writes."""
    from engine import distributed

    group = distributed.current()
    try:
        return _train(args, group)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, group) -> int:
    import dataclasses
    import json

    from engine import distributed
    from engine.bundle import feature_dims, lookahead_seconds, save_bundle
    from engine.evaluate import write_megc_csv
    from engine.latency import LATENCY_BUDGET_S, pooled
    from engine.methods import METHODS, build_method
    from engine.models import NetworkConfig
    from engine.selection import candidates, parse_selection, select_training_config, selector
    from engine.train import (
        TrainConfig,
        choose_operating_point,
        cross_validated_scores,
        loso,
        predict,
        train,
    )

    fconfig = feature_config(args)
    lookahead = lookahead_option(args, fconfig)  # before reading any data: a bad value fails here
    selection = parse_selection(args.select)  # so does a bad --select
    network_name = args.network or METHOD_NETWORKS.get(args.method, "mcwes")
    # The method's own schedule where the command line is silent.
    schedule = dict(METHODS.get(args.method).training_defaults) if args.method in METHODS else {}
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) is not None:
            schedule[name] = getattr(args, name)
    proposals = None
    if args.proposal_mode is not None and args.method in METHODS:
        proposals = dataclasses.replace(METHODS.get(args.method).default_proposals(), mode=args.proposal_mode)
    config = TrainConfig(
        **schedule,
        proposals=proposals,
        augment=args.augment,
        seed=args.seed,
        ensemble=args.ensemble,
        clip_s=args.clip_s,
        method=args.method,
        method_options=parse_options(args.option, "--option"),
        network=NetworkConfig(
            network=network_name,
            # the inputs are what the feature configuration makes
            motion_dim=feature_dims(fconfig)[0],
            geometry_dim=feature_dims(fconfig)[1],
            causal=not args.non_causal,
            input_norm=not args.no_input_norm,
            neutral_s=args.neutral_s,
            lookahead=lookahead,
        ),
    )
    offered = candidates(config, selection) if selection else None  # every combination, checked now
    main = group is None or group.is_main  # the process that prints and writes the run
    dataset, media = load_annotations(args)
    if main:
        print(dataset.summary(), file=sys.stderr)
    if args.loso:
        dataset.folds(args.group)  # before extracting: fewer than two groups fails here
    with distributed.main_first():  # rank 0 fills the feature cache, the others read it
        dataset, features = annotated_features(args, dataset, media, fconfig)
    out = Path(args.out)
    label = f"{args.method} ({network_name}, {'non-causal' if args.non_causal else 'causal'})"
    if lookahead:
        label = f"{label[:-1]}, look-ahead {lookahead} snippets = {lookahead * fconfig.hop_s:.3g} s)"
    if args.loso:
        result = loso(
            dataset,
            features,
            config,
            group=args.group,
            folds=args.folds,
            progress=not args.quiet,
            operating_point=args.operating_point,
            select=None
            if offered is None
            else selector(features, offered, group=args.group, progress=not args.quiet),
        )
        if not main:
            return 0
        print(
            f"{label}, {protocol_header(dataset, args.group, len(result.folds))} ({dataset.name}), "
            f"{result.wall_s:.0f} s"
        )
        print(result.report.table())
        for held_out, chosen in result.selections.items():
            inner = ", ".join(f"{lab}: {f1:.3f}" for lab, f1 in zip(chosen.labels, chosen.f1, strict=True))
            print(
                f"fold {held_out}: its training identities selected {chosen.label} (out-of-fold F1 {inner})"
            )
        held_out_latency = pooled(list(result.latency.values()))
        print(
            f"estimated live event latency of the held-out videos (budget ME {LATENCY_BUDGET_S['me']:g} s, "
            f"MaE {LATENCY_BUDGET_S['mae']:g} s): {held_out_latency.summary()}"
        )
        out.mkdir(parents=True, exist_ok=True)
        for held_out, network in result.networks.items():
            if not config.network.causal:
                continue  # a non-causal network cannot be windowed; its scores are in the report
            fold = result.plan[held_out]
            # One held-out subject is recorded as before (calibration reads held_out_subject).
            single = {"held_out_subject": fold.test_subjects[0]} if len(fold.test_subjects) == 1 else {}
            save_bundle(
                out / "folds" / f"{fold_file_name(held_out)}.mespot",
                network,
                result.configs.get(held_out, config),
                fconfig,
                operating_point=result.operating_points[held_out],
                metadata=run_metadata(
                    args,
                    dataset,
                    group=result.group,
                    held_out=held_out,
                    **single,
                    held_out_subjects=list(fold.test_subjects),
                    train_subjects=list(fold.train_subjects),
                    train_groups=list(fold.train_groups),
                    train_report=result.train_reports[held_out].to_dict(),
                    operating_point_scores=args.operating_point,
                    held_out_report=result.folds[held_out].to_dict(),
                    **(
                        {"selection": result.selections[held_out].to_dict()}
                        if held_out in result.selections
                        else {}
                    ),
                ),
                overwrite=True,
            )
        (out / "loso_report.json").write_text(
            json.dumps(
                {
                    "format": "mespot-loso/1",
                    "label": label,
                    "dataset": dataset.name,
                    "annotations": str(Path(args.annotations).resolve()),
                    **protocol_record(result.group, result.plan.values()),
                    "feature_config": fconfig.to_dict(),
                    "train_config": config.to_dict(),
                    "report": result.report.to_dict(),
                    "pooled": result.report.pooled.to_dict(),
                    "folds": {s: r.pooled.to_dict() for s, r in result.folds.items()},
                    "operating_points": {s: op.to_dict() for s, op in result.operating_points.items()},
                    "operating_point_scores": args.operating_point,
                    "latency_budget_s": dict(LATENCY_BUDGET_S),
                    "event_latency": held_out_latency.to_dict(),
                    "train_f1": {s: r.overall.f1 for s, r in result.train_reports.items()},
                    "selection": {s: sel.to_dict() for s, sel in result.selections.items()},
                    "histories": result.histories,
                    "wall_s": result.wall_s,
                    "processes": distributed.describe(group),
                },
                indent=2,
            )
        )
        write_megc_csv(out / "loso_predictions.csv", result.predictions)
        print(f"report, MEGC predictions and per-fold bundles in {out}", file=sys.stderr)
        return 0
    videos = [(v, features[v.video]) for v in dataset.videos if v.video in features]
    chosen = None
    if offered is not None:
        # One leave-one-out per candidate over every identity; the bundle trains with the winner.
        chosen = select_training_config(dataset, features, offered, group=args.group, progress=not args.quiet)
        config = chosen.config
        if main:
            inner = ", ".join(f"{lab}: {f1:.3f}" for lab, f1 in zip(chosen.labels, chosen.f1, strict=True))
            print(f"selected {chosen.label} (out-of-fold F1 {inner})")
    network, history = train(videos, config, progress=not args.quiet)
    method = build_method(config.method, network, config.method_options)
    if args.operating_point == "out-of-fold" and chosen is not None:
        scores = chosen.scores
    elif args.operating_point == "out-of-fold":
        scores = cross_validated_scores(dataset, features, config, group=args.group, progress=not args.quiet)
    else:
        scores = {r.video: predict(network, method, f) for r, f in videos}
    point, report = choose_operating_point(
        videos,
        scores,
        config.proposals,
        method.operating_grid(),
        lookahead_s=lookahead_seconds(config.network.lookahead, fconfig),
    )
    if not main:
        return 0
    save_bundle(
        out,
        network,
        config,
        fconfig,
        operating_point=point,
        metadata=run_metadata(
            args,
            dataset,
            train_subjects=sorted({v.subject for v, _ in videos}),
            train_report=report.to_dict(),
            operating_point_scores=args.operating_point,
            **({"selection": chosen.to_dict()} if chosen is not None else {}),
            history=history,
            processes=distributed.describe(group),
        ),
        overwrite=True,
    )
    print(f"{label} trained on {len(videos)} videos; on them, at the chosen operating point:")
    print(report.table())
    print(f"bundle -> {out}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    tr = sub.add_parser(
        "train",
        help="train a spotting network (leave-one-identity-out with --loso)",
        description="Train a spotting network with a supervision method; with --loso, train one model "
        "per held-out identity (every subject of one person; --group subject: one subject), choose "
        "its operating point on the training identities, and report the pooled metrics.",
    )
    add_dataset_options(tr)
    tr.add_argument(
        "--method",
        default="full",
        help="supervision: mcwes (video-level labels), pwes (one random frame per expression), "
        "gim (one frame, Gaussian soft labels) or full (every frame, the upper bound)",
    )
    tr.add_argument(
        "--option",
        "-O",
        action="append",
        metavar="KEY=VALUE",
        help="a method option (repeatable), e.g. -O mplg=false; see the method's config",
    )
    tr.add_argument(
        "--network", help="network: mcwes (CSCM) or gim (default: the one the method's paper uses)"
    )
    tr.add_argument("--non-causal", action="store_true", help="the non-causal twin (papers' global forms)")
    tr.add_argument(
        "--lookahead-s",
        type=float,
        default=0.0,
        metavar="S",
        help="let the causal network see S seconds past the snippet it scores, a whole number of "
        "snippet hops (--hop-s); live scores and events come S seconds later (default 0: strictly causal)",
    )
    tr.add_argument(
        "--neutral-s",
        type=float,
        help="normalise each video / stream by its first S seconds of resting face (calibration.neutral)",
    )
    tr.add_argument(
        "--no-input-norm", action="store_true", help="feed raw features (no training-set standardisation)"
    )
    tr.add_argument(
        "--augment",
        type=float,
        default=0.0,
        metavar="STRENGTH",
        help="feature-space augmentation for new people in [0, 2]: motion gain, face-shape offset, "
        "noise (engine.train.augment_batch; default 0, off)",
    )
    tr.add_argument(
        "--proposal-mode",
        choices=("top", "threshold"),
        help="multi-top (MC-WES) or multi-threshold (GIM) proposals (default: the method's)",
    )
    tr.add_argument(
        "--loso", action="store_true", help="leave-one-out evaluation (leave-one-identity-out; see --group)"
    )
    add_group_option(tr)
    tr.add_argument(
        "--operating-point",
        default="own",
        choices=("own", "out-of-fold"),
        help="choose the operating point on the model's own scores of its training videos (default), "
        "or on out-of-fold scores of them from a leave-one-out run over the training groups (the "
        "scores a new person gets; nested under --loso: one more training per training group)",
    )
    tr.add_argument(
        "--select",
        action="append",
        metavar="FIELD=[V1,V2,...]",
        help="let the training identities choose a training option: each candidate is run "
        "leave-one-out over them and the best out-of-fold F1 wins (nested in every fold under "
        "--loso). FIELD: augment, lr, epochs, batch_size, weight_decay, steps_per_epoch, clip_s (null: "
        "whole videos), or "
        "option.KEY for a method option; repeat for every combination (engine.selection)",
    )
    tr.add_argument("--folds", type=int, help="only the first N folds (quick runs)")
    tr.add_argument("--epochs", type=int, help="passes over the training data (default: the method's)")
    tr.add_argument("--batch-size", type=int, help="windows or whole videos per step (default: the method's)")
    tr.add_argument("--lr", type=float, help="Adam learning rate (default: the method's)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument(
        "--ensemble",
        type=int,
        default=1,
        metavar="N",
        help="train N networks alike, with seeds SEED .. SEED+N-1, into one bundle that scores with "
        "their mean (steadier on new people; N times the training and the scoring; default 1)",
    )
    tr.add_argument(
        "--clip-s",
        type=float,
        metavar="S",
        help="whole-video methods: train on clips of about S seconds cut from the training videos, "
        "each labelled by the expressions it holds (engine.data.clips; labels per clip, not per "
        "video); scoring stays on whole videos (default: whole videos)",
    )
    tr.add_argument(
        "--out",
        required=True,
        help="model bundle folder (e.g. model.mespot), or with --loso the report folder "
        "(per-fold bundles in folds/)",
    )
    add_feature_options(tr)
    tr.set_defaults(func=cmd_train)
    return tr
