"""Proposals: per-snippet scores -> scored expression intervals in frames.

One proposal path shared by training (validation on the training subjects), evaluation and the
live stage, which calls the same functions on a sliding window of scores. Everything here is pure
numpy, deterministic (stable sorts, explicit tie-breaks) and works on any window length.

The steps (MC-WES sec. 3.5, GIM sec. 3.6.3):

1. Candidate spans from a class-agnostic score (attention / intensity / actionness):
   GIM's *multi-threshold* (contiguous runs above each threshold) or MC-WES's *multi-top*
   (for each h in M', the top-k snippets with k = max(1, floor(T / h)), eq. 7, grouped into
   contiguous runs).
2. Each span gets an outer-inner contrast (OIC) score (MC-WES eq. 23-25, GIM eq. 15-16).
3. A type: by duration (<= 0.5 s is ME, up to a maximum of 4 s MaE) or by class score.
4. 1-D NMS, class-wise (GIM) or joint (MC-WES).

Spans are half-open snippet ranges ``(start, end)``; snippet j covers canonical frames
``[j * g, (j + 1) * g)`` where g (frames per snippet) may be fractional. ``span_to_frames`` turns a
span into the inclusive frame range the datasets use. NaN marks an invalid snippet (no face, time
gap): it never belongs to a proposal and is left out of the OIC outer band.

See docs/evaluation.md for the parameters and where this differs from the papers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from numbers import Real
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from stream.config import check_number, refuse_unknown_keys
from stream.errors import ConfigError
from stream.intervals import MAE_MAX_SECONDS, ME_MAX_SECONDS, ExpressionType, Interval

__all__ = [
    "CLASS_ORDER",
    "PRESETS",
    "ProposalConfig",
    "Span",
    "class_means",
    "clip_offset",
    "interval_to_span",
    "multi_threshold_proposals",
    "multi_top_proposals",
    "nms_1d",
    "outer_band",
    "outer_inner_contrast",
    "proposal_key",
    "propose",
    "shift_offsets",
    "span_to_frames",
    "span_to_interval",
    "top_k_from_divisor",
    "type_by_class",
    "type_by_duration",
]

# Column order of a (T, C) class-score array.
CLASS_ORDER: tuple[ExpressionType, ...] = (ExpressionType.ME, ExpressionType.MAE)

# Half-open snippet range [start, end).
Span = tuple[int, int]

# Tolerance for frame arithmetic on fractional snippet lengths (8/30 s at 200 fps = 53.33... frames:
# 3 * 53.333333333333336 is 160.00000000000003, which must still be frame 160).
_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# Snippet grid <-> frames
# --------------------------------------------------------------------------------------------


def span_to_frames(
    start: int,
    end: int,
    snippet_frames: float,
    *,
    frame_offset: int = 0,
    n_frames: int | None = None,
) -> tuple[int, int] | None:
    """Inclusive frame range covered by the snippets ``[start, end)``.

    Snippet j covers frames f with ``j <= f / g < j + 1`` (g = ``snippet_frames``), so the span
    covers ``ceil(start * g) .. ceil(end * g) - 1``. With an integer g this is
    ``start * g .. end * g - 1``.

    Args:
        start: first snippet (absolute index on the video's snippet grid).
        end: one past the last snippet (> start).
        snippet_frames: frames per snippet at the video's rate (snippet seconds x fps), may be
            fractional.
        frame_offset: number of the video's first frame (0 for the canonical clock, 1 for image
            folders numbered from 1).
        n_frames: frames in the video; the range is clipped to the last one (the last snippet may
            be partial).

    Returns:
        ``(onset, offset)`` inclusive, or None when the span lies wholly after the last frame.
    """
    if end <= start or start < 0:
        raise ValueError(f"snippet span [{start}, {end}) is empty or negative")
    if not snippet_frames > 0:
        raise ValueError(f"snippet_frames must be > 0, got {snippet_frames}")
    onset = math.ceil(start * snippet_frames - _EPS)
    offset = math.ceil(end * snippet_frames - _EPS) - 1
    if n_frames is not None:
        offset = min(offset, n_frames - 1)
    if offset < onset:
        return None
    return onset + frame_offset, offset + frame_offset


def interval_to_span(interval: Interval, snippet_frames: float, *, frame_offset: int = 0) -> Span:
    """The snippets ``[start, end)`` that overlap an inclusive frame interval.

    The inverse of ``span_to_frames`` for intervals on snippet boundaries; a ground-truth
    interval maps to every snippet it touches.
    """
    if not snippet_frames > 0:
        raise ValueError(f"snippet_frames must be > 0, got {snippet_frames}")
    start = math.floor((interval.onset - frame_offset) / snippet_frames + _EPS)
    end = math.floor((interval.offset - frame_offset) / snippet_frames + _EPS) + 1
    if start < 0:
        raise ValueError(f"interval {interval} starts before frame_offset {frame_offset}")
    return start, end


def span_to_interval(
    start: int,
    end: int,
    snippet_frames: float,
    etype: ExpressionType,
    *,
    score: float = 1.0,
    apex_snippet: int | None = None,
    frame_offset: int = 0,
    n_frames: int | None = None,
) -> Interval | None:
    """A scored ``Interval`` in frames from a snippet span (see ``span_to_frames``).

    Args:
        start, end: the half-open snippet span.
        snippet_frames: frames per snippet, may be fractional.
        etype: the expression type.
        score: the proposal's confidence.
        apex_snippet: snippet holding the apex; the apex frame is its middle frame, clipped into
            the interval. None: no apex.
        frame_offset, n_frames: as in ``span_to_frames``.

    Returns:
        The interval, or None when the span lies wholly after the last frame.
    """
    frames = span_to_frames(start, end, snippet_frames, frame_offset=frame_offset, n_frames=n_frames)
    if frames is None:
        return None
    onset, offset = frames
    apex = None
    if apex_snippet is not None:
        mid = math.floor((apex_snippet + 0.5) * snippet_frames + _EPS) + frame_offset
        apex = min(max(mid, onset), offset)
    return Interval(onset=onset, offset=offset, type=etype, apex=apex, score=float(score))


# --------------------------------------------------------------------------------------------
# Candidate spans
# --------------------------------------------------------------------------------------------


def _as_1d(scores: np.ndarray | Sequence[float], name: str = "scores") -> np.ndarray:
    a = np.asarray(scores, dtype=np.float64)  # (T,)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (T,), got shape {a.shape}")
    return a


def _runs(mask: np.ndarray) -> list[Span]:
    """Half-open ranges of consecutive True values of a (T,) bool mask."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)  # (T + 2,)
    step = np.diff(padded)  # (T + 1,): +1 where a run starts, -1 one past where it ends
    starts = np.flatnonzero(step == 1)
    ends = np.flatnonzero(step == -1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def multi_threshold_proposals(
    scores: np.ndarray | Sequence[float], thresholds: Iterable[float]
) -> list[Span]:
    """GIM / CO2-Net multi-threshold proposals.

    For each threshold, every maximal run of consecutive snippets whose score is strictly higher
    than the threshold is a proposal ("consecutive frames with intensity scores higher than a
    given threshold", GIM sec. 3.6.3).

    Args:
        scores: (T,) class-agnostic scores; NaN (invalid snippet) is never above a threshold.
        thresholds: the threshold levels.

    Returns:
        The distinct spans ``(start, end)`` (end exclusive), sorted by start then end. A span
        found at several thresholds is listed once.
    """
    a = _as_1d(scores)  # (T,)
    spans: set[Span] = set()
    for thr in thresholds:
        if not math.isfinite(thr):
            raise ValueError(f"threshold {thr!r} is not a finite number")
        with np.errstate(invalid="ignore"):
            spans.update(_runs(a > thr))  # NaN > thr is False
    return sorted(spans)


def top_k_from_divisor(n_snippets: int, divisor: float) -> int:
    """MC-WES eq. 7: ``k = max(1, floor(T / h))``."""
    if not divisor >= 1:
        raise ValueError(f"top-k divisor h must be >= 1, got {divisor}")
    return max(1, math.floor(n_snippets / divisor + _EPS))


def multi_top_proposals(
    scores: np.ndarray | Sequence[float],
    divisors: Iterable[float] = (),
    *,
    top_ks: Iterable[int] = (),
) -> list[Span]:
    """MC-WES multi-top proposals (sec. 3.5, Fig. 4(c)).

    For each h in M' (``divisors``, MC-WES uses 15 consecutive integers: 8..22 on CAS(ME)^2,
    2..16 on SAMM-LV) the top ``k_m = max(1, floor(T / h))`` snippets by class-agnostic score are
    selected; the selected snippets are sorted by time and every run of consecutive ones is a
    proposal. Explicit ``top_ks`` may be given as well (or instead).

    Ties are broken toward the earlier snippet (stable sort), so the result is deterministic.

    Args:
        scores: (T,) class-agnostic scores; NaN snippets are never selected.
        divisors: the h values of M' (each >= 1); k is taken relative to this window's T.
        top_ks: explicit k values (>= 1).

    Returns:
        The distinct spans ``(start, end)``, sorted by start then end.
    """
    a = _as_1d(scores)  # (T,)
    n = a.shape[0]
    ks = [top_k_from_divisor(n, h) for h in divisors]
    for k in top_ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"top-k value must be an integer >= 1, got {k!r}")
        ks.append(int(k))
    valid = ~np.isnan(a)  # (T,)
    n_valid = int(valid.sum())
    # Descending by score, earlier snippet first on ties; NaN last.
    order = np.argsort(-np.where(valid, a, -np.inf), kind="stable")  # (T,)
    spans: set[Span] = set()
    for k in ks:
        mask = np.zeros(n, dtype=bool)  # (T,)
        mask[order[: min(k, n_valid)]] = True
        spans.update(_runs(mask))
    return sorted(spans)


