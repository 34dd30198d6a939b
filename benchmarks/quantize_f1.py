"""FP32 vs INT8 (vs FP16) scorers: F1 at the bundle's operating point, score change, CPU latency.

    python benchmarks/quantize_f1.py BUNDLE ANNOTATIONS --features DIR [--dataset csv]
        [--subjects S ...] [--precisions fp32 int8 fp16] [--calibration-windows 256] [--requantize]
        [--json OUT.json]

Every video of the dataset (or of --subjects) is scored through the live path
(``engine.runtime.StreamScorer`` over onnxruntime, CPU, one thread) with each ONNX graph of the
bundle, spotted at the bundle's operating point (``Bundle.proposal_config``) and evaluated; the
torch whole-sequence forward is the first row. Missing graphs are made first and listed in the
bundle, as ``mespot export`` / ``mespot quantize`` would: ``scorer.onnx`` (FP32),
``scorer.int8.onnx`` (Q/DQ, calibrated on windows of the bundle's training videos; --requantize
makes it again) and ``scorer.fp16.onnx``.

Columns: TP / FP / FN and F1 pooled over the videos (overall, ME, MaE), the F1 change from the
FP32 graph (the INT8 acceptance bound is |change| <= 0.01), the largest score change from the
FP32 graph on any valid snippet, and the mean milliseconds per ``StreamScorer.push`` (one window
of W snippets; informative only, it depends on the CPU and its load).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from calibration.operating_point import (  # noqa: E402
    bundle_scores,
    calibration_subjects,
    dataset_videos,
)
from calibration.quantize import (  # noqa: E402
    DEFAULT_WINDOWS,
    F1_TOLERANCE,
    INT8_FILE,
    feature_windows,
    fp16_graph,
    quantize_int8,
)
from engine.bundle import Bundle, load_bundle  # noqa: E402
from engine.data import load_dataset  # noqa: E402
from engine.evaluate import Report, evaluate  # noqa: E402
from engine.export import export_onnx  # noqa: E402
from engine.runtime import OnnxRuntimeBackend, StreamScorer, sequence_snippets  # noqa: E402
from engine.train import Scores, Video, spot  # noqa: E402


def graph_of(bundle: Bundle, precision: str, args: argparse.Namespace, dataset: Any, media: Path) -> Path:
    """The bundle's graph of a precision, made (and listed) when missing."""
    if precision == "fp32":
        found = bundle.artifacts("onnx", "fp32")
        return bundle.file(found[0][0]) if found else export_onnx(bundle.path)
    if precision == "fp16":
        return fp16_graph(bundle.path)
    found = bundle.artifacts("onnx", "int8")
    if found and not args.requantize:
        return bundle.file(found[0][0])
    subjects, _ = calibration_subjects(bundle, dataset.subjects())
    training = dataset_videos(dataset, media, Path(args.features), bundle, subjects)
    windows = feature_windows(training, int(bundle.window or 1), args.calibration_windows, seed=args.seed)
    print(f"quantising: {len(windows)} windows of {len(training)} training videos", file=sys.stderr)
    return quantize_int8(bundle.path, windows, details={"seed": args.seed, "subjects": subjects})


def stream_graph(bundle: Bundle, graph: Path, videos: list[Video]) -> tuple[dict[str, Scores], float]:
    """Scores of every video through StreamScorer on one graph, and the mean ms per push."""
    out: dict[str, Scores] = {}
    pushes, elapsed = 0, 0.0
    with OnnxRuntimeBackend(bundle, path=graph, threads=1) as backend:
        for rec, feats in videos:
            scorer = StreamScorer(backend)
            rows = []
            snippets = sequence_snippets(feats.motion, feats.geometry, feats.valid, feats.snippet_s)
            for snippet in snippets:
                start = time.perf_counter()
                row = scorer.push(snippet)  # None for the first L snippets of a look-ahead network
                elapsed += time.perf_counter() - start
                pushes += 1
                if row is not None:
                    rows.append(row)
            rows += scorer.flush()  # the last L scores (none for a strictly causal network)
            cls = np.array([r.class_scores for r in rows], dtype=np.float64).reshape(len(rows), 2)
            act = np.array([r.actionness for r in rows], dtype=np.float64)
            out[rec.video] = (cls, act)
    return out, 1000.0 * elapsed / max(pushes, 1)


def report_of(videos: list[Video], scores: dict[str, Scores], bundle: Bundle) -> Report:
    point = bundle.proposal_config()
    preds = {r.video: spot(scores[r.video], (r, f), point) for r, f in videos}
    truths = {r.video: list(r.expressions) for r, _ in videos}
    return evaluate(preds, truths, {r.video: f.fps for r, f in videos})


