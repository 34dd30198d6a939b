"""Operating points: the proposal thresholds a bundle spots with, chosen on its training subjects.

Training (``engine.train.choose_operating_point``) already picks the grid point of best F1 on the
training videos. Calibration redoes that choice after training, on a larger grid
(`CALIBRATION_GRID`: ``engine.train.OPERATING_GRID`` extended with higher single thresholds and
``min_score`` values and the NMS IoU) and for one of two objectives:

- ``f1``: the grid point of best F1 (the target class's, then overall, then ME), optionally among
  the points whose false alarms per minute stay <= a cap;
- ``false-alarms``: the point of highest recall whose false alarms per minute of video stay <= a
  target (then best F1, then fewest false alarms).

A *false alarm* is a spotted interval that matches no ground truth of its type at IoU >= 0.5
(``engine.evaluate``'s false positive); the rate divides the count by the minutes of video
calibrated on. Ties keep the first (coarsest) grid point, so with ``OPERATING_GRID`` and the F1
objective the choice equals ``choose_operating_point``'s.

One configuration serves both classes. ``ProposalConfig`` has one ``min_score``, one threshold
set and one NMS IoU, and the proposal path (``engine.proposals.propose``, shared by training,
evaluation and the live ``OnlineSpotter``) applies them to both types; a per-class ``min_score``
would change that path's semantics, so it is not done here. Instead the objective can target a
class (``target_class`` "me" / "mae" / "overall"), and the per-class F1 and false-alarm rates of
every grid point are reported, plotted and stored.

The choice is written into the bundle (``bundle.json`` ``operating_point`` and
``metadata.calibration``, `engine.bundle.set_operating_point`), where `Bundle.proposal_config`
(what the live runner and ``mespot eval`` use) finds it. Calibrating on subjects the bundle was
not trained on (its held-out subject) leaks the evaluation data into the operating point: it is
refused unless explicitly allowed, and then warned about loudly and recorded.

Live event latency. Every point is chosen within the live latency budget (`LATENCY_BUDGET_S`:
an event's publication at most 0.5 s after an ME's offset frame and 1.5 s after a MaE's, at the
median): the candidates are tried in the objective's order and the first whose median event
latency fits is kept. The latency is estimated on the calibration videos themselves, exactly: each
video's scores are streamed through the live `engine.online.OnlineSpotter` (`engine.online.replay`),
and an event's latency is the snippets the spotter waited after the interval's last one, in
seconds, plus the bundle's look-ahead and an allowance for capturing and scoring a snippet
(`PROCESSING_ALLOWANCE_S`; measured live at 40-60 ms on the project's 2-core machine). The chosen
point's estimate is recorded with it.

Out-of-fold calibration (``--out-of-fold RUN``, `out_of_fold_scores`) chooses the point on scores
of the training subjects from the fold bundles of a leave-one-out run that each held one of them
out: the scores a person the model never saw gets, not the cleaner ones of people it learnt.

    mespot calibrate BUNDLE ANNOTATIONS --features DIR [--objective f1|false-alarms]
        [--max-fa-per-min X] [--class overall|me|mae] [--subjects S ...] [--plot OUT.png]
        [--out-of-fold LOSO_RUN] [--latency-budget ME_S MAE_S | --no-latency-budget]
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from tqdm import tqdm

from engine.bundle import Bundle, load_bundle, set_operating_point
from engine.evaluate import Metrics, evaluate
from engine.latency import (
    LATENCY_BUDGET_S,
    MAX_LATENCY_CANDIDATES,
    PROCESSING_ALLOWANCE_S,
    EventLatency,
    check_latency_budget,
    event_latency,
)
from engine.proposals import ProposalConfig, proposal_key
from engine.train import OPERATING_GRID, Scores, Video, grid_counts, predict, spot
from stream.errors import ConfigError, MespotError

log = logging.getLogger(__name__)

OBJECTIVES: tuple[str, ...] = ("f1", "false-alarms")
TARGET_CLASSES: tuple[str, ...] = ("overall", "me", "mae")
BACKEND_NAMES: tuple[str, ...] = ("torch", "onnxruntime")

# The training grid, with higher single thresholds and score cut-offs (for low false-alarm
# targets: a model whose OIC scores saturate near 1 is only thinned by a higher threshold) and
# the NMS IoU.
CALIBRATION_GRID: Mapping[str, tuple[Any, ...]] = MappingProxyType(
    {
        **OPERATING_GRID,
        "thresholds": (*OPERATING_GRID["thresholds"], (0.7,), (0.8,), (0.9,), (0.95,)),
        "min_score": (*OPERATING_GRID["min_score"], 0.5, 0.6, 0.8),
        "nms_iou": (0.01, 0.1, 0.3, 0.5),
    }
)
_LABELS = {"me": "ME", "mae": "MaE", "overall": "overall"}


def calibration_grid(method: str) -> Mapping[str, tuple[Any, ...]]:
    """`CALIBRATION_GRID` over a method's own training grid (`Method.operating_grid`: the
    proposal mode and type rule for MC-WES and PWES, the duration check for GIM), so that
    calibration offers the training subjects every choice training did."""
    from engine.methods import METHODS

    return MappingProxyType({**METHODS.get(method).operating_grid(), **CALIBRATION_GRID})


_EPS = 1e-9  # slack on the false-alarm cap (rates are ratios of integers and minutes)


class CalibrationError(MespotError):
    """An operating point cannot be chosen (unreachable target, wrong subjects, no videos)."""


@dataclass(frozen=True)
class GridPoint:
    """The counts of one proposal configuration on the calibration videos.

    Attributes:
        config: the proposal configuration.
        setting: the grid fields' values that made it from the base configuration.
        me: ME counts pooled over the videos.
        mae: MaE counts pooled over the videos.
        minutes: minutes of video the counts are over.
    """

    config: ProposalConfig
    setting: Mapping[str, Any]
    me: Metrics
    mae: Metrics
    minutes: float

    @property
    def overall(self) -> Metrics:
        return self.me + self.mae

    def metrics(self, target: str) -> Metrics:
        """The counts of "me", "mae" or "overall"."""
        if target not in TARGET_CLASSES:
            raise ConfigError(f"class {target!r}: choose one of {', '.join(TARGET_CLASSES)}")
        return {"me": self.me, "mae": self.mae, "overall": self.overall}[target]

    def fa_per_min(self, target: str = "overall") -> float:
        """False alarms (false positives) of a class per minute of video."""
        return self.metrics(target).fp / self.minutes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the grid setting and, per class, the counts, F1 and false alarms per minute."""
        out: dict[str, Any] = {"setting": {k: _jsonable(v) for k, v in self.setting.items()}}
        for name in TARGET_CLASSES:
            m = self.metrics(name)
            out[name] = {**m.to_dict(), "fa_per_min": round(self.fa_per_min(name), 6)}
        return out


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Calibration:
    """The outcome of a calibration sweep.

    Attributes:
        points: every grid point, in grid order.
        chosen: index of the chosen point in `points`.
        objective: "f1" or "false-alarms".
        target_class: the class the objective is taken on ("overall", "me", "mae").
        max_fa_per_min: the false-alarm cap (None: none).
        grid: the grid searched (field -> values).
        videos: the calibration video ids.
        subjects: their subjects.
        previous: the configuration in force before (the bundle's operating point or its
            method's default) evaluated on the same videos; None when not computed.
        info: more JSON-ready facts recorded with the choice (dataset, scorer, other subjects).
        latency: the chosen point's estimated live event latency (`event_latency`).
        latency_budget: the budget the choice was held to (type -> median seconds); None: none.
    """

    points: tuple[GridPoint, ...]
    chosen: int
    objective: str
    target_class: str
    max_fa_per_min: float | None
    grid: Mapping[str, tuple[Any, ...]]
    videos: tuple[str, ...]
    subjects: tuple[str, ...]
    previous: GridPoint | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    latency: EventLatency | None = None
    latency_budget: Mapping[str, float] | None = None

    @property
    def point(self) -> GridPoint:
        """The chosen grid point."""
        return self.points[self.chosen]

    @property
    def config(self) -> ProposalConfig:
        """The chosen proposal configuration (the new operating point)."""
        return self.point.config

    @property
    def minutes(self) -> float:
        return self.point.minutes

    def metadata(self) -> dict[str, Any]:
        """What ``bundle.json`` records under ``metadata.calibration``."""
        return {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "objective": self.objective,
            "target_class": self.target_class,
            "max_fa_per_min": self.max_fa_per_min,
            "subjects": list(self.subjects),
            "videos": len(self.videos),
            "minutes": round(self.minutes, 4),
            "grid": {k: [_jsonable(v) for v in values] for k, values in self.grid.items()},
            "grid_points": len(self.points),
            "chosen": self.point.to_dict(),
            "latency_budget_s": None if self.latency_budget is None else dict(self.latency_budget),
            "event_latency": None if self.latency is None else self.latency.to_dict(),
            "previous": None
            if self.previous is None
            else {"operating_point": self.previous.config.to_dict(), **self.previous.to_dict()},
            "per_class": "one proposal configuration for both classes (ProposalConfig has one "
            "min_score, threshold set and NMS IoU); per-class F1 and false alarms per minute reported",
            **dict(self.info),
        }

    def table(self) -> str:
        """The chosen point (and the previous one) per class as a fixed-width text table."""
        head = f"{'':<18}{'TP':>5}{'FP':>5}{'FN':>5}{'recall':>8}{'precision':>10}{'F1':>7}{'FA/min':>8}"
        lines = [
            f"{len(self.videos)} videos, {self.minutes:.2f} min, subjects {', '.join(self.subjects)}; "
            f"{len(self.points)} grid points, objective {self.objective} on {self.target_class}"
            + (f", <= {self.max_fa_per_min:g} false alarms/min" if self.max_fa_per_min is not None else ""),
            head,
        ]
        rows = [("chosen", self.point)] + ([("before", self.previous)] if self.previous is not None else [])
        for label, point in rows:
            for name in TARGET_CLASSES:
                m = point.metrics(name)
                lines.append(
                    f"{label + ' ' + name:<18}{m.tp:>5}{m.fp:>5}{m.fn:>5}{m.recall:>8.3f}"
                    f"{m.precision:>10.3f}{m.f1:>7.3f}{point.fa_per_min(name):>8.2f}"
                )
        setting = ", ".join(f"{k}={_jsonable(v)}" for k, v in self.point.setting.items())
        lines.append(f"chosen: {setting}")
        if self.latency is not None:
            budget = (
                "no budget"
                if self.latency_budget is None
                else "budget " + ", ".join(f"{_LABELS[k]} {v:g} s" for k, v in self.latency_budget.items())
            )
            lines.append(f"estimated live event latency ({budget}): {self.latency.summary()}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Sweep and choice (pure: videos and their scores in, counts out)
# --------------------------------------------------------------------------------------------


def video_minutes(videos: Sequence[Video]) -> float:
    """Minutes of video: frames / fps when the frame count is known, else snippets x snippet length."""
    total = 0.0
    for record, feats in videos:
        if record.n_frames is not None:
            total += record.n_frames / record.fps
        else:
            total += len(feats.valid) * feats.snippet_s
    return total / 60.0


def relevant_grid(base: ProposalConfig, grid: Mapping[str, Sequence[Any]]) -> dict[str, tuple[Any, ...]]:
    """The grid without fields the base configuration's mode ignores (no duplicate points).

    Multi-top proposals ignore ``thresholds`` and multi-threshold proposals ``top_divisors``.
    """
    unknown = [k for k in grid if k not in {f.name for f in dataclasses.fields(ProposalConfig)}]
    if unknown:
        raise ConfigError(f"calibration grid: {unknown} are not ProposalConfig fields")
    ignored = {"top": "thresholds", "threshold": "top_divisors"}[base.mode]
    out = {k: tuple(v) for k, v in grid.items() if k != ignored}
    if any(not values for values in out.values()):
        raise ConfigError("calibration grid: every field needs at least one value")
    return out


def evaluate_point(
    videos: Sequence[Video],
    scores: Mapping[str, Scores],
    config: ProposalConfig,
    setting: Mapping[str, Any] | None = None,
) -> GridPoint:
    """Spot every video at one configuration and pool the counts (``engine.train.spot``, ``evaluate``)."""
    preds = {rec.video: spot(scores[rec.video], (rec, feats), config) for rec, feats in videos}
    truths = {rec.video: list(rec.expressions) for rec, _ in videos}
    report = evaluate(preds, truths, {rec.video: feats.fps for rec, feats in videos})
    return GridPoint(
        config=config,
        setting=MappingProxyType(dict(setting or {})),
        me=report.me,
        mae=report.mae,
        minutes=video_minutes(videos),
    )


def sweep(
    videos: Sequence[Video],
    scores: Mapping[str, Scores],
    base: ProposalConfig,
    grid: Mapping[str, Sequence[Any]] = CALIBRATION_GRID,
    *,
    progress: bool = False,
) -> list[GridPoint]:
    """Every grid point's pooled counts on the videos.

    Args:
        videos: the calibration videos (training subjects only).
        scores: video id -> its scores (``engine.train.predict`` or a runtime backend).
        base: the configuration whose grid fields are replaced.
        grid: field -> values; fields the base's mode ignores are dropped (`relevant_grid`).
        progress: a tqdm bar.

    Returns:
        The grid points in grid order (itertools.product of the fields in grid order, the
        post-NMS fields moved last: `engine.train.grid_counts`).
    """
    if not videos:
        raise CalibrationError("calibration: no videos to calibrate on")
    if video_minutes(videos) <= 0:
        raise CalibrationError("calibration: the videos last 0 minutes")
    fields = relevant_grid(base, grid)
    total = math.prod(len(values) for values in fields.values())
    minutes = video_minutes(videos)
    points = []
    combos = grid_counts(videos, scores, base, fields)
    for setting, config, me, mae in tqdm(
        combos, total=total, desc="operating points", disable=not progress, leave=False
    ):
        points.append(
            GridPoint(config=config, setting=MappingProxyType(setting), me=me, mae=mae, minutes=minutes)
        )
    return points


def check_objective(objective: str, max_fa_per_min: float | None, target_class: str) -> None:
    """Validate an objective, its false-alarm cap and its class (see `choose`).

    Raises:
        ConfigError: naming the bad value and the valid ones.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"calibration objective={objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if target_class not in TARGET_CLASSES:
        raise ConfigError(f"calibration class={target_class!r}: choose one of {', '.join(TARGET_CLASSES)}")
    if objective == "false-alarms" and max_fa_per_min is None:
        raise ConfigError("calibration objective 'false-alarms' needs a target (--max-fa-per-min)")
    if max_fa_per_min is not None and (
        isinstance(max_fa_per_min, bool)
        or not isinstance(max_fa_per_min, int | float)
        or not math.isfinite(max_fa_per_min)
        or max_fa_per_min < 0
    ):
        raise ConfigError(f"calibration max_fa_per_min={max_fa_per_min!r}: must be a finite number >= 0")


def choose(
    points: Sequence[GridPoint],
    objective: str = "f1",
    *,
    max_fa_per_min: float | None = None,
    target_class: str = "overall",
    admissible: Callable[[int], bool] | None = None,
    max_candidates: int | None = None,
) -> int:
    """Index of the grid point an objective picks.

    Args:
        points: the sweep's points.
        objective: "f1" (best F1 of the target class, then overall F1, then ME F1) or
            "false-alarms" (highest recall of the target class, then its F1, then fewest false
            alarms). Ties keep the earlier point.
        max_fa_per_min: cap on the target class's false alarms per minute; required for
            "false-alarms", optional for "f1".
        target_class: "overall", "me" or "mae".
        admissible: a further test (e.g. the latency budget), tried on the points in the
            objective's order (best first, the earlier point first among equals); the first
            point that passes is chosen.
        max_candidates: try `admissible` on at most this many points.

    Returns:
        The index into `points`.

    Raises:
        ConfigError: bad objective, class or cap.
        CalibrationError: no point meets the cap (the message names the lowest rate reached), or
            none of the candidates tried is admissible.
    """
    check_objective(objective, max_fa_per_min, target_class)
    if not points:
        raise CalibrationError("calibration: empty grid")
    feasible = [
        i
        for i, p in enumerate(points)
        if max_fa_per_min is None or p.fa_per_min(target_class) <= max_fa_per_min + _EPS
    ]
    if not feasible:
        low = min(range(len(points)), key=lambda i: points[i].fa_per_min(target_class))
        raise CalibrationError(
            f"no grid point keeps {target_class} false alarms <= {max_fa_per_min:g} per minute on the "
            f"calibration videos; the lowest is {points[low].fa_per_min(target_class):.3g} per minute "
            f"(at {dict(points[low].setting)}); raise the target or extend the grid"
        )

    def key(i: int) -> tuple[float, ...]:
        p = points[i]
        m = p.metrics(target_class)
        if objective == "f1":
            return (m.f1, p.overall.f1, p.me.f1)
        return (m.recall, m.f1, -p.fa_per_min(target_class))

    if admissible is None:
        best = feasible[0]
        for i in feasible[1:]:
            if key(i) > key(best):  # strict: the earlier point wins ties
                best = i
        return best
    ranked = sorted(feasible, key=lambda i: (tuple(-v for v in key(i)), i))
    tried = ranked[: max_candidates or len(ranked)]
    for i in tried:
        if admissible(i):
            return i
    raise CalibrationError(
        f"none of the {len(tried)} best grid points (of {len(feasible)}) meets the latency budget; "
        "widen the budget (--latency-budget) or calibrate without it (--no-latency-budget)"
    )


def calibrate(
    videos: Sequence[Video],
    scores: Mapping[str, Scores],
    base: ProposalConfig,
    *,
    objective: str = "f1",
    max_fa_per_min: float | None = None,
    target_class: str = "overall",
    grid: Mapping[str, Sequence[Any]] = CALIBRATION_GRID,
    previous: ProposalConfig | None = None,
    info: Mapping[str, Any] | None = None,
    progress: bool = False,
    latency_budget: Mapping[str, float] | None = LATENCY_BUDGET_S,
    lookahead_s: float = 0.0,
    processing_s: float = PROCESSING_ALLOWANCE_S,
) -> Calibration:
    """Sweep the grid on the videos' scores and choose a point (see `choose`) whose estimated live
    event latency (`event_latency`) fits the budget.

    Args:
        videos: the calibration videos (the bundle's training subjects).
        scores: video id -> scores.
        base: the configuration whose grid fields are replaced.
        objective, max_fa_per_min, target_class: as in `choose`.
        grid: the grid (`CALIBRATION_GRID`).
        previous: the configuration in force before, evaluated on the same videos for comparison.
        info: more JSON-ready facts for the metadata.
        progress: a tqdm bar.
        latency_budget: type -> the most seconds its median event latency may take
            (`LATENCY_BUDGET_S`); None: no constraint (the chosen point's latency is still estimated).
        lookahead_s: the bundle's look-ahead, added to every event's latency.
        processing_s: the capture-and-scoring allowance added to every event's latency.
    """
    check_latency_budget(latency_budget)
    points = sweep(videos, scores, base, grid, progress=progress)
    latencies: dict[ProposalConfig, EventLatency] = {}  # points of equal proposals stream alike

    def latency_of(i: int) -> EventLatency:
        key = proposal_key(points[i].config)
        if key not in latencies:
            latencies[key] = event_latency(
                videos, scores, points[i].config, lookahead_s=lookahead_s, processing_s=processing_s
            )
        return latencies[key]

    chosen = choose(
        points,
        objective,
        max_fa_per_min=max_fa_per_min,
        target_class=target_class,
        admissible=None if latency_budget is None else (lambda i: latency_of(i).within(latency_budget)),
        max_candidates=MAX_LATENCY_CANDIDATES,
    )
    if len(latencies) > 1:
        log.info(
            "latency budget: better grid points of %d other proposal settings exceed it; chose the next",
            len(latencies) - 1,
        )
    return Calibration(
        points=tuple(points),
        chosen=chosen,
        objective=objective,
        target_class=target_class,
        max_fa_per_min=None if max_fa_per_min is None else float(max_fa_per_min),
        grid=MappingProxyType(relevant_grid(base, grid)),
        videos=tuple(rec.video for rec, _ in videos),
        subjects=tuple(sorted({rec.subject for rec, _ in videos})),
        previous=None if previous is None else evaluate_point(videos, scores, previous),
        info=MappingProxyType(dict(info or {})),
        latency=latency_of(chosen),
        latency_budget=None if latency_budget is None else MappingProxyType(dict(latency_budget)),
    )


# --------------------------------------------------------------------------------------------
# Bundles: subjects, scores, storing the choice
# --------------------------------------------------------------------------------------------


def calibration_subjects(
    bundle: Bundle,
    available: Sequence[str],
    requested: Sequence[str] | None = None,
    *,
    allow_other_subjects: bool = False,
) -> tuple[list[str], list[str]]:
    """The subjects to calibrate on, guarded against the bundle's held-out subjects.

    Args:
        bundle: the bundle (its ``metadata.train_subjects`` / ``held_out_subject``, when recorded).
        available: the dataset's subjects.
        requested: the subjects asked for; None: the bundle's training subjects (all of the
            dataset's when the bundle does not record them, with a warning).
        allow_other_subjects: calibrate on subjects the bundle was not trained on (warned).

    Returns:
        (the subjects, those among them the bundle was not trained on).

    Raises:
        CalibrationError: a requested subject is not in the dataset, or subjects the bundle was
            not trained on were requested without `allow_other_subjects`.
    """
    trained = bundle.metadata.get("train_subjects")
    trained_set = {str(s) for s in trained} if isinstance(trained, list) else None
    held_out = bundle.metadata.get("held_out_subject")
    if requested:
        subjects = list(dict.fromkeys(str(s) for s in requested))
    elif trained_set is not None:
        subjects = [s for s in available if s in trained_set]
    else:
        subjects = list(available)
    if trained_set is None:
        log.warning(
            "%s records no training subjects (metadata.train_subjects), so calibrating on %s cannot be "
            "checked against them: make sure none of them is used to evaluate this model",
            bundle.path,
            "all subjects of the dataset" if not requested else f"subjects {subjects}",
        )
    missing = [s for s in subjects if s not in set(available)]
    if missing:
        raise CalibrationError(f"calibration subjects {missing} are not in the dataset ({list(available)})")
    others = [s for s in subjects if (trained_set is not None and s not in trained_set) or s == held_out]
    if others:
        what = (
            f"subject(s) {others} are not among the subjects {bundle.path} was trained on "
            f"({sorted(trained_set or [])}"
            + (f"; {held_out} is its held-out subject" if held_out is not None else "")
            + ")"
        )
        if not allow_other_subjects:
            raise CalibrationError(
                f"{what}: choosing the operating point on them leaks evaluation data into the model; "
                "calibrate on the training subjects, or pass --allow-other-subjects "
                "(allow_other_subjects=True) if this is deliberate"
            )
        log.warning(
            "!!! CALIBRATING ON SUBJECTS THE MODEL WAS NOT TRAINED ON: %s. Any evaluation on them is "
            "no longer held out. !!!",
            what,
        )
    if not subjects:
        raise CalibrationError(f"{bundle.path}: none of its training subjects is in the dataset")
    return subjects, others


def bundle_scores(
    bundle: Bundle,
    videos: Sequence[Video],
    *,
    backend: str = "torch",
    precision: str | None = None,
    graph: str | Path | None = None,
) -> dict[str, Scores]:
    """Scores of whole videos with a bundle's scorer.

    Args:
        bundle: the bundle.
        videos: the videos.
        backend: "torch" (the whole-sequence forward, ``engine.train.predict``, as training
            chooses its operating point) or "onnxruntime" (the live path: ``StreamScorer`` over
            the ONNX graph, ``engine.runtime.stream_scores``).
        precision: onnxruntime only: the bundle's graph of this precision ("fp32", "fp16", "int8").
        graph: onnxruntime only: this ONNX graph (e.g. a quantized one not yet listed).

    Returns:
        video id -> (class_scores (T, 2), actionness (T,)), NaN at invalid snippets.
    """
    if backend not in BACKEND_NAMES:
        raise ConfigError(f"scoring backend={backend!r}: choose one of {', '.join(BACKEND_NAMES)}")
    if backend == "torch":
        if precision is not None or graph is not None:
            raise ConfigError("precision / graph select an ONNX graph: use backend 'onnxruntime'")
        network = bundle.network()
        method = bundle.method(network)
        return {rec.video: predict(network, method, feats) for rec, feats in videos}
    from engine.runtime import OnnxRuntimeBackend, stream_scores

    options: dict[str, Any] = {"path": graph} if graph is not None else {"precision": precision}
    out: dict[str, Scores] = {}
    with OnnxRuntimeBackend(bundle, **options) as runner:
        for rec, feats in videos:
            out[rec.video] = stream_scores(runner, feats.motion, feats.geometry, feats.valid)
    return out


def fold_bundles(folds: str | Path) -> list[Bundle]:
    """The per-fold bundles of a ``mespot train --loso`` run: its ``folds/`` folder, or that folder
    itself, or any folder of ``*.mespot`` bundles that record their held-out subjects."""
    root = Path(folds)
    folder = root / "folds" if (root / "folds").is_dir() else root
    paths = sorted(folder.glob("*.mespot")) if folder.is_dir() else []
    if not paths:
        raise CalibrationError(f"{root}: no fold bundles (*.mespot) here or in its folds/ folder")
    return [load_bundle(path) for path in paths]


def _held_out(fold: Bundle) -> set[str]:
    subjects = fold.metadata.get("held_out_subjects")
    if not isinstance(subjects, list):
        one = fold.metadata.get("held_out_subject")
        subjects = [] if one is None else [one]
    if not subjects:
        raise CalibrationError(
            f"{fold.path}: records no held-out subjects (metadata.held_out_subjects): not a fold of "
            "a mespot train --loso run"
        )
    return {str(s) for s in subjects}


def out_of_fold_scores(
    bundle: Bundle,
    folds: Sequence[Bundle],
    videos: Sequence[Video],
    *,
    backend: str = "torch",
    precision: str | None = None,
) -> dict[str, Scores]:
    """Scores of the calibration videos, each from the fold bundle that held its subject out.

    A bundle scores the people it was trained on more cleanly than a new person: it has learnt
    their faces, their expressions' sizes, and which class each one is. An operating point chosen
    on those scores (the default) is tuned to that; one chosen on out-of-fold scores (each
    training subject scored by the leave-one-out model that never saw it, same recipe) sees the
    scores a new person will get.

    Args:
        bundle: the bundle being calibrated (its method and features).
        folds: the fold bundles (`fold_bundles`): same method, features and network as `bundle`.
        videos: the calibration videos.
        backend, precision: the scorer (`bundle_scores`).

    Raises:
        CalibrationError: a fold bundle differs from `bundle` in method, features or network, a
            video's subject is held out by no fold or by several, or a fold trained on it.
    """
    # The network is compared below and the seed may differ; the proposals are only the
    # starting point of the operating-point search, not part of how a network is trained.
    ours = bundle.train_config.to_dict()
    owner: dict[str, int] = {}  # subject -> index of the fold that held it out
    for i, fold in enumerate(folds):
        if fold.method_name != bundle.method_name:
            raise CalibrationError(
                f"{fold.path}: method {fold.method_name!r}, but {bundle.path} is {bundle.method_name!r}"
            )
        if fold.feature_digest != bundle.feature_digest:
            raise CalibrationError(f"{fold.path}: its feature configuration is not {bundle.path}'s")
        if fold.network_config != bundle.network_config:
            raise CalibrationError(f"{fold.path}: its network configuration is not {bundle.path}'s")
        differ = [
            name
            for name, value in fold.train_config.to_dict().items()
            if name not in ("network", "seed", "proposals") and ours.get(name) != value
        ]
        if differ:
            log.warning(
                "%s was trained with other %s than %s: its scores stand for a different recipe",
                fold.path,
                ", ".join(differ),
                bundle.path,
            )
        held_out = _held_out(fold)
        trained = fold.metadata.get("train_subjects")
        both = held_out & {str(s) for s in trained} if isinstance(trained, list) else set()
        if both:
            raise CalibrationError(f"{fold.path} lists {sorted(both)} both held out and trained on")
        for subject in held_out:
            if subject in owner:
                raise CalibrationError(
                    f"subject {subject} is held out by both {folds[owner[subject]].path} and {fold.path}"
                )
            owner[subject] = i
    by_fold: dict[int, list[Video]] = {}
    for rec, feats in videos:
        if rec.subject not in owner:
            raise CalibrationError(
                f"subject {rec.subject} (video {rec.video}) is held out by none of the fold bundles: "
                "out-of-fold scores need a leave-one-out run over the same subjects"
            )
        by_fold.setdefault(owner[rec.subject], []).append((rec, feats))
    scores: dict[str, Scores] = {}
    for i, fold_videos in by_fold.items():
        scores.update(bundle_scores(folds[i], fold_videos, backend=backend, precision=precision))
    return scores


def base_config(bundle: Bundle) -> ProposalConfig:
    """The configuration whose grid fields calibration replaces: the bundle's operating point when it
    has one (its mode, typing and NMS kind stay), else its training configuration's proposals."""
    return bundle.operating_point or bundle.train_config.proposals


def calibrate_bundle(
    bundle_path: str | Path,
    videos: Sequence[Video],
    *,
    objective: str = "f1",
    max_fa_per_min: float | None = None,
    target_class: str = "overall",
    grid: Mapping[str, Sequence[Any]] | None = None,
    backend: str = "torch",
    precision: str | None = None,
    info: Mapping[str, Any] | None = None,
    write: bool = True,
    plot: str | Path | None = None,
    progress: bool = False,
    folds: Sequence[Bundle] | None = None,
    latency_budget: Mapping[str, float] | None = LATENCY_BUDGET_S,
) -> Calibration:
    """Calibrate a bundle's operating point on videos and store it in the bundle.

    The caller picks the videos (`calibration_subjects` guards the subjects; `cmd_calibrate` does
    both).

    Args:
        bundle_path: the bundle folder.
        videos: the calibration videos with their features (the bundle's feature configuration).
        objective, max_fa_per_min, target_class: as in `choose`.
        grid: the grid; None: `calibration_grid` of the bundle's method.
        backend, precision: the scorer (`bundle_scores`).
        info: more JSON-ready facts for ``metadata.calibration``.
        write: store the choice into ``bundle.json`` (`store`).
        plot: write the F1 / false-alarm plot (PNG) here.
        progress: a tqdm bar.
        folds: score each video with the fold bundle that held its subject out
            (`out_of_fold_scores`) instead of with the bundle itself.
        latency_budget: as in `calibrate` (the bundle's look-ahead is counted).

    Returns:
        The calibration.
    """
    check_objective(objective, max_fa_per_min, target_class)
    bundle = load_bundle(bundle_path)
    scorer = backend if backend == "torch" else f"onnxruntime ({precision or 'fp32'})"
    if folds is None:
        scores = bundle_scores(bundle, videos, backend=backend, precision=precision)
        info = {"scores": "the bundle's own", **dict(info or {})}
    else:
        scores = out_of_fold_scores(bundle, folds, videos, backend=backend, precision=precision)
        info = {"scores": "out-of-fold", "folds": [str(f.path) for f in folds], **dict(info or {})}
    result = calibrate(
        videos,
        scores,
        base_config(bundle),
        objective=objective,
        max_fa_per_min=max_fa_per_min,
        target_class=target_class,
        grid=calibration_grid(bundle.method_name) if grid is None else grid,
        previous=bundle.proposal_config(),
        info={"scorer": scorer, **dict(info or {})},
        progress=progress,
        latency_budget=latency_budget,
        lookahead_s=bundle.lookahead_s,
    )
    if plot is not None:
        plot_calibration(result, Path(plot), title=f"{bundle.path.name}: operating points")
    if write:
        store(bundle.path, result)
    return result


def store(bundle_path: str | Path, calibration: Calibration) -> Bundle:
    """Write the chosen point into ``bundle.json`` (operating_point, metadata.calibration)."""
    return set_operating_point(bundle_path, calibration.config, calibration.metadata())


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


def _front(fa: np.ndarray, f1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best F1 reachable at or below each false-alarm rate (a staircase)."""
    order = np.argsort(fa, kind="stable")
    return fa[order], np.maximum.accumulate(f1[order])


def plot_calibration(calibration: Calibration, out: Path, *, title: str = "") -> Path:
    """PNG: F1 against false alarms per minute for ME, MaE and overall, one dot per grid point.

    The staircase is the best F1 reachable at or below each rate; the star is the chosen point,
    the ring the configuration in force before, the dashed line the false-alarm cap.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    chosen = calibration.point
    for ax, name in zip(axes, TARGET_CLASSES[1:] + TARGET_CLASSES[:1], strict=True):
        fa = np.array([p.fa_per_min(name) for p in calibration.points])
        f1 = np.array([p.metrics(name).f1 for p in calibration.points])
        ax.scatter(fa, f1, s=14, color="0.55", alpha=0.7, label="grid points", zorder=2)
        xs, ys = _front(fa, f1)
        ax.step(xs, ys, where="post", color="tab:blue", lw=1.2, label="best F1 at <= rate", zorder=3)
        if calibration.previous is not None:
            prev = calibration.previous
            ax.scatter(
                [prev.fa_per_min(name)],
                [prev.metrics(name).f1],
                s=110,
                facecolors="none",
                edgecolors="tab:green",
                lw=1.6,
                label="before",
                zorder=4,
            )
        ax.scatter(
            [chosen.fa_per_min(name)],
            [chosen.metrics(name).f1],
            s=220,
            marker="*",
            color="tab:red",
            edgecolors="k",
            lw=0.6,
            label="chosen",
            zorder=5,
        )
        if calibration.max_fa_per_min is not None and name == calibration.target_class:
            ax.axvline(calibration.max_fa_per_min, color="tab:red", ls="--", lw=1, label="false-alarm cap")
        m = chosen.metrics(name)
        ax.set_title(f"{_LABELS[name]}: chosen F1 {m.f1:.3f}, {chosen.fa_per_min(name):.2f} FA/min")
        ax.set_xlabel("false alarms per minute of video")
        ax.set_ylabel("F1 (IoU >= 0.5)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(left=-0.02 * max(1.0, float(fa.max(initial=0.0))))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    cap = f", cap {calibration.max_fa_per_min:g}/min" if calibration.max_fa_per_min is not None else ""
    setting = ", ".join(f"{k}={_jsonable(v)}" for k, v in chosen.setting.items())
    fig.suptitle(
        f"{title or 'operating points'} — {len(calibration.videos)} videos, {calibration.minutes:.1f} min, "
        f"objective {calibration.objective} ({calibration.target_class}{cap})\nchosen: {setting}",
        fontsize=10,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------------------------
# CLI: mespot calibrate BUNDLE ANNOTATIONS --features DIR
# --------------------------------------------------------------------------------------------


def dataset_videos(
    dataset: Any,
    media: Path | None,
    features_dir: Path,
    bundle: Bundle,
    subjects: Sequence[str] | None = None,
    *,
    skip_empty: bool = False,
) -> list[Video]:
    """A dataset's videos (of `subjects`; None: all) with the bundle's features, extracted into
    `features_dir` when missing (``engine.data.features.dataset_features``); with skip_empty, a
    video that yields no valid snippet is left out with a warning instead of an error."""
    from engine.data.features import dataset_features

    features = dataset_features(dataset, media, features_dir, bundle.feature_config, skip_empty=skip_empty)
    wanted = None if subjects is None else set(subjects)
    return [
        (v, features[v.video])
        for v in dataset.videos
        if (wanted is None or v.subject in wanted) and v.video in features
    ]


__all__ = [
    "BACKEND_NAMES",
    "CALIBRATION_GRID",
    "LATENCY_BUDGET_S",
    "OBJECTIVES",
    "PROCESSING_ALLOWANCE_S",
    "TARGET_CLASSES",
    "Calibration",
    "CalibrationError",
    "EventLatency",
    "GridPoint",
    "base_config",
    "bundle_scores",
    "calibrate",
    "calibrate_bundle",
    "calibration_subjects",
    "check_objective",
    "choose",
    "dataset_videos",
    "evaluate_point",
    "event_latency",
    "fold_bundles",
    "out_of_fold_scores",
    "plot_calibration",
    "relevant_grid",
    "store",
    "sweep",
    "video_minutes",
]
