"""How hard a synthetic dataset is, and how well each feature configuration separates micro-expressions.

    python benchmarks/synth_difficulty.py DATASET_DIR --features FEATURE_CACHE \\
        [--config default] [--config robust] [--config 'NAME={"pooling": "robust"}'] [--eye-flow-ablation]

For every feature configuration given (a preset name, a JSON object, or NAME=JSON; default: the
default configuration), features come from the cache `mespot extract` / `mespot baseline` fill,
extracting what is missing (about 5 minutes per configuration for SynthSpot-v1 on 2 cores).

Snippet j's window covers canonical frames [(j + 1) * hop - window, (j + 1) * hop). A valid
snippet is labelled with an event of annotations.csv (me, mae) or distractors.csv (blink, head,
light) when its window overlaps the event by at least half of the shorter of the two; snippets
that overlap nothing are background; snippets with two kinds of label, or touching a mae, are
left out of the separation table.

Separation table (one row per configuration): ME snippets against distractor snippets (blink,
head and light together), in leave-one-base-photo-out folds (subjects.json's `base`: no morph of
a test photo is ever in training), AUROC averaged over the folds:
    best single   the snippet feature (any column, either sign) with the highest AUROC on the
                  training photos, scored on the held-out photo;
    probe         an L2-regularised, class-balanced logistic regression on all standardised
                  snippet features, trained on the training photos, scored on the held-out one;
    probe vs X    the same probe's AUROC against one distractor kind, and against background.

Peak table (the old difficulty measure, on the shortest flow scale's magnitudes): for each event,
the largest snippet-mean flow magnitude of any ROI over the snippets its window touches, divided
by that ROI's 99th percentile over the video's snippets that no event touches; median per kind.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from engine.data import load_dataset
from engine.data.features import VideoFeatures, dataset_features
from stream.config import FeatureConfig
from stream.features import ROI_SETS, feature_names, scale_label

PRESETS: dict[str, dict] = {
    # the layout before multi-scale flow and eye openness (single 0.1 s flow, mean, similarity)
    "v1": {"flow_scales_s": [0.1], "eye_openness": False},
    "multiscale": {"eye_openness": False},
    "default": {},
    "robust": {"pooling": "robust"},
    "affine": {"rigid_model": "affine"},
    "projective": {"rigid_model": "projective"},
}
KINDS = ("me", "mae", "blink", "head", "light")
DISTRACTORS = ("blink", "head", "light")


@dataclass
class Samples:
    """Labelled valid snippets of one configuration: features X (n, D), kind, base photo."""

    x: np.ndarray
    kind: np.ndarray  # "me", "blink", "head", "light", "bg"
    base: np.ndarray
    columns: list[str]


def parse_config(text: str) -> tuple[str, FeatureConfig]:
    """'preset', '{json}' or 'NAME={json}' -> (row name, configuration)."""
    if text in PRESETS:
        return text, FeatureConfig.from_dict(PRESETS[text])
    name, _, blob = text.partition("=") if not text.lstrip().startswith("{") else ("", "", text)
    if not blob:
        raise SystemExit(f"--config {text!r}: a preset ({', '.join(PRESETS)}), a JSON object or NAME=JSON")
    return name or blob, FeatureConfig.from_dict(json.loads(blob))


def read_events(dataset: Path) -> dict[str, list[tuple[str, int, int]]]:
    events: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for name in ("annotations.csv", "distractors.csv"):
        for row in csv.DictReader((dataset / name).open()):
            if row.get("type"):
                events[row["video"]].append((row["type"], int(row["onset"]), int(row["offset"])))
    return events


def windows(f: VideoFeatures, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(T,) first and one-past-last frame (video numbering) of each snippet's window."""
    hop = f.snippet_frames  # grid step in the video's frames
    window = config.window_s * f.fps if hasattr(config, "window_s") else hop
    end = (np.arange(len(f.valid)) + 1) * hop + f.first_frame
    return end - window, end


def overlap(a0: np.ndarray, a1: np.ndarray, on: int, off: int) -> np.ndarray:
    """(T,) frames of windows [a0, a1) inside the event's inclusive [on, off]."""
    return np.clip(np.minimum(a1, off + 1) - np.maximum(a0, on), 0, None)


