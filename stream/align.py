"""Face alignment: a similarity transform from stable landmarks onto a canonical frontal template.

The aligned grey crop and the landmarks in canonical coordinates remove head translation,
in-plane rotation and scale, so that what remains in the optical flow is facial motion.
Only landmarks that facial actions hardly move (inner eye corners, nose bridge and ridge, the
sides of the face at ear level) drive the fit; brows, lids, cheeks, mouth and jaw do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

from stream.errors import ConfigError

# Inner eye corners, nose bridge / ridge, face sides at eye and ear level (not the temples: brow
# raises move the skin there).
STABLE_LANDMARKS: tuple[int, ...] = (133, 362, 168, 6, 197, 195, 5, 4, 234, 454, 127, 356)


@lru_cache(maxsize=1)
def canonical_template() -> np.ndarray:
    """(468, 2) float32 template in the unit square (see scripts/make_face_template.py)."""
    with resources.files("stream.assets").joinpath("canonical_landmarks.npy").open("rb") as f:
        return np.load(f)


def similarity_fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares similarity (rotation, uniform scale, shift) mapping src onto dst.

    The closed form of Umeyama's method for 2-D points, without reflection.

    Args:
        src: (N, 2) points.
        dst: (N, 2) points.
        weights: optional (N,) non-negative weights.

    Returns:
        (2, 3) float64 matrix M with dst ~ src @ M[:, :2].T + M[:, 2].
    """
    zs, zd = _complex(src), _complex(dst)
    w = (
        np.full(len(zs), 1.0 / len(zs))
        if weights is None
        else np.asarray(weights, np.float64) / np.sum(weights)
    )
    return _matrix(*_fit_complex(zs, zd, w))


def _complex(points: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (N,) complex x + iy."""
    p = np.asarray(points, dtype=np.float64)
    return p[:, 0] + 1j * p[:, 1]


def _fit_complex(zs: np.ndarray, zd: np.ndarray, w: np.ndarray) -> tuple[complex, complex]:
    # The similarity is dst = c * src + t with c = scale * e^(i angle); its weighted
    # least-squares solution is closed-form (no SVD, and no reflection is possible).
    mu_s, mu_d = w @ zs, w @ zd
    s = zs - mu_s
    c = (w * np.conj(s)) @ (zd - mu_d) / (w @ (s.real**2 + s.imag**2))
    return c, mu_d - c * mu_s


def _fit_list(zs: list[complex], zd: list[complex], w: list[float]) -> tuple[complex, complex]:
    """_fit_complex on Python lists (unnormalised weights), two passes over the points."""
    total, sum_s, sum_d = 0.0, 0j, 0j
    for wi, a, b in zip(w, zs, zd, strict=True):
        total += wi
        sum_s += wi * a
        sum_d += wi * b
    mu_s, mu_d = sum_s / total, sum_d / total
    num, den = 0j, 0.0
    for wi, a, b in zip(w, zs, zd, strict=True):
        da = a - mu_s
        num += wi * da.conjugate() * (b - mu_d)
        den += wi * abs(da) ** 2
    c = num / den
    return c, mu_d - c * mu_s


def _matrix(c: complex, t: complex) -> np.ndarray:
    return np.array([[c.real, -c.imag, t.real], [c.imag, c.real, t.imag]])


def robust_similarity_fit(
    src: np.ndarray, dst: np.ndarray, *, iterations: int = 4, floor: float = 0.05
) -> np.ndarray:
    """Similarity fit that discounts points moved by something other than the rigid motion.

    Iteratively reweighted least squares with L1-like weights 1 / max(residual, floor): a few
    reference points dragged along by a nearby facial action (a cheek raise tugs the face
    contour) barely bend the fit, where plain least squares would spread their motion over the
    whole face.

    Args:
        src: (N, 2) points.
        dst: (N, 2) points.
        iterations: reweighting rounds after the plain fit.
        floor: residual (in the points' units) below which points count fully.
    """
    # A dozen points: plain Python complex arithmetic is several times faster than numpy here.
    zs = [complex(x, y) for x, y in np.asarray(src, dtype=np.float64).tolist()]
    zd = [complex(x, y) for x, y in np.asarray(dst, dtype=np.float64).tolist()]
    c, t = _fit_list(zs, zd, [1.0] * len(zs))
    for _ in range(iterations):
        w = [1.0 / max(abs(c * a + t - b), floor) for a, b in zip(zs, zd, strict=True)]
        c, t = _fit_list(zs, zd, w)
    return _matrix(c, t)


@dataclass(frozen=True, slots=True)
class AlignedFace:
    """A face mapped to the canonical frame.

    Attributes:
        crop: (S, S) uint8 grey aligned crop.
        landmarks: (468, 2) float32 landmarks in crop pixel coordinates.
        transform: (2, 3) image -> crop similarity.
        scale: the transform's scale (crop px per image px); a small value means a small face.
    """

    crop: np.ndarray = field(repr=False)
    landmarks: np.ndarray = field(repr=False)
    transform: np.ndarray = field(repr=False)
    scale: float


class Aligner:
    """Warps each frame's face onto the canonical template, with a deadband against jitter.

    MediaPipe's mesh is one global regression: a local deformation (a cheek raise) or plain
    estimation noise moves every landmark a little, and re-fitting the alignment on every frame
    would turn that into motion of the whole crop. The aligner therefore keeps its transform
    while the one the current landmarks imply stays within `deadband_px` (mean displacement of
    the stable points, in crop pixels) and re-aligns only beyond it, i.e. on real head motion.
    What a step leaves in the flow is a clean similarity, which the features' rigid reference
    removes.

    Args:
        size: side of the square crop in pixels.
        deadband_px: re-align when the stable points would move more than this (crop pixels of a
            128 px crop, scaled with size); 0 re-aligns on every frame.
    """

    def __init__(self, size: int = 128, *, deadband_px: float = 1.0) -> None:
        if not 32 <= size <= 512:
            raise ConfigError(f"crop size={size}: must lie in [32, 512]")
        if not 0 <= deadband_px <= 16:
            raise ConfigError(f"alignment deadband_px={deadband_px}: must lie in [0, 16]")
        self.size = size
        self.deadband = deadband_px * size / 128
        self._template_px = canonical_template() * size
        self._stable = np.array(STABLE_LANDMARKS)
        self._m: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the held transform (face lost, time gap)."""
        self._m = None

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> AlignedFace:
        """Align one face.

        Args:
            image: (H, W, 3) uint8 BGR frame.
            landmarks: (468, 2) pixel landmarks of the face in that frame.
        """
        stable = landmarks[self._stable]
        m = robust_similarity_fit(stable, self._template_px[self._stable], floor=0.5)
        if self._m is not None:
            shift = np.linalg.norm((stable @ (m - self._m)[:, :2].T + (m - self._m)[:, 2]), axis=1).mean()
            if shift <= self.deadband:
                m = self._m
        self._m = m
        crop = cv2.warpAffine(
            image, m, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        canon = (landmarks @ m[:, :2].T + m[:, 2]).astype(np.float32)
        return AlignedFace(grey, canon, m, float(np.sqrt(abs(np.linalg.det(m[:, :2])))))
