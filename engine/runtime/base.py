"""The one backend interface every runtime implements, and the backend registry ``BACKENDS``.

A backend scores windows of snippets with a bundle's window scorer
(``engine.runtime.torch_backend.WindowScorer``; inputs and outputs in `engine.runtime.contract`):

    score(motion (B, T, Dm), geometry (B, T, Dg), valid (B, T) bool)
        -> (class_scores (B, T, 2) float32 ME/MaE, actionness (B, T) float32),  1 <= T <= window

Row t depends only on rows <= t + L (L: the bundle's look-ahead, 0 for a strictly causal network),
so the live runtime reads row T - 1 - L, the newest snippet whose look-ahead is complete, and the
last L rows at the end of a stream (``StreamScorer``). Every
backend is also a context manager with `close`, exposes `infer` (name -> array dicts, the
Polygraphy-style runner call) and `last_latency_s` (the last `score` call's wall time).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np

from engine.bundle import Bundle, check_window
from engine.runtime.contract import require_causal
from stream.errors import ConfigError, MespotError
from stream.registry import Registry


class BackendError(MespotError):
    """A backend cannot be opened (missing library, device or artifact) or was given bad input."""


class Backend(ABC):
    """Scores windows of snippets with a bundle's scorer.

    Attributes:
        name: registry name (``BACKENDS``).
        bundle: the bundle it runs.
        window: W, the longest window it takes (>= the bundle's receptive field, > its look-ahead).
        lookahead: L, the bundle's look-ahead in snippets (row t of a window sees rows <= t + L).
        motion_dim: Dm of its motion input.
        geometry_dim: Dg of its geometry input.
        max_batch: the largest batch it takes (None: no limit).
        last_latency_s: wall time of the last `score` call (None before the first).
    """

    name: ClassVar[str]

    def __init__(self, bundle: Bundle, *, window: int | None = None) -> None:
        """Validate the bundle and the window (shared by every backend).

        Raises:
            BackendError: the bundle's network is non-causal (it cannot be windowed).
            ConfigError: the window is shorter than the receptive field or not longer than the
                look-ahead.
        """
        require_causal(bundle, BackendError)
        self.bundle = bundle
        self.lookahead = bundle.lookahead
        self.window = check_window(
            bundle.window if window is None else window, bundle.receptive_field, lookahead=self.lookahead
        )
        nc = bundle.network_config
        self.motion_dim = nc.motion_dim
        self.geometry_dim = nc.geometry_dim
        self.max_batch: int | None = None
        self.last_latency_s: float | None = None
        self.closed = False

    @classmethod
    def unavailable(cls, bundle: Bundle) -> str | None:
        """Why this backend cannot run `bundle` here (missing library, device or artifact), or None."""
        return None

    def score(
        self, motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score windows of snippets.

        Args:
            motion: motion features, oldest snippet first. # (B, T, Dm)
            geometry: geometry/appearance features. # (B, T, Dg)
            valid: snippet validity. # (B, T) bool

        Returns:
            (class_scores (B, T, 2) ME/MaE, actionness (B, T)), float32 numpy arrays.

        Raises:
            BackendError: closed backend, or inputs of the wrong shape (1 <= T <= window).
        """
        if self.closed:
            raise BackendError(f"{self.name} backend: score() after close()")
        m, g, v = self._check(motion, geometry, valid)
        start = time.monotonic_ns()
        cls, act = self._score(m, g, v)
        self.last_latency_s = (time.monotonic_ns() - start) / 1e9
        return np.asarray(cls, dtype=np.float32), np.asarray(act, dtype=np.float32)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`score` with named arrays: {"motion", "geometry", "valid"} -> {"class_scores", "actionness"}."""
        missing = [k for k in ("motion", "geometry", "valid") if k not in inputs]
        if missing:
            raise BackendError(f"{self.name} backend: infer() inputs lack {missing}")
        cls, act = self.score(inputs["motion"], inputs["geometry"], inputs["valid"])
        return {"class_scores": cls, "actionness": act}

    @abstractmethod
    def _score(self, motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray) -> tuple[Any, Any]:
        """Backend-specific scoring of checked float32 / bool inputs."""

    def close(self) -> None:
        """Release the backend's resources (idempotent)."""
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bundle={str(self.bundle.path)!r}, window={self.window})"

    def _check(
        self, motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = np.ascontiguousarray(motion, dtype=np.float32)  # (B, T, Dm)
        g = np.ascontiguousarray(geometry, dtype=np.float32)  # (B, T, Dg)
        v = np.ascontiguousarray(valid, dtype=bool)  # (B, T)
        if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
            raise BackendError(f"{self.name} backend: valid must be (B, T) with B, T >= 1, got {v.shape}")
        b, t = v.shape
        if m.shape != (b, t, self.motion_dim) or g.shape != (b, t, self.geometry_dim):
            raise BackendError(
                f"{self.name} backend: expected motion ({b}, {t}, {self.motion_dim}) and geometry "
                f"({b}, {t}, {self.geometry_dim}) beside valid {v.shape}, got {m.shape} and {g.shape}"
            )
        if t > self.window:
            raise BackendError(f"{self.name} backend: window of {t} snippets, at most {self.window}")
        if self.max_batch is not None and b > self.max_batch:
            raise BackendError(f"{self.name} backend: batch of {b}, at most {self.max_batch}")
        return m, g, v


BACKENDS = Registry[Backend]("runtime backend")


def check_threads(threads: object) -> int:
    """Validate a thread count option (1..256)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
        raise ConfigError(f"backend threads={threads!r}: must be an integer in [1, 256]")
    return threads
