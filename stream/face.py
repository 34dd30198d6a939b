"""Face tracking with MediaPipe face mesh: 468 landmarks, the largest face, explicit lost/found states."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import cv2
import numpy as np

from stream.errors import ConfigError
from stream.frame import Frame

log = logging.getLogger(__name__)

N_LANDMARKS = 468


class FaceState(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """What the tracker saw in one frame.

    Attributes:
        frame_index: index of the frame observed.
        landmarks: (468, 2) float32 pixel coordinates (x, y) of the largest face, or None.
        n_faces: how many faces were found (the largest is kept).
        changed: True when this frame flips the state (face found or face lost).
    """

    frame_index: int
    landmarks: np.ndarray | None = field(repr=False)
    n_faces: int
    changed: bool

    @property
    def present(self) -> bool:
        return self.landmarks is not None


# One landmark of a NormalizedLandmarkList on the wire when it holds x, y and z only: the field
# tag and length of the entry, then each float's tag and its four little-endian bytes.
_LANDMARK_WIRE = np.dtype(
    [("tag", "u1"), ("size", "u1"), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"),
     ("tz", "u1"), ("z", "<f4")]
)  # fmt: skip
_LANDMARK_TAGS = {"tag": 0x0A, "size": 15, "tx": 0x0D, "ty": 0x15, "tz": 0x1D}


def landmark_array(face: object, n: int = N_LANDMARKS) -> np.ndarray:
    """(n, 2) float32 normalised (x, y) of the first n landmarks of a face-mesh landmark list.

    Reading 468 protobuf messages one attribute at a time costs about 0.4 ms a frame, all of it
    holding the GIL the pipeline's other thread needs; the list's serialised bytes hold the same
    float32 values at fixed offsets when every landmark has exactly x, y and z, and are read in
    one pass. Any other layout (visibility or presence set, a field missing) is read per message.
    """
    marks = face.landmark  # type: ignore[attr-defined]
    raw = face.SerializeToString()  # type: ignore[attr-defined]
    if len(raw) == _LANDMARK_WIRE.itemsize * len(marks) and len(marks) >= n:
        rec = np.frombuffer(raw, _LANDMARK_WIRE)
        if all((rec[name] == value).all() for name, value in _LANDMARK_TAGS.items()):
            return np.stack([rec["x"][:n], rec["y"][:n]], axis=1)
    return np.array([(p.x, p.y) for p in marks[:n]], dtype=np.float32)


def mesh_faces(mesh: object, rgb: np.ndarray) -> list:
    """The landmark lists a MediaPipe FaceMesh finds in one RGB frame: ``mesh.process(rgb)``'s
    ``multi_face_landmarks`` (or []), without what `process` rebuilds on every call.

    `process` creates a new named-tuple type for its result on every frame, about 0.25 ms held
    under the GIL that the pipeline's other thread needs (docs/benchmarks.md, "Extraction: less
    held in Python, one OpenCV thread"). The graph is fed here the way `process` feeds it, for the
    one input and output FaceMesh has; a mesh laid out otherwise (another MediaPipe release) goes
    through `process` itself.
    """
    if not _lean_mesh(mesh):
        return mesh.process(rgb).multi_face_landmarks or []  # type: ignore[attr-defined]
    from mediapipe.python import packet_creator, packet_getter
    from mediapipe.python._framework_bindings import image_frame

    m: Any = mesh
    m._graph_outputs.clear()
    m._simulated_timestamp += 33333  # as `process`: a simulated 30 fps clock
    packet = packet_creator.create_image(rgb, image_format=image_frame.ImageFormat.SRGB)
    m._graph.add_packet_to_input_stream(stream="image", packet=packet.at(m._simulated_timestamp))
    m._graph.wait_until_idle()
    out = m._graph_outputs.get("multi_face_landmarks")
    if out is None or out.is_empty():
        return []
    return packet_getter.get_proto_list(out)


def _lean_mesh(mesh: object) -> bool:
    """Whether `mesh` has the one image input and one landmark-list output `mesh_faces` feeds."""
    known = getattr(mesh, "_mespot_lean", None)
    if known is None:
        from mediapipe.python.solution_base import PacketDataType

        known = (
            getattr(mesh, "_input_stream_type_info", None) == {"image": PacketDataType.IMAGE}
            and getattr(mesh, "_output_stream_type_info", None)
            == {"multi_face_landmarks": PacketDataType.PROTO_LIST}
            and all(hasattr(mesh, a) for a in ("_graph", "_graph_outputs", "_simulated_timestamp"))
        )
        mesh._mespot_lean = known  # type: ignore[attr-defined]
    return known


class FaceTracker:
    """MediaPipe face mesh in tracking mode, keeping the largest face.

    MediaPipe runs its face detector on every frame while it tracks fewer faces than it was asked
    for, so a mesh asked for two faces pays for a detection per frame whenever one person is in
    view. The tracker therefore tracks with a one-face mesh and runs the (cheaper) short-range
    detector every `check_every` frames; while that check sees several faces it switches to a
    mesh of `max_faces` and keeps the largest, and it switches back once a single face has been
    seen for `single_face_hold` frames.

    Args:
        max_faces: faces searched while several are in view; the largest (landmark bounding-box
            area) is kept.
        check_every: frames between two checks for other faces.
        single_face_hold: consecutive single-face checks before leaving multi-face mode.
        min_detection_confidence: detector threshold for (re)acquiring a face.
        min_tracking_confidence: below this the mesh is considered lost and detection runs again.
        mesh_every: run the mesh on one frame in this many while a face is tracked, the frames
            between keeping its landmarks (1: every frame). The mesh is most of the pipeline's
            first half (about 6 ms a frame whatever the frame's size); a frame without a face is
            always meshed, so a face is found as soon as it shows.
    """

    def __init__(
        self,
        *,
        max_faces: int = 3,
        check_every: int = 15,
        single_face_hold: int = 4,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        mesh_every: int = 1,
    ) -> None:
        if not 1 <= max_faces <= 8:
            raise ConfigError(f"max_faces={max_faces}: must lie in [1, 8]")
        if check_every < 1 or single_face_hold < 1:
            raise ConfigError(f"check_every={check_every}, single_face_hold={single_face_hold}: must be >= 1")
        for name, v in (
            ("min_detection_confidence", min_detection_confidence),
            ("min_tracking_confidence", min_tracking_confidence),
        ):
            if not 0.0 < v < 1.0:
                raise ConfigError(f"{name}={v}: must lie in (0, 1)")
        if not (isinstance(mesh_every, int) and 1 <= mesh_every <= 4):
            raise ConfigError(f"mesh_every={mesh_every!r}: must be a whole number of frames in [1, 4]")
        import mediapipe as mp  # heavy import, deferred until a tracker is built

        def mesh(n: int):
            return mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False,
                max_num_faces=n,
                refine_landmarks=False,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )

        self._single = mesh(1)
        self._multi = mesh(max_faces) if max_faces > 1 else None
        self._detector = (
            mp.solutions.face_detection.FaceDetection(
                model_selection=0, min_detection_confidence=min_detection_confidence
            )
            if max_faces > 1
            else None
        )
        self.check_every = check_every
        self.single_face_hold = single_face_hold
        self.mesh_every = mesh_every
        self._held: FaceObservation | None = None  # the last meshed face, while frames reuse it
        self._reused = 0
        self.state = FaceState.ABSENT
        self.multi_mode = False
        self._frames = 0
        self._single_checks = 0

    def process(self, frame: Frame) -> FaceObservation:
        """Track the face in one frame (BGR image)."""
        held = self._held
        if held is not None and self._reused < self.mesh_every - 1:
            self._reused += 1
            return FaceObservation(frame.index, held.landmarks, held.n_faces, False)
        obs = self._mesh(frame)
        self._held, self._reused = (obs if obs.present and self.mesh_every > 1 else None), 0
        return obs

    def _mesh(self, frame: Frame) -> FaceObservation:
        """Run the mesh on one frame: the largest face's landmarks in pixels, and the state."""
        h, w = frame.image.shape[:2]
        rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
        if self._detector is not None and self._frames % self.check_every == 0:
            self._check_for_faces(rgb)
        self._frames += 1
        faces = mesh_faces(self._multi if self.multi_mode else self._single, rgb)
        landmarks = None
        if faces:
            best, best_area = None, -1.0
            for face in faces:
                pts = landmark_array(face)
                span = pts.max(axis=0) - pts.min(axis=0)
                area = float(span[0] * span[1])
                if area > best_area:
                    best, best_area = pts, area
            landmarks = best * np.array([w, h], dtype=np.float32)  # normalised -> pixels
        new_state = FaceState.PRESENT if landmarks is not None else FaceState.ABSENT
        changed = new_state != self.state
        if changed:
            log.info("frame %d: face %s", frame.index, "found" if landmarks is not None else "lost")
        self.state = new_state
        return FaceObservation(frame.index, landmarks, len(faces), changed)

    def _check_for_faces(self, rgb: np.ndarray) -> None:
        detections = self._detector.process(rgb).detections or []
        if len(detections) > 1:
            if not self.multi_mode:
                log.info("%d faces in view: tracking all and keeping the largest", len(detections))
            self.multi_mode, self._single_checks = True, 0
        elif self.multi_mode:
            self._single_checks += 1
            if self._single_checks >= self.single_face_hold:
                self.multi_mode = False

    def close(self) -> None:
        for part in (self._single, self._multi, self._detector):
            if part is not None:
                part.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
