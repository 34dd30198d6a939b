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

# Inner eye corners, nose bridge / ridge, face sides at ear level, upper temples.
STABLE_LANDMARKS: tuple[int, ...] = (133, 362, 168, 6, 197, 195, 5, 4, 234, 454, 127, 356, 21, 251)


@lru_cache(maxsize=1)
def canonical_template() -> np.ndarray:
    """(468, 2) float32 template in the unit square (see scripts/make_face_template.py)."""
    with resources.files("stream.assets").joinpath("canonical_landmarks.npy").open("rb") as f:
        return np.load(f)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    Umeyama's closed form without reflection.

    Args:
        src: (N, 2) points.
        dst: (N, 2) points.

    Returns:
        (2, 3) float64 matrix M with dst ~ src @ M[:, :2].T + M[:, 2].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var = (s**2).sum() / len(src)
    scale = (sig * sign).sum() / var
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


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
    """Warps each frame's face onto the canonical template.

    Args:
        size: side of the square crop in pixels.
    """

    def __init__(self, size: int = 128) -> None:
        if not 32 <= size <= 512:
            raise ConfigError(f"crop size={size}: must lie in [32, 512]")
        self.size = size
        self._template_px = canonical_template() * size
        self._stable = np.array(STABLE_LANDMARKS)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> AlignedFace:
        """Align one face.

        Args:
            image: (H, W, 3) uint8 BGR frame.
            landmarks: (468, 2) pixel landmarks of the face in that frame.
        """
        m = similarity_fit(landmarks[self._stable], self._template_px[self._stable])
        crop = cv2.warpAffine(
            image, m, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        canon = (landmarks @ m[:, :2].T + m[:, 2]).astype(np.float32)
        return AlignedFace(grey, canon, m, float(np.sqrt(abs(np.linalg.det(m[:, :2])))))
