"""`mespot calibrate`: a bundle's operating point from its training subjects."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from calibration.operating_point import (
    BACKEND_NAMES,
    LATENCY_BUDGET_S,
    OBJECTIVES,
    TARGET_CLASSES,
    CalibrationError,
    calibrate_bundle,
    calibration_subjects,
    check_objective,
    dataset_videos,
    fold_bundles,
)
from engine.bundle import load_bundle
from stream.errors import ConfigError

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``mespot calibrate`` to a CLI's subparsers (handler: `cmd_calibrate`)."""
    from engine.cli.options import add_dataset_options

    p = subparsers.add_parser(
        "calibrate",
        help="choose a bundle's operating point (proposal thresholds) on its training subjects",
        description="Score the bundle's training subjects, sweep the proposal thresholds, min_score and "
        "NMS IoU, and store the point of best F1 (or the highest-recall point under a false-alarm rate) "
        "as the bundle's operating point, which mespot eval and the live runner use. One configuration "
        "serves both classes; per-class F1 and false alarms per minute are reported.",
    )
    p.add_argument("bundle", help="the model bundle folder (NAME.mespot)")
    add_dataset_options(p)
    p.add_argument("--objective", default="f1", choices=OBJECTIVES, help="f1 (default) or false-alarms")
    p.add_argument(
        "--max-fa-per-min",
        type=float,
        help="false alarms per minute of video allowed (needed by --objective false-alarms; with f1: a cap)",
    )
    p.add_argument(
        "--class",
        dest="target_class",
        default="overall",
        choices=TARGET_CLASSES,
        help="the class the objective is taken on (default overall)",
    )
    p.add_argument(
        "--subjects", nargs="+", help="calibrate on these subjects (default: the bundle's training subjects)"
    )
    p.add_argument(
        "--allow-other-subjects",
        action="store_true",
        help="allow subjects the bundle was not trained on (leaks held-out data into the operating point)",
    )
    p.add_argument("--plot", help="PNG of F1 against false alarms per minute (ME, MaE, overall)")
    p.add_argument(
        "--backend",
        default="torch",
        choices=BACKEND_NAMES,
        help="score with torch (default) or the ONNX graph on onnxruntime (the live path)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        help="onnxruntime: the bundle's graph of this precision (e.g. int8 after mespot quantize)",
    )
    p.add_argument(
        "--out-of-fold",
        metavar="LOSO_RUN",
        help="score each training subject with the fold bundle of this mespot train --loso run (same "
        "recipe) that held it out, and choose on those scores: what a new person's scores look like",
    )
    p.add_argument(
        "--grid",
        default="calibration",
        choices=("calibration", "training"),
        help="the grid searched: calibration's wider one (default) or the one training chose on "
        "(the method's operating grid; with the bundle's own scores it gives training's choice)",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--latency-budget",
        nargs=2,
        type=float,
        metavar=("ME_S", "MAE_S"),
        default=(LATENCY_BUDGET_S["me"], LATENCY_BUDGET_S["mae"]),
        help="the median live event latency allowed per type, in seconds, estimated by streaming the "
        "calibration videos' scores through the live spotter (default: the live budget, "
        f"{LATENCY_BUDGET_S['me']:g} and {LATENCY_BUDGET_S['mae']:g})",
    )
    budget.add_argument(
        "--no-latency-budget",
        action="store_true",
        help="choose without a latency budget (the chosen point's latency is still reported)",
    )
    p.add_argument("--dry-run", action="store_true", help="report the choice, leave the bundle unchanged")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_calibrate)
    return p


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Handler of ``mespot calibrate``."""
    from engine.cli.options import load_annotations

    if args.precision is not None and args.backend != "onnxruntime":
        raise ConfigError("--precision picks an ONNX graph: use it with --backend onnxruntime")
    check_objective(args.objective, args.max_fa_per_min, args.target_class)
    bundle = load_bundle(args.bundle)
    dataset, media = load_annotations(args)
    subjects, others = calibration_subjects(
        bundle, dataset.subjects(), args.subjects, allow_other_subjects=args.allow_other_subjects
    )
    videos = dataset_videos(dataset, media, Path(args.features), bundle, subjects, skip_empty=args.skip_empty)
    if not videos:
        raise CalibrationError(f"no video of subject(s) {subjects} has features in {args.features}")
    trained_on = bundle.metadata.get("annotations")
    given = str(Path(args.annotations).resolve())
    if trained_on is not None and trained_on != given:
        log.warning("%s was trained on %s; calibrating on %s", bundle.path, trained_on, given)
    folds = None if args.out_of_fold is None else fold_bundles(args.out_of_fold)
    grid = None
    if args.grid == "training":
        from engine.methods import METHODS

        grid = METHODS.get(bundle.method_name).operating_grid()
    result = calibrate_bundle(
        bundle.path,
        videos,
        objective=args.objective,
        max_fa_per_min=args.max_fa_per_min,
        target_class=args.target_class,
        backend=args.backend,
        precision=args.precision,
        info={"dataset": dataset.name, "annotations": given, "other_subjects": others},
        write=not args.dry_run,
        plot=args.plot,
        progress=not args.quiet,
        folds=folds,
        grid=grid,
        latency_budget=None
        if args.no_latency_budget
        else {"me": args.latency_budget[0], "mae": args.latency_budget[1]},
    )
    print(result.table())
    if args.plot:
        print(f"plot -> {args.plot}", file=sys.stderr)
    print(
        f"operating point {'NOT written (dry run)' if args.dry_run else 'stored in ' + str(bundle.path)}",
        file=sys.stderr,
    )
    return 0