# --------------------------------------------------------------------------------------------
# Scores and types
# --------------------------------------------------------------------------------------------


def outer_band(n_snippets: int, start: int, end: int, outer_ratio: float = 0.25) -> tuple[Span, Span]:
    """The outer bands around ``[start, end)``: left ``[start - b, start)``, right ``[end, end + b)``.

    ``b = max(1, ceil(outer_ratio * L))`` with L = end - start, clipped at the window's borders.
    """
    length = end - start
    band = max(1, math.ceil(outer_ratio * length - _EPS))
    return (max(0, start - band), start), (end, min(n_snippets, end + band))


def outer_inner_contrast(
    scores: np.ndarray | Sequence[float],
    start: int,
    end: int,
    *,
    outer_ratio: float = 0.25,
) -> float:
    """Outer-inner contrast (AutoLoc OIC; MC-WES eq. 24-25 without the video term, GIM eq. 15).

    ``mean(scores[start:end]) - mean(outer band)``, the outer band being
    ``b = max(1, ceil(outer_ratio * L))`` snippets on each side, outside the proposal, clipped at
    the borders of the window. The outer mean is taken over the band snippets that exist and are
    valid (not NaN); when there are none (a proposal that fills the window) it is 0.

    Differences from the papers' equations (docs/evaluation.md): GIM divides the outer sum by
    L/2 even where the band is clipped (snippets outside the video count as zero); MC-WES's eq. 25
    as printed also sums the proposal's own first and last snippets into the outer band. Both use
    ``outer_ratio`` = 0.25.

    Args:
        scores: (T,) the scores to contrast (a class's logits or the class-agnostic score).
        start, end: the half-open span, ``0 <= start < end <= T``.
        outer_ratio: band length per side as a fraction of the proposal length (>= 0).

    Returns:
        The OIC score.
    """
    a = _as_1d(scores)  # (T,)
    n = a.shape[0]
    if not 0 <= start < end <= n:
        raise ValueError(f"span [{start}, {end}) does not fit in {n} snippets")
    if not outer_ratio >= 0:
        raise ValueError(f"outer_ratio must be >= 0, got {outer_ratio}")
    inner = a[start:end]
    inner = inner[~np.isnan(inner)]
    if inner.size == 0:
        raise ValueError(f"span [{start}, {end}) holds no valid (non-NaN) snippet")
    (l0, l1), (r0, r1) = outer_band(n, start, end, outer_ratio)
    outer = np.concatenate((a[l0:l1], a[r0:r1]))  # (<= 2b,)
    outer = outer[~np.isnan(outer)]
    outer_mean = float(outer.mean()) if outer.size else 0.0
    return float(inner.mean()) - outer_mean


