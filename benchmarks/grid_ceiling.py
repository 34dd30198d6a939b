"""What each snippet grid allows at best: perfect scores through the one proposal path.

    python benchmarks/grid_ceiling.py --recipe synthspot-v2
    python benchmarks/grid_ceiling.py --annotations data/synthspot-v1/annotations.csv

For every grid step (8, 4 and 2 frames at 30 fps) and type rule, each video's exact per-snippet
labels (the ME and MaE columns full supervision trains on) are spotted with `engine.proposals`
and matched to the ground truth (IoU >= 0.5, right type): the recall ceiling of any model on
that grid. A recipe's annotations are computed from the recipe alone (no rendering).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from datetime import date
from pathlib import Path

from engine.data import load_dataset
from engine.evaluate import grid_ceiling
from engine.proposals import ProposalConfig


def recipe_annotations(name: str, folder: Path) -> Path:
    """annotations.csv of a fixed synthetic recipe, from its timelines alone."""
    from stream.synth.dataset import CSV_COLUMNS, IDENTITY_COLUMNS, RECIPES, recipe_rows, write_csv

    recipe = RECIPES[name]
    rows, _ = recipe_rows(recipe)
    path = folder / "annotations.csv"
    write_csv(path, rows, IDENTITY_COLUMNS if recipe.persons else CSV_COLUMNS)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--recipe", help="a fixed synthetic recipe (synthspot-v1, synthspot-v2)")
    src.add_argument("--annotations", type=Path, help="a generic annotation CSV")
    ap.add_argument(
        "--seconds", type=float, help="video length for the snippet count (default: the recipe's)"
    )
    ap.add_argument("--grids", type=int, nargs="+", default=[8, 4, 2], help="grid steps in frames at 30 fps")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.annotations or recipe_annotations(args.recipe, Path(tmp))
        dataset = load_dataset("csv", path)
    if args.recipe:
        from stream.synth.dataset import RECIPES

        seconds = args.seconds or RECIPES[args.recipe].seconds
    else:
        # without the videos, a video lasts until its last annotated frame plus 4 s
        seconds = args.seconds
    print(f"# grid_ceiling {date.today()}: {args.recipe or args.annotations}")
    counts = dataset.counts()
    nested = sum(
        any(a is not b and a.onset <= b.offset + 1 and b.onset <= a.offset + 1 for b in v.expressions)
        for v in dataset.videos
        for a in v.expressions
    )
    print(
        f"{counts['videos']} videos, {counts['me']} ME, {counts['mae']} MaE; "
        f"{nested} expressions touch or overlap another"
    )
    print("| grid | type rule | ME recall | MaE recall | overall recall | overall precision |")
    print("|---|---|---|---|---|---|")
    for g in args.grids:
        snippet_s = g / 30
        n = {}
        for v in dataset.videos:
            last = max((iv.offset for iv in v.expressions), default=0) / v.fps
            n[v.video] = math.ceil((seconds or last + 4.0) / snippet_s)
        rules = {
            "duration": ProposalConfig(type_rule="duration", duration_tolerance_hops=0),
            "duration, one hop of tolerance": ProposalConfig(type_rule="duration", duration_tolerance_hops=1),
            "class": ProposalConfig(type_rule="class"),
            "class, spans from each class too": ProposalConfig(type_rule="class", class_spans=True),
        }
        for rule, config in rules.items():
            report = grid_ceiling(dataset.videos, snippet_s, config, n)
            me, mae, overall = report.me, report.mae, report.overall
            print(
                f"| {g} frames ({snippet_s:.3f} s) | {rule} | {me.recall:.3f} | {mae.recall:.3f} "
                f"| {overall.recall:.3f} | {overall.precision:.3f} |"
            )


if __name__ == "__main__":
    main()
