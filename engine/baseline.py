"""A training-free baseline: region motion peak spotting, in the style of the MEGC 2020 baseline.

What a user would try without a learned model (the MEGC 2020 baseline spots peaks of the main
directional motion of facial regions, with a threshold set relative to each video's range):

1. Per ROI (the eye regions excluded: blinks) and snippet, the coherent motion |mean flow
   vector| over the snippet's frames (the main direction's magnitude; incoherent noise averages
   out), minus its causal running median
   over the previous `median_window_s` (slow drifts and a subject's resting level).
2. The snippet score is the mean of the `top_rois` strongest ROIs.
3. Per video, snippets above mean + p * (max - mean) of that video's scores are spotted
   (MEGC 2020's relative threshold), runs closer than `merge_gap_s` are merged (skip-k flow
   shows a macro-expression's onset and offset as two bursts around a still apex), a run of at
   most `me_max_s` is a micro-expression, a longer one up to 4 s a macro-expression. A run's
   score is its peak.
4. Each type has its own parameter set (`TypedParams`), as MEGC's region-motion baselines set
   their flow interval and threshold apart for micro- and macro-expressions: the MEs of the ME
   set's pass and the MaEs of the MaE set's pass are spotted. One set for both made the
   training identities trade the MEs away for MaE merging (long merge gaps cut MEs into MaEs).

Durations are in seconds, so the parameters mean the same on any snippet grid. With several flow
scales, the scale whose motion is scored (`flow_scale`: one of them, or "max", a ROI's strongest
over the scales) is chosen with the other parameters.

The parameters are chosen on the training subjects of each fold, never on the held-out identity
(the folds of `Dataset.folds`: by default every subject of one real person is held out
together): first the MaE set with the best MaE F1, then the ME set with the best pooled overall
F1 beside those MaEs (`fit`). Step 3's threshold uses the whole video's range, so this baseline
is offline, like the one it imitates.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from engine.data.features import VideoFeatures
from engine.data.records import Fold
from engine.evaluate import Report, evaluate, evaluate_folds
from engine.proposals import span_to_interval
from stream.config import FeatureConfig
from stream.errors import ConfigError
from stream.features import ROI_SETS, feature_names
from stream.intervals import MAE_MAX_SECONDS, ExpressionType, Interval


@dataclass(frozen=True)
class BaselineParams:
    """Parameters of the baseline (see the module docstring)."""

    p: float = 0.3
    top_rois: int = 3
    merge_gap_s: float = 0.27
    me_max_s: float = 0.54
    median_window_s: float = 2.0
    flow_scale: str = "max"

    def __post_init__(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise ConfigError(f"baseline p={self.p}: must lie in [0, 1)")
        if self.top_rois < 1 or self.merge_gap_s < 0 or self.me_max_s <= 0:
            raise ConfigError(f"baseline {self}: top_rois >= 1, merge_gap_s >= 0, me_max_s > 0")
        if self.median_window_s <= 0:
            raise ConfigError(f"baseline median_window_s={self.median_window_s}: must be > 0")


@dataclass(frozen=True)
class TypedParams:
    """The baseline's two parameter sets: MEs are spotted with `me`, MaEs with `mae`."""

    me: BaselineParams
    mae: BaselineParams


# Eye regions are left out, as region-motion spotters do: blinks are the largest and most frequent
# facial motion and are not expressions.
EXCLUDED_ROI_PREFIXES = ("eye_",)


def coherent_motion(
    motion: np.ndarray, roi_set: str = "mesh17", config: FeatureConfig | None = None, flow_scale: str = "max"
) -> np.ndarray:
    """(T, R') |mean flow vector| per ROI (eyes excluded) from the mean-over-frames block, at one
    flow scale ("100ms") or the strongest over the scales ("max")."""
    names, _ = feature_names(ROI_SETS.build(roi_set), config)
    per_roi: dict[str, list[np.ndarray]] = {}
    for i, n in enumerate(names):
        if n.endswith(".u") and not n.startswith(EXCLUDED_ROI_PREFIXES):
            stem = n[: -len(".u")]
            roi, _, scale = stem.partition("@")
            if flow_scale not in ("max", scale):
                continue
            v = names.index(f"{stem}.v")
            per_roi.setdefault(roi, []).append(np.hypot(motion[:, i], motion[:, v]))
    if not per_roi:
        raise ConfigError(f"baseline flow_scale={flow_scale!r}: the features have no such flow scale")
    return np.stack([np.max(np.stack(cols), axis=0) for cols in per_roi.values()], axis=1)


def flow_scales(config: FeatureConfig) -> tuple[str, ...]:
    """The baseline's flow_scale choices for features of `config`: each scale, and "max"."""
    from stream.features import scale_label

    labels = tuple(scale_label(s) for s in config.flow_scales_s)
    return (*labels, "max") if len(labels) > 1 else labels


