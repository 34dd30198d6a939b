"""Where a run's misses and false alarms come from, per expression type.

    python benchmarks/where_misses_go.py PREDICTIONS.csv ANNOTATIONS [--dataset csv] [--iou 0.5]

PREDICTIONS is a MEGC CSV: a leave-one-out run's ``loso_predictions.csv``, ``mespot eval``'s
``predictions.csv`` or a replay's. Each ground-truth expression falls in the first class that
fits:

- **found**: matched (mespot's one-to-one rule, `engine.evaluate.match`);
- **mistyped**: not matched, but a prediction of the other type reaches the IoU threshold with
  it (localised, typed wrong);
- **mislocalised**: some prediction overlaps it, none reaches the threshold;
- **missed**: no prediction overlaps it.

Each false alarm likewise: **wrong type** (it reaches the threshold with a truth of the other
type), **fragment** (it overlaps a truth of its own type, below the threshold, or one already
taken), **background** (it overlaps no truth).

A miss that is mostly "mistyped" asks for a better type rule; "mislocalised" for finer boundaries
(grid, proposals, look-ahead); "missed" for a stronger score. Only videos with predictions or
truths count; the IoU rule is the evaluation's (inclusive frames).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from engine.data import load_dataset
from engine.evaluate import match, read_megc_csv
from stream.intervals import ExpressionType, Interval

TRUTH_CLASSES = ("found", "mistyped", "mislocalised", "missed")
ALARM_CLASSES = ("wrong type", "fragment", "background")


def iou(a: Interval, b: Interval) -> float:
    inter = min(a.offset, b.offset) - max(a.onset, b.onset) + 1
    return inter / (a.length + b.length - inter) if inter > 0 else 0.0


def classify(
    predictions: list[Interval], truths: list[Interval], threshold: float
) -> tuple[Counter, Counter]:
    """(truth classes, false-alarm classes) of one video, keyed by (type, class)."""
    result = match(predictions, truths, threshold)
    matched_pred = {i for i, _ in result.pairs}
    matched_truth = {j for _, j in result.pairs}
    truth_out: Counter = Counter()
    for j, truth in enumerate(truths):
        if j in matched_truth:
            kind = "found"
        else:
            overlaps = [(iou(p, truth), p.type) for p in predictions if iou(p, truth) > 0]
            if any(v >= threshold and t != truth.type for v, t in overlaps):
                kind = "mistyped"
            elif overlaps:
                kind = "mislocalised"
            else:
                kind = "missed"
        truth_out[(truth.type, kind)] += 1
    alarm_out: Counter = Counter()
    for i, pred in enumerate(predictions):
        if i in matched_pred:
            continue
        values = [(iou(pred, t), t.type) for t in truths]
        if any(v >= threshold and t != pred.type for v, t in values):
            kind = "wrong type"
        elif any(v > 0 and t == pred.type for v, t in values):
            kind = "fragment"
        elif any(v > 0 for v, _ in values):
            kind = "wrong type"  # overlaps only the other type's expressions
        else:
            kind = "background"
        alarm_out[(pred.type, kind)] += 1
    return truth_out, alarm_out


def table(title: str, classes: tuple[str, ...], counts: Counter) -> str:
    """A markdown table: one row per expression type, one column per class, and the total."""
    lines = ["", f"| {title} | " + " | ".join(classes) + " | total |", "|---" * (len(classes) + 2) + "|"]
    for etype in (ExpressionType.ME, ExpressionType.MAE):
        row = [counts[(etype, k)] for k in classes]
        lines.append(f"| {etype.value} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("predictions", type=Path)
    parser.add_argument("annotations", type=Path)
    parser.add_argument("--dataset", default="csv", help="annotation layout (default csv)")
    parser.add_argument("--iou", type=float, default=0.5)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset, args.annotations)
    predicted = read_megc_csv(args.predictions)
    unknown = sorted(set(predicted) - {v.video for v in dataset.videos})
    if unknown:
        raise SystemExit(f"{args.predictions}: videos not in {args.annotations}: {unknown[:5]}")
    truths_n: Counter = Counter()
    alarms_n: Counter = Counter()
    for video in dataset.videos:
        t, a = classify(predicted.get(video.video, []), list(video.expressions), args.iou)
        truths_n += t
        alarms_n += a
    print(f"{args.predictions} against {args.annotations}, IoU >= {args.iou}")
    print(table("truths", TRUTH_CLASSES, truths_n))
    print(table("false alarms typed", ALARM_CLASSES, alarms_n))


if __name__ == "__main__":
    main()
