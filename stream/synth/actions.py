"""Facial action units as smooth displacement fields anchored on face-mesh landmarks.

An action unit (AU) is a small set of Gaussian kernels. Each kernel sits on a face-mesh landmark
(or the mean of a few), pushes the skin around it in a direction given in *face coordinates*, and
fades with a radius given as a fraction of the inter-ocular distance (IOD). Summed, the kernels
make a smooth displacement field; the field of one AU is normalised so that its largest
displacement is 1, and an expression scales it by its amplitude times its temporal profile.

Face coordinates (per side):
    x: outward, away from the face's midline (for midline kernels: toward the image's right);
    y: down, toward the chin (perpendicular to the eye line).
They are built from the landmarks of each identity, so kernels follow the face's roll and size.

Units: IOD is the distance between the outer eye corners (landmarks 33 and 263); amplitudes are
pixels at a 100 px IOD ("px@100IOD"), i.e. IOD / 100.

Sides follow MediaPipe's mesh: the "r" side holds landmark 33 (the image's left on a frontal,
unmirrored photo, the subject's right). Paired kernels list the r landmark and its l mirror.

Blinks (AU45) are not a displacement field: the upper lid occludes the eye. Their lid contours
are here (`EYE_LIDS`); `stream.synth.render` draws the closure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# outer eye corners: the IOD and the face's x axis
EYE_OUTER = (33, 263)

SIDES = ("both", "r", "l")


@dataclass(frozen=True, slots=True)
class Kernel:
    """One Gaussian push around a landmark.

    Attributes:
        r: landmark indices on the r side (the kernel's centre is their mean), or on the midline
            when `l` is None.
        l: the mirrored landmark indices on the l side; None for a midline kernel.
        direction: (x, y) in face coordinates (x outward, y down); need not be unit length.
        radius: Gaussian sigma as a fraction of the IOD.
        gain: relative strength within the AU.
        offset: (x, y) shift of the centre from the landmarks, in IOD units, face coordinates.
        shade: darkening at unit intensity (0.1: 10 % darker at the kernel's centre), for
            furrows, dimples and the mouth cavity; shading follows the skin like the displacement.
    """

    r: tuple[int, ...]
    l: tuple[int, ...] | None  # noqa: E741 (the side's name)
    direction: tuple[float, float]
    radius: float
    gain: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)
    shade: float = 0.0


def _k(
    r: int | tuple[int, ...],
    l: int | tuple[int, ...] | None,  # noqa: E741
    direction: tuple[float, float],
    radius: float,
    gain: float = 1.0,
    *,
    offset: tuple[float, float] = (0.0, 0.0),
    shade: float = 0.0,
) -> Kernel:
    as_tuple = lambda v: v if isinstance(v, tuple) else (v,)  # noqa: E731
    return Kernel(as_tuple(r), None if l is None else as_tuple(l), direction, radius, gain, offset, shade)


@dataclass(frozen=True, slots=True)
class ActionUnit:
    """A FACS action unit.

    Attributes:
        code: "AU12".
        name: FACS name.
        region: face part it moves ("brows", "eyes", "nose", "cheeks", "mouth", "chin"); an ME
            keeps to one half of the face (MEs are local), see `half`.
        kernels: its displacement / shading kernels.
        occlusion: True for AU45 (rendered as a lid closure, no kernels).
    """

    code: str
    name: str
    region: str
    kernels: tuple[Kernel, ...] = field(default=())
    occlusion: bool = False

    @property
    def half(self) -> str:
        """FACS's split: "upper" (brows, eyes, cheek raiser) or "lower" face."""
        return "upper" if self.region in ("brows", "eyes") or self.code == "AU6" else "lower"


def _au(code: str, name: str, region: str, *kernels: Kernel, occlusion: bool = False) -> ActionUnit:
    return ActionUnit(code, name, region, tuple(kernels), occlusion)


UP, DOWN = (0.0, -1.0), (0.0, 1.0)

# The table. Radii in IOD (0.1 IOD = 10 px on a 100 px IOD face). Landmarks: see stream/features.py
# for the ROIs that watch them.
ACTION_UNITS: dict[str, ActionUnit] = {
    au.code: au
    for au in (
        _au(
            "AU1",
            "inner brow raiser",
            "brows",
            _k(107, 336, (-0.1, -1.0), 0.13),
            _k(66, 296, (0.0, -1.0), 0.13),
            _k(55, 285, (-0.05, -1.0), 0.11, 0.8),
            _k(9, None, UP, 0.12, 0.4, shade=0.0),
        ),
        _au(
            "AU2",
            "outer brow raiser",
            "brows",
            _k(105, 334, (0.1, -1.0), 0.13),
            _k(63, 293, (0.15, -1.0), 0.13),
            _k(70, 300, (0.1, -1.0), 0.11, 0.8),
        ),
        _au(
            "AU4",
            "brow lowerer",
            "brows",
            _k(107, 336, (-0.6, 0.8), 0.13),
            _k(66, 296, (-0.4, 0.9), 0.13, 0.9),
            _k(55, 285, (-0.6, 0.5), 0.10, 0.8),
            _k((9, 8), None, (0.0, 0.0), 0.05, shade=0.10),  # glabellar furrow
        ),
        _au(
            "AU6",
            "cheek raiser",
            "cheeks",
            _k(118, 347, (0.1, -1.0), 0.15),
            _k(117, 346, (0.25, -1.0), 0.14),
            _k(50, 280, (0.1, -1.0), 0.15, 0.8),
            _k(145, 374, UP, 0.06, 0.5),
            _k(33, 263, (0.0, 0.0), 0.06, offset=(0.06, 0.0), shade=0.06),  # crow's feet
        ),
        _au(
            "AU7",
            "lid tightener",
            "eyes",
            _k(145, 374, UP, 0.06),
            _k(144, 373, UP, 0.06, 0.9),
            _k(153, 380, UP, 0.06, 0.9),
            _k(159, 386, (0.0, 0.5), 0.05, 0.4),
        ),
        _au(
            "AU9",
            "nose wrinkler",
            "nose",
            _k(129, 358, (-0.2, -1.0), 0.09),
            _k(98, 327, UP, 0.09),
            _k(209, 429, (-0.1, -1.0), 0.09, 0.9),
            _k(55, 285, (0.0, 1.0), 0.10, 0.3),
            _k((6, 168), None, (0.0, 0.0), 0.06, shade=0.08),  # wrinkles across the bridge
        ),
        _au(
            "AU10",
            "upper lip raiser",
            "mouth",
            _k(37, 267, UP, 0.11),
            _k(0, None, UP, 0.11),
            _k(40, 270, (0.1, -1.0), 0.10, 0.8),
            _k(206, 426, (0.2, -1.0), 0.11, 0.6),
        ),
        _au(
            "AU12",
            "lip corner puller",
            "mouth",
            _k(61, 291, (0.75, -0.65), 0.15),
            _k(57, 287, (0.6, -0.7), 0.12, 0.8),
            _k(205, 425, (0.4, -0.9), 0.14, 0.4),
        ),
        _au(
            "AU14",
            "dimpler",
            "mouth",
            _k(61, 291, (0.4, -0.1), 0.10, 0.8),
            _k(57, 287, (0.5, 0.0), 0.09),
            _k(61, 291, (0.0, 0.0), 0.05, offset=(0.07, 0.0), shade=0.10),  # the dimple
        ),
        _au(
            "AU15",
            "lip corner depressor",
            "mouth",
            _k(61, 291, (0.15, 1.0), 0.13),
            _k(146, 375, (0.1, 1.0), 0.11, 0.7),
            _k(57, 287, (0.1, 1.0), 0.11, 0.7),
        ),
        _au(
            "AU17",
            "chin raiser",
            "chin",
            _k(152, None, UP, 0.18),
            _k((199, 200), None, UP, 0.14),
            _k(17, None, UP, 0.11, 0.6),
            _k(148, 377, (-0.2, -1.0), 0.14, 0.5),
        ),
        _au(
            "AU20",
            "lip stretcher",
            "mouth",
            _k(61, 291, (1.0, 0.2), 0.13),
            _k(146, 375, (0.8, 0.3), 0.11, 0.6),
            _k(57, 287, (0.9, 0.2), 0.11, 0.7),
        ),
        _au(
            "AU23",
            "lip tightener",
            "mouth",
            _k(61, 291, (-1.0, 0.0), 0.09, 0.8),
            _k(0, None, DOWN, 0.09, 0.5),
            _k(17, None, UP, 0.09, 0.5),
            _k(37, 267, (-0.5, 0.4), 0.08, 0.5),
            _k(84, 314, (-0.5, -0.4), 0.08, 0.5),
        ),
        _au(
            "AU25",
            "lips part",
            "mouth",
            _k(14, None, DOWN, 0.09),
            _k(87, 317, DOWN, 0.08, 0.8),
            _k(17, None, DOWN, 0.10, 0.6),
            _k(13, None, UP, 0.08, 0.3),
            _k((13, 14), None, (0.0, 0.0), 0.04, shade=0.15),  # the mouth cavity shows
            _k((82, 87), (312, 317), (0.0, 0.0), 0.03, shade=0.12),
        ),
        _au(
            "AU26",
            "jaw drop",
            "chin",
            _k(152, None, DOWN, 0.32),
            _k(148, 377, DOWN, 0.28, 0.8),
            _k(17, None, DOWN, 0.22, 0.8),
            _k(14, None, DOWN, 0.11, 0.6),
            _k((13, 14), None, (0.0, 0.0), 0.04, shade=0.15),
        ),
        _au("AU45", "blink", "eyes", occlusion=True),
    )
}

# AUs an expression may use (AU45 is a blink: a distractor, never part of an expression).
EXPRESSION_AUS: tuple[str, ...] = tuple(c for c, au in ACTION_UNITS.items() if not au.occlusion)

# Lid contours per side, outer corner to inner corner: (upper, lower).
EYE_LIDS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "r": ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
    "l": ((263, 466, 388, 387, 386, 385, 384, 398, 362), (263, 249, 390, 373, 374, 380, 381, 382, 362)),
}


@dataclass(frozen=True, slots=True)
class FaceFrame:
    """The face's own axes and scale, from its landmarks.

    Attributes:
        ex: (2,) unit vector from the r outer eye corner to the l one (image coordinates).
        ey: (2,) unit vector perpendicular to ex, pointing down the face.
        iod: inter-ocular distance (outer corners) in pixels.
    """

    ex: np.ndarray
    ey: np.ndarray
    iod: float

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> FaceFrame:
        """Build from (468, 2) pixel landmarks."""
        d = landmarks[EYE_OUTER[1]].astype(np.float64) - landmarks[EYE_OUTER[0]]
        iod = float(np.hypot(*d))
        if iod <= 0:
            raise ValueError("degenerate landmarks: both outer eye corners coincide")
        ex = d / iod
        return cls(ex, np.array([-ex[1], ex[0]]), iod)

    def to_image(self, v: tuple[float, float] | np.ndarray, outward_sign: float = 1.0) -> np.ndarray:
        """(2,) image vector of a face-coordinate vector; outward_sign -1 flips x (r side)."""
        return outward_sign * v[0] * self.ex + v[1] * self.ey


def kernel_placements(
    au: ActionUnit, side: str, landmarks: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """The kernels of an AU on one face, in image coordinates.

    Args:
        au: the action unit.
        side: "both", "r" or "l" (a unilateral AU; midline kernels count half on each side, so
            "both" is exactly "r" + "l" before normalisation).
        landmarks: (468, 2) pixel landmarks.

    Returns:
        (centre (2,), direction (2,) in px per unit, sigma px, shade) per placed kernel.
    """
    if side not in SIDES:
        raise ValueError(f"side {side!r}: choose one of {SIDES}")
    frame = FaceFrame.from_landmarks(landmarks)
    lm = landmarks.astype(np.float64)
    out = []
    for k in au.kernels:
        sigma = k.radius * frame.iod
        if k.l is None:  # midline: x means the image's right, along ex
            weight = 1.0 if side == "both" else 0.5
            placed = [(k.r, 1.0, weight)]
        else:
            placed = [
                (idx, sign, 1.0)
                for s, idx, sign in (("r", k.r, -1.0), ("l", k.l, 1.0))
                if side in ("both", s)
            ]
        for idx, sign, weight in placed:
            centre = lm[list(idx)].mean(0) + frame.to_image(k.offset, sign) * frame.iod
            direction = frame.to_image(k.direction, sign) * k.gain * weight
            out.append((centre, direction, sigma, k.shade * weight))
    return out


def au_fields(
    au: ActionUnit, side: str, landmarks: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Displacement and shading fields of one AU at unit intensity, sampled on a grid.

    Args:
        au: the action unit (not AU45).
        side: "both", "r" or "l".
        landmarks: (468, 2) pixel landmarks of the face.
        xs: (W,) x coordinates of the grid columns (pixels).
        ys: (H,) y coordinates of the grid rows.

    Returns:
        displacement (H, W, 2) float32 with max magnitude 1 (the AU's peak moves 1 px per unit),
        shade (H, W) float32 darkening in [0, 1) at unit intensity.
    """
    disp = np.zeros((len(ys), len(xs), 2), np.float64)
    shade = np.zeros((len(ys), len(xs)), np.float64)
    for centre, direction, sigma, k_shade in kernel_placements(au, side, landmarks):
        # separable Gaussian: exp(-(dx^2 + dy^2) / 2s^2) = gx[None, :] * gy[:, None]
        gx = np.exp(-((xs - centre[0]) ** 2) / (2 * sigma**2))
        gy = np.exp(-((ys - centre[1]) ** 2) / (2 * sigma**2))
        g = gy[:, None] * gx[None, :]
        disp += g[..., None] * direction
        shade += k_shade * g
    peak = np.sqrt((disp**2).sum(-1)).max()
    if peak > 0:
        disp /= peak
    return disp.astype(np.float32), np.clip(shade, 0.0, 0.6).astype(np.float32)


def profile(t: np.ndarray | float, onset: float, apex: float, hold_end: float, offset: float) -> np.ndarray:
    """Onset-apex-offset intensity in [0, 1]: raised-cosine rise, hold, raised-cosine fall.

    Args:
        t: time(s) or frame number(s), same unit as the four landmarks of the profile.
        onset: intensity 0 here and before.
        apex: intensity reaches 1 here.
        hold_end: stays at 1 until here (== apex for no hold).
        offset: back to 0 here and after.

    Returns:
        intensity, same shape as t.
    """
    t = np.asarray(t, dtype=np.float64)
    rise = np.clip((t - onset) / max(apex - onset, 1e-9), 0.0, 1.0)
    fall = np.clip((offset - t) / max(offset - hold_end, 1e-9), 0.0, 1.0)
    up = 0.5 - 0.5 * np.cos(np.pi * rise)
    down = 0.5 - 0.5 * np.cos(np.pi * fall)
    return np.where(t < apex, up, np.where(t <= hold_end, 1.0, down))
