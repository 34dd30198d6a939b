"""What the face tracker costs a frame, and what the ways of paying less would cost in landmarks.

    python benchmarks/face_tracker_options.py [--seconds 20] [--repeats 3]

On `stream_bench.make_video`'s 640x360, 30 fps recording of a real face, each option is timed
per frame (best of `--repeats`, interleaved) and its landmarks compared with the face mesh's on
the full frame, in pixels of that frame (mean over landmarks and frames; for scale, the mesh's
own landmarks move 0.6 px a frame on this clip):

- mesh, `process` : MediaPipe's FaceMesh.process, as a user of MediaPipe would call it;
- mesh, lean call : `stream.face.mesh_faces`, the graph fed without `process`'s per-call named
  tuple (what mespot runs), and its landmarks through `landmark_array`;
- mesh on a half-size frame : the same mesh on the frame downscaled to 320x180;
- mesh every other frame, landmarks held : the odd frames reuse the previous frame's landmarks;
- mesh every other frame, LK between : the odd frames' landmarks tracked from the previous
  frame by pyramidal Lucas-Kanade (21 px window, 3 levels, then 11 px and 1 level).

A landmark mismatch of a few tenths of a pixel at 640x360 is about a pixel of the 128 px aligned
crop's patches, where the flow is pooled: an option is only worth validating on SynthSpot-v2 if it
saves a real share of the tracker's time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import make_video

from stream.face import landmark_array, mesh_faces
from stream.native_logs import quiet_native_logs


def new_mesh():
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False)


def landmarks_px(faces: list, w: int, h: int) -> np.ndarray | None:
    return landmark_array(faces[0]) * np.array([w, h], np.float32) if faces else None


def run_mesh(frames: list[np.ndarray], *, lean: bool = True, scale: float = 1.0) -> list:
    mesh = new_mesh()
    out = []
    try:
        for rgb in frames:
            h, w = rgb.shape[:2]
            small = scale != 1.0
            img = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if small else rgb
            if lean:
                faces = mesh_faces(mesh, img)
            else:
                faces = mesh.process(img).multi_face_landmarks or []
                faces = list(faces)
            out.append(landmarks_px(faces, w, h))
    finally:
        mesh.close()
    return out


def every_other(frames: list[np.ndarray], *, lk: tuple[int, int] | None) -> list:
    mesh = new_mesh()
    out: list = []
    prev_grey = None
    try:
        for i, rgb in enumerate(frames):
            h, w = rgb.shape[:2]
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if lk else None
            if i % 2 == 0 or out[-1] is None:
                out.append(landmarks_px(mesh_faces(mesh, rgb), w, h))
            elif lk is None:
                out.append(out[-1])
            else:
                win, levels = lk
                pts, _, _ = cv2.calcOpticalFlowPyrLK(
                    prev_grey, grey, out[-1].reshape(-1, 1, 2), None, winSize=(win, win), maxLevel=levels
                )
                out.append(pts.reshape(-1, 2))
            prev_grey = grey
    finally:
        mesh.close()
    return out


def mismatch(got: list, want: list) -> float:
    pairs = [(g, r) for g, r in zip(got, want, strict=True) if g is not None and r is not None]
    d = [np.linalg.norm(g - r, axis=1).mean() for g, r in pairs]
    return float(np.mean(d))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    quiet_native_logs(False)
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(args.seconds, Path(tmp) / "face.mp4")
        cap = cv2.VideoCapture(str(video))
        frames = []
        ok, img = cap.read()
        while ok:
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            ok, img = cap.read()
        cap.release()
    options = {
        "mesh, `process`": lambda: run_mesh(frames, lean=False),
        "mesh, lean call (mespot)": lambda: run_mesh(frames),
        "mesh on a half-size frame": lambda: run_mesh(frames, scale=0.5),
        "mesh every other frame, landmarks held": lambda: every_other(frames, lk=None),
        "mesh every other frame, LK 21 px x 3 levels between": lambda: every_other(frames, lk=(21, 3)),
        "mesh every other frame, LK 11 px x 1 level between": lambda: every_other(frames, lk=(11, 1)),
    }
    best: dict[str, float] = {}
    result: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, fn in options.items():
            t0 = time.perf_counter()
            result[name] = fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    reference = result["mesh, lean call (mespot)"]
    own_motion = mismatch(reference[1:], reference[:-1])
    n = len(frames)
    print(
        f"# face_tracker_options {date.today()} on {platform.node()} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs); {args.seconds:g} s of 640x360 at 30 fps, {n} frames, best of {args.repeats}"
    )
    print("| option | ms per frame | x real time | landmarks against the mesh on the full frame (px) |")
    print("|---|---|---|---|")
    for name, s in best.items():
        off = mismatch(result[name], reference)
        print(f"| {name} | {s / n * 1e3:.2f} | {args.seconds / s:.1f} | {off:.3f} |")
    print(f"\nthe mesh's own landmarks move {own_motion:.3f} px a frame on this clip")


if __name__ == "__main__":
    main()
