"""Alignment: similarity fit, canonical crop, invariance to head motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.align import STABLE_LANDMARKS, Aligner, canonical_template, similarity_fit
from stream.errors import ConfigError
from stream.face import FaceTracker
from stream.frame import Frame


def test_similarity_fit_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (20, 2))
    a, s, t = 0.3, 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = s * src @ rot.T + t
    m = similarity_fit(src, dst)
    np.testing.assert_allclose(m[:, :2], s * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_template_is_a_level_frontal_face_in_the_unit_square() -> None:
    t = canonical_template()
    assert t.shape == (468, 2) and t.dtype == np.float32
    assert t.min() >= 0 and t.max() <= 1
    # inner eye corners level, chin below the forehead, nose tip between the eyes
    assert abs(t[133, 1] - t[362, 1]) < 0.01
    assert t[152, 1] > t[10, 1]
    assert t[133, 0] < t[1, 0] < t[362, 0]


def test_head_motion_is_removed(face_frames: list[np.ndarray]) -> None:
    """Rotate, scale and shift a real frame: the aligned crops stay the same face."""
    img = face_frames[0]
    h, w = img.shape[:2]
    moved = cv2.warpAffine(
        img, cv2.getRotationMatrix2D((w / 2 + 20, h / 2), 12, 0.85), (w, h), borderMode=cv2.BORDER_REPLICATE
    )
    aligner = Aligner(128)
    crops = []
    for im in (img, moved):
        with FaceTracker() as tracker:
            obs = tracker.process(Frame(0, 0.0, 0, im, 0))
        assert obs.present
        crops.append(aligner(im, obs.landmarks))
    a, b = crops
    stable = list(STABLE_LANDMARKS)
    # stable landmarks land on the template within a pixel or two in both
    tpl = canonical_template()[stable] * 128
    for c in crops:
        assert np.abs(c.landmarks[stable] - tpl).mean() < 2.5
    assert np.abs(a.landmarks - b.landmarks).mean() < 1.5
    diff = np.abs(a.crop.astype(float) - b.crop.astype(float))[20:108, 20:108].mean()
    assert diff < 12, diff
    assert b.scale == pytest.approx(a.scale / 0.85, rel=0.05)


def test_deadband_holds_still_faces_and_follows_head_motion(face_frames: list[np.ndarray]) -> None:
    img = face_frames[0]
    h, w = img.shape[:2]
    with FaceTracker() as tracker:
        lms = [tracker.process(Frame(i, i / 30, 0, img, i)).landmarks for i in range(10)]
        aligner = Aligner(128, deadband_px=1.0)
        held = [aligner(img, lm).transform for lm in lms]
        assert all(np.array_equal(held[0], m) for m in held)  # a still face: one transform
        # a head shifted by 40 px: the aligner follows and the face lands on the template again
        moved = cv2.warpAffine(
            img, np.float32([[1, 0, 40], [0, 1, 0]]), (w, h), borderMode=cv2.BORDER_REPLICATE
        )
        lm2 = None
        for i in range(10, 14):
            lm2 = tracker.process(Frame(i, i / 30, 0, moved, i)).landmarks
        out = aligner(moved, lm2)
    assert not np.array_equal(out.transform, held[0])
    stable = list(STABLE_LANDMARKS)
    assert np.abs(out.landmarks[stable] - canonical_template()[stable] * 128).mean() < 2.5
    with pytest.raises(ConfigError, match="deadband"):
        Aligner(128, deadband_px=-1)
