"""Region features rise where the face moves, and not for head motion.

The input is generated from a real face: frames of single_face.mp4's first image, deformed by a
smooth local displacement anchored on a face-mesh landmark (what an action unit does), or moved
as a whole (what a head does).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.config import FeatureConfig
from stream.face import FaceTracker
from stream.features import ROI_SETS, feature_names
from stream.frame import Frame
from stream.pipeline import Pipeline
from stream.ring import Snippet


@pytest.fixture(scope="module")
def base(face_frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    img = face_frames[0]
    with FaceTracker() as t:
        obs = t.process(Frame(0, 0.0, 0, img, 0))
    return img, obs.landmarks


def local_pull(img: np.ndarray, centre: np.ndarray, shift: np.ndarray, sigma: float) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))
    return cv2.remap(
        img, xx - shift[0] * g, yy - shift[1] * g, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )


def run(frames: list[np.ndarray]) -> list[Snippet]:
    with Pipeline(FeatureConfig()) as pipe:
        outs = list(pipe.run((Frame(i, i / 30, i, f, i) for i, f in enumerate(frames)), threaded=False))
    return [o for o in outs if isinstance(o, Snippet)]


def per_roi_mag(snippet: Snippet) -> dict[str, float]:
    motion_names, _ = feature_names(ROI_SETS.build("mesh17"))
    mean = snippet.motion[: len(motion_names)]  # the "mean over frames" block
    return {
        n[: -len(".mag")]: float(v) for n, v in zip(motion_names, mean, strict=True) if n.endswith(".mag")
    }


@pytest.mark.parametrize(
    "landmark,direction,width,roi",
    [
        (61, (-0.8, -0.6), 0.2, "mouth_corner_r"),  # AU12-like pull of the right mouth corner
        (66, (0.0, -1.0), 0.2, "brow_inner_r"),  # AU1-like raise of the right inner brow
        (296, (0.0, -1.0), 0.2, "brow_inner_l"),
        (17, (0.0, 1.0), 0.2, "lip_lower"),  # AU25/26-like lowering of the lower lip
        (118, (0.0, -1.0), 0.12, "cheek_r"),  # AU6-like raise of the right cheek
    ],
)
def test_a_local_pull_shows_in_its_region(
    base, landmark: int, direction: tuple, width: float, roi: str
) -> None:
    """A smooth pull (Gaussian of `width` eye spans) around one landmark leads its own region."""
    img, lm = base
    eye_span = np.linalg.norm(lm[33] - lm[263])
    # 16 still frames, an 8-frame onset to a pull of 8% of the eye span, 8 held frames
    amp = np.concatenate([np.zeros(16), np.linspace(0, 1, 9)[1:], np.ones(8)])
    shift = np.array(direction) * 0.08 * eye_span
    frames = [local_pull(img, lm[landmark], a * shift, width * eye_span) for a in amp]
    snippets = run(frames)
    assert all(s.valid for s in snippets[1:])
    still, onset = per_roi_mag(snippets[1]), per_roi_mag(snippets[2])
    ranked = sorted(onset, key=onset.get, reverse=True)
    assert ranked[0] == roi, onset
    assert onset[roi] > 5 * max(still[roi], 0.02)
    far = [r for r in onset if r.split("_")[0] not in roi.split("_")[0] and r != "glabella"]
    assert np.median([onset[r] for r in far]) < 0.25 * onset[roi]


def test_head_translation_and_rotation_do_not_show_as_facial_motion(base) -> None:
    img, lm = base
    h, w = img.shape[:2]
    centre = tuple(lm.mean(0).tolist())
    frames = []
    for i in range(40):  # a steady head turn-in-plane and drift: 6 degrees and 30 px over 1.3 s
        m = cv2.getRotationMatrix2D(centre, 0.15 * i, 1.0)
        m[0, 2] += 0.75 * i
        frames.append(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
    snippets = run(frames)
    pulled = run(
        [
            local_pull(img, lm[61], a * np.array([-6.0, -4.5]), 20.0)
            for a in np.concatenate([np.zeros(16), np.linspace(0, 1, 24)])
        ]
    )
    head = max(max(per_roi_mag(s).values()) for s in snippets if s.valid)
    expression = max(per_roi_mag(s)["mouth_corner_r"] for s in pulled if s.valid)
    assert head < 0.5 * expression, (head, expression)


def test_geometry_tracks_displacement_from_the_running_neutral(base) -> None:
    img, lm = base
    amp = np.concatenate([np.zeros(16), np.ones(24)])
    frames = [local_pull(img, lm[13], a * np.array([0.0, 5.0]), 20.0) for a in amp]  # upper lip down
    snippets = run(frames)
    _, geometry_names = feature_names(ROI_SETS.build("mesh17"))
    dy = geometry_names.index("lip_upper.dy")
    before, after = snippets[1].geometry[dy], snippets[3].geometry[dy]
    assert after > before + 1.0, (before, after)
