"""The online spotter: per-snippet scores as they arrive -> finalised expression intervals.

`OnlineSpotter` is the live end of the one proposal path (DESIGN invariant 1). It keeps a bounded
window of the newest scores, calls `engine.proposals.propose` on it (the same function offline
evaluation calls on a whole video) and publishes an interval once no later snippet can change it.

Threshold mode (GIM multi-threshold): exact
-------------------------------------------
Streaming a score sequence through `push` and `flush` yields exactly the intervals, scores
included, that `propose` returns on the whole sequence, each once. The rule that makes it exact:

* Spans are maximal runs above each threshold. At the lowest threshold they are nested or
  disjoint (a laminar family), so a proposal can only interact (overlap, hence NMS) with
  proposals nested in or around it.
* A run still open at the newest snippet is *alive* while its frame length is within
  ``max_duration_s`` (a longer one, and every extension of it, is dropped by the duration
  filter). A closed run is *settled* once its right OIC band, ``b = max(1, ceil(outer_ratio * L))``
  snippets after its offset, has been seen.
* The frontier F is the earliest start of an alive open run or an unsettled closed run (or the
  next snippet if there is none). No span that is still to come or still to be scored starts
  before F. The cut B is F moved left past any closed candidate run that straddles it.
* Every candidate in ``[A, B)`` (A: the previous cut) is final: its run, OIC bands, type and score
  are fixed, and no candidate outside ``[A, B)`` overlaps it, so class-wise or joint NMS inside
  the region is NMS over the whole stream. `propose` is called on the window
  ``[A - margin, N)`` and the kept intervals that start in ``[A, B)`` are published; A becomes B.
  ``margin = max(Lmax, bmax) + 1`` keeps each region candidate's left band and run start in the
  window and pushes any run cut by the window's left edge (spurious, <= Lmax snippets) before A.

Latency (threshold mode). With g = snippet_s * fps frames per snippet, Lmax the most snippets
an accepted span can hold (``ceil((max_duration_s * fps + 1.5) / g)``, conservative by one frame)
and ``bmax = max(1, ceil(outer_ratio * Lmax))``, an interval ending at snippet e - 1 is
published at the latest when snippet ``e - 1 + Lmax + bmax`` arrives (`max_latency_snippets`;
`max_latency_s` in seconds). It is usually much sooner: as soon as its right band is seen and
the score has fallen below the *lowest* threshold (so no larger run around it can still close).
Examples (outer_ratio 0.25, max_duration_s 4):

=========================  ======  ====  ====  ==========================
snippet                    fps     Lmax  bmax  worst-case latency
=========================  ======  ====  ====  ==========================
8 frames at 30 fps         30      16    4     20 snippets = 5.33 s
8/30 s at 200 fps (53.3)   200     16    4     20 snippets = 5.33 s
4 frames at 30 fps         30      31    8     39 snippets = 5.2 s
=========================  ======  ====  ====  ==========================

A smaller ``max_duration_s`` shortens it proportionally: 0.5 s (MEs only) at 8 frames / 30 fps
gives Lmax 3, bmax 1, 4 snippets = 1.07 s; on the default 4-frame grid, Lmax 5, bmax 2,
7 snippets = 0.93 s. The same table is in docs/events.md.

These latencies count from the arrival of a snippet's *score*. A network with a look-ahead of L
snippets (``Bundle.lookahead``) scores snippet s only when snippet s + L has arrived
(``engine.runtime.StreamScorer``), so live, an interval is published at the latest
``L + max_latency_snippets`` snippets after its last one; ``engine.live.LiveRunner.max_latency_s``
adds ``Bundle.lookahead_s`` to `max_latency_s`.

Offset shift
------------
``ProposalConfig.offset_shift_s`` moves each kept interval's offset after NMS (`propose` step 6).
Finalisation above works on the unshifted spans; `_publish` shifts what it publishes, and holds an
interval whose offset moved later until that frame has been captured (or the stream ends, which
clips it to ``n_frames`` as `propose` does), so nothing published ends in the future and the
streamed intervals still equal `propose` on the whole sequence. Latencies count from the
published offset: a shift earlier by s frames adds up to ``ceil(s / g)`` snippets
(`max_latency_snippets` includes them).

Multi-top mode (MC-WES): approximate
------------------------------------
``k = max(1, floor(T / h))`` depends on the whole length T, so it cannot be streamed exactly.
Online, T is a sliding window of ``top_window_s`` seconds (default 30 s, at least
``Lmax + 2 * bmax + 2`` snippets): at every push `propose` runs on the newest window, and the
intervals whose run ends exactly ``bmax`` snippets ago (their right band is then inside the
window) are candidates; each is published unless it overlaps an already published interval with
IoU above ``nms_iou`` (class-wise or joint, as the config says). Every span end is judged once,
so nothing is published twice, and the latency is exactly ``bmax`` snippets (4 snippets =
1.07 s on the default 4-frame grid at 30 fps). A push at which no top-k mask can end a run at the
judged end skips `propose` (`OnlineSpotter._top_run_may_end`): the same intervals, a fraction of
the work. Before the window has filled, T is the number of snippets seen.
Results differ from offline multi-top on the whole video (a window's top-k is local, which
suits a live stream whose length is unknown).

Invalid snippets are NaN (no face, time gap): they break runs and leave the OIC bands, as
offline. A jump in the pushed index fills the missing snippets with NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.proposals import (
    ProposalConfig,
    clip_offset,
    outer_band,
    propose,
    shift_offsets,
    span_to_frames,
    top_k_from_divisor,
)
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval
from stream.ring import Ring

__all__ = ["OnlineSpotter", "SpottedInterval", "replay"]

# Margin (frames) of the conservative duration test: a run longer than max_duration_s * fps + this
# is certainly dropped by `propose` (whose own test has a 1e-6 tolerance on integer lengths).
_DURATION_SLACK_FRAMES = 0.5
_NO_CAPTURE = -1


@dataclass(frozen=True, slots=True)
class SpottedInterval:
    """An interval the online spotter has finalised.

    Attributes:
        interval: the scored interval in frames (the video's own numbering, inclusive).
        start: its first snippet.
        end: one past its last snippet.
        finalised_at: index of the snippet whose `push` (or the `flush` after it) finalised it.
        capture_ns: capture time (monotonic ns) of the snippet holding the offset frame, as given
            to `push`; None when not given.
    """

    interval: Interval
    start: int
    end: int
    finalised_at: int
    capture_ns: int | None = None

    @property
    def latency_snippets(self) -> int:
        """Snippets seen after the interval's last snippet before it was finalised."""
        return self.finalised_at + 1 - self.end


class OnlineSpotter:
    """Streams per-snippet scores into finalised intervals (see the module docstring).

    Args:
        config: the proposal configuration (the same one offline evaluation uses).
        snippet_s: seconds per snippet.
        fps: frame rate of the frame numbering (frames per snippet = snippet_s * fps, >= 1).
        frame_offset: number of the first frame (as `propose`).
        video_scores: MC-WES's video-level class scores (ME, MaE), needed only when
            ``config.video_score_weight > 0``; live there is none, so a constant is used.
        top_window_s: multi-top mode only: the sliding window T in seconds.

    Example:
        >>> spotter = OnlineSpotter(PRESETS["gim"], snippet_s=8 / 30, fps=30)
        >>> for j, (cls, act) in enumerate(scores):
        ...     for s in spotter.push(j, cls, act):
        ...         print(s.interval)
        >>> rest = spotter.flush()
    """

    def __init__(
        self,
        config: ProposalConfig,
        snippet_s: float,
        fps: float,
        *,
        frame_offset: int = 0,
        video_scores: Sequence[float] | Mapping[ExpressionType | str, float] | None = None,
        top_window_s: float = 30.0,
    ) -> None:
        if not (snippet_s > 0 and fps > 0):
            raise ConfigError(f"online spotter: snippet_s and fps must be > 0, got {snippet_s} and {fps}")
        g = snippet_s * fps
        if g < 1:
            raise ConfigError(f"online spotter: a snippet must hold >= 1 frame, got snippet_s * fps = {g}")
        if config.video_score_weight > 0 and config.oic_source == "class" and video_scores is None:
            raise ConfigError(
                "online spotter: proposal config video_score_weight > 0 needs video_scores (ME, MaE)"
            )
        self.config = config
        self.snippet_s = float(snippet_s)
        self.fps = float(fps)
        self.frame_offset = int(frame_offset)
        self.video_scores = video_scores
        self._g = g
        self._thresholds = sorted(set(config.thresholds))
        self._max_frames = config.max_duration_s * fps + _DURATION_SLACK_FRAMES
        # A span of L snippets covers more than L * g - 1 frames, so an accepted span has
        # L * g - 1 < max_frames.
        self.lmax = math.ceil((self._max_frames + 1) / g)
        self.bmax = self._band(0, self.lmax)
        self._margin = max(self.lmax, self.bmax) + 1
        if config.mode == "threshold":
            # window = margin + (N - A), N - A <= 2 * Lmax + bmax + 1 (module docstring).
            capacity = self._margin + 2 * self.lmax + self.bmax + 4
            self._top_window = 0
        else:
            self._top_window = max(round(top_window_s / snippet_s), 1)
            need = self.lmax + 2 * self.bmax + 2
            if self._top_window < need:
                raise ConfigError(
                    f"online spotter: top_window_s={top_window_s} is {self._top_window} snippets; "
                    f"multi-top needs >= {need} (Lmax + 2 * bmax + 2) at this max_duration_s"
                )
            capacity = self._top_window
        self.capacity = capacity
        self._scores = Ring(capacity, (3,), np.float64)  # (me, mae, actionness) per snippet
        self._capture = Ring(capacity, (), np.int64)
        self._origin: int | None = None  # index of the first pushed snippet
        self._n = 0  # next snippet index (N)
        self._a = 0  # threshold mode: everything before A is final
        self._open: list[int | None] = [None] * len(self._thresholds)  # open run start per level
        self._spans: dict[tuple[int, int], int] = {}  # closed candidate runs at/after A -> band end
        self._recent: list[Interval] = []  # top mode: published intervals that may still overlap
        self._top_ks: dict[int, list[int]] = {}  # top mode: window length -> its k values
        self._held: list[Interval] = []  # final, offset shifted later: waiting for that frame
        self._finished = False

    # ---------------------------------------------------------------------------------------
    # Public API
    # ---------------------------------------------------------------------------------------

    @property
    def max_latency_snippets(self) -> int:
        """Most snippets seen after an interval's last snippet before it is published (its
        offset as published, after `ProposalConfig.offset_shift_s`)."""
        base = self.lmax + self.bmax if self.config.mode == "threshold" else self.bmax
        # An offset moved earlier makes the interval end that many frames sooner.
        earlier = round(-min(0.0, *self.config.offset_shift_s) * self.fps)
        return base + math.ceil(earlier / self._g - 1e-9)

    @property
    def max_latency_s(self) -> float:
        """`max_latency_snippets` in seconds."""
        return self.max_latency_snippets * self.snippet_s

    @property
    def next_index(self) -> int | None:
        """Index the next `push` is expected to carry (None before the first)."""
        return None if self._origin is None else self._n

    @property
    def window_len(self) -> int:
        """Snippets held now (never more than `capacity`)."""
        return len(self._scores)

    @property
    def unfinalised_snippets(self) -> int:
        """Snippets after the last finalisation cut (threshold mode; bounded by
        ``2 * Lmax + bmax + 1``)."""
        if self._origin is None:
            return 0
        if self.config.mode == "top":
            return min(self.bmax, self._n - self._origin)
        return self._n - self._a

    @property
    def pending_spans(self) -> int:
        """Closed runs not yet finalised (threshold mode; bounded)."""
        return len(self._spans)

    def push(
        self,
        index: int,
        class_scores: Sequence[float] | np.ndarray,
        actionness: float | None = None,
        *,
        capture_ns: int | None = None,
    ) -> list[SpottedInterval]:
        """Add one snippet's scores; return the intervals this push finalised (in time order).

        Args:
            index: the snippet index; must increase. Skipped indices are filled with NaN.
            class_scores: (2,) scores in `CLASS_ORDER` (ME, MaE); NaN for an invalid snippet.
            actionness: the class-agnostic score; None: the maximum over the classes (as
                `propose`'s default); NaN for an invalid snippet.
            capture_ns: monotonic capture time of the snippet's newest frame (latency reference).
        """
        if self._finished:
            raise RuntimeError("online spotter: push after flush (make a new spotter for a new stream)")
        cls = np.asarray(class_scores, dtype=np.float64).reshape(-1)  # (2,)
        if cls.shape != (2,):
            raise ValueError(f"class_scores must have 2 values (ME, MaE), got shape {cls.shape}")
        if actionness is None:
            valid = cls[~np.isnan(cls)]
            act = float(valid.max()) if valid.size else math.nan
        else:
            act = float(actionness)
        if np.isinf(cls).any() or math.isinf(act):
            raise ValueError(f"snippet {index}: scores must be finite or NaN, got {cls.tolist()}, {act}")
        if self._origin is None:
            if index < 0:
                raise ValueError(f"snippet index must be >= 0, got {index}")
            self._origin = self._n = self._a = int(index)
        elif index < self._n:
            raise ValueError(f"snippet {index} pushed after snippet {self._n - 1}: indices must increase")
        out: list[Interval] = []
        while self._n < index:  # a hole in the indices: invalid snippets
            self._append(math.nan, math.nan, math.nan, _NO_CAPTURE)
            out += self._advance(final=False)
        self._append(cls[0], cls[1], act, _NO_CAPTURE if capture_ns is None else int(capture_ns))
        out += self._advance(final=False)
        return self._publish(out, final=False)

    def flush(self, n_frames: int | None = None) -> list[SpottedInterval]:
        """End of stream: finalise everything still pending.

        Args:
            n_frames: frames in the video, when known; the last interval is clipped to it
                (as `propose(..., n_frames=)`).
        """
        if self._finished:
            return []
        self._finished = True
        if self._origin is None:
            return []
        if self.config.mode == "threshold":
            for k, start in enumerate(self._open):  # runs touching the end close there
                if start is not None:
                    self._close_run(start, self._n)
                    self._open[k] = None
        return self._publish(self._advance(final=True, n_frames=n_frames), final=True, n_frames=n_frames)

    # ---------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------

    def _band(self, start: int, end: int) -> int:
        """The OIC band length of a span, from `outer_band` itself."""
        (_, _), (r0, r1) = outer_band(end + 10**9, start, end, self.config.outer_ratio)
        return r1 - r0

    def _frames(self, start: int, end: int) -> int:
        onset, offset = span_to_frames(start, end, self._g)  # type: ignore[misc]
        return offset - onset + 1

    def _may_be_candidate(self, start: int, end: int) -> bool:
        """False only for spans `propose` certainly drops as too long (conservative)."""
        return self._frames(start, end) <= self._max_frames

    def _frame_of(self, snippet: int) -> int:
        """First frame of a snippet (in the video's numbering)."""
        return math.ceil(snippet * self._g - 1e-6) + self.frame_offset

    def _append(self, me: float, mae: float, act: float, capture_ns: int) -> None:
        self._scores.append(np.array([me, mae, act]))
        self._capture.append(np.int64(capture_ns))
        n = self._n
        if self.config.mode == "threshold":
            for k, thr in enumerate(self._thresholds):
                above = act > thr  # NaN is never above
                start = self._open[k]
                if above and start is None:
                    self._open[k] = n
                elif not above and start is not None:
                    self._close_run(start, n)
                    self._open[k] = None
        self._n = n + 1

    def _close_run(self, start: int, end: int) -> None:
        if (start, end) not in self._spans and self._may_be_candidate(start, end):
            self._spans[(start, end)] = end + self._band(start, end)

    def _window(self, first: int) -> tuple[np.ndarray, np.ndarray]:
        n = self._n - first
        if n > len(self._scores):
            raise RuntimeError(f"online spotter: window of {n} snippets exceeds its capacity {self.capacity}")
        rows = self._scores.last(n)  # (n, 3)
        return rows[:, :2], rows[:, 2]

    def _propose(self, first: int, n_frames: int | None) -> list[Interval]:
        """`propose` on the window from snippet ``first``, before the offset shift (finalisation
        works on the spans NMS kept; `_publish` shifts what it publishes)."""
        cls, act = self._window(first)  # (n, 2), (n,)
        return propose(
            cls,
            self.config,
            snippet_s=self.snippet_s,
            fps=self.fps,
            actionness=act,
            video_scores=self.video_scores,
            snippet_offset=first,
            frame_offset=self.frame_offset,
            n_frames=n_frames,
            shift=False,
        )

    def _publish(
        self, finalised: list[Interval], *, final: bool, n_frames: int | None = None
    ) -> list[SpottedInterval]:
        """Finalised intervals with their offsets shifted (`shift_offsets`, as `propose` does
        offline), in time order. One whose offset moved past the newest frame seen waits until
        that frame arrives, or until the end of the stream clips it as `propose` clips with
        ``n_frames``: nothing published ends in the future."""
        self._held += shift_offsets(
            finalised,
            self.config,
            self.fps,
            frame_offset=self.frame_offset,
            n_frames=n_frames if final else None,
        )
        if final:
            last = None if n_frames is None else self.frame_offset + n_frames - 1
            ready, self._held = [clip_offset(iv, last) for iv in self._held], []
        else:
            seen = self._frame_of(self._n) - 1  # the last frame of the newest snippet
            ready = [iv for iv in self._held if iv.offset <= seen]
            self._held = [iv for iv in self._held if iv.offset > seen]
        return sorted((self._spotted(iv) for iv in ready), key=_time_key)

    def _end_snippet(self, iv: Interval) -> int:
        """One past the snippet holding the interval's offset frame."""
        return math.floor((iv.offset - self.frame_offset) / self._g + 1e-6) + 1

    def _spotted(self, iv: Interval) -> SpottedInterval:
        start = math.floor((iv.onset - self.frame_offset) / self._g + 1e-6)
        end = self._end_snippet(iv)
        seen = self._n - len(self._capture) <= end - 1 < self._n
        cap = int(self._capture[end - 1 - self._origin]) if seen else _NO_CAPTURE
        return SpottedInterval(iv, start, end, self._n - 1, None if cap == _NO_CAPTURE else cap)

    def _advance(self, *, final: bool, n_frames: int | None = None) -> list[Interval]:
        """The intervals this step finalises, before the offset shift (`_publish` shifts them)."""
        if self.config.mode == "top":
            return self._advance_top(final=final, n_frames=n_frames)
        n, a = self._n, self._a
        if final:
            b = n
        else:
            b = n
            for start in self._open:
                if start is not None and start < b and self._may_be_candidate(start, n):
                    b = start  # an alive open run
            for (start, _), band_end in self._spans.items():
                if band_end > n and start < b:
                    b = start  # its right OIC band is not complete yet
            moved = True
            while moved:  # never cut through a candidate run
                moved = False
                for start, end in self._spans:
                    if start < b < end:
                        b, moved = start, True
        if b <= a:
            return []
        out: list[Interval] = []
        if any(a <= start and end <= b for start, end in self._spans):
            lo, hi = self._frame_of(a), self._frame_of(b)
            first = max(self._origin, a - self._margin)  # type: ignore[type-var]
            for iv in self._propose(first, n_frames if final else None):
                if lo <= iv.onset < hi:
                    out.append(iv)
        self._a = b
        self._spans = {sp: be for sp, be in self._spans.items() if sp[0] >= b}
        return out

    def _advance_top(self, *, final: bool, n_frames: int | None) -> list[Interval]:
        n = self._n
        judged_end = n - self.bmax  # runs ending here have their right band inside the window
        first = max(self._origin, n - self._top_window)  # type: ignore[type-var]
        if not final:
            if judged_end <= first:
                return []
            if math.isnan(self._scores[judged_end - 1 - self._origin][2]):  # type: ignore[operator]
                return []  # a run ends on a valid snippet
            if not self._top_run_may_end(first, judged_end):
                return []  # `propose` would run, but no span of its can end here
        out: list[Interval] = []
        iou, class_wise = self.config.nms_iou, self.config.nms == "class"
        for iv in self._propose(first, n_frames if final else None):  # descending score
            end = self._end_snippet(iv)
            # Each span end is judged once: at N = end + bmax, or at flush for the last bmax.
            if end != judged_end if not final else end <= judged_end:
                continue
            if any((not class_wise or p.type == iv.type) and p.iou(iv) > iou for p in self._recent):
                continue
            self._recent.append(iv)
            out.append(iv)
        # Published intervals ending before any span still to be judged can begin are let go.
        keep_from = self._frame_of(max(0, judged_end + 1 - self.lmax))
        self._recent = [p for p in self._recent if p.offset >= keep_from]
        return out

    def _top_run_may_end(self, first: int, end: int) -> bool:
        """Whether any top-k mask of the window [first, N) (`multi_top_proposals`) selects snippet
        ``end - 1`` and not snippet ``end``: a necessary condition for a span to end at ``end``.

        Most pushes fail it, and skipping their `propose` changes nothing: it would publish
        nothing (every span is judged at its own end) and the published intervals it would let
        go end before any span still to be judged can begin. It is what makes replaying a
        multi-top operating point, as `engine.latency.event_latency` does per grid candidate,
        cost a fraction of a `propose` per snippet."""
        _, act = self._window(first)  # (n,)
        valid = ~np.isnan(act)
        n_valid = int(valid.sum())

        def position(i: int) -> float:
            """Place of window snippet i in `multi_top_proposals`' order (descending, earlier
            first on ties, NaN never selected)."""
            if i >= len(act) or not valid[i]:
                return math.inf
            return int(np.count_nonzero(act[valid] > act[i])) + int(np.count_nonzero(act[:i] == act[i]))

        last, after = position(end - 1 - first), position(end - first)
        if len(act) not in self._top_ks:  # the window's length changes only while it fills
            self._top_ks[len(act)] = sorted(
                {top_k_from_divisor(len(act), h) for h in self.config.top_divisors}
            )
        return any(last < min(k, n_valid) <= after for k in self._top_ks[len(act)])


def replay(
    class_scores: np.ndarray,
    actionness: np.ndarray | None,
    config: ProposalConfig,
    *,
    snippet_s: float,
    fps: float,
    frame_offset: int = 0,
    n_frames: int | None = None,
) -> tuple[list[SpottedInterval], list[SpottedInterval]]:
    """A whole video's scores streamed through a fresh `OnlineSpotter`, snippet by snippet, as a
    live run would have scored them.

    Args:
        class_scores: (T, 2) ME / MaE scores, NaN at invalid snippets.
        actionness: (T,) or None (as `OnlineSpotter.push`).
        config, snippet_s, fps, frame_offset: as `OnlineSpotter`.
        n_frames: frames in the video (as `OnlineSpotter.flush`).

    Returns:
        (the intervals published while streaming, each with the snippet that finalised it; those
        only the end of the stream published, whose latency says nothing about a live run).
    """
    spotter = OnlineSpotter(config, snippet_s, fps, frame_offset=frame_offset)
    streamed: list[SpottedInterval] = []
    for j in range(len(class_scores)):
        streamed += spotter.push(j, class_scores[j], None if actionness is None else actionness[j])
    return streamed, spotter.flush(n_frames)


def _time_key(s: SpottedInterval) -> tuple[int, int, str]:
    return (s.interval.onset, s.interval.offset, s.interval.type.value)