def snippet_scores(feats: VideoFeatures, params: BaselineParams, roi_set: str = "mesh17") -> np.ndarray:
    """(T,) baseline score per snippet; NaN where the snippet is invalid."""
    m = np.where(
        feats.valid[:, None], coherent_motion(feats.motion, roi_set, feats.config, params.flow_scale), np.nan
    )  # (T, R)
    w = max(1, round(params.median_window_s / feats.snippet_s))
    padded = np.vstack([np.full((w, m.shape[1]), np.nan), m])
    past = np.lib.stride_tricks.sliding_window_view(padded, w, axis=0)[:-1]  # (T, R, w): snippets j-w..j-1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty history is expected at the start
        resting = np.nanmedian(past, axis=2)
    resting = np.where(np.isnan(resting), m, resting)  # no history yet: no excess
    excess = np.clip(m - resting, 0.0, None)
    k = min(params.top_rois, excess.shape[1])
    top = -np.sort(-np.nan_to_num(excess, nan=-1.0), axis=1)[:, :k]
    return np.where(feats.valid, top.mean(axis=1), np.nan)


def spot(feats: VideoFeatures, params: BaselineParams | TypedParams) -> list[Interval]:
    """Spotted intervals of one video (frames in the video's own rate), in time order: with
    `TypedParams`, the MEs of the ME set's pass and the MaEs of the MaE set's."""
    if isinstance(params, BaselineParams):
        return spot_pass(feats, params)
    me = [iv for iv in spot_pass(feats, params.me) if iv.type is ExpressionType.ME]
    mae = [iv for iv in spot_pass(feats, params.mae) if iv.type is ExpressionType.MAE]
    return sorted(me + mae, key=lambda iv: (iv.onset, iv.offset))


def spot_pass(
    feats: VideoFeatures, params: BaselineParams, scores: np.ndarray | None = None
) -> list[Interval]:
    """One pass of steps 1-3 with one parameter set: intervals of both types."""
    s = snippet_scores(feats, params) if scores is None else scores
    finite = s[np.isfinite(s)]
    if finite.size == 0:
        return []
    mean, peak = float(finite.mean()), float(finite.max())
    threshold = mean + params.p * (peak - mean)
    with np.errstate(invalid="ignore"):
        above = np.flatnonzero(s > threshold)
    if above.size == 0:
        return []
    merge_gap = round(params.merge_gap_s / feats.snippet_s + 1e-9)  # snippets
    runs: list[list[int]] = [[int(above[0]), int(above[0]) + 1]]
    for j in above[1:]:
        if j - runs[-1][1] <= merge_gap:
            runs[-1][1] = int(j) + 1
        else:
            runs.append([int(j), int(j) + 1])
    out = []
    for start, end in runs:
        n = end - start
        if n * feats.snippet_s <= params.me_max_s + 1e-9:
            kind = ExpressionType.ME
        elif n * feats.snippet_s <= MAE_MAX_SECONDS:
            kind = ExpressionType.MAE
        else:
            continue
        iv = span_to_interval(
            start,
            end,
            feats.snippet_frames,
            kind,
            score=float(np.nanmax(s[start:end])),
            frame_offset=feats.first_frame,
        )
        if iv is not None:
            out.append(iv)
    return out


GRID = {
    # SynthSpot-v2's training identities chose p = 0.05 and a 0.4 s gap, the edges of the first
    # grid, on every fold: the grid reaches further on both
    # strictest first: on a tie in training F1 the higher threshold (fewer false alarms) wins
    "p": (0.7, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.03, 0.02),
    "top_rois": (1, 3),
    "merge_gap_s": (0.0, 0.14, 0.27, 0.4, 0.54, 0.67),
    "me_max_s": (0.27, 0.4, 0.54, 0.67),
}


ME_OBJECTIVES: tuple[str, ...] = ("overall", "me")


