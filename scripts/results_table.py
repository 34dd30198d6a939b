"""Markdown rows of docs/results.md from `mespot train --loso` report folders.

    python scripts/results_table.py reports/gim reports/pwes ... [--folds s01 s02 ...]

Each row pools the per-fold counts (TP/FP/FN) of the report's folds, or of only the folds named
with --folds, so that runs over a subset of folds compare with full runs on the same folds. Folds
are named by what they hold out: identities for leave-one-identity-out runs (the default of
`mespot train --loso`), subjects for leave-one-subject-out runs (``--group subject``, and reports
from before the identity protocol). The folds column says which; runs of different protocols are
not comparable, and a table that mixes them gets a warning on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KEYS = ("me", "mae", "overall", "f1_me_0.5", "f1_me_1.0", "f1_me_p")


def f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    r = tp / (tp + fn) if tp + fn else 0.0
    p = tp / (tp + fp) if tp + fp else 0.0
    return r, p, (2 * r * p / (r + p) if r + p else 0.0)


def group_of(report: dict) -> str:
    """What the report's folds hold out: "identity" or "subject" (older reports: subject)."""
    return str(report.get("group", "subject"))


def pooled(report: dict, folds: list[str] | None) -> dict[str, tuple[float, float, float]]:
    names = folds or list(report["folds"])
    missing = [n for n in names if n not in report["folds"]]
    if missing:
        raise SystemExit(f"folds {missing} not in the report (has {list(report['folds'])})")
    out = {}
    for key in KEYS:
        tp = sum(report["folds"][n][key]["tp"] for n in names)
        fp = sum(report["folds"][n][key]["fp"] for n in names)
        fn = sum(report["folds"][n][key]["fn"] for n in names)
        out[key] = f1(tp, fp, fn)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--folds", nargs="+", help="pool only these folds (held-out identities, or subjects)")
    args = parser.parse_args()
    columns = ["run", "folds", "ME R / P / F1", "MaE R / P / F1", "overall R / P / F1"]
    columns += ["F1-ME(0.5)", "F1-ME(1.0)", "F1-ME(p)", "wall"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups = set()
    for run in args.runs:
        report = json.loads((run / "loso_report.json").read_text())
        groups.add(group_of(report))
        m = pooled(report, args.folds)
        cells = [" / ".join(f"{v:.3f}" for v in m[k]) for k in ("me", "mae", "overall")]
        cells[2] = cells[2].rsplit(" / ", 1)[0] + f" / **{m['overall'][2]:.3f}**"
        extra = [f"{m[k][2]:.3f}" for k in ("f1_me_0.5", "f1_me_1.0", "f1_me_p")]
        n = len(args.folds or report["folds"])
        noun = ("identity", "identities") if group_of(report) == "identity" else ("subject", "subjects")
        held = f"{n} {noun[n != 1]}"
        row = [report.get("label", run.name), held, *cells, *extra, f"{report['wall_s']:.0f} s"]
        print("| " + " | ".join(row) + " |")
    if len(groups) > 1:
        print(
            "warning: the table mixes leave-one-identity-out and leave-one-subject-out runs, "
            "which are not comparable",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
