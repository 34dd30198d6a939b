"""Live scoring: the score of each new snippet from the newest window of the snippet ring.

`StreamScorer` keeps (or shares) a ``stream.ring.SnippetRing`` and, each time a snippet arrives,
scores the newest min(n, W) snippets with a backend and returns the last row. While fewer than W
snippets exist the window is simply shorter, never padded: the causal network then sees exactly
what the whole-sequence forward sees at that snippet (its own zero padding at the start), so
every row, the first ones included, equals ``engine.train.predict`` on the whole sequence when
W >= the receptive field. (Padding the start with invalid snippets instead is not exact for every
network: the CSCM's attention output at an invalid snippet is a bias, not zero.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from calibration.baseline import NeutralCollector
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
    """

    index: int
    start_s: float
    valid: bool
    class_scores: np.ndarray = field(repr=False)
    actionness: float


class StreamScorer:
    """Scores each newly arrived snippet from the last W snippets.

    Args:
        backend: any runtime backend (its ``window`` is W).
        ring: a snippet ring to read (e.g. the pipeline's own, ``Pipeline.recent``); it must hold at
            least W snippets. None: a private ring of W snippets, filled by `push`.

    Raises:
        ConfigError: the ring holds fewer than W snippets.
    """

    def __init__(self, backend: Backend, ring: SnippetRing | None = None) -> None:
        self.backend = backend
        self.window = backend.window
        # Per-person neutral baseline (calibration.baseline), when the bundle's network uses one:
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

    def push(self, snippet: Snippet) -> SnippetScore:
        """Append a snippet to the ring and score it (use `score_newest` when the ring is shared and
        someone else appends).

        With a neutral baseline, snippets until the baseline is collected (the first
        ``neutral_s`` seconds of valid snippets) enter the ring as invalid and score NaN, as
        ``engine.train.predict`` treats them.
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

    def restart_neutral(self) -> None:
        """Collect the neutral baseline afresh (a new person); no-op without one."""
        if self.neutral is not None:
            self.neutral.restart()

    def score_newest(self) -> SnippetScore:
        """Score the newest snippet in the ring from the min(len, W) snippets before and with it.

        Raises:
            BackendError: the ring is empty.
        """
        if len(self.ring) == 0:
            raise BackendError("StreamScorer: no snippet to score yet")
        w = self.ring.window(self.window)  # oldest first, at most W rows
        cls, act = self.backend.score(w["motion"][None], w["geometry"][None], w["valid"][None])
        ok = bool(w["valid"][-1])
        row_cls = cls[0, -1] if ok else np.full(2, np.nan, np.float32)  # (2,)
        return SnippetScore(
            index=int(w["first_index"]) + len(w["valid"]) - 1,
            start_s=float(w["start_s"][-1]),
            valid=ok,
            class_scores=row_cls.astype(np.float32, copy=True),
            actionness=float(act[0, -1]) if ok else float("nan"),
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
    """Scores of a whole feature sequence, a loop over `StreamScorer.push` (the live path offline).

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
    cls = np.array([r.class_scores for r in rows], dtype=np.float64).reshape(len(rows), 2)
    act = np.array([r.actionness for r in rows], dtype=np.float64)
    return cls, act