def fit(
    videos: Sequence[VideoFeatures],
    truths: Mapping[str, Sequence[Interval]],
    grid: Mapping = GRID,
    me_objective: str = "overall",
) -> tuple[TypedParams, Report]:
    """The parameters chosen on these (training) videos: the MaE set with the best MaE F1 (ties:
    overall F1), then the ME set with the best pooled overall F1 beside those MaEs (ties: ME F1),
    or with ``me_objective="me"`` the best ME F1 (ties: overall F1), as the MaE set is chosen on
    its own type's F1.

    The flow scales searched are the grid's ``flow_scale`` entry, else every scale of the
    features' configuration and "max" (`flow_scales`). On a tie the earlier grid point (the
    stricter threshold) wins.
    """
    if me_objective not in ME_OBJECTIVES:
        raise ValueError(f"baseline me_objective={me_objective!r}: choose one of {ME_OBJECTIVES}")
    cache: dict[tuple[int, str], list[np.ndarray]] = {}
    scales = grid.get("flow_scale") or (flow_scales(videos[0].config) if videos else ("max",))
    truth = {v.video: truths.get(v.video, ()) for v in videos}
    fps = {v.video: v.fps for v in videos}

    def passes() -> Iterator[tuple[BaselineParams, dict[str, list[Interval]]]]:
        for scale, p, top, gap, me_max in itertools.product(
            scales, grid["p"], grid["top_rois"], grid["merge_gap_s"], grid["me_max_s"]
        ):
            params = BaselineParams(p=p, top_rois=top, merge_gap_s=gap, me_max_s=me_max, flow_scale=scale)
            if (top, scale) not in cache:  # the scores depend only on top_rois and the flow scale
                cache[top, scale] = [snippet_scores(v, params) for v in videos]
            yield (
                params,
                {v.video: spot_pass(v, params, s) for v, s in zip(videos, cache[top, scale], strict=True)},
            )

    def of_type(preds: Mapping[str, list[Interval]], kind: ExpressionType) -> dict[str, list[Interval]]:
        return {name: [iv for iv in ivs if iv.type is kind] for name, ivs in preds.items()}

    best_mae: tuple[tuple[float, float], BaselineParams, dict[str, list[Interval]]] | None = None
    for params, preds in passes():
        report = evaluate(preds, truth, fps)
        key = (report.mae.f1, report.overall.f1)
        if best_mae is None or key > best_mae[0]:
            best_mae = (key, params, of_type(preds, ExpressionType.MAE))
    assert best_mae is not None
    _, mae_params, mae_preds = best_mae
    best: tuple[tuple[float, float], BaselineParams, Report] | None = None
    for params, preds in passes():
        me_preds = of_type(preds, ExpressionType.ME)
        report = evaluate({name: me_preds[name] + mae_preds[name] for name in preds}, truth, fps)
        me_f1, overall_f1 = report.me.f1, report.overall.f1
        key = (me_f1, overall_f1) if me_objective == "me" else (overall_f1, me_f1)
        if best is None or key > best[0]:
            best = (key, params, report)
    assert best is not None
    return TypedParams(best[1], mae_params), best[2]


@dataclass
class LosoResult:
    """Leave-one-out outcome: pooled report, per-fold reports and chosen parameters.

    Folds are named by the held-out identity (or subject, for subject folds); `plan` holds each
    fold's held-out and training subjects, `group` what the folds hold out.
    """

    report: Report
    folds: dict[str, Report]
    params: dict[str, TypedParams]
    predictions: dict[str, list[Interval]]
    group: str = "subject"
    plan: dict[str, Fold] = field(default_factory=dict)

    def params_table(self) -> list[dict[str, object]]:
        """One row per fold and type: the held-out group, the type, then the parameters."""
        return [
            {self.group: s, "type": kind, **asdict(getattr(p, kind))}
            for s, p in self.params.items()
            for kind in ("me", "mae")
        ]


def loso(
    folds: Iterable[Fold | tuple[Sequence[str], str]],
    features: Mapping[str, VideoFeatures],
    subject_of: Mapping[str, str],
    truths: Mapping[str, Sequence[Interval]],
    grid: Mapping = GRID,
    me_objective: str = "overall",
) -> LosoResult:
    """Fit on each fold's training subjects, spot its held-out subjects, pool the counts.

    Args:
        folds: `Dataset.folds(group)` (held-out identity or subject), or the (training subjects,
            test subject) pairs of `Dataset.loso_folds`.
        features: video id -> features.
        subject_of: video id -> subject.
        truths: video id -> ground truth.
        grid: the parameter grid (`fit`).
        me_objective: what the ME set is chosen on (`fit`).
    """
    fold_reports: dict[str, Report] = {}
    chosen: dict[str, TypedParams] = {}
    predictions: dict[str, list[Interval]] = {}
    plan: dict[str, Fold] = {}
    for item in folds:
        fold = Fold.of(item)
        train_set, test_set = set(fold.train_subjects), set(fold.test_subjects)
        if train_set & test_set:
            raise ValueError(f"fold {fold.name}: subjects {sorted(train_set & test_set)} on both sides")
        train = [f for v, f in features.items() if subject_of[v] in train_set]
        test = [f for v, f in features.items() if subject_of[v] in test_set]
        params, _ = fit(train, truths, grid, me_objective)
        preds = {f.video: spot(f, params) for f in test}
        predictions.update(preds)
        chosen[fold.name] = params
        plan[fold.name] = fold
        fold_reports[fold.name] = evaluate(
            preds, {f.video: truths.get(f.video, ()) for f in test}, {f.video: f.fps for f in test}
        )
    groups = {f.group for f in plan.values()}
    group = groups.pop() if len(groups) == 1 else "subject"
    return LosoResult(evaluate_folds(fold_reports), fold_reports, chosen, predictions, group, plan)
