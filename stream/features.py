"""Per-frame facial features from multi-scale skip-k flow and landmark geometry, in two modalities.

Regions of interest (ROIs) are sets of face-mesh landmarks; each landmark contributes a square
patch of the aligned crop. Per frame t and per flow scale k (FeatureConfig.flow_ks, shortest first):

motion (per scale, per ROI: u, v, |f|)
    skip-k flow f = flow(crop[t-k] -> crop[t]) minus the rigid motion of the reference region,
    pooled over the ROI's patches placed at the landmarks of frame t-k (where the flow field
    lives). The rigid motion is the transform (similarity, affine or projective: `rigid_model`)
    that best explains the flow at the reference landmarks (nose bridge, inner eye corners, face
    sides), fitted robustly; subtracting it removes what alignment left of head motion and of
    landmark jitter, which a mean-translation reference cannot (a 0.3 degree roll already moves
    the mouth by 0.3 px). Pooling (`pooling`) is the mean of the patch means, or a trimmed mean
    over the union of the ROI's patch pixels (the per-channel median), which outlying pixels
    covering less than half of the region cannot drag.
geometry / appearance (per ROI: dx, dy, |I_t - I_t-k|; then per eye: open, dopen)
    the ROI landmarks' displacement from a running neutral face (exponential average over
    neutral_tau_s), minus the rigid displacement of the reference landmarks fitted the same way,
    and the mean absolute intensity change of the ROI's patches over the shortest scale
    (texture: wrinkles, furrows, lid closure). With `eye_openness`, each eye's lid opening
    (mean upper-to-lower lid distance over the eye's width) relative to the running neutral's
    (0 at rest, -1 closed) and its change over the shortest scale: a blink reads as a closure
    and reopening, which no expression's lid narrowing (AU6/AU7) matches in depth and speed.

The two modalities are what the CSCM module of MC-WES expects as its two inputs. Units are
pixels of a 128 px crop whatever crop_size is, so features are comparable across sizes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from stream.align import AlignedFace, robust_similarity_fit
from stream.roi import ROI_SETS, RoiSet

if TYPE_CHECKING:
    from stream.config import FeatureConfig


MOTION_CHANNELS = ("u", "v", "mag")
GEOMETRY_CHANNELS = ("dx", "dy", "texture")
EYE_CHANNELS = ("open", "dopen")


@dataclass(frozen=True)
class EyeLids:
    """Face-mesh landmarks of one eye's lids: (upper, lower) pairs facing each other, and corners."""

    pairs: tuple[tuple[int, int], ...]
    corners: tuple[int, int]


# Subject's right then left eye: lid pairs from the middle outwards, then (outer, inner) corners.
EYES: dict[str, EyeLids] = {
    "eye_r": EyeLids(((159, 145), (158, 153), (160, 144)), (33, 133)),
    "eye_l": EyeLids(((386, 374), (385, 380), (387, 373)), (263, 362)),
}


def scale_label(seconds: float) -> str:
    """Name suffix of a flow scale, e.g. 0.1 s -> '100ms'."""
    return f"{round(seconds * 1000)}ms"


def feature_names(roi_set: RoiSet, config: FeatureConfig | None = None) -> tuple[list[str], list[str]]:
    """Names of the per-frame motion and geometry dimensions, in order.

    Motion is scale-major: every ROI's u, v, mag at the shortest scale ("brow_inner_r@100ms.u"),
    then at the next. Geometry is every ROI's dx, dy, texture, then (with eye_openness) each eye's
    open and dopen ("eye_r.open").

    Args:
        roi_set: the ROIs.
        config: the feature configuration (scales, eye openness); the default one if None.
    """
    if config is None:
        from stream.config import FeatureConfig

        config = FeatureConfig()
    motion = [
        f"{r}@{scale_label(s)}.{c}"
        for s in config.flow_scales_s
        for r in roi_set.names
        for c in MOTION_CHANNELS
    ]
    geometry = [f"{r}.{c}" for r in roi_set.names for c in GEOMETRY_CHANNELS]
    if config.eye_openness:
        geometry += [f"{e}.{c}" for e in EYES for c in EYE_CHANNELS]
    return motion, geometry


