"""The face tracker's landmark reading: the serialised fast path equals reading each message."""

from __future__ import annotations

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.framework.formats import landmark_pb2

from stream.face import N_LANDMARKS, _lean_mesh, landmark_array, mesh_faces


def per_message(face: landmark_pb2.NormalizedLandmarkList, n: int = N_LANDMARKS) -> np.ndarray:
    return np.array([(p.x, p.y) for p in face.landmark[:n]], dtype=np.float32)


def test_landmarks_of_real_frames_equal_reading_each_message(face_frames: list[np.ndarray]) -> None:
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1)
    try:
        seen = 0
        for img in face_frames[:20]:
            result = mesh.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            for face in result.multi_face_landmarks or []:
                fast = landmark_array(face)
                assert fast.dtype == np.float32 and fast.shape == (N_LANDMARKS, 2)
                np.testing.assert_array_equal(fast, per_message(face))
                seen += 1
    finally:
        mesh.close()
    assert seen >= 15, "the tracker should see the face in most of these frames"


def test_other_layouts_are_read_per_message() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.random((N_LANDMARKS + 10, 3)).astype(np.float32)
    plain = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in xyz:
        plain.landmark.add(x=float(x), y=float(y), z=float(z))
    np.testing.assert_array_equal(landmark_array(plain), xyz[:N_LANDMARKS, :2])

    # visibility set on one landmark: the bytes no longer have one fixed layout
    odd = landmark_pb2.NormalizedLandmarkList()
    odd.CopyFrom(plain)
    odd.landmark[3].visibility = 0.5
    np.testing.assert_array_equal(landmark_array(odd), xyz[:N_LANDMARKS, :2])

    # z missing everywhere: every entry is shorter, the same count of bytes is not reached
    no_z = landmark_pb2.NormalizedLandmarkList()
    for x, y, _ in xyz:
        no_z.landmark.add(x=float(x), y=float(y))
    np.testing.assert_array_equal(landmark_array(no_z), xyz[:N_LANDMARKS, :2])

    # fewer landmarks than asked for: what there is
    short = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in xyz[:5]:
        short.landmark.add(x=float(x), y=float(y), z=float(z))
    np.testing.assert_array_equal(landmark_array(short), xyz[:5, :2])


def test_mesh_faces_equal_process_on_real_frames(face_frames: list[np.ndarray]) -> None:
    """The lean graph call gives `process`'s landmark lists, frame for frame, on the pinned
    MediaPipe (where it must be the path taken)."""
    lean = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1)
    plain = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1)
    try:
        assert _lean_mesh(lean), "the pinned MediaPipe's FaceMesh should take the lean path"
        for img in face_frames[:15]:
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            got = mesh_faces(lean, rgb)
            want = plain.process(rgb).multi_face_landmarks or []
            assert [f.SerializeToString() for f in got] == [f.SerializeToString() for f in want]
        # a frame without a face: no landmark lists, on both paths
        blank = np.full_like(face_frames[0], 127)
        assert mesh_faces(lean, blank) == [] and not plain.process(blank).multi_face_landmarks
    finally:
        lean.close()
        plain.close()


def test_mesh_faces_of_an_unknown_layout_go_through_process(face_frames: list[np.ndarray]) -> None:
    class Wrapped:
        """A mesh-like object without FaceMesh's graph internals."""

        def __init__(self) -> None:
            self.inner = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1)

        def process(self, rgb: np.ndarray) -> object:
            return self.inner.process(rgb)

    mesh = Wrapped()
    try:
        assert not _lean_mesh(mesh)
        faces = mesh_faces(mesh, cv2.cvtColor(face_frames[0], cv2.COLOR_BGR2RGB))
        assert len(faces) == 1 and len(faces[0].landmark) >= N_LANDMARKS
    finally:
        mesh.inner.close()


def test_mesh_every_keeps_the_meshed_landmarks_between_mesh_runs(face_frames: list[np.ndarray]) -> None:
    from stream.face import FaceTracker
    from stream.frame import Frame

    frames = [Frame(i, i / 30, 0, img) for i, img in enumerate(face_frames[:12])]
    with FaceTracker() as every, FaceTracker(mesh_every=2) as second:
        want = [every.process(f) for f in frames]
        got = [second.process(f) for f in frames]
    assert all(o.present for o in got) and all(o.present for o in want)
    assert got[0].changed and not any(o.changed for o in got[1:])
    for i in range(1, len(frames), 2):  # frames between mesh runs: the last meshed landmarks
        assert got[i].frame_index == i
        np.testing.assert_array_equal(got[i].landmarks, got[i - 1].landmarks)
    np.testing.assert_array_equal(got[0].landmarks, want[0].landmarks)  # the first run is the same mesh
    # the meshed frames track the face as closely as meshing every frame does (within a pixel)
    for i in range(2, len(frames), 2):
        assert np.abs(got[i].landmarks - want[i].landmarks).mean() < 1.0


def test_mesh_every_meshes_every_frame_without_a_face(face_frames: list[np.ndarray]) -> None:
    from stream.face import FaceTracker
    from stream.frame import Frame

    blank = np.full_like(face_frames[0], 127)
    frames = [Frame(0, 0.0, 0, blank), Frame(1, 1 / 30, 0, face_frames[0])]
    with FaceTracker(mesh_every=3) as tracker:
        seen = [tracker.process(f) for f in frames]
    assert not seen[0].present
    assert seen[1].present and seen[1].changed  # found on the next frame, not three frames later


def test_mesh_every_out_of_range_names_the_field() -> None:
    import pytest

    from stream.config import FeatureConfig
    from stream.errors import ConfigError
    from stream.face import FaceTracker

    for bad in (0, 5, 1.5):
        with pytest.raises(ConfigError, match="mesh_every"):
            FeatureConfig(mesh_every=bad)
    with pytest.raises(ConfigError, match="mesh_every"):
        FaceTracker(mesh_every=0)
    # the default keeps the digest of configurations made before the option
    assert "mesh_every" not in FeatureConfig().to_dict()
    assert FeatureConfig(mesh_every=2).digest() != FeatureConfig().digest()
    assert FeatureConfig.from_dict(FeatureConfig(mesh_every=2).to_dict()).mesh_every == 2
