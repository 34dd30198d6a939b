"""Validates stream.tvl1.TorchTVL1 against OpenCV's DualTVL1 on real face crops, and times both.

Frames come from two real videos, cropped with a fixed square around the face and resized to
128x128 grey (what the pipeline feeds: aligned 128 px face crops). For skip-k pairs (t-k, t) it
reports the end-point error (EPE) between the two solvers (mean, median, 95th percentile over
pixels and pairs, and mean EPE relative to the mean OpenCV flow magnitude), the same statistics
for OpenCV against itself with its input nudged by one float32 ulp (the solver's own numerical
noise floor: TV-L1 with early stopping and median filtering amplifies rounding differences), the
CPU times of both side by side, and then a warm-started sequence (init_flow = previous field)
compared with OpenCV's cold result.

Usage:
    python benchmarks/tvl1_validate.py [--device cpu|cuda] [--stride 4] [--skips 1 3]
        [--warm-scales 1 2] [--json out.json]

With --device cuda the torch columns run on the GPU and OpenCV stays on the CPU, so the time
ratio becomes the speed-up of the GPU solver over OpenCV's CPU one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.tvl1 import TorchTVL1

VIDEO_DIR = Path("/work/shared/data/videos")


@dataclass(frozen=True)
class Clip:
    """A video and the fixed face crop used for it.

    Attributes:
        name: file name under VIDEO_DIR.
        crop: (x0, y0, side) of the square crop in source pixels, chosen from MediaPipe face
            boxes over the clip (they move by < 20 px), so the face stays inside throughout.
        frames: number of leading frames to use (face_noface.mov shows a face for ~70 frames).
    """

    name: str
    crop: tuple[int, int, int]
    frames: int


CLIPS = (
    Clip("single_face.mp4", (192, 95, 200), 72),  # 640x360, face boxes ~190 px at x~197, y~100
    Clip("face_noface.mov", (290, 145, 296), 69),  # 960x540, face boxes ~285 px at x~296, y~150
)


def load_crops(clip: Clip, size: int) -> list[np.ndarray]:
    """Reads `clip.frames` frames and returns (size, size) uint8 grey face crops."""
    cap = cv2.VideoCapture(str(VIDEO_DIR / clip.name))
    if not cap.isOpened():
        raise SystemExit(f"cannot open {VIDEO_DIR / clip.name}")
    x0, y0, side = clip.crop
    out = []
    while len(out) < clip.frames:
        ok, frame = cap.read()
        if not ok:
            break
        grey = cv2.cvtColor(frame[y0 : y0 + side, x0 : x0 + side], cv2.COLOR_BGR2GRAY)
        out.append(cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA))
    cap.release()
    return out


def opencv_tvl1(
    tv: TorchTVL1, *, n_scales: int | None = None, use_initial_flow: bool = False
) -> cv2.optflow.DualTVL1OpticalFlow:
    """cv2.optflow.DualTVL1OpticalFlow with the same parameters as `tv`."""
    return cv2.optflow.DualTVL1OpticalFlow_create(
        tv.tau,
        tv.lam,
        tv.theta,
        tv.n_scales if n_scales is None else n_scales,
        tv.warps,
        tv.epsilon,
        tv.inner_iterations,
        tv.outer_iterations,
        tv.scale_step,
        0.0,  # gamma: TorchTVL1 has no illumination term
        tv.median_filtering,
        use_initial_flow,
    )


def nudge_one_ulp(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 copy of img/255 with every pixel moved by one ulp up or down at random."""
    x = img.astype(np.float32) / 255.0
    direction = np.where(rng.random(x.shape) < 0.5, -np.inf, np.inf).astype(np.float32)
    return np.nextafter(x, direction).clip(0.0, 1.0).astype(np.float32)


@dataclass
class EpeStats:
    """Per-pixel EPEs and reference magnitudes gathered over pairs."""

    epe: list[np.ndarray] = field(default_factory=list)
    mag: list[np.ndarray] = field(default_factory=list)

    def add(self, flow: np.ndarray, ref: np.ndarray) -> None:
        self.epe.append(np.linalg.norm(flow - ref, axis=-1).ravel())
        self.mag.append(np.linalg.norm(ref, axis=-1).ravel())

    def summary(self) -> dict[str, float]:
        e, m = np.concatenate(self.epe), np.concatenate(self.mag)
        return {
            "pairs": len(self.epe),
            "mean": float(e.mean()),
            "median": float(np.median(e)),
            "p95": float(np.percentile(e, 95)),
            "max": float(e.max()),
            "frac_over_half_px": float((e > 0.5).mean()),
            "mean_mag": float(m.mean()),
            "rel": float(e.mean() / max(m.mean(), 1e-12)),
        }


