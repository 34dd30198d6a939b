"""`mespot plot`: a video's per-snippet motion timeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.extract import extract_cached
from engine.cli.options import add_feature_options, feature_config


def cmd_plot(args: argparse.Namespace) -> int:
    import numpy as np

    from engine.plots import plot_timeline
    from stream.extract_cache import FeatureCache, load_features

    config = feature_config(args)
    source = Path(args.input)
    npz = extract_cached(
        source,
        config,
        FeatureCache(Path(args.features), config),
        force=args.force,
        quiet=args.quiet,
        source_fps=args.source_fps,
    )
    arrays = load_features(npz)
    truths, fps, first = (), config.fps, 0
    if args.annotations:
        from engine.data import load_dataset

        dataset = load_dataset(args.dataset, args.annotations)
        key = args.video or source.stem
        try:
            record = dataset.video(key)
        except KeyError:
            print(f"error: {args.annotations} has no video {key!r} (give --video)", file=sys.stderr)
            return 2
        truths, fps, first = record.expressions, record.fps, record.first_frame
    if first:  # frame numbers relative to the video's first frame
        import dataclasses

        truths = [
            dataclasses.replace(t, onset=t.onset - first, offset=t.offset - first, apex=None) for t in truths
        ]
    t = len(arrays["valid"])
    out = plot_timeline(
        Path(args.out),
        start_s=np.arange(t) * config.snippet_seconds,
        snippet_s=config.snippet_seconds,
        motion=arrays["motion"],
        geometry=arrays["geometry"],
        valid=arrays["valid"].astype(bool),
        roi_set=config.roi_set,
        config=config,
        fps=fps,
        truths=truths,
        title=source.name,
    )
    print(f"timeline of {t} snippets -> {out}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    pl = sub.add_parser(
        "plot",
        help="per-snippet facial motion timeline of a video (PNG)",
        description="Extract (or reuse) a video's snippet features and draw, per face part, "
        "the strongest region's motion and texture change over time; with --annotations, "
        "the ground-truth intervals are shaded.",
    )
    pl.add_argument("input", help="video file or frame folder")
    pl.add_argument("--out", required=True, help="PNG to write")
    pl.add_argument(
        "--annotations", help="annotation file holding this video (generic CSV or a dataset workbook)"
    )
    pl.add_argument("--dataset", default="csv", help="layout of --annotations (default csv)")
    pl.add_argument("--video", help="video id in the annotations (default: the input's file name stem)")
    pl.add_argument("--features", default="out/features", help="feature cache folder (default out/features)")
    add_feature_options(pl)
    pl.set_defaults(func=cmd_plot)
    return pl
