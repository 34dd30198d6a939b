"""How much of a small out-of-plane head turn passes as facial motion, per flow scale, for the
estimated and the chained (``flow_compose``) 0.2 s flow, the rigid models and reference sets.

    python benchmarks/head_turn_residual.py [--models similarity,affine,projective]

Uses the feature tests' own stimuli (tests/stream/test_features.py): an ~8 degree yaw turn with a
drift (a growing homography of a real face) and a small mouth-corner pull and outer-brow raise
(local warps) over 40 frames of single_face.mp4. Prints, per configuration and scale, the largest
ROI magnitude the turn leaves after rigid compensation and the pulls' magnitudes on their ROIs,
then the test's ratio (largest turn residual over both scales / largest mouth pull).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import numpy as np

import stream.roi as roi
from stream.config import FeatureConfig
from stream.face import FaceTracker
from stream.frame import Frame

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT.parent / "shared" / "data" / "videos" / "single_face.mp4"

# forehead (upper, away from the brows) and temples: candidates that lengthen the reference's
# vertical and horizontal span
EXTRA = {"base": (), "+forehead": (10, 151, 109, 338), "+temples": (54, 284, 21, 251)}


def stimuli_module():
    """tests/stream/test_features.py, for its stimuli and ROI helpers (one definition of each)."""
    spec = importlib.util.spec_from_file_location("feature_tests", ROOT / "tests/stream/test_features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def largest(tf, snippets, k: int, config: FeatureConfig, region: str | None = None) -> tuple[float, str]:
    """The largest magnitude at flow scale k over the snippets: on `region`, else on any ROI."""
    best = (0.0, "")
    for s in snippets:
        if s.valid:
            mags = tf.per_roi_mag(s, k, config)
            r = region or max(mags, key=mags.get)
            best = max(best, (mags[r], r))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="similarity,affine,projective")
    args = ap.parse_args()
    tf = stimuli_module()
    ok, img = cv2.VideoCapture(str(VIDEO)).read()
    if not ok:
        raise SystemExit(f"{VIDEO}: cannot read a frame")
    with FaceTracker() as tracker:
        lm = tracker.process(Frame(0, 0.0, 0, img, 0)).landmarks
    centre = tuple(lm.mean(0).tolist())
    eye_span = float(np.linalg.norm(lm[33] - lm[263]))
    ramp = np.concatenate([np.zeros(16), np.linspace(0, 1, 24)])
    turn = tf.homography_head_moves(img, centre, 40, eye_span)
    mouth = [tf.local_pull(img, lm[61], a * np.array([-6.0, -4.5]), 20.0) for a in ramp]
    brow = [tf.local_pull(img, lm[105], a * np.array([0.0, -5.0]), 20.0) for a in ramp]
    base = roi.ROI_SETS.build("mesh17")
    print(
        "| reference | rigid model | 0.2 s flow | turn 0.1 / 0.2 s (ROI) "
        "| mouth pull 0.1 / 0.2 s | brow raise 0.2 s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    original = base.reference
    try:
        rows(tf, base, original, args.models.split(","), turn, mouth, brow)
    finally:
        object.__setattr__(base, "reference", original)


def rows(tf, base, original, models, turn, mouth, brow) -> None:
    """Print one table row per reference set, rigid model and 0.2 s flow."""
    for ref_name, extra in EXTRA.items():
        object.__setattr__(base, "reference", original + extra)  # the registry's own instance
        for model in models:
            for flow_name, compose in (("estimated", False), ("chained", True)):
                cfg = FeatureConfig(rigid_model=model, flow_compose=compose)
                per = {
                    name: tf.run(frames, cfg)
                    for name, frames in (("turn", turn), ("mouth", mouth), ("brow", brow))
                }

                t0, t1 = (largest(tf, per["turn"], k, cfg) for k in (0, 1))
                m0, m1 = (largest(tf, per["mouth"], k, cfg, "mouth_corner_r")[0] for k in (0, 1))
                b1 = largest(tf, per["brow"], 1, cfg, "brow_outer_r")[0]
                ratio = max(t0[0], t1[0]) / max(m0, m1)
                print(
                    f"| {ref_name} | {model} | {flow_name} | {t0[0]:.3f} / {t1[0]:.3f} ({t1[1]}) "
                    f"| {m0:.3f} / {m1:.3f} | {b1:.3f} | {ratio:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