def fmt_row(label: str, s: dict[str, float]) -> str:
    return (
        f"| {label:<28} | {s['pairs']:>5} | {s['mean']:>8.4f} | {s['median']:>8.4f} | {s['p95']:>8.4f} "
        f"| {s['max']:>7.3f} | {100 * s['frac_over_half_px']:>7.3f} "
        f"| {s['mean_mag']:>8.4f} | {s['rel']:>7.4f} |"
    )


EPE_HEADER = (
    "| comparison                   | pairs | mean EPE | med. EPE |  p95 EPE | max EPE | % > 0.5 "
    "| mean |f| | EPE/|f| |\n"
    "|------------------------------|-------|----------|----------|----------|---------|---------"
    "|----------|---------|"
)


def run_warm(
    clips: dict[str, list[np.ndarray]],
    skips: list[int],
    tv: TorchTVL1,
    warm_scales: int,
    cold_cache: dict[tuple[str, int, int], np.ndarray],
) -> tuple[dict[str, float], dict[str, float], float]:
    """Runs every clip as a stream with init_flow = previous field.

    Args:
        clips: frames per clip name. skips: pair offsets k.
        tv: the cold solver whose parameters the warm one copies.
        warm_scales: pyramid levels of the warm solver.
        cold_cache: OpenCV cold fields by (clip, k, t), filled on first use.

    Returns:
        (stats against OpenCV cold, stats against OpenCV given the same warm start, torch ms/frame).
    """
    tv_warm = TorchTVL1(
        lam=tv.lam, tau=tv.tau, theta=tv.theta, n_scales=tv.n_scales, scale_step=tv.scale_step,
        warps=tv.warps, epsilon=tv.epsilon, inner_iterations=tv.inner_iterations,
        outer_iterations=tv.outer_iterations, median_filtering=tv.median_filtering,
        warm_scales=warm_scales, device=str(tv.device),
    )  # fmt: skip
    cv_cold = opencv_tvl1(tv)
    cv_warm = opencv_tvl1(tv, n_scales=warm_scales, use_initial_flow=True)
    vs_cold, vs_same = EpeStats(), EpeStats()
    times: list[float] = []
    for name, frames in clips.items():
        for k in skips:
            field_prev: np.ndarray | None = None
            for t in range(k, len(frames)):
                a, b = frames[t - k], frames[t]
                if field_prev is None:
                    flow = tv(a, b)  # the stream starts cold
                else:
                    t0 = time.perf_counter()
                    flow = tv_warm(a, b, init_flow=field_prev)
                    times.append(time.perf_counter() - t0)
                    if (name, k, t) not in cold_cache:
                        cold_cache[name, k, t] = cv_cold.calc(a, b, None)
                    vs_cold.add(flow, cold_cache[name, k, t])
                    # OpenCV handed the same warm start (useInitialFlow, same number of scales).
                    vs_same.add(flow, cv_warm.calc(a, b, field_prev.copy()))
                field_prev = flow
    return vs_cold.summary(), vs_same.summary(), 1e3 * statistics.mean(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="torch device for TorchTVL1 (cpu, cuda, cuda:N)")
    ap.add_argument("--size", type=int, default=128, help="side of the square face crop in px")
    ap.add_argument("--skips", type=int, nargs="+", default=[1, 3], help="pair offsets k in (t-k, t)")
    ap.add_argument("--stride", type=int, default=4, help="use every stride-th t for the cold pairs")
    ap.add_argument(
        "--warm-scales", type=int, nargs="+", default=[1], help="TorchTVL1 warm_scales to try on the sequence"
    )
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-start sequence")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write every number to this file")
    args = ap.parse_args()

    tv = TorchTVL1(device=args.device)
    cv_cold = opencv_tvl1(tv)
    rng = np.random.default_rng(args.seed)
    clips = {c.name: load_crops(c, args.size) for c in CLIPS}

    print(
        f"torch {torch.__version__} on {tv.device} (threads {torch.get_num_threads()}), "
        f"OpenCV {cv2.__version__} on CPU (threads {cv2.getNumThreads()})"
    )
    print(f"{tv!r}")
    print(f"frames: {', '.join(f'{n} x{len(f)}' for n, f in clips.items())}, crops {args.size}x{args.size}\n")

    # Warm up both (CUDA context, allocator, caches) outside the timings.
    f0 = next(iter(clips.values()))
    tv(f0[0], f0[1])
    cv_cold.calc(f0[0], f0[1], None)

    results: dict[str, object] = {"device": str(tv.device), "params": repr(tv)}
    torch_vs_cv: dict[str, EpeStats] = {}
    floor: dict[str, EpeStats] = {}
    t_cv: list[float] = []
    t_torch: list[float] = []
    t_batch: list[float] = []
    batch_sizes: list[int] = []
    for name, frames in clips.items():
        for k in args.skips:
            key = f"{name} k={k}"
            torch_vs_cv[key], floor[key] = EpeStats(), EpeStats()
            pairs = [(t - k, t) for t in range(k, len(frames), args.stride)]
            for a, b in pairs:
                t0 = time.perf_counter()
                ref = cv_cold.calc(frames[a], frames[b], None)
                t1 = time.perf_counter()
                flow = tv(frames[a], frames[b])
                t2 = time.perf_counter()
                t_cv.append(t1 - t0)
                t_torch.append(t2 - t1)
                torch_vs_cv[key].add(flow, ref)
                # OpenCV against itself with 1-ulp input noise: how far "the same" solver drifts.
                fa = frames[a].astype(np.float32) / 255.0
                fb = frames[b].astype(np.float32) / 255.0
                floor[key].add(
                    cv_cold.calc(nudge_one_ulp(frames[a], rng), fb, None), cv_cold.calc(fa, fb, None)
                )
            prev = np.stack([frames[a] for a, _ in pairs])
            nxt = np.stack([frames[b] for _, b in pairs])
            t0 = time.perf_counter()
            tv.batch(prev, nxt)
            t_batch.append((time.perf_counter() - t0) / len(pairs))
            batch_sizes.append(len(pairs))

    def merged(group: dict[str, EpeStats]) -> EpeStats:
        out = EpeStats()
        for s in group.values():
            out.epe += s.epe
            out.mag += s.mag
        return out

    print("## TorchTVL1 vs OpenCV DualTVL1, cold start, same parameters\n")
    print(EPE_HEADER)
    for key, s in torch_vs_cv.items():
        print(fmt_row(key, s.summary()))
    all_cold = merged(torch_vs_cv).summary()
    all_floor = merged(floor).summary()
    print(fmt_row("all pairs", all_cold))
    print(fmt_row("OpenCV vs OpenCV(+1 ulp)", all_floor))
    results["cold"] = {key: s.summary() for key, s in torch_vs_cv.items()} | {"all": all_cold}
    results["opencv_noise_floor"] = all_floor

    cv_ms = 1e3 * statistics.mean(t_cv)
    torch_ms = 1e3 * statistics.mean(t_torch)
    batch_ms = 1e3 * statistics.mean(t_batch)
    dev = tv.device.type
    print(f"\n## Time per {args.size}x{args.size} pair (cold, {len(t_cv)} pairs, interleaved in one run)\n")
    print("| solver                                | ms / pair | median ms | time / OpenCV |")
    print("|---------------------------------------|-----------|-----------|---------------|")
    rows = [
        ("OpenCV DualTVL1 (CPU)", cv_ms, 1e3 * statistics.median(t_cv)),
        (f"TorchTVL1 ({dev}), one pair per call", torch_ms, 1e3 * statistics.median(t_torch)),
        (f"TorchTVL1 ({dev}), batch() of {min(batch_sizes)}-{max(batch_sizes)}", batch_ms, None),
    ]
    for label, mean_ms, med_ms in rows:
        med = "" if med_ms is None else f"{med_ms:.1f}"
        print(f"| {label:<37} | {mean_ms:>9.1f} | {med:>9} | {mean_ms / cv_ms:>13.2f} |")
    results["timing_ms"] = {
        "opencv": cv_ms,
        "torch": torch_ms,
        "torch_batch": batch_ms,
        "ratio": torch_ms / cv_ms,
    }

    if not args.no_warm:
        # Streaming use: every frame t gets flow (t-k -> t) warm-started from the field of t-1.
        warm_results: dict[int, dict[str, object]] = {}
        cold_cache: dict[tuple[str, int, int], np.ndarray] = {}
        for ws in args.warm_scales:
            s_cold, s_same, warm_ms = run_warm(clips, args.skips, tv, ws, cold_cache)
            print(f"\n## Warm start (init_flow = previous field, warm_scales={ws}), every frame\n")
            print(EPE_HEADER)
            print(fmt_row("warm torch vs cold OpenCV", s_cold))
            print(fmt_row("warm torch vs warm OpenCV", s_same))
            print(f"\nwarm TorchTVL1: {warm_ms:.1f} ms / frame ({warm_ms / torch_ms:.2f} x its cold time)")
            warm_results[ws] = {"vs_cold_opencv": s_cold, "vs_warm_opencv": s_same, "ms_per_frame": warm_ms}
        results["warm"] = warm_results

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
