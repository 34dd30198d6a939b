"""Live scoring: the score of each new snippet from the newest window of the snippet ring.

`StreamScorer` keeps (or shares) a ``stream.ring.SnippetRing`` and, each time a snippet arrives,
scores the newest min(n, W) snippets with a backend and returns the last row. While fewer than W
snippets exist the window is simply shorter, never padded: the causal network then sees exactly
what the whole-sequence forward sees at that snippet (its own zero padding at the start), so
every row, the first ones included, equals ``engine.train.predict`` on the whole sequence when
W >= the receptive field. (Padding the start with invalid snippets instead is not exact for every
network: the CSCM's attention output at an invalid snippet is a bias, not zero.)

Look-ahead. A network with a look-ahead of L snippets (``Bundle.lookahead``) scores snippet s from
snippets up to s + L, so when snippet t arrives the scorer emits the score of snippet t - L (with
the validity of t - L): row T - 1 - L of the window, whose network output sees exactly the window's
snippets up to t. Nothing is emitted for the first L snippets of a stream. At the end of the stream
`flush` emits the last L scores from one more window: the network pads the window's end with L
invalid zero snippets, as the whole-sequence forward pads the sequence's end, so those scores too
equal ``engine.train.predict`` exactly. Every score is therefore emitted L snippets (L * hop_s
seconds) after its snippet arrived; `SnippetScore.capture_ns` stays the capture time of the scored
snippet's newest frame, so latencies measured from it include the look-ahead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from calibration.neutral import NeutralCollector
from engine.runtime.base import Backend, BackendError
from stream.errors import ConfigError
from stream.ring import Snippet, SnippetRing


@dataclass(frozen=True)
class SnippetScore:
    """The scores of one snippet.

    Attributes:
        index: the snippet's index.
        start_s: its media start time.
        valid: whether it carried features; invalid snippets score NaN (as ``engine.train.predict``),
            so no proposal covers them.
        class_scores: (2,) float32 ME / MaE probabilities.
        actionness: class-agnostic score.
        end_s: its media end time (None when unknown).
        capture_ns: monotonic capture time of its newest frame (None when unknown); with a
            look-ahead the score itself comes L snippets later.
    """

    index: int
    start_s: float
    valid: bool
    class_scores: np.ndarray = field(repr=False)
    actionness: float
    end_s: float | None = None
    capture_ns: int | None = None


class StreamScorer:
    """Scores each newly arrived snippet from the last W snippets (with a look-ahead of L
    snippets: the snippet L before it; `flush` gives the last L at the end of the stream).

    Attributes:
        lookahead: L, the bundle's look-ahead in snippets (0: strictly causal).
        next_index: the next snippet index whose score is still to come.

    Args:
        backend: any runtime backend (its ``window`` is W).
        ring: a snippet ring to read; it must hold at
            least W snippets. None: a private ring of W snippets, filled by `push`.

    Raises:
        ConfigError: the ring holds fewer than W snippets.
    """

    def __init__(self, backend: Backend, ring: SnippetRing | None = None) -> None:
        self.backend = backend
        self.window = backend.window
        self.lookahead = backend.lookahead
        self.next_index = 0
        # Per-person neutral baseline (calibration.neutral), when the bundle's network uses one:
        # snippets are normalised before they enter the ring, so the ring must be private.
        neutral_s = backend.bundle.network_config.neutral_s
        self.neutral: NeutralCollector | None = None
        if neutral_s is not None:
            if ring is not None:
                raise ConfigError("StreamScorer: a bundle with a neutral baseline needs its own ring")
            snippet_s = backend.bundle.feature_config.snippet_seconds
            self.neutral = NeutralCollector(snippet_s, neutral_s)
        if ring is None:
            ring = SnippetRing(self.window, backend.motion_dim, backend.geometry_dim)
        capacity = ring.valid.capacity
        if capacity < self.window:
            raise ConfigError(
                f"StreamScorer: the snippet ring holds {capacity} snippets, the scorer needs W={self.window}"
            )
        self.ring = ring

    def push(self, snippet: Snippet) -> SnippetScore | None:
        """Append a snippet to the ring and score the newest snippet whose look-ahead is complete
        (use `score_newest` when the ring is shared and someone else appends).

        With a neutral baseline, snippets until the baseline is collected (the first
        ``neutral_s`` seconds of valid snippets) enter the ring as invalid and score NaN, as
        ``engine.train.predict`` treats them.

        Returns:
            The score of snippet ``snippet.index - lookahead`` (the pushed snippet itself when
            L = 0), or None while it does not exist yet (the first L snippets of a stream).
        """
        if self.neutral is not None:
            was_ready = self.neutral.ready
            self.neutral.observe(snippet.motion, snippet.geometry, snippet.valid)
            if was_ready and snippet.valid:
                m, g = self.neutral.apply(snippet.motion, snippet.geometry, True)
                snippet = dataclasses.replace(snippet, motion=m, geometry=g)
            else:
                zero_m, zero_g = np.zeros_like(snippet.motion), np.zeros_like(snippet.geometry)
                snippet = dataclasses.replace(snippet, motion=zero_m, geometry=zero_g, valid_frames=0)
        self.ring.append(snippet)
        return self.score_newest()

    def fill_gap(
        self, before: int, snippet_s: float, window_frames: int, capture_ns: int
    ) -> list[SnippetScore]:
        """Append invalid zero snippets for the indices missing before snippet `before` (lost to a
        processing error upstream), as a gap in the stream is scored, and return their scores
        (with a look-ahead, the scores of earlier, real snippets that these complete).

        Args:
            before: the index of the snippet about to be pushed.
            snippet_s: the snippet hop in seconds (the filler snippets' times).
            window_frames: frames a snippet spans (the filler snippets' size).
            capture_ns: the capture time the filler snippets carry.
        """
        scores = []
        while self.ring.total < before:
            j = self.ring.total
            self.ring.append(
                Snippet(
                    j,
                    j * snippet_s,
                    (j + 1) * snippet_s,
                    np.zeros(self.backend.motion_dim, np.float32),
                    np.zeros(self.backend.geometry_dim, np.float32),
                    window_frames,
                    0,
                    capture_ns,
                )
            )
            score = self.score_newest()
            if score is not None:
                scores.append(score)
        return scores

    def restart_neutral(self) -> None:
        """Collect the neutral baseline afresh (a new person); no-op without one."""
        if self.neutral is not None:
            self.neutral.restart()

    def score_newest(self) -> SnippetScore | None:
        """Score the newest snippet whose look-ahead is complete, snippet ``newest - L``, from the
        min(len, W) snippets up to the newest.

        Returns:
            Its score; None when it does not exist yet (fewer than L + 1 snippets) or was
            already emitted (by `flush`).

        Raises:
            BackendError: the ring is empty.
        """
        if len(self.ring) == 0:
            raise BackendError("StreamScorer: no snippet to score yet")
        target = self.ring.total - 1 - self.lookahead
        if target < self.next_index:
            return None
        w = self.ring.window(self.window)  # oldest first, at most W rows
        cls, act = self.backend.score(w["motion"][None], w["geometry"][None], w["valid"][None])
        self.next_index = target + 1
        return self._row(w, cls, act, target)

    def flush(self) -> list[SnippetScore]:
        """End of stream: the scores of the last L snippets, not emitted yet, as the whole-sequence
        forward computes them (the network pads the end with invalid zero snippets).

        Returns:
            Those scores in index order; empty when L = 0 or when called again. Snippets pushed
            afterwards continue the stream (their scores come as usual, none twice).
        """
        total = self.ring.total
        start = max(self.next_index, total - self.lookahead)
        if start >= total:
            return []
        w = self.ring.window(self.window)  # the newest W snippets hold the last L (W > L)
        cls, act = self.backend.score(w["motion"][None], w["geometry"][None], w["valid"][None])
        out = [self._row(w, cls, act, j) for j in range(start, total)]
        self.next_index = total
        return out

    @staticmethod
    def _row(w: dict[str, np.ndarray], cls: np.ndarray, act: np.ndarray, index: int) -> SnippetScore:
        """The score of snippet `index` from a window `w` and its scores (B = 1)."""
        r = index - int(w["first_index"])  # its row in the window
        ok = bool(w["valid"][r])
        row_cls = cls[0, r] if ok else np.full(2, np.nan, np.float32)  # (2,)
        return SnippetScore(
            index=index,
            start_s=float(w["start_s"][r]),
            valid=ok,
            class_scores=row_cls.astype(np.float32, copy=True),
            actionness=float(act[0, r]) if ok else float("nan"),
            end_s=float(w["end_s"][r]),
            capture_ns=int(w["capture_ns"][r]),
        )


def sequence_snippets(
    motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray, snippet_s: float
) -> Iterator[Snippet]:
    """Snippets of feature arrays (motion (T, Dm), geometry (T, Dg), valid (T,)) in order."""
    for j in range(len(valid)):
        ok = bool(valid[j])
        yield Snippet(j, j * snippet_s, (j + 1) * snippet_s, motion[j], geometry[j], 1, int(ok), 0)


def stream_scores(
    backend: Backend, motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a whole feature sequence, a loop over `StreamScorer.push` and a final
    `StreamScorer.flush` (the live path offline).

    Args:
        backend: the runtime backend.
        motion: (T, Dm) snippet motion features.
        geometry: (T, Dg) snippet geometry features.
        valid: (T,) bool validity.

    Returns:
        (class_scores (T, 2), actionness (T,)) float64, NaN at invalid snippets, like
        ``engine.train.predict``.
    """
    scorer = StreamScorer(backend)
    snippet_s = backend.bundle.feature_config.snippet_seconds
    rows = [scorer.push(s) for s in sequence_snippets(motion, geometry, valid, snippet_s)]
    rows = [r for r in rows if r is not None] + scorer.flush()
    if [r.index for r in rows] != list(range(len(valid))):  # pragma: no cover - a broken scorer
        raise BackendError(f"stream_scores: scored snippets {[r.index for r in rows][:5]}..., expected 0..")
    cls = np.array([r.class_scores for r in rows], dtype=np.float64).reshape(len(rows), 2)
    act = np.array([r.actionness for r in rows], dtype=np.float64)
    return cls, act