def collect(
    feats: dict[str, VideoFeatures],
    config: FeatureConfig,
    events: dict[str, list[tuple[str, int, int]]],
    base_of: dict[str, str],
) -> Samples:
    xs, kinds, bases = [], [], []
    for video, f in feats.items():
        a0, a1 = windows(f, config)
        labels = [set() for _ in range(len(f.valid))]
        touched = np.zeros(len(f.valid), bool)
        for kind, on, off in events[video]:
            ov = overlap(a0, a1, on, off)
            touched |= ov > 0
            need = 0.5 * np.minimum(a1 - a0, off + 1 - on)
            for j in np.flatnonzero(ov >= need):
                labels[j].add(kind)
        for j in np.flatnonzero(f.valid):
            lab = labels[j]
            if not lab:
                if touched[j]:
                    continue  # grazes an event: neither that event nor background
                kind = "bg"
            elif len(lab) == 1 and "mae" not in lab:
                kind = next(iter(lab))
            else:
                continue
            xs.append(np.concatenate([f.motion[j], f.geometry[j]]))
            kinds.append(kind)
            bases.append(base_of[video])
    motion, geometry = feature_names(ROI_SETS.build(config.roi_set), config)
    columns = [f"{b}:{n}" for names in (motion, geometry) for b in ("mean", "max", "min") for n in names]
    return Samples(np.array(xs, np.float64), np.array(kinds), np.array(bases), columns)


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUROC of scores, ties counting half."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks of ties
    _, start, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = start + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    r = ranks[: len(pos)].sum()
    return float((r - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def column_aurocs(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """(D,) AUROC of every column."""
    return np.array([auroc(pos[:, d], neg[:, d]) for d in range(pos.shape[1])])


def fit_probe(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 25) -> np.ndarray:
    """Class-balanced logistic regression by Newton's method; returns (D + 1,) weights (bias last).

    The loss is the class-balanced mean log-loss plus l2 / n_positive * |w|^2 / 2 (bias unpenalised).
    """
    a = np.hstack([x, np.ones((len(x), 1))])
    cw = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    w = np.zeros(a.shape[1])
    reg = np.full(a.shape[1], l2 / max(y.sum(), 1))
    reg[-1] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(a @ w, -30, 30)))
        grad = a.T @ (cw * (p - y)) + reg * w
        hess = (a * (cw * p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def separation(
    s: Samples, keep: np.ndarray | None = None, negatives: tuple[str, ...] = DISTRACTORS
) -> dict[str, float]:
    """Leave-one-base-photo-out AUROCs (mean over folds) of ME against the `negatives` kinds."""
    x = s.x if keep is None else s.x[:, keep]
    cols = np.array(s.columns if keep is None else [c for c, k in zip(s.columns, keep, strict=True) if k])
    is_me, is_dis = s.kind == "me", np.isin(s.kind, negatives)
    out: dict[str, list[float]] = defaultdict(list)
    chosen: list[str] = []
    for base in np.unique(s.base):
        train, test = s.base != base, s.base == base
        if not (is_me & test).any() or not (is_me & train).any():
            continue
        # best single feature, sign chosen on the training photos
        au = column_aurocs(x[train & is_me], x[train & is_dis])
        d = int(np.nanargmax(np.abs(np.nan_to_num(au, nan=0.5) - 0.5)))
        sign = 1.0 if au[d] >= 0.5 else -1.0
        chosen.append(f"{'-' if sign < 0 else ''}{cols[d]}")
        out["single"].append(auroc(sign * x[test & is_me, d], sign * x[test & is_dis, d]))
        # linear probe on standardised features
        tr = train & (is_me | is_dis)
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        z = (x - mu) / sd
        w = fit_probe(z[tr], is_me[tr].astype(float))
        score = z @ w[:-1] + w[-1]
        out["probe"].append(auroc(score[test & is_me], score[test & is_dis]))
        for kind in negatives:
            out[f"probe_{kind}"].append(auroc(score[test & is_me], score[test & (s.kind == kind)]))
    res = {k: float(np.nanmean(v)) for k, v in out.items()}
    res["dims"] = x.shape[1]
    res["chosen"] = ", ".join(dict.fromkeys(chosen))  # type: ignore[assignment]
    return res


def ablations(config: FeatureConfig, eye_flow: bool, layout: bool) -> list[tuple[str, object]]:
    """(row label, column-name predicate of what to drop) per ablation row asked for."""
    short = f"@{scale_label(config.flow_scales_s[0])}."
    other_scales = lambda n: "@" in n and short not in n  # noqa: E731
    eye_open = lambda n: n.endswith((".open", ".dopen"))  # noqa: E731
    out: list[tuple[str, object]] = []
    if eye_flow:
        out.append(("- eye flow", lambda n: n.startswith("eye_") and "@" in n))
    if layout:
        out += [
            ("- longer scales", other_scales),
            ("- eye openness", eye_open),
            ("- longer scales - eye openness (v1 layout)", lambda n: other_scales(n) or eye_open(n)),
        ]
    return out


def peak_ratios(
    feats: dict[str, VideoFeatures],
    config: FeatureConfig,
    events: dict[str, list[tuple[str, int, int]]],
    scale: float,
) -> dict[str, np.ndarray]:
    names, _ = feature_names(ROI_SETS.build(config.roi_set), config)
    suffix = f"@{scale_label(scale)}.mag"
    mag = [i for i, n in enumerate(names) if n.endswith(suffix)]
    ratios: dict[str, list[float]] = defaultdict(list)
    for video, f in feats.items():
        m = f.motion[:, mag]  # (T, R) snippet-mean magnitude per ROI
        a0, a1 = windows(f, config)
        busy = np.zeros(len(m), bool)
        spans = []
        for kind, on, off in events[video]:
            hit = overlap(a0, a1, on, off) > 0
            busy |= hit
            spans.append((kind, hit & f.valid))
        background = np.percentile(m[~busy & f.valid], 99, axis=0)  # (R,)
        for kind, hit in spans:
            if hit.any():
                ratios[kind].append(float((m[hit] / background).max()))
    return {k: np.array(v) for k, v in ratios.items()}


def machine() -> str:
    """Host, CPU model and core count, for the header of the tables."""
    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    return f"{platform.node()}, {cpu}, {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--features", type=Path, required=True, help="feature cache root")
    ap.add_argument(
        "--config",
        action="append",
        default=[],
        help=f"a preset ({', '.join(PRESETS)}), a JSON feature configuration, or NAME=JSON; repeatable",
    )
    ap.add_argument(
        "--eye-flow-ablation",
        action="store_true",
        help="add a row per configuration without the eye ROIs' motion columns",
    )
    ap.add_argument(
        "--layout-ablation",
        action="store_true",
        help="add rows per configuration with only its shortest flow scale, without eye openness, "
        "and with neither (column subsets of the same extraction)",
    )
    args = ap.parse_args()
    configs = [parse_config(c) for c in args.config or ["default"]]
    ds = load_dataset("csv", args.dataset / "annotations.csv")
    events = read_events(args.dataset)
    subject_base = {d["name"]: d["base"] for d in json.loads((args.dataset / "subjects.json").read_text())}
    base_of = {r.video: subject_base.get(r.subject, r.subject) for r in ds.videos}
    rows, peaks = [], []
    for name, config in configs:
        feats = dataset_features(ds, args.dataset / "videos", args.features, config)
        s = collect(feats, config, events, base_of)
        rows.append((name, config, s, separation(s), separation(s, None, ("bg",))))
        for label, drop in ablations(config, args.eye_flow_ablation, args.layout_ablation):
            keep = np.array([not drop(c.split(":", 1)[1]) for c in s.columns])
            if not keep.all():
                rows.append((f"{name} {label}", config, s, separation(s, keep), separation(s, keep, ("bg",))))
        for scale in config.flow_scales_s:
            peaks.append((f"{name} @{scale_label(scale)}", peak_ratios(feats, config, events, scale)))
    s0 = rows[0][2]
    counts = ", ".join(f"{k} {int((s0.kind == k).sum())}" for k in ("me", *DISTRACTORS, "bg"))
    print(f"# synth_difficulty {date.today()} on {machine()}")
    print(f"dataset {args.dataset}; snippets ({configs[0][0]}): {counts}; folds: leave one base photo out")
    print()
    print("ME against distractors (blink + head + light), and against background (a separate probe):")
    print()
    print(
        "| configuration | dims | best single | probe | probe vs blink | vs head | vs light "
        "| bg: best single | bg: probe |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _, _, r, b in rows:
        print(
            f"| {name} | {r['dims']} | {r['single']:.3f} | {r['probe']:.3f} | {r['probe_blink']:.3f} | "
            f"{r['probe_head']:.3f} | {r['probe_light']:.3f} | {b['single']:.3f} | {b['probe']:.3f} |"
        )
    print()
    print("best single features chosen (per fold; against distractors / against background):")
    for name, _, _, r, b in rows:
        print(f"- {name}: {r['chosen']} / {b['chosen']}")
    print()
    print("median peak / background p99 (share above 2), per flow scale:")
    print("| configuration | " + " | ".join(KINDS) + " |")
    print("|---|" + "---|" * len(KINDS))
    for name, ratios in peaks:
        cells = [
            f"{np.median(ratios[k]):.2f} ({np.mean(ratios[k] > 2):.2f})"
            if k in ratios and ratios[k].size
            else "-"
            for k in KINDS
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
