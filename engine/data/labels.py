"""Label views: the supervision each training regime sees, on the snippet grid.

A video's feature sequence is cut into snippets of `snippet_s` seconds: snippet i covers the
media times [i * snippet_s, (i + 1) * snippet_s). Frame f starts at time
``position(f) / fps`` (`VideoRecord.frame_position`: 0 for the first frame, gaps in the frame
numbering skipped) and lasts 1 / fps, so an interval [onset, offset] covers
``[position(onset), position(offset + 1)) / fps``. Each video uses its own fps (200 for SAMM-LV).
Arithmetic is done in fractions (`fractions.Fraction`), so a frame on a snippet boundary lands in
the right snippet: floats pass through ``Fraction(x).limit_denominator(10**6)``, which turns
``8 / 30`` back into 4/15 and 29.97002997 into 30000/1001.

Three views:

- `video_level`: which types occur in the video (MC-WES).
- `point_labels`: one frame per expression, uniformly random inside [onset, offset] (PWES) or the
  apex (GIM); an expression whose apex is unknown uses its middle frame ``(onset + offset) // 2``.
- `full_labels`: one-hot background / ME / MaE per snippet (the fully supervised upper bound). A
  snippet takes an expression's class when the expression covers at least half of the snippet,
  and the snippet holding an expression's temporal centre always takes it, so no expression
  vanishes from the grid however short it is. ME wins over MaE when both apply.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal, NamedTuple

import numpy as np

from engine.data.records import VideoRecord
from stream.errors import ConfigError
from stream.intervals import MAE_MAX_SECONDS, ME_MAX_SECONDS, ExpressionType, Interval

log = logging.getLogger(__name__)

BACKGROUND, ME, MAE = 0, 1, 2  # columns of full_labels
CLASS_OF = {ExpressionType.ME: ME, ExpressionType.MAE: MAE}
_DENOMINATOR = 10**6


class PointLabel(NamedTuple):
    """One point label: the snippet it falls in and the expression type."""

    snippet: int
    type: ExpressionType


class PointFrame(NamedTuple):
    """One point label at frame level: the chosen frame and the expression type."""

    frame: int
    type: ExpressionType


def exact(value: float | int | Fraction, what: str) -> Fraction:
    """A positive rate or duration as an exact fraction.

    Raises:
        ConfigError: not a positive finite number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise ConfigError(f"{what}={value!r} must be a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{what}={value!r} must be finite")
        value = Fraction(value).limit_denominator(_DENOMINATOR)
    value = Fraction(value)
    if value <= 0:
        raise ConfigError(f"{what}={value} must be > 0")
    return value


def frame_seconds(video: VideoRecord, frame: int) -> Fraction:
    """Exact media time (s) at which `frame` starts."""
    return Fraction(video.frame_position(frame)) / exact(video.fps, "fps")


def interval_seconds(video: VideoRecord, interval: Interval) -> tuple[Fraction, Fraction]:
    """Exact [start, end) media times (s) covered by an inclusive frame interval."""
    fps = exact(video.fps, "fps")
    return Fraction(video.frame_position(interval.onset)) / fps, Fraction(
        video.frame_position(interval.offset + 1)
    ) / fps


def snippet_of_frame(video: VideoRecord, frame: int, snippet_s: float | Fraction) -> int:
    """Index of the snippet holding the start of `frame` (negative before the video starts)."""
    return math.floor(frame_seconds(video, frame) / exact(snippet_s, "snippet_s"))


def video_level(video: VideoRecord) -> dict[ExpressionType, bool]:
    """Which expression types occur in the video: {ME: bool, MAE: bool} (keys equal 'me' / 'mae')."""
    return {kind: video.has(kind) for kind in (ExpressionType.ME, ExpressionType.MAE)}


def video_level_vector(video: VideoRecord) -> np.ndarray:
    """`video_level` as a float32 vector [ME present, MaE present]."""  # (2,)
    flags = video_level(video)
    return np.array([flags[ExpressionType.ME], flags[ExpressionType.MAE]], dtype=np.float32)


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, bool) or not isinstance(rng, int | np.integer):
        raise ConfigError(f"rng={rng!r}: mode='random' needs a seed (int) or a numpy Generator")
    return np.random.default_rng(int(rng))