@dataclass(frozen=True, slots=True)
class FrameFeatures:
    """Features of one canonical frame.

    Attributes:
        index: canonical frame index.
        motion: (3 R S,) float32 (S flow scales), or None when not available (no face, flow not
            warmed up at every scale).
        geometry: (3 R [+ 4],) float32, or None likewise.
    """

    index: int
    motion: np.ndarray | None = field(repr=False)
    geometry: np.ndarray | None = field(repr=False)

    @property
    def valid(self) -> bool:
        return self.motion is not None


# ---------------------------------------------------------------------------------------------
# Rigid (head) motion models, fitted robustly at the reference landmarks. All return a 3x3 matrix
# mapping homogeneous source points to destination points.

_IRLS_ITERATIONS = 4
_IRLS_FLOOR = 0.05  # residual (px) below which a point counts fully


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.vstack(
        [robust_similarity_fit(src, dst, iterations=_IRLS_ITERATIONS, floor=_IRLS_FLOOR), [0, 0, 1]]
    )


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Affine fit by iteratively reweighted least squares with L1-like weights (as the similarity)."""
    a = np.hstack([src, np.ones((len(src), 1))])  # (N, 3)
    w = np.ones(len(src))
    for _ in range(_IRLS_ITERATIONS + 1):
        sw = np.sqrt(w)[:, None]
        x, *_ = np.linalg.lstsq(a * sw, dst * sw, rcond=None)  # (3, 2)
        res = np.linalg.norm(a @ x - dst, axis=1)
        w = 1.0 / np.maximum(res, _IRLS_FLOOR)
    return np.vstack([x.T, [0, 0, 1]])


def _normaliser(p: np.ndarray) -> np.ndarray:
    c = p.mean(0)
    s = np.sqrt(2) / max(np.linalg.norm(p - c, axis=1).mean(), 1e-9)
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = p @ m[:2, :2].T + m[:2, 2]
    if m[2, 0] == 0 and m[2, 1] == 0:
        return q / m[2, 2]
    den = p @ m[2, :2] + m[2, 2]
    return q / den[:, None]


def _projective(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Homography by weighted, normalised DLT, reweighted like the others."""
    ts, td = _normaliser(src), _normaliser(dst)
    s = src @ ts[:2, :2].T + ts[:2, 2]
    d = dst @ td[:2, :2].T + td[:2, 2]
    n = len(s)
    one, zero = np.ones(n), np.zeros(n)
    rx = np.stack(
        [-s[:, 0], -s[:, 1], -one, zero, zero, zero, d[:, 0] * s[:, 0], d[:, 0] * s[:, 1], d[:, 0]], 1
    )
    ry = np.stack(
        [zero, zero, zero, -s[:, 0], -s[:, 1], -one, d[:, 1] * s[:, 0], d[:, 1] * s[:, 1], d[:, 1]], 1
    )
    w = np.ones(n)
    for _ in range(_IRLS_ITERATIONS + 1):
        sw = np.sqrt(w)[:, None]
        _, _, vt = np.linalg.svd(np.vstack([rx * sw, ry * sw]))
        h = np.linalg.inv(td) @ vt[-1].reshape(3, 3) @ ts
        h = h / h[2, 2]
        res = np.linalg.norm(_apply(h, src) - dst, axis=1)
        w = 1.0 / np.maximum(res, _IRLS_FLOOR)
    return h


RIGID_MODELS = {"similarity": _similarity, "affine": _affine, "projective": _projective}


