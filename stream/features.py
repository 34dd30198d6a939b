"""Per-frame facial features from skip-k flow and landmark geometry, in two modalities.

Regions of interest (ROIs) are sets of face-mesh landmarks; each landmark contributes a square
patch of the aligned crop. Per frame t (k = skip_k):

motion (per ROI: u, v, |f|)
    skip-k flow f = flow(crop[t-k] -> crop[t]) minus the rigid motion of the reference region,
    averaged over the ROI's patches placed at the landmarks of frame t-k (where the flow field
    lives). The rigid motion is the similarity transform (shift, rotation, scale) that best
    explains the flow at the reference landmarks (nose bridge, inner eye corners, face sides),
    fitted robustly; subtracting it removes what alignment left of head motion and of landmark jitter, which a
    mean-translation reference cannot (a 0.3 degree roll already moves the mouth by 0.3 px).
geometry / appearance (per ROI: dx, dy, |I_t - I_t-k|)
    the ROI landmarks' displacement from a running neutral face (exponential average over
    neutral_tau_s), minus the rigid displacement of the reference landmarks fitted the same way,
    and the mean absolute intensity change of the ROI's patches over the same k frames
    (texture: wrinkles, furrows, lid closure).

The two modalities are what the CSCM module of MC-WES expects as its two inputs. Units are
pixels of a 128 px crop whatever crop_size is, so features are comparable across sizes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from stream.align import AlignedFace, robust_similarity_fit
from stream.registry import Registry


@dataclass(frozen=True)
class RoiSet:
    """Named ROIs on face-mesh landmark indices plus the rigid reference region."""

    regions: dict[str, tuple[int, ...]]
    reference: tuple[int, ...]

    @property
    def names(self) -> list[str]:
        return list(self.regions)


ROI_SETS: Registry[RoiSet] = Registry("ROI set")

# Sides are the subject's own (subject's right appears on the image's left).
_MESH17 = RoiSet(
    regions={
        "brow_inner_r": (107, 66, 55, 65),  # AU1, AU4
        "brow_outer_r": (70, 63, 46, 53),  # AU2
        "brow_inner_l": (336, 296, 285, 295),
        "brow_outer_l": (300, 293, 276, 283),
        "glabella": (9, 8, 193, 417),  # AU4 furrow
        "eye_r": (159, 158, 160, 145, 144, 153),  # AU7, AU45 (lids)
        "eye_l": (386, 385, 387, 374, 373, 380),
        "nose_wings": (129, 358, 98, 327, 209, 429),  # AU9
        "cheek_r": (50, 101, 118, 117, 123),  # AU6
        "cheek_l": (280, 330, 347, 346, 352),
        "nasolabial_r": (206, 203, 36),  # AU10, AU11
        "nasolabial_l": (426, 423, 266),
        "mouth_corner_r": (61, 76, 146, 185),  # AU12, AU14, AU15, AU20
        "mouth_corner_l": (291, 306, 375, 409),
        "lip_upper": (0, 37, 267, 13, 82, 312),  # AU10, AU23, AU25
        "lip_lower": (17, 84, 314, 14, 87, 317),  # AU16, AU25, AU26
        "chin": (152, 175, 199, 200, 148, 377),  # AU17, AU26
    },
    # nose bridge, inner eye corners, face sides at eye and ear level: rigid with the skull
    reference=(168, 6, 197, 195, 133, 362, 127, 356, 234, 454),
)
ROI_SETS.register("mesh17")(lambda: _MESH17)

MOTION_CHANNELS = ("u", "v", "mag")
GEOMETRY_CHANNELS = ("dx", "dy", "texture")


def feature_names(roi_set: RoiSet) -> tuple[list[str], list[str]]:
    """Names of the per-frame motion and geometry dimensions, in order."""
    motion = [f"{r}.{c}" for r in roi_set.names for c in MOTION_CHANNELS]
    geometry = [f"{r}.{c}" for r in roi_set.names for c in GEOMETRY_CHANNELS]
    return motion, geometry


@dataclass(frozen=True, slots=True)
class FrameFeatures:
    """Features of one canonical frame.

    Attributes:
        index: canonical frame index.
        motion: (3R,) float32, or None when not available (no face, flow not warmed up).
        geometry: (3R,) float32, or None likewise.
    """

    index: int
    motion: np.ndarray | None = field(repr=False)
    geometry: np.ndarray | None = field(repr=False)

    @property
    def valid(self) -> bool:
        return self.motion is not None


class RegionFeaturizer:
    """Stateful per-frame featurizer (keeps k aligned faces and the running neutral).

    Args:
        roi_set: the ROIs.
        crop_size: aligned crop side in pixels.
        skip_k: frames between the two crops of each flow field.
        patch_radius: patch half-side in 128-px-crop pixels.
        neutral_alpha: per-frame weight of the running neutral's exponential average.
    """

    def __init__(
        self, roi_set: RoiSet, *, crop_size: int, skip_k: int, patch_radius: float, neutral_alpha: float
    ) -> None:
        self.roi_set = roi_set
        self.unit = 128.0 / crop_size  # crop px -> 128-px-crop px
        self.size = crop_size
        self.k = skip_k
        self.radius = max(1, round(patch_radius / self.unit))
        self.alpha = neutral_alpha
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
        ys, xs = np.mgrid[0:crop_size, 0:crop_size].astype(np.float32)
        self._grid = np.dstack([xs, ys])  # (S, S, 2) pixel coordinates (x, y)
        self._history: deque[AlignedFace] = deque(maxlen=skip_k)
        self._neutral: np.ndarray | None = None

    def reset(self) -> None:
        """Forget history and the neutral face (face lost, time gap, new person)."""
        self._history.clear()
        self._neutral = None

    def push(self, index: int, face: AlignedFace, flow: np.ndarray | None) -> FrameFeatures:
        """Features of frame `index` from its aligned face and flow(crop[t-k] -> crop[t])."""
        prev = self._history[0] if len(self._history) == self.k else None
        self._history.append(face)
        geometry_pos = self._geometry(face)
        if flow is None or prev is None:
            return FrameFeatures(index, None, None)
        # motion: flow minus the rigid motion fitted at the reference landmarks of frame t-k
        ref_pts = prev.landmarks[self._ref].astype(np.float64)
        ref_flow = self._patch_means(_integral(flow), ref_pts)  # (Nref, 2)
        rigid = robust_similarity_fit(ref_pts, ref_pts + ref_flow)
        resid = cv2.subtract(flow, self._rigid_field(rigid))  # (S, S, 2)
        u, v = cv2.split(resid)
        motion_ch = cv2.merge([u, v, cv2.magnitude(u, v)])  # (S, S, 3)
        motion = self._roi_means(_integral(motion_ch), prev.landmarks[self._idx]) * self.unit
        # appearance: mean absolute intensity change over the same k frames
        diff = cv2.absdiff(face.crop, prev.crop).astype(np.float32) / 255.0
        texture = self._roi_means(_integral(diff[..., None]), face.landmarks[self._idx])  # (R, 1)
        geometry = np.concatenate([geometry_pos, texture], axis=1)  # (R, 3)
        return FrameFeatures(
            index, motion.reshape(-1).astype(np.float32), geometry.reshape(-1).astype(np.float32)
        )

    def _geometry(self, face: AlignedFace) -> np.ndarray:
        """(R, 2) ROI landmark displacement from the running neutral; updates the neutral."""
        lm = face.landmarks.astype(np.float64)
        if self._neutral is None:
            self._neutral = lm.copy()
        rigid = robust_similarity_fit(self._neutral[self._ref], lm[self._ref])
        d = lm - (self._neutral @ rigid[:, :2].T + rigid[:, 2])  # non-rigid part only
        out = self._avg @ d[self._idx]
        self._neutral += self.alpha * (lm - self._neutral)  # causal: updated after use
        return out * self.unit

    def _rigid_field(self, m: np.ndarray) -> np.ndarray:
        """(S, S, 2) float32 displacement x -> M x - x of a similarity over the crop grid."""
        return cv2.transform(self._grid, m - np.hstack([np.eye(2), np.zeros((2, 1))]))

    def _patch_means(self, integral: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(N, C) mean of each channel over the square patch around each point."""
        r, s = self.radius, self.size
        x = np.clip(np.rint(points[:, 0]).astype(int), 0, s - 1)
        y = np.clip(np.rint(points[:, 1]).astype(int), 0, s - 1)
        x0, x1 = np.maximum(x - r, 0), np.minimum(x + r + 1, s)
        y0, y1 = np.maximum(y - r, 0), np.minimum(y + r + 1, s)
        total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        area = ((x1 - x0) * (y1 - y0)).astype(np.float64)
        return total / area[:, None]

    def _roi_means(self, integral: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(R, C) mean over each ROI's landmark patches."""
        return self._avg @ self._patch_means(integral, points)


def _integral(img: np.ndarray) -> np.ndarray:
    """(S+1, S+1, C) float64 summed-area table of an (S, S, C) or (S, S) array."""
    out = cv2.integral(np.ascontiguousarray(img, dtype=np.float32), sdepth=cv2.CV_64F)
    return out if out.ndim == 3 else out[..., None]