def point_frames(
    video: VideoRecord,
    rng: np.random.Generator | int | None = None,
    mode: Literal["random", "apex"] = "random",
) -> list[PointFrame]:
    """One frame per expression, in onset order.

    Args:
        video: the video.
        rng: a seed or a Generator (mode='random'); the same seed gives the same frames. A
            Generator advances, so one Generator shared across videos gives each its own draws.
        mode: 'random': uniform over the frames [onset, offset]; 'apex': the apex, or the middle
            frame (onset + offset) // 2 when the apex is unknown.

    Raises:
        ConfigError: unknown mode, or mode='random' without rng.
    """
    if mode == "apex":
        return [
            PointFrame(iv.apex if iv.apex is not None else (iv.onset + iv.offset) // 2, iv.type)
            for iv in video.expressions
        ]
    if mode != "random":
        raise ConfigError(f"mode={mode!r}: choose 'random' or 'apex'")
    gen = _generator(rng)
    return [PointFrame(int(gen.integers(iv.onset, iv.offset + 1)), iv.type) for iv in video.expressions]


def point_labels(
    video: VideoRecord,
    snippet_s: float | Fraction,
    rng: np.random.Generator | int | None = None,
    mode: Literal["random", "apex"] = "random",
    n_snippets: int | None = None,
) -> list[PointLabel]:
    """Point labels on the snippet grid: (snippet index, type) per expression, in onset order.

    Args:
        video: the video.
        snippet_s: snippet length in seconds (e.g. 8 / 30).
        rng, mode: see `point_frames`.
        n_snippets: the grid length T, when known; a point past it is dropped with a warning
            (the features end before the annotation does).

    Raises:
        ConfigError: bad snippet_s, unknown mode, or mode='random' without rng.
    """
    length = exact(snippet_s, "snippet_s")
    out: list[PointLabel] = []
    for frame, kind in point_frames(video, rng, mode):
        index = snippet_of_frame(video, frame, length)
        if n_snippets is not None and not 0 <= index < n_snippets:
            log.warning(
                "video %s: %s point at frame %d falls in snippet %d, outside the %d snippets; dropped",
                video.video,
                kind.value,
                frame,
                index,
                n_snippets,
            )
            continue
        out.append(PointLabel(index, kind))
    return out


def full_labels(video: VideoRecord, n_snippets: int, snippet_s: float | Fraction) -> np.ndarray:
    """One-hot background / ME / MaE per snippet (rule in the module docstring).

    Args:
        video: the video.
        n_snippets: the grid length T.
        snippet_s: snippet length in seconds.

    Returns:
        (T, 3) float32, columns BACKGROUND, ME, MAE; each row sums to 1.

    Raises:
        ConfigError: T < 0 or a bad snippet_s.
    """
    if isinstance(n_snippets, bool) or not isinstance(n_snippets, int | np.integer) or n_snippets < 0:
        raise ConfigError(f"n_snippets={n_snippets!r} must be an int >= 0")
    length = exact(snippet_s, "snippet_s")
    marked = {ME: np.zeros(n_snippets, dtype=bool), MAE: np.zeros(n_snippets, dtype=bool)}  # (T,) each
    outside = 0
    for iv in video.expressions:
        start, end = interval_seconds(video, iv)
        hit = False
        first = max(0, math.floor(start / length))
        last = min(n_snippets - 1, math.ceil(end / length) - 1)
        for i in range(first, last + 1):
            overlap = min(end, (i + 1) * length) - max(start, i * length)
            if 2 * overlap >= length:
                marked[CLASS_OF[iv.type]][i] = True
                hit = True
        centre = math.floor((start + end) / 2 / length)
        if 0 <= centre < n_snippets:
            marked[CLASS_OF[iv.type]][centre] = True
            hit = True
        outside += not hit
    if outside:
        log.warning(
            "video %s: %d expression(s) lie outside the %d snippets", video.video, outside, n_snippets
        )
    labels = np.zeros((n_snippets, 3), dtype=np.float32)  # (T, 3)
    cls = np.full(n_snippets, BACKGROUND)
    cls[marked[MAE]] = MAE
    cls[marked[ME]] = ME  # ME wins: it is the rarer, shorter class that a MaE would swallow
    labels[np.arange(n_snippets), cls] = 1.0
    return labels


def point_free_background(
    points: np.ndarray, valid: np.ndarray, snippet_s: float, gap_s: float | Sequence[float]
) -> np.ndarray:
    """Snippets that point labels prove to be background: at least the gap from every point.

    Every expression of a point-labelled video carries a point, so a snippet farther from every
    point than the longest expression can last lies in no expression; a video without points
    is background throughout. Distances run between snippet cells: snippet i is background when
    ``(|i - p| - 1) * snippet_s >= gap`` for every point snippet p (the cells' nearest edges are
    at least the gap apart), so with the gap at least the longest expression no background cell
    touches an expression. With one gap per column (point type), a point's gap is its type's:
    an ME point bounds its expression to the longest ME, not the longest MaE.

    Args:
        points: (T,) or (T, C) point indicators (non-zero at labelled snippets).
        valid: (T,) bool snippet validity; invalid snippets are never background.
        snippet_s: the grid step in seconds.
        gap_s: the least distance in seconds (>= 0), one for every point, or one per column of
            a (T, C) `points`.

    Returns:
        (T,) bool.
    """
    marks = np.asarray(points).astype(bool)
    if marks.ndim == 1:
        marks = marks[:, None]
    gaps = np.broadcast_to(np.asarray(gap_s, dtype=float), (marks.shape[1],))
    n = len(marks)
    ok = np.asarray(valid, dtype=bool)
    near = np.zeros(n, dtype=bool)
    for column, gap in zip(marks.T, gaps, strict=True):
        reach = math.ceil(gap / snippet_s - 1e-9) + 1  # snippets within this of a point are unsure
        for p in np.flatnonzero(column):
            near[max(0, p - reach + 1) : min(n, p + reach)] = True
    return ok & ~near


def class_regions(
    points: np.ndarray,
    valid: np.ndarray,
    snippet_s: float,
    longest_s: Sequence[float] = (ME_MAX_SECONDS, MAE_MAX_SECONDS),
) -> np.ndarray:
    """Where each expression type can be, given that every expression carries a point of its type.

    An expression of type c lies within the longest expression of type c of its own point, so
    a snippet farther than that from every point of type c is in no expression of type c, whatever
    else it may be (`point_free_background` per column, inverted). A video without points of a
    type has no expression of that type.

    Args:
        points: (T, C) point indicators per type, in the order of `longest_s`.
        valid: (T,) bool snippet validity; invalid snippets are nowhere.
        snippet_s: the grid step in seconds.
        longest_s: the longest expression of each type in seconds (ME 0.5 s, MaE 4 s).

    Returns:
        (T, C) bool.
    """
    marks = np.asarray(points)
    ok = np.asarray(valid, dtype=bool)
    columns = [
        ok & ~point_free_background(marks[:, c], ok, snippet_s, gap) for c, gap in enumerate(longest_s)
    ]
    return np.stack(columns, axis=1) if columns else np.zeros((len(ok), 0), dtype=bool)
