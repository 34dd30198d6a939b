"""Per-subject neutral baseline: features measured against a person's own resting face.

Faces differ in how much they move at rest: skin texture, beard, glasses, camera noise and
compression all raise or lower the flow and texture noise floor, per region. A model trained
on some faces and run on another sees that face's floor as signal (or misses expressions
under it). The neutral baseline estimates, from a few seconds of the person's resting face,
each feature's resting level (median) and spread (a robust standard deviation, 1.4826 x the
median absolute deviation, floored), and expresses every snippet as ``(x - level) / spread``.

The same normalisation is applied everywhere (offline equals live):

- training and offline scoring: per video, from its first ``seconds`` of valid snippets
  (`normalise_video`), the way a live stream starts;
- live: `NeutralCollector` gathers the first ``seconds`` of valid snippets of the stream (or
  again on demand, e.g. when a new person sits down) and the scorer starts once it is ready.

Medians make the estimate robust to a blink or a short expression inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.errors import ConfigError

# 1.4826 x MAD is the standard deviation of a normal distribution.
MAD_TO_STD = 1.4826


@dataclass(frozen=True)
class NeutralBaseline:
    """Resting level and spread of every snippet feature of one person.

    Attributes:
        motion_level: (Dm,) resting median of each motion feature.
        motion_spread: (Dm,) robust standard deviation (>= floor).
        geometry_level: (Dg,) resting median of each geometry feature.
        geometry_spread: (Dg,) robust standard deviation (>= floor).
        snippets: how many valid snippets the estimate used.
    """

    motion_level: np.ndarray
    motion_spread: np.ndarray
    geometry_level: np.ndarray
    geometry_spread: np.ndarray
    snippets: int

    @classmethod
    def fit(cls, motion: np.ndarray, geometry: np.ndarray, floor: float = 1e-3) -> NeutralBaseline:
        """Estimate from resting snippets.

        Args:
            motion: (N, Dm) valid resting snippets' motion features.
            geometry: (N, Dg) their geometry features.
            floor: smallest spread; a feature that does not move at rest (a constant) is
                divided by this rather than by zero.

        Raises:
            ConfigError: no snippet, or mismatched lengths.
        """
        if len(motion) == 0 or len(motion) != len(geometry):
            raise ConfigError(
                f"neutral baseline: needs resting snippets "
                f"(got {len(motion)} motion, {len(geometry)} geometry)"
            )

        def level_spread(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = np.asarray(x, dtype=np.float64)
            level = np.median(x, axis=0)  # (D,)
            spread = MAD_TO_STD * np.median(np.abs(x - level), axis=0)  # (D,)
            return level.astype(np.float32), np.maximum(spread, floor).astype(np.float32)

        ml, ms = level_spread(motion)
        gl, gs = level_spread(geometry)
        return cls(ml, ms, gl, gs, len(motion))

    def apply(
        self, motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalised features; invalid snippets stay zero (they carry no features).

        Args:
            motion: (T, Dm). geometry: (T, Dg). valid: (T,) bool.

        Returns:
            (motion (T, Dm), geometry (T, Dg)) float32.
        """
        ok = np.asarray(valid, dtype=bool)[:, None]  # (T, 1)
        m = np.where(ok, (motion - self.motion_level) / self.motion_spread, 0.0).astype(np.float32)
        g = np.where(ok, (geometry - self.geometry_level) / self.geometry_spread, 0.0).astype(np.float32)
        return m, g


def resting_snippets(valid: np.ndarray, snippet_s: float, seconds: float) -> np.ndarray:
    """Indices of the first `seconds` worth of valid snippets (the resting window).

    Raises:
        ConfigError: seconds not positive.
    """
    if not seconds > 0:
        raise ConfigError(f"neutral baseline seconds={seconds!r}: must be > 0")
    need = max(1, round(seconds / snippet_s))
    return np.flatnonzero(np.asarray(valid, dtype=bool))[:need]


def normalise_video(
    motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray, snippet_s: float, seconds: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, NeutralBaseline | None]:
    """A whole video as a live stream sees it with a neutral baseline of `seconds`.

    The baseline comes from the first `seconds` of valid snippets; those snippets, and any
    before them, are not scored (invalid), because live they arrive before the baseline exists.

    Returns:
        (motion (T, Dm), geometry (T, Dg), valid (T,), the baseline); when the video has fewer
        valid snippets than the resting window needs, everything is invalid and the baseline None.
    """
    ok = np.asarray(valid, dtype=bool)
    rest = resting_snippets(ok, snippet_s, seconds)
    need = max(1, round(seconds / snippet_s))
    if len(rest) < need:
        return np.zeros_like(motion), np.zeros_like(geometry), np.zeros_like(ok), None
    baseline = NeutralBaseline.fit(motion[rest], geometry[rest])
    ok = ok.copy()
    ok[: rest[-1] + 1] = False
    m, g = baseline.apply(motion, geometry, ok)
    return m, g, ok, baseline


class NeutralCollector:
    """Live: gathers the first `seconds` of valid snippets, then normalises every snippet.

    Snippets that arrive while collecting are normalised too once the baseline is ready (the
    caller may hold them, or score from then on); `restart()` collects afresh (a new person).

    Args:
        snippet_s: seconds per snippet.
        seconds: resting time to collect.
    """

    def __init__(self, snippet_s: float, seconds: float) -> None:
        self.need = len(resting_snippets(np.ones(1_000_000, bool), snippet_s, seconds))
        self._motion: list[np.ndarray] = []
        self._geometry: list[np.ndarray] = []
        self.baseline: NeutralBaseline | None = None

    @property
    def ready(self) -> bool:
        """Whether the baseline has been estimated."""
        return self.baseline is not None

    def restart(self) -> None:
        """Drop the baseline and collect a new one from the next valid snippets."""
        self._motion.clear()
        self._geometry.clear()
        self.baseline = None

    def observe(self, motion: np.ndarray, geometry: np.ndarray, valid: bool) -> bool:
        """Feed one snippet (its motion (Dm,) and geometry (Dg,)); returns `ready` after it."""
        if self.baseline is None and valid:
            self._motion.append(np.asarray(motion, dtype=np.float32))
            self._geometry.append(np.asarray(geometry, dtype=np.float32))
            if len(self._motion) >= self.need:
                self.baseline = NeutralBaseline.fit(np.stack(self._motion), np.stack(self._geometry))
                self._motion.clear()
                self._geometry.clear()
        return self.ready

    def apply(self, motion: np.ndarray, geometry: np.ndarray, valid: bool) -> tuple[np.ndarray, np.ndarray]:
        """One snippet normalised ((Dm,), (Dg,)).

        Raises:
            ConfigError: the baseline is not ready yet.
        """
        if self.baseline is None:
            raise ConfigError("neutral baseline: not collected yet")
        m, g = self.baseline.apply(motion[None], geometry[None], np.array([valid]))
        return m[0], g[0]
