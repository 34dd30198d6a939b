"""MEGC-style evaluation of spotted intervals: mespot's one matching rule and its metrics.

The rule (docs/evaluation.md, shared/datasets.md "Scoring"): one-to-one matching; predictions
are taken in descending score; each ground truth is matched at most once; a prediction is a true
positive when its IoU (frames counted inclusively) with a not yet matched ground truth *of the
same type* is >= the threshold (0.5), and it takes the unmatched same-type truth of highest IoU.
A prediction of the wrong type is a false positive and does not consume the truth.

Counts are pooled (summed) over all videos, and over all folds for leave-one-identity-out (or
leave-one-subject-out), and precision, recall and F1 are computed once from the pooled counts
(the MEGC convention), never averaged.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from stream.errors import MespotError
from stream.intervals import ME_MAX_SECONDS, ExpressionType, Interval

__all__ = [
    "MEGC_COLUMNS",
    "MatchResult",
    "Metrics",
    "Report",
    "SubmissionFileError",
    "Tally",
    "evaluate",
    "evaluate_folds",
    "match",
    "read_megc_csv",
    "tally_video",
    "write_megc_csv",
]

MEGC_COLUMNS: tuple[str, ...] = ("vid", "pred_onset", "pred_offset", "type")
_EPS = 1e-6


class SubmissionFileError(MespotError, ValueError):
    """A MEGC submission CSV cannot be read.

    Attributes:
        path: the file.
        problem: what is wrong (with the line number where there is one).
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


# --------------------------------------------------------------------------------------------
# Counts and metrics
# --------------------------------------------------------------------------------------------


def _ratio(num: int, den: int) -> float:
    # Every 0/0 (no predictions, no truths) is defined as 0.0; the counts show why.
    return num / den if den else 0.0


@dataclass(frozen=True, slots=True)
class Metrics:
    """TP / FP / FN counts and the precision, recall and F1 they give.

    ``fn`` is the number of ground truths left unmatched. Derived values are 0.0 whenever their
    denominator is 0: precision with no predictions, recall with no truths, F1 with neither (no
    predictions and no truths gives P = R = F1 = 0.0, not 1.0).
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Metrics) -> Metrics:
        return Metrics(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def n_predictions(self) -> int:
        return self.tp + self.fp

    @property
    def n_truths(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        # Equals 2PR / (P + R) whenever that is defined.
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "recall": self.recall,
            "precision": self.precision,
            "f1": self.f1,
        }


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Outcome of matching one video's predictions against its ground truth.

    Attributes:
        me: counts for ME predictions and ME truths.
        mae: counts for MaE predictions and MaE truths.
        pairs: ``(prediction index, truth index)`` of every true positive, indices into the lists
            given to ``match``, in the order the matches were made (descending score).
    """

    me: Metrics
    mae: Metrics
    pairs: tuple[tuple[int, int], ...] = ()

    @property
    def overall(self) -> Metrics:
        return self.me + self.mae

    def of(self, etype: ExpressionType) -> Metrics:
        return self.me if etype == ExpressionType.ME else self.mae


def _rank_key(pred: Interval, index: int) -> tuple[float, int, int, int]:
    # Descending score; ties by onset, offset, then input position (deterministic).
    return (-pred.score, pred.onset, pred.offset, index)


def _overlap(a: Interval, b: Interval) -> int:
    return min(a.offset, b.offset) - max(a.onset, b.onset) + 1


def match(predictions: Sequence[Interval], truths: Sequence[Interval], iou: float = 0.5) -> MatchResult:
    """One-to-one matching of one video's predictions to its ground truth (mespot's rule).

    Predictions are visited in descending score. Each takes, among the still unmatched truths of
    its own type, the one with the highest IoU, provided that IoU is >= ``iou`` (compared exactly
    as a fraction of inclusive frame counts, so 0.5 is met by inter 10 / union 20). A prediction
    that takes none is a false positive; a wrong-type prediction never consumes a truth. Truths
    left unmatched are false negatives.

    Args:
        predictions: scored predicted intervals (frames, inclusive).
        truths: ground-truth intervals of the same video.
        iou: IoU threshold in (0, 1].

    Returns:
        Per-type counts and the matched pairs.
    """
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"IoU threshold must be in (0, 1], got {iou}")
    for p in predictions:
        if math.isnan(p.score):
            raise ValueError(f"prediction {p} has a NaN score; matching order needs scores")
    threshold = Fraction(iou)  # exact binary value of the float
    order = sorted(range(len(predictions)), key=lambda i: _rank_key(predictions[i], i))
    used = [False] * len(truths)
    tp = dict.fromkeys(ExpressionType, 0)
    fp = dict.fromkeys(ExpressionType, 0)
    pairs: list[tuple[int, int]] = []
    for i in order:
        pred = predictions[i]
        best: int | None = None
        best_iou = Fraction(0)
        for j, truth in enumerate(truths):
            if used[j] or truth.type != pred.type:
                continue
            inter = _overlap(pred, truth)
            if inter <= 0:
                continue
            value = Fraction(inter, pred.length + truth.length - inter)
            # Strictly greater keeps the earlier truth on an IoU tie.
            if value >= threshold and (best is None or value > best_iou):
                best, best_iou = j, value
        if best is None:
            fp[pred.type] += 1
        else:
            used[best] = True
            tp[pred.type] += 1
            pairs.append((i, best))
    fn = dict.fromkeys(ExpressionType, 0)
    for j, truth in enumerate(truths):
        if not used[j]:
            fn[truth.type] += 1
    me, mae = ExpressionType.ME, ExpressionType.MAE
    return MatchResult(
        me=Metrics(tp[me], fp[me], fn[me]),
        mae=Metrics(tp[mae], fp[mae], fn[mae]),
        pairs=tuple(pairs),
    )