def fit_rigid(model: str, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 transform of `model` ("similarity", "affine", "projective") best mapping src to dst,
    fitted by iteratively reweighted least squares so that a few points moved by something else
    (a facial action tugging the face contour) barely bend it."""
    return RIGID_MODELS[model](np.asarray(src, np.float64), np.asarray(dst, np.float64))


# ---------------------------------------------------------------------------------------------


class RegionFeaturizer:
    """Stateful per-frame featurizer (keeps the last max(k) aligned faces and the running neutral).

    Args:
        roi_set: the ROIs.
        crop_size: aligned crop side in pixels.
        skip_ks: frames between the two crops of each flow field, one per scale, increasing.
        patch_radius: patch half-side in 128-px-crop pixels.
        neutral_alpha: per-frame weight of the running neutral's exponential average.
        pooling: "mean" or "robust" (trimmed mean over a ROI's patches).
        rigid_model: "similarity", "affine" or "projective".
        eye_openness: add per-eye openness and its change to the geometry.
    """

    def __init__(
        self,
        roi_set: RoiSet,
        *,
        crop_size: int,
        skip_ks: tuple[int, ...],
        patch_radius: float,
        neutral_alpha: float,
        pooling: str = "mean",
        rigid_model: str = "similarity",
        eye_openness: bool = True,
    ) -> None:
        if pooling not in ("mean", "robust"):
            raise ValueError(f"pooling={pooling!r}: choose 'mean' or 'robust'")
        if rigid_model not in RIGID_MODELS:
            raise ValueError(f"rigid_model={rigid_model!r}: choose one of {sorted(RIGID_MODELS)}")
        self.roi_set = roi_set
        self.unit = 128.0 / crop_size  # crop px -> 128-px-crop px
        self.size = crop_size
        self.ks = tuple(skip_ks)
        self.radius = max(1, round(patch_radius / self.unit))
        self.alpha = neutral_alpha
        self.pooling = pooling
        self.rigid_model = rigid_model
        self.eye_openness = eye_openness
        # One flat landmark list with a segment per ROI, so patch means are one vectorised gather.
        idx, seg = [], []
        for r, lms in enumerate(roi_set.regions.values()):
            idx.extend(lms)
            seg.extend([r] * len(lms))
        self._idx = np.array(idx)
        self._seg = np.array(seg)
        self._ref = np.array(roi_set.reference)
        count = np.bincount(self._seg)
        # (R, N) averaging matrix: ROI means of per-landmark values in one product
        self._avg = (np.arange(len(count))[:, None] == self._seg[None, :]) / count[:, None]
        # robust pooling: each ROI's landmarks (rows of the flat list) and the patch offsets
        self._rows = [np.flatnonzero(self._seg == r) for r in range(len(count))]
        dy, dx = np.mgrid[-self.radius : self.radius + 1, -self.radius : self.radius + 1]
        self._offsets = (dy.ravel(), dx.ravel())
        # eye openness: (E, 3) upper / lower lid landmarks, (E, 2) corners
        self._lid_up = np.array([[a for a, _ in e.pairs] for e in EYES.values()])
        self._lid_lo = np.array([[b for _, b in e.pairs] for e in EYES.values()])
        self._corners = np.array([e.corners for e in EYES.values()])
        # (2, E, 4): upper lids and outer corner, lower lids and inner corner
        self._lid_points = np.stack(
            [np.hstack([self._lid_up, self._corners[:, :1]]), np.hstack([self._lid_lo, self._corners[:, 1:]])]
        )
        ys, xs = np.mgrid[0:crop_size, 0:crop_size].astype(np.float32)
        self._grid = np.dstack([xs, ys])  # (S, S, 2) pixel coordinates (x, y)
        self._history: deque[_Seen] = deque(maxlen=self.ks[-1])
        self._neutral: np.ndarray | None = None

    @classmethod
    def from_config(cls, config: FeatureConfig) -> RegionFeaturizer:
        """The featurizer a feature configuration describes."""
        return cls(
            ROI_SETS.build(config.roi_set),
            crop_size=config.crop_size,
            skip_ks=config.flow_ks,
            patch_radius=config.patch_radius,
            neutral_alpha=1.0 / (config.neutral_tau_s * config.fps),
            pooling=config.pooling,
            rigid_model=config.rigid_model,
            eye_openness=config.eye_openness,
        )

    def reset(self) -> None:
        """Forget history and the neutral face (face lost, time gap, new person)."""
        self._history.clear()
        self._neutral = None

    def push(self, index: int, face: AlignedFace, flows: list[np.ndarray | None]) -> FrameFeatures:
        """Features of frame `index` from its aligned face and, per scale k, flow(crop[t-k] -> crop[t])."""
        if len(flows) != len(self.ks):
            raise ValueError(f"{len(flows)} flow fields given for {len(self.ks)} scales")
        hist = self._history
        ready = len(hist) >= self.ks[-1] and all(f is not None for f in flows)
        prevs = [hist[len(hist) - k] for k in self.ks] if ready else []
        # eye openness reference: the running neutral's lids, before this frame updates it
        seen = self._see(face)
        open_ref = self._openness(self._neutral) if self._neutral is not None else seen.openness
        geometry_pos = self._geometry(face)
        hist.append(seen)
        if not ready:
            return FrameFeatures(index, None, None)
        # motion per scale: flow minus the rigid motion fitted at the reference landmarks of frame t-k
        motion = [self._motion(flow, prev) for flow, prev in zip(flows, prevs, strict=True)]
        # appearance: mean absolute intensity change over the shortest scale
        short = prevs[0]
        diff = cv2.absdiff(face.crop, short.face.crop).astype(np.float32) / 255.0
        texture = self._pool_field(diff[..., None], seen)
        geometry = np.concatenate([geometry_pos, texture], axis=1).reshape(-1)  # (3R,)
        if self.eye_openness:
            now, before = seen.openness, short.openness
            eyes = np.stack([now / open_ref - 1.0, (now - before) / open_ref], axis=1)  # (E, 2)
            geometry = np.concatenate([geometry, eyes.reshape(-1)])
        return FrameFeatures(
            index,
            np.concatenate([m.reshape(-1) for m in motion]).astype(np.float32),
            geometry.astype(np.float32),
        )

    def _see(self, face: AlignedFace) -> _Seen:
        """What every later frame reads of this one: its patches at the ROI and reference
        landmarks and its lid openness, computed once rather than once per scale and use."""
        n_roi = len(self._idx)
        boxes = self._boxes(face.landmarks[np.concatenate([self._idx, self._ref])])
        return _Seen(face, boxes, boxes.take(slice(0, n_roi)), boxes.take(slice(n_roi, None)),
                     self._openness(face.landmarks))  # fmt: skip

    def _motion(self, flow: np.ndarray, prev: _Seen) -> np.ndarray:
        """(R, 3) pooled residual u, v, |f| of one flow field (128-px-crop pixels)."""
        ref_pts = prev.face.landmarks[self._ref].astype(np.float64)
        flow_sat = _integral(flow)
        if self.pooling == "robust" or self.rigid_model == "projective":
            ref_flow = self._box_means(flow_sat, prev.ref_boxes)  # (Nref, 2)
        else:  # the ROI patches' mean flow comes from the same gather (used below)
            both = self._box_means(flow_sat, prev.boxes)
            roi_flow, ref_flow = both[: len(self._idx)], both[len(self._idx) :]
        rigid = fit_rigid(self.rigid_model, ref_pts, ref_pts + ref_flow)
        u, v = cv2.split(cv2.subtract(flow, self._rigid_field(rigid)))
        mag = cv2.magnitude(u, v)
        if self.pooling == "robust" or self.rigid_model == "projective":
            return self._pool_field(cv2.merge([u, v, mag]), prev) * self.unit
        # Mean pooling under an affine head motion: a patch's mean residual u, v is its mean flow
        # minus the rigid displacement at the patch's centre, so u and v come from the flow's
        # summed-area table already built, and only the magnitude needs a table of its own.
        boxes = prev.roi_boxes
        uv = roi_flow - (boxes.centres @ (rigid[:2, :2] - np.eye(2)).T + rigid[:2, 2])
        means = np.concatenate([uv, self._box_means(_integral(mag), boxes)], axis=1)  # (N, 3)
        return self._avg @ means * self.unit

    def _geometry(self, face: AlignedFace) -> np.ndarray:
        """(R, 2) ROI landmark displacement from the running neutral; updates the neutral."""
        lm = face.landmarks.astype(np.float64)
        if self._neutral is None:
            self._neutral = lm.copy()
        rigid = fit_rigid(self.rigid_model, self._neutral[self._ref], lm[self._ref])
        d = lm - _apply(rigid, self._neutral)  # non-rigid part only
        out = self._avg @ d[self._idx]
        self._neutral += self.alpha * (lm - self._neutral)  # causal: updated after use
        return out * self.unit

    def _rigid_field(self, m: np.ndarray) -> np.ndarray:
        """(S, S, 2) float32 displacement x -> M x - x of the rigid transform over the crop grid."""
        if m[2, 0] == 0 and m[2, 1] == 0:
            return cv2.transform(self._grid, (m[:2] - np.hstack([np.eye(2), np.zeros((2, 1))])))
        return cv2.perspectiveTransform(self._grid, m) - self._grid

    def _boxes(self, points: np.ndarray) -> _Boxes:
        """The square patch around each of `points` (N, 2), clipped to the crop."""
        r, s = self.radius, self.size
        x = np.clip(np.rint(points[:, 0]).astype(int), 0, s - 1)
        y = np.clip(np.rint(points[:, 1]).astype(int), 0, s - 1)
        x0, x1 = np.maximum(x - r, 0), np.minimum(x + r + 1, s)
        y0, y1 = np.maximum(y - r, 0), np.minimum(y + r + 1, s)
        return _Boxes(x, y, x0, x1, y0, y1)

    @staticmethod
    def _box_means(integral: np.ndarray, b: _Boxes) -> np.ndarray:
        """(N, C) mean of each channel over each box, from an (S+1, S+1, C) summed-area table."""
        total = integral[b.y1, b.x1] - integral[b.y0, b.x1] - integral[b.y1, b.x0] + integral[b.y0, b.x0]
        return total / b.area[:, None]

    def _openness(self, landmarks: np.ndarray) -> np.ndarray:
        """(E,) mean upper-to-lower lid distance over the eye's width, per eye."""
        # one gather and hypot-free norms (what np.linalg.norm computes for 2-vectors, bit for bit)
        lm = np.asarray(landmarks, np.float64)[self._lid_points]  # (2, E, 4, 2)
        d = lm[0] - lm[1]  # (E, 4, 2): three lid gaps, then the eye's width
        norms = np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])
        return norms[:, :3].mean(1) / np.maximum(norms[:, 3], 1e-6)

    def _pool_field(self, img: np.ndarray, seen: _Seen) -> np.ndarray:
        """(S, S, C) field -> (R, C) per ROI over the patches at a frame's ROI landmarks: the mean
        of the patch means, or ("robust") the per-channel median over the union of the patch pixels."""
        boxes = seen.roi_boxes
        if self.pooling == "mean":
            return self._avg @ self._box_means(_integral(img), boxes)
        s = self.size
        dy, dx = self._offsets
        # (N, P) flat pixel index of every patch pixel
        lin = np.clip(boxes.y[:, None] + dy, 0, s - 1) * s + np.clip(boxes.x[:, None] + dx, 0, s - 1)
        flat = img.reshape(s * s, -1)
        return np.stack([np.median(flat[np.unique(lin[rows])], axis=0) for rows in self._rows])


