"""Optical flow between aligned face crops, chosen by name, computed incrementally.

Estimators (registry FLOWS):
    dis        OpenCV DIS, its "medium" preset (CPU default: fast and accurate enough on 128 px crops)
    dis-lean   OpenCV DIS with medium's scales and patches, sparser and fewer iterations: the same
               error on sub-pixel facial motion for 0.6-0.65 of the time (docs/benchmarks.md)
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
        preset: OpenCV's "ultrafast", "fast" or "medium", or "lean": medium (finest scale 1, 8 px
            patches) with a patch stride of 5 instead of 3, 16 gradient-descent iterations instead
            of 25 and 3 variational-refinement iterations instead of 5. On 128 px face crops
            its end-point error on known sub-pixel motion matches medium's
            (benchmarks/flow_accuracy.py) at 0.6-0.65 of the time.
    """

    name = "dis"
    _PRESETS: ClassVar[dict[str, int]] = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        "lean": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }
    # preset -> (patch stride, gradient-descent iterations, variational-refinement iterations)
    _OVERRIDES: ClassVar[dict[str, tuple[int, int, int]]] = {"lean": (5, 16, 3)}

    def __init__(self, preset: str = "medium") -> None:
        if preset not in self._PRESETS:
            raise ConfigError(f"dis preset={preset!r}: choose one of {sorted(self._PRESETS)}")
        self._dis = cv2.DISOpticalFlow_create(self._PRESETS[preset])
        if preset in self._OVERRIDES:
            stride, descent, refinement = self._OVERRIDES[preset]
            self._dis.setPatchStride(stride)
            self._dis.setGradientDescentIterations(descent)
            self._dis.setVariationalRefinementIterations(refinement)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        _check_pair(prev, nxt)
        # DIS starts from the flow argument when it is an (H, W, 2) float32 array, and writes into it.
        return self._dis.calc(prev, nxt, None if init is None else init.copy())


@FLOWS.register("dis-lean")
class LeanDISFlow(DISFlow):
    """DIS with the "lean" preset (see DISFlow), under its own name so that a feature
    configuration, its digest and its bundles say which flow made them."""

    name = "dis-lean"

    def __init__(self) -> None:
        super().__init__("lean")


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

    With ``compose``, a scale whose k is a whole multiple m of the shortest k0 is not estimated but
    chained from the m shortest-scale fields that span it (`compose_flows`): one estimator call
    per frame instead of one per scale. Estimating the shortest scale is what costs (DIS on a
    128 px crop: about 2.4 ms a field on the project's machine); chaining costs one remap.

    Args:
        estimator: a FlowEstimator (called once per estimated scale per frame).
        ks: frames back per scale, strictly increasing.
        warm_start: use each scale's previous field as its initial flow.
        compose: chain the multiples of the shortest scale instead of estimating them.
    """

    def __init__(
        self, estimator: FlowEstimator, ks: tuple[int, ...], *, warm_start: bool = True, compose: bool = False
    ) -> None:
        ks = tuple(ks)
        if not ks or any(not 1 <= k <= MAX_SKIP_K for k in ks) or list(ks) != sorted(set(ks)):
            raise ConfigError(f"flow scales k={list(ks)}: need increasing frame counts in [1, {MAX_SKIP_K}]")
        self.estimator = estimator
        self.ks = ks
        self.warm_start = warm_start
        self.compose = compose
        # Per scale: how many shortest-scale fields chain into it (0: estimated directly).
        self._chain = [k // ks[0] if compose and i > 0 and k % ks[0] == 0 else 0 for i, k in enumerate(ks)]
        self._crops: deque[np.ndarray] = deque(maxlen=ks[-1])
        # The shortest scale's recent fields, newest last (None where one was not computed).
        self._short: deque[np.ndarray | None] = deque(maxlen=max(1, ks[-1]))
        self._last: list[np.ndarray | None] = [None] * len(ks)

    def reset(self) -> None:
        self._crops.clear()
        self._short.clear()
        self._last = [None] * len(self.ks)

    def push(self, crop: np.ndarray) -> list[np.ndarray | None]:
        """Add crop[t]; returns per scale flow(crop[t-k] -> crop[t]), None until k earlier crops are known."""
        out: list[np.ndarray | None] = []
        n = len(self._crops)
        k0 = self.ks[0]
        for i, k in enumerate(self.ks):
            if n < k:
                out.append(None)
                continue
            m = self._chain[i]
            if m:
                # fields (t-k -> t-k+k0), ..., (t-k0 -> t): every k0-th shortest field, newest is out[0]
                older = [self._short[len(self._short) - j * k0] for j in range(m - 1, 0, -1)]
                parts = [*older, out[0]]
                flow = None if any(f is None for f in parts) else compose_flows(parts)
            else:
                init = self._last[i] if self.warm_start else None
                flow = self.estimator(self._crops[n - k], crop, init)
                self._last[i] = flow
            out.append(flow)
        self._crops.append(crop)
        if self.compose:
            self._short.append(out[0])
        return out


def compose_flows(fields: list[np.ndarray]) -> np.ndarray:
    """Chain consecutive flow fields: a -> b then b -> c gives a -> c.

    In OpenCV's convention (prev(x) ~ next(x + u(x))), the chain of A (a -> b) and B (b -> c) is
    C(x) = A(x) + B(x + A(x)), B sampled bilinearly where A moves x to (replicated at the border).

    Args:
        fields: (H, W, 2) float32 fields, oldest first, each ending where the next starts.

    Returns:
        (H, W, 2) float32, the first field's start to the last field's end.
    """
    total = np.array(fields[0], dtype=np.float32, copy=True)
    h, w = total.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    for nxt in fields[1:]:
        at = cv2.remap(
            nxt, gx + total[..., 0], gy + total[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        total += at
    return total
