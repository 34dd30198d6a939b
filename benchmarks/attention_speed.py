"""CSCM's causal windowed self-attention: the full masked form against the block-by-block form.

    python benchmarks/attention_speed.py [--batch 8] [--snippets 640] [--window 32] [--threads 1]

Forward and backward of one training batch (whole SynthSpot-v2 videos are about 640 snippets on
the 4-frame grid), each form timed in the same run, interleaved, median of the repeats; also the
largest difference between their outputs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date

import torch

from engine.models.layers import attention_mask, banded_self_attention, masked_self_attention


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--snippets", type=int, default=640)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(args.batch, args.snippets, args.width, generator=g, requires_grad=True)
    valid = torch.rand(args.batch, args.snippets, generator=g) > 0.05
    forms = {
        "masked (T x T)": lambda: masked_self_attention(q, attention_mask(valid, args.window)),
        "blocks (T x 2W)": lambda: banded_self_attention(q, valid, args.window),
    }
    diff = (forms["masked (T x T)"]() - forms["blocks (T x 2W)"]()).abs().max().item()
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(args.repeats):
        for name, f in forms.items():
            t0 = time.perf_counter()
            f().sum().backward()
            times[name].append(time.perf_counter() - t0)
    print(f"{date.today()} {platform.machine()} torch {torch.__version__}, {args.threads} thread(s)")
    shape = f"batch {args.batch} x {args.snippets} snippets x {args.width}, window {args.window}"
    print(f"{shape}; max |diff| {diff:.2e}")
    base = statistics.median(times["masked (T x T)"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:16s} forward+backward median {med * 1000:8.1f} ms  ratio {med / base:.2f}")


if __name__ == "__main__":
    main()
