"""Accuracy and cost of the CPU flow estimators on known sub-pixel facial motion.

    python benchmarks/flow_accuracy.py

Real face crops (a fixed window of shared/data/videos/single_face.mp4 resized to 128 px, as the
aligner produces) are deformed by a smooth Gaussian bump of displacement (sigma 10 px) of known
amplitude at three places (both mouth corners' height, one brow's), the local, sub-pixel kind of
motion a micro-expression makes. Reports the end-point error inside the bump and the time per
pair, for each estimator and DIS preset, in one run.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from stream.flow import DISFlow, FarnebackFlow

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    cap = cv2.VideoCapture(str(ROOT.parent / "shared" / "data" / "videos" / "single_face.mp4"))
    crops = []
    ok, img = cap.read()
    while ok:
        crops.append(cv2.resize(cv2.cvtColor(img[40:320, 180:460], cv2.COLOR_BGR2GRAY), (128, 128)))
        ok, img = cap.read()
    estimators = {
        "dis ultrafast": DISFlow("ultrafast"),
        "dis fast": DISFlow("fast"),
        "dis medium (default)": DISFlow("medium"),
        "dis lean (dis-lean)": DISFlow("lean"),
        "farneback": FarnebackFlow(),
    }
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    amps = (0.3, 0.7, 1.5, 3.0)
    epe = {(n, a): [] for n in estimators for a in amps}
    cost = {n: 0.0 for n in estimators}
    pairs = 0
    for amp in amps:
        for cx, cy in ((45, 95), (83, 95), (45, 40)):
            g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 10**2))
            u, v = 0.8 * amp * g, -0.6 * amp * g
            inside = g > 0.3
            for prev in crops[::6]:
                nxt = np.clip(cv2.remap(prev.astype(np.float32), xx - u, yy - v, cv2.INTER_CUBIC), 0, 255)
                nxt = nxt.astype(np.uint8)
                pairs += 1
                for name, est in estimators.items():
                    t0 = time.perf_counter()
                    f = est(prev, nxt)
                    cost[name] += time.perf_counter() - t0
                    epe[(name, amp)].append(np.hypot(f[..., 0] - u, f[..., 1] - v)[inside].mean())
    pairs_per = pairs / len(estimators) * len(estimators)
    print(f"# flow_accuracy {date.today()}: mean end-point error (px, 128 px crops) inside the bump")
    print("| estimator | " + " | ".join(f"EPE @ {a} px" for a in amps) + " | ms / pair |")
    print("|---|" + "---|" * (len(amps) + 1))
    for name in estimators:
        cells = " | ".join(f"{np.mean(epe[(name, a)]):.3f}" for a in amps)
        print(f"| {name} | {cells} | {cost[name] / pairs_per * 1000:.2f} |")


if __name__ == "__main__":
    main()