# --------------------------------------------------------------------------------------------
# Per-video tallies (ME, MaE and the MC-WES F1-ME variants)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts for one video, or pooled over videos / folds (sum with ``+``).

    Attributes:
        me, mae: the evaluated prediction set against the truths, per type.
        me_05: F1-ME(0.5) counts: every proposal of the overall set lasting <= 0.5 s, taken as ME,
            against the ME truths.
        me_10: F1-ME(1.0) counts: the same with proposals lasting <= 1.0 s.
        me_p: F1-ME(p) counts: proposals of the evaluated (operating-point) set lasting <= 0.5 s,
            taken as ME, against the ME truths.
    """

    me: Metrics = Metrics()
    mae: Metrics = Metrics()
    me_05: Metrics = Metrics()
    me_10: Metrics = Metrics()
    me_p: Metrics = Metrics()

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(a + b for a, b in zip(self._parts(), other._parts(), strict=True)))

    def _parts(self) -> tuple[Metrics, ...]:
        return (self.me, self.mae, self.me_05, self.me_10, self.me_p)

    @property
    def overall(self) -> Metrics:
        return self.me + self.mae

    def to_dict(self) -> dict[str, dict[str, float | int]]:
        return {
            "me": self.me.to_dict(),
            "mae": self.mae.to_dict(),
            "overall": self.overall.to_dict(),
            "f1_me_0.5": self.me_05.to_dict(),
            "f1_me_1.0": self.me_10.to_dict(),
            "f1_me_p": self.me_p.to_dict(),
        }


def _short_as_me(predictions: Iterable[Interval], fps: float, max_s: float) -> list[Interval]:
    """Predictions lasting <= max_s seconds, retyped as ME."""
    limit = max_s * fps + _EPS
    return [dataclasses.replace(p, type=ExpressionType.ME) for p in predictions if p.length <= limit]


def tally_video(
    predictions: Sequence[Interval],
    truths: Sequence[Interval],
    fps: float,
    *,
    iou: float = 0.5,
    all_predictions: Sequence[Interval] | None = None,
    me_max_s: float = ME_MAX_SECONDS,
) -> Tally:
    """All counts of one video.

    Args:
        predictions: the evaluated (operating-point) predictions.
        truths: the video's ground truth.
        fps: the video's frame rate (durations for the F1-ME variants are in seconds).
        iou: IoU threshold.
        all_predictions: the overall proposal set before the operating point (e.g. before the
            score truncation) for F1-ME(0.5) / F1-ME(1.0); None uses ``predictions``.
        me_max_s: the 0.5 s of F1-ME(0.5) and F1-ME(p); F1-ME(1.0) uses 2 x this.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    overall_set = predictions if all_predictions is None else all_predictions
    me_truths = [t for t in truths if t.type == ExpressionType.ME]
    main = match(predictions, truths, iou)
    return Tally(
        me=main.me,
        mae=main.mae,
        me_05=match(_short_as_me(overall_set, fps, me_max_s), me_truths, iou).me,
        me_10=match(_short_as_me(overall_set, fps, 2 * me_max_s), me_truths, iou).me,
        me_p=match(_short_as_me(predictions, fps, me_max_s), me_truths, iou).me,
    )


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """Per-video counts and the metrics of their pooled sum.

    Attributes:
        videos: per-video tallies.
        iou: the IoU threshold used.
        folds: per-fold pooled tallies when built by ``evaluate_folds`` (empty otherwise).
    """

    videos: Mapping[str, Tally]
    iou: float = 0.5
    folds: Mapping[str, Tally] = field(default_factory=dict)

    @property
    def pooled(self) -> Tally:
        total = Tally()
        for tally in self.videos.values():
            total = total + tally
        return total

    @property
    def me(self) -> Metrics:
        return self.pooled.me

    @property
    def mae(self) -> Metrics:
        return self.pooled.mae

    @property
    def overall(self) -> Metrics:
        return self.pooled.overall

    @property
    def f1_me_05(self) -> float:
        """MC-WES F1-ME(0.5)."""
        return self.pooled.me_05.f1

    @property
    def f1_me_10(self) -> float:
        """MC-WES F1-ME(1.0)."""
        return self.pooled.me_10.f1

    @property
    def f1_me_p(self) -> float:
        """MC-WES F1-ME(p)."""
        return self.pooled.me_p.f1

    def to_dict(self) -> dict[str, Any]:
        return {
            "iou": self.iou,
            "pooled": self.pooled.to_dict(),
            "folds": {name: t.to_dict() for name, t in self.folds.items()},
            "videos": {name: t.to_dict() for name, t in self.videos.items()},
        }

    def table(self) -> str:
        """The pooled metrics as a fixed-width text table."""
        pooled = self.pooled
        rows = [
            ("ME", pooled.me),
            ("MaE", pooled.mae),
            ("Overall", pooled.overall),
            ("F1-ME(0.5)", pooled.me_05),
            ("F1-ME(1.0)", pooled.me_10),
            ("F1-ME(p)", pooled.me_p),
        ]
        head = f"{'':<11}{'TP':>6}{'FP':>6}{'FN':>6}{'recall':>9}{'precision':>11}{'F1':>8}"
        lines = [f"IoU >= {self.iou:g}, {len(self.videos)} videos, counts pooled", head]
        for name, m in rows:
            lines.append(
                f"{name:<11}{m.tp:>6}{m.fp:>6}{m.fn:>6}{m.recall:>9.4f}{m.precision:>11.4f}{m.f1:>8.4f}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _fps_of(fps: Mapping[str, float] | float, video: str) -> float:
    if isinstance(fps, Mapping):
        if video not in fps:
            raise KeyError(f"no frame rate given for video {video!r}")
        return float(fps[video])
    return float(fps)


def evaluate(
    predictions: Mapping[str, Sequence[Interval]],
    truths: Mapping[str, Sequence[Interval]],
    fps: Mapping[str, float] | float,
    *,
    iou: float = 0.5,
    all_predictions: Mapping[str, Sequence[Interval]] | None = None,
    me_max_s: float = ME_MAX_SECONDS,
) -> Report:
    """Evaluate a prediction set against ground truth, video by video, counts pooled.

    Every video named in ``truths`` or ``predictions`` is scored: a video without predictions
    contributes its truths as false negatives, one without truths its predictions as false
    positives.

    Args:
        predictions: video -> predicted intervals (the operating-point set).
        truths: video -> ground-truth intervals.
        fps: one frame rate for all videos, or video -> frame rate.
        iou: IoU threshold (0.5).
        all_predictions: video -> the overall proposal set for F1-ME(0.5) / F1-ME(1.0) (see
            ``tally_video``); None uses ``predictions``.
        me_max_s: ME duration limit in seconds for the F1-ME variants.

    Returns:
        The report (per-video tallies, pooled metrics).
    """
    names = sorted(set(truths) | set(predictions))
    videos: dict[str, Tally] = {}
    for name in names:
        preds = predictions.get(name, ())
        videos[name] = tally_video(
            preds,
            truths.get(name, ()),
            _fps_of(fps, name),
            iou=iou,
            all_predictions=None if all_predictions is None else all_predictions.get(name, ()),
            me_max_s=me_max_s,
        )
    return Report(videos=videos, iou=iou)


def evaluate_folds(fold_reports: Mapping[str, Report] | Sequence[Report]) -> Report:
    """Pool leave-one-out fold reports into one report: counts summed over folds (not F1 averaged).

    Args:
        fold_reports: fold name (the held-out identity, or subject) -> report, or a sequence of reports
            (named "0", "1", ...). Video names must be unique across folds.

    Returns:
        A report over every video, with ``folds`` holding each fold's pooled tally.
    """
    named = (
        dict(fold_reports)
        if isinstance(fold_reports, Mapping)
        else {str(i): r for i, r in enumerate(fold_reports)}
    )
    ious = {r.iou for r in named.values()}
    if len(ious) > 1:
        raise ValueError(f"fold reports use different IoU thresholds {sorted(ious)}")
    videos: dict[str, Tally] = {}
    owner: dict[str, str] = {}
    for fold, report in named.items():
        for video, tally in report.videos.items():
            if video in videos:
                raise ValueError(f"video {video!r} appears in folds {owner[video]!r} and {fold!r}")
            videos[video] = tally
            owner[video] = fold
    return Report(
        videos=videos,
        iou=ious.pop() if ious else 0.5,
        folds={fold: report.pooled for fold, report in named.items()},
    )


# --------------------------------------------------------------------------------------------
# MEGC submission CSV
# --------------------------------------------------------------------------------------------


def write_megc_csv(
    path: str | Path,
    predictions: Mapping[str, Iterable[Interval]],
    *,
    with_score: bool = False,
) -> None:
    """Write a MEGC submission CSV: ``vid,pred_onset,pred_offset,type`` with type ``me``/``mae``.

    Videos are written in sorted order, intervals by onset then offset. ``with_score`` appends a
    ``score`` column (not part of the MEGC layout; ``read_megc_csv`` reads it back).
    """
    columns = [*MEGC_COLUMNS, "score"] if with_score else list(MEGC_COLUMNS)
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for vid in sorted(predictions):
            for iv in sorted(predictions[vid], key=lambda p: (p.onset, p.offset, p.type.value)):
                row: list[Any] = [vid, iv.onset, iv.offset, iv.type.value]
                if with_score:
                    row.append(repr(float(iv.score)))
                writer.writerow(row)


def _frame_number(path: Path, line: int, column: str, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise SubmissionFileError(path, f"line {line}: {column} {text!r} is not a number") from None
    if not value.is_integer():
        raise SubmissionFileError(path, f"line {line}: {column} {text!r} is not a whole frame number")
    return int(value)


def read_megc_csv(path: str | Path) -> dict[str, list[Interval]]:
    """Read a MEGC submission CSV (as written by ``write_megc_csv``).

    The header must hold ``vid, pred_onset, pred_offset, type`` (spaces and case ignored), and may
    hold ``score``; without it every interval scores 1.0. Videos without rows do not appear.

    Raises:
        SubmissionFileError: missing file, bad header, bad number, offset before onset or an
            unknown type, naming the file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise SubmissionFileError(p, "no such file")
    out: dict[str, list[Interval]] = {}
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise SubmissionFileError(p, "empty file (expected a header row)")
        names = [h.strip().lower() for h in header]
        missing = [c for c in MEGC_COLUMNS if c not in names]
        if missing:
            raise SubmissionFileError(p, f"header {header} lacks columns {missing}")
        col = {name: names.index(name) for name in (*MEGC_COLUMNS, "score") if name in names}
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < len(names):
                raise SubmissionFileError(p, f"line {line}: {len(row)} fields, expected {len(names)}")
            vid = row[col["vid"]].strip()
            onset = _frame_number(p, line, "pred_onset", row[col["pred_onset"]].strip())
            offset = _frame_number(p, line, "pred_offset", row[col["pred_offset"]].strip())
            kind = row[col["type"]].strip().lower()
            try:
                etype = ExpressionType(kind)
            except ValueError:
                raise SubmissionFileError(p, f"line {line}: type {kind!r} is not 'me' or 'mae'") from None
            score = 1.0
            if "score" in col:
                try:
                    score = float(row[col["score"]])
                except ValueError:
                    raise SubmissionFileError(
                        p, f"line {line}: score {row[col['score']]!r} is not a number"
                    ) from None
            try:
                iv = Interval(onset=onset, offset=offset, type=etype, score=score)
            except ValueError as exc:
                raise SubmissionFileError(p, f"line {line}: {exc}") from None
            out.setdefault(vid, []).append(iv)
    return out


def grid_ceiling(
    videos: Iterable[Any],
    snippet_s: float,
    config: Any,
    n_snippets: Mapping[str, int],
) -> Report:
    """What a snippet grid allows at best: perfect scores spotted through the one proposal path.

    Each video's scores are its exact per-snippet labels (`engine.data.labels.full_labels`, the
    targets of full supervision: ME and MaE columns), which `engine.proposals.propose` turns into
    intervals with ``config`` as any model's scores would be. Whatever this misses no network on
    the same grid, proposals and type rule can find: a grid too coarse for short expressions, or a
    type rule the grid cannot satisfy.

    Args:
        videos: the annotated videos (`VideoRecord`).
        snippet_s: the grid step in seconds.
        config: the proposal configuration (`ProposalConfig`).
        n_snippets: video -> its number of snippets.

    Returns:
        The report against the videos' own expressions.
    """
    from engine.data.labels import full_labels
    from engine.proposals import propose

    predictions: dict[str, list[Interval]] = {}
    truths: dict[str, list[Interval]] = {}
    fps: dict[str, float] = {}
    for v in videos:
        t = n_snippets[v.video]
        perfect = full_labels(v, t, snippet_s)[:, 1:].astype(np.float64)  # (T, 2): ME, MaE
        predictions[v.video] = propose(
            perfect, config, snippet_s=snippet_s, fps=v.fps, frame_offset=v.first_frame
        )
        truths[v.video] = list(v.expressions)
        fps[v.video] = v.fps
    return evaluate(predictions, truths, fps)
