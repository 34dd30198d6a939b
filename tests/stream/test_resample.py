"""Resampling to the canonical rate by timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from stream.errors import ConfigError
from stream.frame import Frame
from stream.resample import Resampler, TimeGap

IMG = np.zeros((2, 2, 3), np.uint8)


def feed(times: list[float], fps: float = 30.0, **kw) -> list[Frame | TimeGap]:
    r = Resampler(fps, **kw)
    out: list[Frame | TimeGap] = []
    for i, t in enumerate(times):
        out.extend(r.push(Frame(i, t, i, IMG, i)))
    return out


@pytest.mark.parametrize("src_fps", [23.976, 26.4, 30.0, 200.0])
def test_rates_map_onto_the_canonical_clock(src_fps: float) -> None:
    n_src = int(src_fps * 4)  # four seconds
    times = [i / src_fps for i in range(n_src)]
    out = feed(times)
    frames = [f for f in out if isinstance(f, Frame)]
    assert not [g for g in out if isinstance(g, TimeGap)]
    assert [f.index for f in frames] == list(range(len(frames)))
    assert len(frames) == int(times[-1] * 30 + 1e-9) + 1
    for f in frames:  # each tick takes the nearest source frame
        nearest = min(range(n_src), key=lambda i: (abs(times[i] - f.media_time_s), i))
        assert f.source_index == nearest
        assert f.media_time_s == pytest.approx(f.index / 30)


def test_same_rate_is_identity() -> None:
    out = feed([i / 30 for i in range(60)])
    assert [f.source_index for f in out] == list(range(60))


def test_offset_first_timestamp_starts_at_zero() -> None:
    out = feed([-0.028 + i / 26.5 for i in range(30)])
    assert out[0].index == 0 and out[0].source_index == 0


def test_long_hole_becomes_a_gap_not_repeated_frames() -> None:
    times = [i / 30 for i in range(30)] + [3.0 + i / 30 for i in range(30)]
    out = feed(times, max_hold_s=0.25)
    gaps = [g for g in out if isinstance(g, TimeGap)]
    assert len(gaps) == 1
    gap = gaps[0]
    # ticks within max_hold of a real frame are served; the rest of the hole is the gap
    assert gap.seconds == pytest.approx(3.0 - 29 / 30 - 0.5, abs=2 / 30)
    frames = [f for f in out if isinstance(f, Frame)]
    served_by_last_before = [f for f in frames if f.source_index == 29]
    assert len(served_by_last_before) <= 0.25 * 30 + 2
    idx = [f.index for f in frames]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert frames[-1].media_time_s == pytest.approx(3.0 + 29 / 30, abs=1 / 30)


def test_non_monotonic_timestamp_does_not_go_back() -> None:
    out = feed([0.0, 1 / 30, 0.5 / 30, 2 / 30, 3 / 30])
    idx = [f.index for f in out]
    assert idx == sorted(idx)


def test_bad_rate_is_refused() -> None:
    with pytest.raises(ConfigError, match="fps"):
        Resampler(0.5)