def max_change(a: dict[str, Scores], b: dict[str, Scores]) -> float:
    worst = 0.0
    for video, pair in a.items():
        for x, y in zip(pair, b[video], strict=True):
            d = np.abs(x - y)
            if np.isfinite(d).any():
                worst = max(worst, float(np.nanmax(d)))
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="the model bundle folder")
    p.add_argument("annotations", help="annotation file (generic CSV or a dataset layout)")
    p.add_argument("--features", required=True, help="feature cache folder")
    p.add_argument("--dataset", default="csv", help="casme2, samm-lv, casme3 or csv (default)")
    p.add_argument("--root", help="dataset root with the frame folders")
    p.add_argument("--media", help="folder of the videos (default: videos/ beside the annotations)")
    p.add_argument("--subjects", nargs="+", help="only these subjects (default: every video)")
    p.add_argument(
        "--precisions", nargs="+", default=["fp32", "int8", "fp16"], choices=("fp32", "int8", "fp16")
    )
    p.add_argument("--calibration-windows", type=int, default=DEFAULT_WINDOWS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--requantize", action="store_true", help="make scorer.int8.onnx again")
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    bundle = load_bundle(args.bundle)
    dataset = load_dataset(args.dataset, args.annotations, **({"root": Path(args.root)} if args.root else {}))
    media = Path(args.media) if args.media else Path(args.annotations).resolve().parent / "videos"
    videos = dataset_videos(dataset, media, Path(args.features), bundle, args.subjects)
    if not videos:
        print(f"error: no video of {args.annotations} has features", file=sys.stderr)
        return 2
    precisions = ["fp32", *[x for x in args.precisions if x != "fp32"]]  # FP32 is the reference
    graphs = {x: graph_of(bundle, x, args, dataset, media) for x in precisions}
    bundle = load_bundle(bundle.path)  # the new graphs are listed now

    rows: list[dict[str, Any]] = []
    torch_scores = bundle_scores(bundle, videos)
    results: dict[str, tuple[Report, dict[str, Scores], float | None, str]] = {
        "torch fp32 (whole video)": (
            report_of(videos, torch_scores, bundle),
            torch_scores,
            None,
            "weights.pt",
        )
    }
    for precision, graph in graphs.items():
        try:
            scores, ms = stream_graph(bundle, graph, videos)
        except Exception as exc:  # e.g. a precision this onnxruntime build cannot run on the CPU
            print(f"{precision}: cannot run on onnxruntime here: {exc}", file=sys.stderr)
            continue
        results[f"onnxruntime {precision}"] = (report_of(videos, scores, bundle), scores, ms, graph.name)
    ref_report, ref_scores, _, _ = results.get("onnxruntime fp32", results["torch fp32 (whole video)"])
    for label, (report, scores, ms, file) in results.items():
        rows.append(
            {
                "scorer": label,
                "file": file,
                "tp": report.overall.tp,
                "fp": report.overall.fp,
                "fn": report.overall.fn,
                "f1": report.overall.f1,
                "me_f1": report.me.f1,
                "mae_f1": report.mae.f1,
                "f1_change": report.overall.f1 - ref_report.overall.f1,
                "max_score_change": max_change(ref_scores, scores),
                "ms_per_push": ms,
            }
        )

    n_min = sum(len(f.valid) * f.snippet_s for _, f in videos) / 60
    print(
        f"# {bundle.path.name} on {dataset.name} ({args.annotations}): {len(videos)} videos, "
        f"{n_min:.1f} min; "
        f"operating point from the bundle; {date.today()}, {platform.processor() or platform.machine()}, "
        f"onnxruntime CPU 1 thread"
    )
    print(f"# python benchmarks/quantize_f1.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    head = (
        f"| {'scorer':<26} | {'file':<18} | {'TP':>4} | {'FP':>4} | {'FN':>4} | {'F1':>6} | {'ME F1':>6} | "
        f"{'MaE F1':>6} | {'dF1':>7} | {'max dscore':>10} | {'ms/push':>7} |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        ms = "" if r["ms_per_push"] is None else f"{r['ms_per_push']:.3f}"
        print(
            f"| {r['scorer']:<26} | {r['file']:<18} | {r['tp']:>4} | {r['fp']:>4} | {r['fn']:>4} | "
            f"{r['f1']:>6.4f} | {r['me_f1']:>6.4f} | {r['mae_f1']:>6.4f} | {r['f1_change']:>+7.4f} | "
            f"{r['max_score_change']:>10.4f} | {ms:>7} |"
        )
    int8 = next((r for r in rows if r["scorer"] == "onnxruntime int8"), None)
    if int8 is not None:
        verdict = "within" if abs(int8["f1_change"]) <= F1_TOLERANCE else "OUTSIDE"
        print(f"INT8 ({INT8_FILE}) F1 change {int8['f1_change']:+.4f}: {verdict} the {F1_TOLERANCE:g} bound")
    if args.json:
        Path(args.json).write_text(json.dumps({"videos": len(videos), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    from stream.errors import MespotError

    try:
        sys.exit(main())
    except MespotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