@dataclass(frozen=True, slots=True)
class _Boxes:
    """Pixel boxes [x0, x1) x [y0, y1), one per point, around the point's pixel (x, y)."""

    x: np.ndarray
    y: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    area: np.ndarray = field(init=False)
    centres: np.ndarray = field(init=False)  # (N, 2) mean pixel coordinates (x, y) of each box

    def __post_init__(self) -> None:
        object.__setattr__(self, "area", ((self.x1 - self.x0) * (self.y1 - self.y0)).astype(np.float64))
        centres = np.stack([(self.x0 + self.x1 - 1) / 2.0, (self.y0 + self.y1 - 1) / 2.0], axis=1)
        object.__setattr__(self, "centres", centres)

    def take(self, rows: slice) -> _Boxes:
        return _Boxes(self.x[rows], self.y[rows], self.x0[rows], self.x1[rows], self.y0[rows], self.y1[rows])


@dataclass(frozen=True, slots=True)
class _Seen:
    """One frame in the featurizer's history: its aligned face, the patches at its ROI landmarks
    then reference landmarks (`boxes`, split into `roi_boxes` and `ref_boxes`), its lid openness."""

    face: AlignedFace
    boxes: _Boxes
    roi_boxes: _Boxes
    ref_boxes: _Boxes
    openness: np.ndarray


def _integral(img: np.ndarray) -> np.ndarray:
    """(S+1, S+1, C) float64 summed-area table of an (S, S, C) or (S, S) array."""
    out = cv2.integral(np.ascontiguousarray(img, dtype=np.float32), sdepth=cv2.CV_64F)
    return out if out.ndim == 3 else out[..., None]
