"""Optical flow between aligned face crops, chosen by name, computed incrementally.

Estimators (registry FLOWS):
    dis        OpenCV DIS (CPU default: fast and accurate enough on 128 px crops)
    farneback  OpenCV Farneback polynomial expansion
    tvl1       Dual TV-L1 in PyTorch (CUDA when present, CPU otherwise); the spotting papers use
               TV-L1 with lambda 0.15.

All follow OpenCV's convention, prev(x, y) ~ next(x + u, y + v), and accept a warm start (the
previous field): the stream changes little from one frame to the next, so starting from the last
answer saves work and keeps consecutive fields consistent.

SkipKFlow turns per-pair estimators into the stream stage: for each new crop it computes the flow
from the crop k frames back, because micro-expression motion between consecutive frames at 30 fps
is sub-pixel and drowns in noise. MultiScaleFlow does it for several k at once (one crop history,
one warm start per scale): a short scale sees the fast onset of a micro-expression, a longer one
accumulates a slow or very small movement above the estimator's noise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import ClassVar

import cv2
import numpy as np

from stream.errors import ConfigError
from stream.registry import Registry


class FlowEstimator(ABC):
    """Dense flow between two equally sized grey images."""

    name: str = ""

    @abstractmethod
    def __call__(self, prev: np.ndarray, nxt: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        """Flow from prev to nxt.

        Args:
            prev: (H, W) uint8 grey.
            nxt: (H, W) uint8 grey.
            init: optional (H, W, 2) float32 warm start.

        Returns:
            (H, W, 2) float32 flow.
        """


FLOWS: Registry[FlowEstimator] = Registry("optical flow")


@FLOWS.register("dis")
class DISFlow(FlowEstimator):
    """OpenCV's Dense Inverse Search flow.

    Args:
        preset: "ultrafast", "fast" or "medium".
    """

    name = "dis"
    _PRESETS: ClassVar[dict[str, int]] = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }

    def __init__(self, preset: str = "medium") -> None:
        if preset not in self._PRESETS:
            raise ConfigError(f"dis preset={preset!r}: choose one of {sorted(self._PRESETS)}")
        self._dis = cv2.DISOpticalFlow_create(self._PRESETS[preset])

    def __call__(self, prev: np.ndarray, nxt: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        _check_pair(prev, nxt)
        # DIS starts from the flow argument when it is an (H, W, 2) float32 array, and writes into it.
        return self._dis.calc(prev, nxt, None if init is None else init.copy())


@FLOWS.register("farneback")
class FarnebackFlow(FlowEstimator):
    """OpenCV's Farneback flow with parameters suited to 128 px face crops."""

    name = "farneback"

    def __init__(
        self,
        pyr_scale: float = 0.5,
        levels: int = 3,
        winsize: int = 11,
        iterations: int = 3,
        poly_n: int = 5,
        poly_sigma: float = 1.1,
    ) -> None:
        self._args = (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        _check_pair(prev, nxt)
        if init is None:
            return cv2.calcOpticalFlowFarneback(prev, nxt, None, *self._args, 0)
        return cv2.calcOpticalFlowFarneback(prev, nxt, init.copy(), *self._args, cv2.OPTFLOW_USE_INITIAL_FLOW)


@FLOWS.register("tvl1")
class TVL1Flow(FlowEstimator):
    """Dual TV-L1 in PyTorch (stream/tvl1.py); runs on CUDA when a GPU is present.

    Args:
        device: "cuda", "cpu" or None for automatic.
        **params: TorchTVL1 parameters (lam=0.15 by default, as in the spotting papers).
    """

    name = "tvl1"

    def __init__(self, device: str | None = None, **params: float) -> None:
        from stream.tvl1 import TorchTVL1  # imports torch: only when chosen

        self._tvl1 = TorchTVL1(device=device, **params)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        _check_pair(prev, nxt)
        return self._tvl1(prev, nxt, init_flow=init)


def _check_pair(prev: np.ndarray, nxt: np.ndarray) -> None:
    if prev.shape != nxt.shape or prev.ndim != 2:
        raise ValueError(f"flow needs two grey images of one size, got {prev.shape} and {nxt.shape}")


# 1 s at 200 fps (SAMM-LV's rate), the longest flow scale a configuration may ask for
MAX_SKIP_K = 200


class SkipKFlow:
    """Incremental skip-k flow over a stream of aligned crops.

    Keeps the last k crops; each new crop yields flow(crop[t-k] -> crop[t]) warm-started from the
    previous skip-k field. `reset()` (face lost, time gap) forgets history.

    Args:
        estimator: a FlowEstimator.
        k: frames back (at the canonical rate).
        warm_start: use the previous field as initial flow.
    """

    def __init__(self, estimator: FlowEstimator, k: int = 3, *, warm_start: bool = True) -> None:
        if not 1 <= k <= MAX_SKIP_K:
            raise ConfigError(f"skip k={k}: must lie in [1, {MAX_SKIP_K}] frames")
        self.estimator = estimator
        self.k = k
        self.warm_start = warm_start
        self._crops: deque[np.ndarray] = deque(maxlen=k)
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        self._crops.clear()
        self._last = None

    def push(self, crop: np.ndarray) -> np.ndarray | None:
        """Add crop[t]; returns flow(crop[t-k] -> crop[t]) once k earlier crops are known, else None."""
        flow = None
        if len(self._crops) == self.k:
            init = self._last if self.warm_start else None
            flow = self.estimator(self._crops[0], crop, init)
            self._last = flow
        self._crops.append(crop)
        return flow


class MultiScaleFlow:
    """Incremental skip-k flow at several k over one stream of aligned crops.

    Each new crop yields, per k (shortest first), flow(crop[t-k] -> crop[t]), each warm-started from
    the previous field of its own scale (the same as one SkipKFlow per k, sharing the crop history).

    Args:
        estimator: a FlowEstimator (called once per scale per frame).
        ks: frames back per scale, strictly increasing.
        warm_start: use each scale's previous field as its initial flow.
    """

    def __init__(self, estimator: FlowEstimator, ks: tuple[int, ...], *, warm_start: bool = True) -> None:
        ks = tuple(ks)
        if not ks or any(not 1 <= k <= MAX_SKIP_K for k in ks) or list(ks) != sorted(set(ks)):
            raise ConfigError(f"flow scales k={list(ks)}: need increasing frame counts in [1, {MAX_SKIP_K}]")
        self.estimator = estimator
        self.ks = ks
        self.warm_start = warm_start
        self._crops: deque[np.ndarray] = deque(maxlen=ks[-1])
        self._last: list[np.ndarray | None] = [None] * len(ks)

    def reset(self) -> None:
        self._crops.clear()
        self._last = [None] * len(self.ks)

    def push(self, crop: np.ndarray) -> list[np.ndarray | None]:
        """Add crop[t]; returns per scale flow(crop[t-k] -> crop[t]), None until k earlier crops are known."""
        out: list[np.ndarray | None] = []
        n = len(self._crops)
        for i, k in enumerate(self.ks):
            if n < k:
                out.append(None)
                continue
            init = self._last[i] if self.warm_start else None
            flow = self.estimator(self._crops[n - k], crop, init)
            self._last[i] = flow
            out.append(flow)
        self._crops.append(crop)
        return out
