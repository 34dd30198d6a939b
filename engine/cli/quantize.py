"""`mespot quantize`: an INT8 or FP16 scorer, checked against FP32."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from calibration.operating_point import calibration_subjects, dataset_videos
from calibration.quantize import (
    CALIBRATION_METHODS,
    DEFAULT_WINDOWS,
    F1_TOLERANCE,
    QUANTIZE_PRECISIONS,
    f1_check,
    feature_windows,
    fp16_graph,
    quantize_int8,
    record_check,
)
from engine.bundle import load_bundle
from stream.errors import ConfigError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``mespot quantize`` to a CLI's subparsers (handler: `cmd_quantize`)."""
    from engine.cli.options import add_dataset_options

    p = subparsers.add_parser(
        "quantize",
        help="INT8 (Q/DQ, calibrated on real features) or FP16 scorer for TensorRT, with an F1 check",
        description="INT8: insert Q/DQ nodes into the bundle's FP32 ONNX scorer, with activation ranges "
        "calibrated on windows of the training videos' real features, and list scorer.int8.onnx in the "
        "bundle (TensorRT: mespot export BUNDLE --format tensorrt --precision int8 --onnx "
        "BUNDLE/scorer.int8.onnx). FP16: export scorer.fp16.onnx. Both: score the dataset with the FP32 "
        f"and the new graph at the bundle's operating point; exit 1 when the F1 moves by more than "
        f"{F1_TOLERANCE:g}.",
    )
    p.add_argument("bundle", help="the model bundle folder (NAME.mespot)")
    add_dataset_options(p)
    p.add_argument("--precision", default="int8", choices=QUANTIZE_PRECISIONS, help="int8 (default) or fp16")
    p.add_argument(
        "--calibration-windows",
        type=int,
        default=DEFAULT_WINDOWS,
        help=f"int8: windows of W snippets from the training videos (default {DEFAULT_WINDOWS})",
    )
    p.add_argument(
        "--calibration-method", default="minmax", choices=CALIBRATION_METHODS, help="int8: range estimator"
    )
    p.add_argument(
        "--full-range-weights",
        action="store_true",
        help="int8: 8-bit weights (TensorRT only; onnxruntime's CPU kernels without VNNI saturate)",
    )
    p.add_argument("--seed", type=int, default=0, help="int8: seed of the window draw")
    p.add_argument(
        "--subjects", nargs="+", help="the F1 check's subjects (default: every video of the dataset)"
    )
    p.add_argument(
        "--max-f1-change",
        type=float,
        default=F1_TOLERANCE,
        help=f"largest F1 change from FP32 that passes (default {F1_TOLERANCE:g})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_quantize)
    return p


def cmd_quantize(args: argparse.Namespace) -> int:
    """Handler of ``mespot quantize``."""
    from engine.cli.options import load_annotations

    bundle = load_bundle(args.bundle)
    dataset, media = load_annotations(args)
    videos = dataset_videos(
        dataset, media, Path(args.features), bundle, args.subjects, skip_empty=args.skip_empty
    )
    if not videos:
        raise ConfigError(f"no video of {args.annotations} has features for {bundle.path}")
    if args.precision == "int8":
        subjects, _ = calibration_subjects(bundle, dataset.subjects())  # the training subjects
        training = dataset_videos(
            dataset, media, Path(args.features), bundle, subjects, skip_empty=args.skip_empty
        )
        windows = feature_windows(training, int(bundle.window or 1), args.calibration_windows, seed=args.seed)
        graph = quantize_int8(
            bundle.path,
            windows,
            calibration_method=args.calibration_method,
            reduce_range=not args.full_range_weights,
            details={
                "seed": args.seed,
                "videos": len(training),
                "subjects": subjects,
                "dataset": dataset.name,
                "annotations": str(Path(args.annotations).resolve()),
            },
        )
    else:
        graph = fp16_graph(bundle.path)
    check = f1_check(bundle.path, videos, graph, tolerance=args.max_f1_change)
    record_check(bundle.path, graph.name, check)
    ref, cand = check["reference"], check["candidate"]
    print(f"{graph.name}: {check['videos']} videos at the bundle's operating point")
    print(f"{'graph':<20}{'ME F1':>8}{'MaE F1':>8}{'F1':>8}")
    for row in (ref, cand):
        print(f"{row['file']:<20}{row['me_f1']:>8.4f}{row['mae_f1']:>8.4f}{row['f1']:>8.4f}")
    print(
        f"F1 change {check['f1_difference']:+.4f} (allowed {args.max_f1_change:g}), "
        f"largest score change {check['max_abs_score_difference']:.4f}"
    )
    if not check["passed"]:
        print(
            f"error: {graph.name} changes the F1 by {check['f1_difference']:+.4f}, more than "
            f"{args.max_f1_change:g}; it stays in the bundle, marked f1_check.passed=false",
            file=sys.stderr,
        )
        return 1
    print(f"{graph.name} -> {bundle.path}", file=sys.stderr)
    return 0
