"""The pose of a base photo: frontal faces read as frontal, a turned face is measured and warned
about, on real photos."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from stream.errors import ConfigError
from stream.synth.identity import (
    FRONTAL_YAW_DEG,
    BaseFace,
    FaceNotFound,
    LandmarkDetector,
    face_pose,
    load_face,
    make_identities,
    unturned_actions,
)


@pytest.fixture(scope="module")
def turned_face() -> BaseFace:
    """scikit-image's cameraman: a real photo of a man seen from the side."""
    pytest.importorskip("skimage")
    return load_face("pkg:skimage/data/camera.png")


def test_frontal_photos_read_as_frontal(detector: LandmarkDetector, bundled_face: BaseFace) -> None:
    for face in (bundled_face, load_face("skimage:astronaut")):
        pose = face_pose(detector, face)
        assert pose.frontal and abs(pose.yaw_deg) < 12, (face.name, pose)
        # unturned, the eye distance the photo shows is the face's own, within a few per cent
        assert pose.iod_px == pytest.approx(pose.iod_unturned_px, rel=0.03)


def test_a_turned_face_is_measured_as_turned(detector: LandmarkDetector, turned_face: BaseFace) -> None:
    pose = face_pose(detector, turned_face)
    assert abs(pose.yaw_deg) > FRONTAL_YAW_DEG and not pose.frontal
    # foreshortening: the photo shows a shorter eye distance than the face has, by about cos(yaw)
    assert pose.iod_px / pose.iod_unturned_px == pytest.approx(np.cos(np.radians(pose.yaw_deg)), abs=0.02)
    # the same face mirrored turns the other way by about as much
    mirrored = BaseFace("mirrored", "mirrored", turned_face.image[:, ::-1].copy(), turned_face.sha256)
    other = face_pose(detector, mirrored)
    assert np.sign(other.yaw_deg) == -np.sign(pose.yaw_deg)
    assert abs(other.yaw_deg) == pytest.approx(abs(pose.yaw_deg), abs=10)


def test_a_turned_base_photo_is_used_with_a_warning_and_its_pose_kept(
    detector: LandmarkDetector,
    turned_face: BaseFace,
    bundled_face: BaseFace,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="stream.synth.identity"):
        subjects = make_identities([bundled_face, turned_face], 2, seed=3, detector=detector)
    warned = [r.getMessage() for r in caplog.records if "turned" in r.getMessage()]
    assert len(warned) == 1 and turned_face.source in warned[0] and "smaller" in warned[0]
    frontal, turned = subjects
    assert frontal.base_pose is not None and frontal.base_pose.frontal
    assert turned.base_pose is not None and not turned.base_pose.frontal
    assert turned.to_dict()["base_pose"] == turned.base_pose.to_dict()


def test_a_photo_without_a_face_has_no_pose(detector: LandmarkDetector) -> None:
    blank = BaseFace("blank", "blank.png", np.full((200, 200, 3), 128, np.uint8), "0")
    with pytest.raises(FaceNotFound, match=r"blank\.png"):
        face_pose(detector, blank)


def test_unturned_actions_size_a_turned_face_by_its_unturned_eye_distance(
    detector: LandmarkDetector, turned_face: BaseFace, bundled_face: BaseFace
) -> None:
    frontal, turned = (unturned_actions(s) for s in make_identities([bundled_face, turned_face], 2, seed=3))
    assert (
        turned.action_scale == pytest.approx(turned.base_pose.iod_unturned_px / turned.base_pose.iod_px)
        and turned.action_scale > 1.3
    )  # the cameraman: about 1 / cos(50 degrees)
    assert frontal.action_scale == pytest.approx(1.0, abs=0.03)
    assert turned.to_dict()["action_scale"] == round(turned.action_scale, 4)
    with pytest.raises(ConfigError, match="no measured pose"):
        unturned_actions(dataclasses.replace(turned, base_pose=None))
