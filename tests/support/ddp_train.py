"""Trains a small network on generated features and writes its loss curve (JSON) from rank 0.

    python tests/support/ddp_train.py OUT.json [METHOD]                       # one process
    torchrun --nproc-per-node 2 tests/support/ddp_train.py OUT.json [METHOD]  # two (gloo)

The same data, configuration and seed either way: tests/engine/test_distributed.py compares the two
curves.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from engine import distributed
from engine.data.features import VideoFeatures
from engine.data.records import VideoRecord
from engine.models import NetworkConfig
from engine.train import TrainConfig, train
from stream.intervals import ExpressionType, Interval

T, DIM, FPS = 192, 153, 30.0


def video(name: str, seed: int) -> tuple[VideoRecord, VideoFeatures]:
    rng = np.random.default_rng(seed)
    motion = rng.normal(0.0, 0.3, (T, DIM)).astype(np.float32)
    geometry = rng.normal(0.0, 0.3, (T, DIM)).astype(np.float32)
    expressions, start = [], 10
    for k in range(6):
        kind = ExpressionType.ME if k % 2 else ExpressionType.MAE
        n = 1 if kind is ExpressionType.ME else 5
        motion[start : start + n, (slice(0, 6) if n == 1 else slice(20, 26))] += 2.0
        expressions.append(Interval(1 + 8 * start, 8 * (start + n), kind))
        start += n + 20
    record = VideoRecord(name, name, FPS, tuple(expressions), n_frames=T * 8, first_frame=1)
    return record, VideoFeatures(name, motion, geometry, np.ones(T, bool), 8 / FPS, FPS, first_frame=1)


def main() -> None:
    out, method = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "full"
    videos = [video(f"v{i}", i) for i in range(4)]
    network = NetworkConfig(embed_dim=32, dilations=(1, 2), window=16, dropout=0.0)
    config = TrainConfig(
        epochs=5, batch_size=8, window=48, steps_per_epoch=6, lr=3e-3, network=network, method=method
    )
    _, history = train(videos, config, progress=False)
    if distributed.is_main():
        with open(out, "w") as f:
            json.dump(
                {
                    "history": history,
                    "world": (distributed.current() or distributed.Distributed(0, 1, "")).world,
                },
                f,
            )
    distributed.shutdown()


if __name__ == "__main__":
    main()
