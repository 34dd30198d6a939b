"""Build stream/assets/canonical_landmarks.npy, the frontal face template alignment maps onto.

The template is the Procrustes mean of MediaPipe face-mesh landmarks over real frontal faces
(the frames of shared/data/videos/single_face.mp4, the two stills in shared/data/faces and
skimage's astronaut), rotated so the eyes are level and normalised to the unit square with a
margin. It is deterministic given those inputs.

    python scripts/make_face_template.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from stream.align import similarity_fit

LEFT_EYE, RIGHT_EYE = [33, 133, 160, 144], [263, 362, 387, 373]
TOP, CHIN = 10, 152


def collect(shared: Path) -> list[np.ndarray]:
    import mediapipe as mp
    from skimage import data as skdata

    shapes: list[np.ndarray] = []

    def add(mesh, bgr: np.ndarray) -> None:
        r = mesh.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if r.multi_face_landmarks:
            h, w = bgr.shape[:2]
            pts = np.array([(p.x * w, p.y * h) for p in r.multi_face_landmarks[0].landmark[:468]])
            shapes.append(pts)

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        for name in ("man_outdoor.jpg", "man_webcam.jpg"):
            add(mesh, cv2.imread(str(shared / "data" / "faces" / name)))
        add(mesh, cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
        cap = cv2.VideoCapture(str(shared / "data" / "videos" / "single_face.mp4"))
        ok, frame = cap.read()
        while ok:
            add(mesh, frame)
            ok, frame = cap.read()
    return shapes


def procrustes_mean(shapes: list[np.ndarray], iterations: int = 5) -> np.ndarray:
    mean = shapes[0] - shapes[0].mean(0)
    for _ in range(iterations):
        aligned = []
        for s in shapes:
            m = similarity_fit(s, mean)
            aligned.append(s @ m[:, :2].T + m[:, 2])
        mean = np.mean(aligned, axis=0)
        mean -= mean.mean(0)
        mean /= np.linalg.norm(mean)
    return mean


def normalise(mean: np.ndarray, margin: float = 0.06) -> np.ndarray:
    eye_l, eye_r = mean[LEFT_EYE].mean(0), mean[RIGHT_EYE].mean(0)
    dx, dy = eye_r - eye_l
    a = -np.arctan2(dy, dx)  # level the eyes
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = mean @ rot.T
    if pts[CHIN, 1] < pts[TOP, 1]:  # image y points down: the chin must be below the forehead
        pts[:, 1] *= -1
    lo, hi = pts.min(0), pts.max(0)
    scale = (1 - 2 * margin) / (hi - lo).max()
    pts = (pts - (lo + hi) / 2) * scale + 0.5
    return pts.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "stream" / "assets")
    args = ap.parse_args()
    shapes = collect(args.shared)
    template = normalise(procrustes_mean(shapes))
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "canonical_landmarks.npy", template)
    print(
        f"{len(shapes)} faces -> {args.out / 'canonical_landmarks.npy'}; "
        f"x [{template[:, 0].min():.3f}, {template[:, 0].max():.3f}] "
        f"y [{template[:, 1].min():.3f}, {template[:, 1].max():.3f}]"
    )


if __name__ == "__main__":
    main()