def type_by_duration(
    length_frames: int,
    fps: float,
    *,
    me_max_s: float = ME_MAX_SECONDS,
    max_s: float = MAE_MAX_SECONDS,
) -> ExpressionType | None:
    """Type by duration: ME when ``length / fps <= me_max_s``, MaE up to ``max_s``.

    Args:
        length_frames: frames in the interval, both ends counted.
        fps: the video's frame rate.
        me_max_s: the longest ME in seconds (0.5 s: 15 frames at 30 fps, 100 at 200 fps).
        max_s: the longest expression in seconds (Ekman's 4 s).

    Returns:
        The type, or None when the interval is longer than ``max_s`` (not an expression).
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if length_frames > max_s * fps + _EPS:
        return None
    return ExpressionType.ME if length_frames <= me_max_s * fps + _EPS else ExpressionType.MAE


def type_by_class(
    class_scores: np.ndarray, start: int, end: int, *, me_share_min: float = 0.5
) -> ExpressionType:
    """ME when the ME class holds at least ``me_share_min`` of the two classes' mean scores
    inside ``[start, end)``, else MaE; at 0.5 the class of the higher mean (ME on a tie).

    Args:
        class_scores: (T, 2) scores, columns in ``CLASS_ORDER`` (ME, MaE), each >= 0; NaN ignored.
        start, end: the half-open span.
        me_share_min: the ME share, mean ME / (mean ME + mean MaE), from which a span is ME.
    """
    return _type_of_means(class_means(class_scores, start, end), me_share_min)


def class_means(class_scores: np.ndarray, start: int, end: int) -> tuple[float, float]:
    """Mean (ME, MaE) class score inside ``[start, end)``, NaN ignored; -inf for a class with no
    valid score there (it cannot win)."""
    s = np.asarray(class_scores, dtype=np.float64)  # (T, C)
    if s.ndim != 2 or s.shape[1] != len(CLASS_ORDER):
        raise ValueError(f"class scores must have shape (T, {len(CLASS_ORDER)}), got {s.shape}")
    inside = s[start:end]  # (L, C)
    if inside.size == 0 or np.isnan(inside).all():
        raise ValueError(f"span [{start}, {end}) holds no valid class score")
    valid = ~np.isnan(inside)  # (L, C)
    counts = valid.sum(axis=0)  # (C,)
    sums = np.where(valid, inside, 0.0).sum(axis=0)  # (C,)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)  # (C,)
    return float(means[0]), float(means[1])


def _type_of_means(means: tuple[float, float], me_share_min: float) -> ExpressionType:
    """ME iff me / (me + mae) >= share, written without the division: (1 - share) * me >=
    share * mae. At 0.5 both sides halve exactly, so it is me >= mae (the argmax, ME on ties)."""
    me, mae = means
    return ExpressionType.ME if (1.0 - me_share_min) * me >= me_share_min * mae else ExpressionType.MAE


# --------------------------------------------------------------------------------------------
# NMS
# --------------------------------------------------------------------------------------------


def _rank_key(interval: Interval) -> tuple[float, int, int, str]:
    # Descending score; ties by time then type, so the order never depends on input order.
    return (-interval.score, interval.onset, interval.offset, interval.type.value)


def nms_1d(intervals: Iterable[Interval], iou_threshold: float, *, class_wise: bool = True) -> list[Interval]:
    """Greedy 1-D non-maximum suppression on scored frame intervals.

    Intervals are visited in descending score; one is kept unless its IoU (inclusive frames,
    ``Interval.iou``) with an already kept interval is strictly greater than ``iou_threshold``.

    Args:
        intervals: scored intervals.
        iou_threshold: overlaps above it are suppressed (MC-WES: 0.01, i.e. nearly any overlap).
        class_wise: True (GIM): only intervals of the same type suppress each other. False
            (joint, MC-WES): any type suppresses any other.

    Returns:
        The kept intervals, in descending score (ties by onset, offset, type).
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"NMS IoU threshold must be in [0, 1], got {iou_threshold}")
    ordered = sorted(intervals, key=_rank_key)
    if any(math.isnan(iv.score) for iv in ordered):
        raise ValueError("NMS needs scored intervals; got a NaN score")
    kept: list[Interval] = []
    for cand in ordered:
        if not any((not class_wise or k.type == cand.type) and k.iou(cand) > iou_threshold for k in kept):
            kept.append(cand)
    return kept


