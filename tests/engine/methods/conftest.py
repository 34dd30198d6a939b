"""Shared test data for the weak methods: short feature sequences with known expressions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine.data.features import VideoFeatures
from engine.data.records import VideoRecord
from stream.intervals import ExpressionType, Interval

SNIPPET_S = 8 / 30
FPS = 30.0
DIM = 153


def bump_video(
    name: str, seed: int, t: int = 96, kinds: tuple[str, ...] = ("me", "mae", "me")
) -> tuple[VideoRecord, VideoFeatures]:
    """A video whose expressions are feature bumps: ME 1 snippet in dims 0-5, MaE 5 in dims 20-25.

    Each expression's apex is its last frame, so apex and random points usually differ.
    """
    rng = np.random.default_rng(seed)
    motion = rng.normal(0.0, 0.3, (t, DIM)).astype(np.float32)  # (T, Dm)
    geometry = rng.normal(0.0, 0.3, (t, DIM)).astype(np.float32)  # (T, Dg)
    expressions = []
    start = int(rng.integers(6, 12))
    for kind in kinds:
        n = 1 if kind == "me" else 5
        dims = slice(0, 6) if kind == "me" else slice(20, 26)
        motion[start : start + n, dims] += 2.5
        geometry[start : start + n, dims] += 1.0
        onset, offset = 1 + 8 * start, 8 * (start + n)
        expressions.append(Interval(onset, offset, ExpressionType(kind), apex=offset))
        start += n + int(rng.integers(14, 20))
    assert start < t
    record = VideoRecord(name, name.split("_")[0], FPS, tuple(expressions), n_frames=t * 8, first_frame=1)
    feats = VideoFeatures(name, motion, geometry, np.ones(t, bool), SNIPPET_S, FPS, first_frame=1)
    return record, feats


@pytest.fixture
def make_video() -> Callable[..., tuple[VideoRecord, VideoFeatures]]:
    """`bump_video`, for the tests of the MC-WES and PWES methods."""
    return bump_video