# --------------------------------------------------------------------------------------------
# Configuration and the one entry point
# --------------------------------------------------------------------------------------------

_MODES = ("threshold", "top")
_TYPE_RULES = ("duration", "class", "apex")
_OIC_SOURCES = ("class", "actionness")
_NMS_MODES = ("class", "joint")


# Operating-point grid searched on the training videos (small: it runs once per fold).
OPERATING_GRID: Mapping[str, tuple[Any, ...]] = MappingProxyType(
    {
        "thresholds": (
            (0.5,),
            (0.3, 0.5, 0.7),
            (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
            # Sparse actionness (attention under a sparsity loss) rarely passes 0.1.
            (0.03, 0.05, 0.1, 0.15, 0.2),
        ),
        "min_score": (None, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
        # On the 4-frame grid a score run breaks into pieces that overlap a whole expression by
        # less than IoU 0.5; a lower NMS overlap lets the best piece suppress the rest.
        "nms_iou": (0.5, 0.1),
        # (ME, MaE) seconds added to each proposal's offset (`ProposalConfig.offset_shift_s`):
        # a score run ends later than a short ME (the 0.2 s flow still spans the ME after its
        # offset) and earlier than a MaE's slow release. MEs at most 2 frames (at 30 fps)
        # earlier: an ME event's latency counts from the snippet holding its published offset,
        # and a shift of one 4-frame hop or more put the default bundle's ME p50 at 0.55 s, over
        # the 0.5 s budget (docs/benchmarks.md); 2 frames stay in the same snippet. MaEs up to
        # 0.67 s (20 frames) either way: later for GIM's intensity, which falls before a MaE's
        # slow release ends; earlier for the attention-based methods, whose MaE spans run long
        # (within the 1.5 s MaE budget either way; a later offset is published once seen). No
        # shift first, so ties keep it.
        "offset_shift_s": tuple(
            (me, mae)
            for me in (0.0, -1 / 15)
            for mae in (0.0, 2 / 15, 4 / 15, 0.4, 8 / 15, 2 / 3, -2 / 15, -4 / 15, -0.4, -8 / 15, -2 / 3)
        ),
    }
)

# Proposal fields applied after NMS: a grid search spots once per setting of the other fields
# and varies these on the same proposals (`engine.train.grid_counts`).
POST_NMS_FIELDS: frozenset[str] = frozenset({"offset_shift_s"})


@dataclass(frozen=True)
class ProposalConfig:
    """How snippet scores become proposals.

    Attributes:
        mode: "threshold" (GIM multi-threshold) or "top" (MC-WES multi-top).
        thresholds: threshold levels for mode "threshold" (on the class-agnostic score).
        top_divisors: the set M' of h values for mode "top"; k = max(1, floor(T / h)) (eq. 7),
            i.e. the top ratio is 1/h of the window.
        outer_ratio: OIC outer band per side as a fraction of the proposal length (psi; 0.25 in
            both papers).
        oic_source: "class" (MC-WES: OIC on each class's own scores, eq. 23-25) or "actionness"
            (GIM: OIC on the class-agnostic intensity, eq. 15).
        video_score_weight: MC-WES's varsigma, weight of the video-level class score added to the
            OIC (eq. 23); 0 disables the term (the live stage has no video-level score).
        type_rule: "duration" (<= me_max_s is ME), "class" (higher mean class score inside) or
            "apex" (higher class score at the span's apex, its snippet of highest actionness;
            GIM sec. 3.6.3 types a proposal by its pseudo-apex).
        me_max_s: longest ME in seconds for the duration rule and the class-agnostic default.
        duration_tolerance_hops: the duration rule types a span ME up to ``me_max_s`` plus this
            many grid steps (a span is whole snippets, so the tightest span around a 0.5 s ME can
            be one step longer). 1 by default: on SynthSpot-v2's labels and a 4-frame grid it
            recovers 91.5 % of the MEs against 40.7 % with 0, for 5.7 % of the MaEs
            (`benchmarks/grid_ceiling.py`, docs/evaluation.md).
        min_duration_s: proposals shorter than this are dropped.
        max_duration_s: proposals longer than this are dropped (Ekman's 4 s).
        nms: "class" (class-wise, GIM) or "joint" (MC-WES).
        nms_iou: NMS suppresses overlaps strictly above this IoU.
        min_score: proposals scoring below this are dropped before NMS (MC-WES's truncation
            threshold 0.1); None keeps all.
        class_spans: in threshold mode, also cut spans from each class's own scores where the
            class-agnostic score is their maximum (the default actionness). Expressions of both
            types touch or nest (an ME inside or right after a MaE): the maximum merges them into
            one run, each class's scores keep them apart. Off by default: the online spotter's
            exactness is proven for spans of the class-agnostic score only
            (`benchmarks/grid_ceiling.py` measures what it recovers offline).
        me_share_min: with type_rule "class" or "apex", a span (or its apex) is ME when the ME
            class holds at least this share of the two classes' mean scores there. 0.5 is the
            higher class. A weakly supervised T-CAM can rank MEs above MaEs by their ME share
            and still give most MEs a share just under one half (PWES on SynthSpot-v2: AUROC
            0.885, median ME share 0.496 against 0.399 for MaEs, docs/results.md). No method's
            operating grid holds it (its training identities did not gain from it there);
            `mespot eval --retune me_share_min=...` offers it to a run's folds.
        duration_check: with type_rule "class" or "apex", a span typed ME that lasts longer than
            an ME can (``me_max_s`` plus ``duration_tolerance_hops`` grid steps) is a MaE: class
            scores alone type long, low-intensity expressions ME (GIM's apex typing has no
            duration check).
        offset_shift_s: (ME, MaE) seconds added to the offset of each kept proposal of that type
            after NMS (rounded to whole frames; the offset stays within [onset, last frame]). A
            score lags the motion by its features' temporal support, and runs above a threshold
            end late on a short ME and early on a MaE's slow release (`shift_offsets`); each in
            [-2, 2]. (0, 0): off. The online spotter publishes an interval whose offset moved
            later only once that frame has been seen.
    """

    mode: str = "threshold"
    thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    top_divisors: tuple[float, ...] = tuple(range(8, 23))
    outer_ratio: float = 0.25
    oic_source: str = "class"
    video_score_weight: float = 0.0
    type_rule: str = "duration"
    me_max_s: float = ME_MAX_SECONDS
    duration_tolerance_hops: float = 1.0
    min_duration_s: float = 0.0
    max_duration_s: float = MAE_MAX_SECONDS
    nms: str = "class"
    nms_iou: float = 0.5
    min_score: float | None = None
    class_spans: bool = False
    me_share_min: float = 0.5
    duration_check: bool = False
    offset_shift_s: tuple[float, float] = (0.0, 0.0)

    _RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "outer_ratio": (1e-3, 4.0),
        "video_score_weight": (0.0, 100.0),
        "me_max_s": (1e-3, 60.0),
        "duration_tolerance_hops": (0.0, 8.0),
        "min_duration_s": (0.0, 600.0),
        "max_duration_s": (1e-3, 600.0),
        "nms_iou": (0.0, 1.0),
        "me_share_min": (0.01, 0.99),
    }
    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "mode": _MODES,
        "type_rule": _TYPE_RULES,
        "oic_source": _OIC_SOURCES,
        "nms": _NMS_MODES,
    }

    def __post_init__(self) -> None:
        for name, choices in self._CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"proposal config {name}={getattr(self, name)!r}: choose one of {choices}")
        for name, (lo, hi) in self._RANGES.items():
            check_number("proposal config", name, getattr(self, name), lo, hi)
        if self.min_duration_s >= self.max_duration_s:
            raise ConfigError(
                f"proposal config min_duration_s={self.min_duration_s} must be below "
                f"max_duration_s={self.max_duration_s}"
            )
        # Lists (from JSON) become tuples so the config stays hashable.
        for name, lo in (("thresholds", -math.inf), ("top_divisors", 1.0)):
            raw = getattr(self, name)
            if isinstance(raw, np.ndarray):
                raw = raw.tolist()
            if isinstance(raw, str | bytes) or not isinstance(raw, Sequence | range):
                raise ConfigError(f"proposal config {name}={raw!r}: must be a sequence of numbers")
            values = tuple(raw)
            for v in values:
                if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v < lo:
                    raise ConfigError(f"proposal config {name}: {v!r} must be a finite number >= {lo}")
            object.__setattr__(self, name, values)
        if self.mode == "threshold" and not self.thresholds:
            raise ConfigError("proposal config thresholds: mode 'threshold' needs at least one level")
        if self.mode == "top" and not self.top_divisors:
            raise ConfigError("proposal config top_divisors: mode 'top' needs at least one h")
        shift = self.offset_shift_s
        if isinstance(shift, np.ndarray):
            shift = shift.tolist()
        if isinstance(shift, str | bytes) or not isinstance(shift, Sequence) or len(shift) != 2:
            raise ConfigError(f"proposal config offset_shift_s={shift!r}: must be two numbers (ME, MaE)")
        for v in shift:
            check_number("proposal config", "offset_shift_s", v, -2.0, 2.0)
        object.__setattr__(self, "offset_shift_s", (float(shift[0]), float(shift[1])))
        if self.min_score is not None and (
            isinstance(self.min_score, bool)
            or not isinstance(self.min_score, int | float)
            or not math.isfinite(self.min_score)
        ):
            raise ConfigError(
                f"proposal config min_score={self.min_score!r}: must be a finite number or None"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["thresholds"] = list(self.thresholds)
        d["top_divisors"] = list(self.top_divisors)
        d["offset_shift_s"] = list(self.offset_shift_s)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProposalConfig:
        """Build from a dict (e.g. read from JSON); unknown keys fail."""
        refuse_unknown_keys(cls, data, "proposal config")
        return cls(**dict(data))


# Paper settings (values the papers state; the GIM thresholds are not given there and keep ours).
PRESETS: dict[str, ProposalConfig] = {
    # MC-WES sec. 4.3 / 4.4.5: M' = 15 consecutive integers from 8, psi 0.25, varsigma 0.15,
    # NMS 0.01, truncation 0.1, type by duration.
    "mc-wes-casme2": ProposalConfig(
        mode="top",
        top_divisors=tuple(range(8, 23)),
        video_score_weight=0.15,
        oic_source="class",
        type_rule="duration",
        nms="joint",
        nms_iou=0.01,
        min_score=0.1,
    ),
    # SAMM-LV: M' starts at 2, varsigma 0.5.
    "mc-wes-samm": ProposalConfig(
        mode="top",
        top_divisors=tuple(range(2, 17)),
        video_score_weight=0.5,
        oic_source="class",
        type_rule="duration",
        nms="joint",
        nms_iou=0.01,
        min_score=0.1,
    ),
    # GIM sec. 3.6.3: multi-threshold on the intensity, OIC on the intensity, class-wise NMS; the
    # apex class types a span as the paper has it (`duration_check` is offered on GIM's grid).
    "gim": ProposalConfig(mode="threshold", oic_source="actionness", type_rule="apex", nms="class"),
}


def _class_matrix(
    scores: np.ndarray | Mapping[ExpressionType | str, np.ndarray],
) -> tuple[np.ndarray, tuple[ExpressionType, ...]]:
    """(T, C) class scores and their classes; C = 0 for a class-agnostic (T,) / (T, 1) input."""
    if isinstance(scores, Mapping):
        by_type: dict[ExpressionType, np.ndarray] = {}
        for key, col in scores.items():
            try:
                t = ExpressionType(key)
            except ValueError:
                raise ValueError(
                    f"class score key {key!r}: expected one of {[c.value for c in CLASS_ORDER]}"
                ) from None
            by_type[t] = _as_1d(col, f"scores[{t.value!r}]")
        if set(by_type) != set(CLASS_ORDER):
            raise ValueError(f"class score dict needs both classes {[c.value for c in CLASS_ORDER]}")
        lengths = {v.shape[0] for v in by_type.values()}
        if len(lengths) != 1:
            raise ValueError(f"class score arrays differ in length: {sorted(lengths)}")
        return np.stack([by_type[c] for c in CLASS_ORDER], axis=1), CLASS_ORDER  # (T, C)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        return s[:, None], ()  # (T, 1), class-agnostic
    if s.ndim == 2 and s.shape[1] == 1:
        return s, ()
    if s.ndim == 2 and s.shape[1] == len(CLASS_ORDER):
        return s, CLASS_ORDER  # (T, C)
    raise ValueError(f"scores must be (T,), (T, 1) or (T, {len(CLASS_ORDER)}) [ME, MaE]; got shape {s.shape}")


def _default_actionness(cls: np.ndarray) -> np.ndarray:
    """Per-snippet max over classes, NaN where every class is NaN."""
    all_nan = np.isnan(cls).all(axis=1)  # (T,)
    best = np.max(np.where(np.isnan(cls), -np.inf, cls), axis=1)  # (T,)
    return np.where(all_nan, np.nan, best)


# Fields of `ProposalConfig` that steps 1-3 of `propose` read (the candidate spans and their
# scores); the others type, filter and suppress them.
CANDIDATE_FIELDS: tuple[str, ...] = (
    "mode",
    "thresholds",
    "top_divisors",
    "class_spans",
    "outer_ratio",
    "oic_source",
    "video_score_weight",
    "min_duration_s",
    "max_duration_s",
)


def _unused_levels(config: ProposalConfig) -> str:
    """The candidate levels a configuration's mode does not read: top_divisors or thresholds."""
    return "top_divisors" if config.mode == "threshold" else "thresholds"


def candidate_key(config: ProposalConfig) -> tuple[Any, ...]:
    """What steps 1-3 of `propose` depend on: configurations with equal keys make the same
    candidates from the same scores (the unused one of thresholds / top_divisors left out)."""
    unused = _unused_levels(config)
    return tuple(getattr(config, name) for name in CANDIDATE_FIELDS if name != unused)


def proposal_key(config: ProposalConfig) -> ProposalConfig:
    """The configuration with the fields it does not read cleared or at their defaults:
    configurations with equal keys give the same proposals from the same scores (the duration
    rule reads neither the ME share line nor the duration check; a mode reads only its own
    candidate levels)."""
    unused: dict[str, Any] = {_unused_levels(config): ()}
    if config.type_rule == "duration":
        unused.update(me_share_min=ProposalConfig.me_share_min, duration_check=ProposalConfig.duration_check)
    return dataclasses.replace(config, **unused)


@dataclass(frozen=True)
class SpanCandidate:
    """One candidate span after steps 1-3 of `propose` (before typing, filtering and NMS).

    Attributes:
        start, end: the half-open span in snippets of the window.
        length: its frames, both ends counted.
        per_class: its OIC score per class (one value for class-agnostic scores).
        apex_at: the window snippet of its highest actionness.
    """

    start: int
    end: int
    length: int
    per_class: tuple[float, ...]
    apex_at: int


@dataclass(frozen=True)
class Candidates:
    """Steps 1-3 of `propose` on one window of scores, for every configuration whose
    `candidate_key` is ``key`` (`propose_candidates`)."""

    cls: np.ndarray  # (T, C)
    classes: tuple[ExpressionType, ...]
    spans: tuple[SpanCandidate, ...]
    key: tuple[Any, ...]
    snippet_s: float
    fps: float
    snippet_offset: int
    frame_offset: int
    n_frames: int | None
    # class_means by (start, end), filled as typing asks (identical for every use).
    _means: dict[tuple[int, int], tuple[float, float]] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    def class_type(self, start: int, end: int, me_share_min: float = 0.5) -> ExpressionType:
        """`type_by_class` of ``[start, end)`` on these class scores (the means cached)."""
        got = self._means.get((start, end))
        if got is None:
            got = self._means[(start, end)] = class_means(self.cls, start, end)
        return _type_of_means(got, me_share_min)


def propose_candidates(
    scores: np.ndarray | Mapping[ExpressionType | str, np.ndarray],
    config: ProposalConfig,
    *,
    snippet_s: float,
    fps: float,
    actionness: np.ndarray | None = None,
    video_scores: np.ndarray | Mapping[ExpressionType | str, float] | None = None,
    snippet_offset: int = 0,
    frame_offset: int = 0,
    n_frames: int | None = None,
) -> Candidates:
    """Steps 1-3 of `propose` (spans, their frames and duration filter, their scores); the
    arguments as `propose` takes them. `propose(..., candidates=)` finishes them for any
    configuration of the same `candidate_key`."""
    cls, classes = _class_matrix(scores)  # (T, C)
    n = cls.shape[0]
    if not (snippet_s > 0 and fps > 0):
        raise ValueError(f"snippet_s and fps must be > 0, got {snippet_s} and {fps}")
    if snippet_offset < 0:
        raise ValueError(f"snippet_offset must be >= 0, got {snippet_offset}")
    g = snippet_s * fps  # frames per snippet
    if actionness is None:
        act = _default_actionness(cls) if classes else cls[:, 0]  # (T,)
    else:
        act = _as_1d(actionness, "actionness")
        if act.shape[0] != n:
            raise ValueError(f"actionness has {act.shape[0]} snippets, scores have {n}")
    use_class_oic = bool(classes) and config.oic_source == "class"
    bias = np.zeros(len(classes))  # (C,)
    if use_class_oic and config.video_score_weight > 0:
        if video_scores is None:
            raise ValueError("proposal config video_score_weight > 0 needs video_scores (MC-WES p_j)")
        if isinstance(video_scores, Mapping):
            vs = {ExpressionType(k): float(v) for k, v in video_scores.items()}
            bias = np.array([vs[c] for c in classes])
        else:
            bias = np.asarray(video_scores, dtype=np.float64).reshape(-1)
            if bias.shape[0] != len(classes):
                raise ValueError(f"video_scores must have {len(classes)} values, got {bias.shape[0]}")
        bias = config.video_score_weight * bias

    columns = [act]
    if (
        config.class_spans
        and config.mode == "threshold"
        and classes
        and (actionness is None or np.array_equal(act, _default_actionness(cls), equal_nan=True))
    ):
        columns += [cls[:, j] for j in range(len(classes))]
    found: set[Span] = set()
    for column in columns:
        if config.mode == "threshold":
            found.update(multi_threshold_proposals(column, config.thresholds))
        else:
            found.update(multi_top_proposals(column, config.top_divisors))

    spans: list[SpanCandidate] = []
    for start, end in sorted(found):
        frames = span_to_frames(
            snippet_offset + start, snippet_offset + end, g, frame_offset=frame_offset, n_frames=n_frames
        )
        if frames is None:
            continue
        length = frames[1] - frames[0] + 1
        if length < config.min_duration_s * fps - _EPS or length > config.max_duration_s * fps + _EPS:
            continue
        if use_class_oic:
            per_class = tuple(
                outer_inner_contrast(cls[:, j], start, end, outer_ratio=config.outer_ratio) + bias[j]
                for j in range(len(classes))
            )  # (C,)
        else:
            agnostic = outer_inner_contrast(act, start, end, outer_ratio=config.outer_ratio)
            per_class = (agnostic,) * max(1, len(classes))
        inside = act[start:end]
        apex_at = start + int(np.argmax(np.where(np.isnan(inside), -np.inf, inside)))
        spans.append(SpanCandidate(start, end, length, per_class, apex_at))
    return Candidates(
        cls=cls,
        classes=classes,
        spans=tuple(spans),
        key=candidate_key(config),
        snippet_s=snippet_s,
        fps=fps,
        snippet_offset=snippet_offset,
        frame_offset=frame_offset,
        n_frames=n_frames,
    )


def propose(
    scores: np.ndarray | Mapping[ExpressionType | str, np.ndarray],
    config: ProposalConfig,
    *,
    snippet_s: float,
    fps: float,
    actionness: np.ndarray | None = None,
    video_scores: np.ndarray | Mapping[ExpressionType | str, float] | None = None,
    snippet_offset: int = 0,
    frame_offset: int = 0,
    n_frames: int | None = None,
    shift: bool = True,
    candidates: Candidates | None = None,
) -> list[Interval]:
    """Snippet scores -> scored expression intervals in frames (the one proposal path).

    1. Spans from the class-agnostic score (``actionness``; by default the per-snippet maximum
       over the classes) by multi-threshold or multi-top.
    2. Each span is converted to frames and dropped if shorter than ``min_duration_s`` or longer
       than ``max_duration_s``.
    3. Scores: with ``oic_source="class"`` each class j gets ``OIC(s_j) + varsigma * p_j``
       (MC-WES eq. 23); with ``"actionness"`` one OIC on the class-agnostic score (GIM eq. 15).
    4. Type: ``"duration"``: by length, scored with the best class score (MC-WES keeps both class
       copies of a span and lets NMS keep the higher; the type comes from the duration).
       ``"class"``: the class with the higher mean score inside, scored with that class's OIC;
       ``"apex"``: the class with the higher score at the apex snippet (highest actionness).
    5. ``min_score`` filter, then NMS (class-wise or joint).
    6. Each kept interval's offset moves by ``offset_shift_s`` of its type (`shift_offsets`).

    Args:
        scores: (T, 2) class scores in ``CLASS_ORDER`` (ME, MaE), a dict with both classes, or a
            class-agnostic (T,) / (T, 1) array (then only the duration rule applies).
        config: the proposal configuration.
        snippet_s: seconds per snippet (e.g. 8 / 30).
        fps: the video's frame rate; frames per snippet = ``snippet_s * fps`` (may be fractional).
        actionness: (T,) class-agnostic score to cut spans from (attention / intensity).
        video_scores: (C,) or dict, MC-WES's video-level class scores p_j; needed only when
            ``config.video_score_weight > 0``.
        snippet_offset: absolute snippet index of ``scores[0]`` (a live window's start).
        frame_offset: number of the video's first frame (frames are ``frame_offset + ...``).
        n_frames: frames in the video; the last interval is clipped to it.
        candidates: steps 1-3 already made for these scores (`propose_candidates`) with a
            configuration of the same `candidate_key`; the scores and offsets are then taken
            from it (a grid search spots many points of one candidate set).
        shift: apply step 6 (False: the intervals as NMS kept them; the online spotter finalises
            those and shifts each when it publishes it).

    Returns:
        The proposals, in descending score (ties by onset, offset, type).
    """
    if candidates is None:
        candidates = propose_candidates(
            scores,
            config,
            snippet_s=snippet_s,
            fps=fps,
            actionness=actionness,
            video_scores=video_scores,
            snippet_offset=snippet_offset,
            frame_offset=frame_offset,
            n_frames=n_frames,
        )
    elif candidates.key != candidate_key(config):
        raise ValueError("propose: the candidates were made with a configuration of another candidate_key")
    classes = candidates.classes
    if config.type_rule in ("class", "apex") and not classes:
        raise ValueError(
            f"type_rule {config.type_rule!r} needs per-class scores (T, 2); got class-agnostic scores"
        )
    snippet_s, fps = candidates.snippet_s, candidates.fps
    snippet_offset, frame_offset, n_frames = (
        candidates.snippet_offset,
        candidates.frame_offset,
        candidates.n_frames,
    )
    g = snippet_s * fps  # frames per snippet
    # The longest ME a span may be, one tolerance for the duration rule and the duration check.
    me_max_s = config.me_max_s + config.duration_tolerance_hops * snippet_s
    me_limit = me_max_s * fps + _EPS

    kept_spans: list[Interval] = []
    for cand in candidates.spans:
        start, end, length, per_class = cand.start, cand.end, cand.length, cand.per_class
        if config.type_rule == "duration":
            etype = type_by_duration(length, fps, me_max_s=me_max_s, max_s=config.max_duration_s)
            if etype is None:
                continue
            score = max(per_class)
        elif config.type_rule == "class":
            etype = candidates.class_type(start, end, config.me_share_min)
            score = per_class[classes.index(etype)]
        else:  # "apex"
            etype = candidates.class_type(cand.apex_at, cand.apex_at + 1, config.me_share_min)
            score = per_class[classes.index(etype)]
        if (
            config.duration_check
            and config.type_rule != "duration"
            and etype == ExpressionType.ME
            and length > me_limit
        ):
            etype = ExpressionType.MAE
            score = per_class[classes.index(etype)]
        if config.min_score is not None and score < config.min_score:
            continue
        iv = span_to_interval(
            snippet_offset + start,
            snippet_offset + end,
            g,
            etype,
            score=score,
            apex_snippet=snippet_offset + cand.apex_at,
            frame_offset=frame_offset,
            n_frames=n_frames,
        )
        if iv is not None:
            kept_spans.append(iv)
    kept = nms_1d(kept_spans, config.nms_iou, class_wise=config.nms == "class")
    if not shift:
        return kept
    return shift_offsets(kept, config, fps, frame_offset=frame_offset, n_frames=n_frames)


def shift_offsets(
    intervals: Sequence[Interval],
    config: ProposalConfig,
    fps: float,
    *,
    frame_offset: int = 0,
    n_frames: int | None = None,
) -> list[Interval]:
    """Each interval's offset moved by ``config.offset_shift_s`` of its type (step 6 of `propose`).

    The shift is rounded to whole frames; the offset stays at or after the onset and, when
    ``n_frames`` is given, at or before the last frame (``frame_offset + n_frames - 1``). An apex
    left outside the interval moves to its offset. Order and scores are kept.
    """
    me_s, mae_s = config.offset_shift_s
    if me_s == 0 and mae_s == 0:
        return list(intervals)
    last = None if n_frames is None else frame_offset + n_frames - 1
    out = []
    for iv in intervals:
        frames = round((me_s if iv.type == ExpressionType.ME else mae_s) * fps)
        offset = max(iv.onset, iv.offset + frames)
        apex = None if iv.apex is None else min(iv.apex, offset)
        out.append(clip_offset(dataclasses.replace(iv, offset=offset, apex=apex), last))
    return out


def clip_offset(interval: Interval, last: int | None) -> Interval:
    """The interval with its offset (and apex) at most ``last``, never before its onset; None:
    unchanged."""
    if last is None or interval.offset <= last:
        return interval
    offset = max(interval.onset, last)
    apex = None if interval.apex is None else min(interval.apex, offset)
    return dataclasses.replace(interval, offset=offset, apex=apex)
