"""`sim://`: a live source of synthetic face video that publishes its ground truth."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from stream.errors import ConfigError
from stream.frame import Frame, SourceEvent, SourceEventKind
from stream.sources import open_source
from stream.synth.identity import FaceNotFound


def test_sim_yields_frames_and_its_ground_truth() -> None:
    source = open_source("sim://?seed=3&seconds=6&realtime=0&density=80&distractors=0")
    assert source.is_live and source.nominal_fps == 30
    frames: list[Frame] = []
    truth_counts = []
    with source:
        while (item := source.read()) is not None:
            if isinstance(item, SourceEvent):
                assert item.kind is SourceEventKind.END
                continue
            frames.append(item)
            truth = source.ground_truth()
            truth_counts.append(len(truth))
            assert all(t.interval.offset <= item.index for t in truth)  # only what has been shown
    assert [f.index for f in frames] == list(range(180))
    assert frames[0].image.shape == (480, 640, 3)
    assert all(f.media_time_s == pytest.approx(f.index / 30) for f in frames)
    assert truth_counts == sorted(truth_counts) and truth_counts[0] == 0
    truth = source.ground_truth()
    assert [t.interval for t in truth] == source.timeline.intervals() and truth
    for t in truth:
        assert t.onset_s == pytest.approx(t.interval.onset / 30)
        assert t.offset_s == pytest.approx(t.interval.offset / 30)
        assert t.aus and t.amplitude > 0
    # frames change while an expression acts and not before the first one
    first = truth[0].interval
    still = [np.abs(frames[n].image.astype(int) - frames[0].image).mean() for n in range(1, first.onset)]
    assert max(still) == 0  # no distractors, no noise
    assert np.abs(frames[first.apex].image.astype(int) - frames[first.onset].image).max() > 10


def test_sim_paces_frames_on_the_wall_clock(astronaut_crop: Path) -> None:
    source = open_source(f"sim://?seed=1&fps=20&seconds=2&face={astronaut_crop}", subject=1)
    with source:
        t0 = time.monotonic()
        items = [source.read() for _ in range(6)]
        elapsed = time.monotonic() - t0
    assert all(isinstance(i, Frame) for i in items)
    assert elapsed >= 5 / 20 - 0.02
    assert source.identity.spec.mirror  # subject 1 is a mirrored variant


@pytest.mark.parametrize("buffers", [1, 4])
def test_a_late_reader_gets_the_frames_the_camera_still_holds(buffers: int) -> None:
    fps = 20.0
    with open_source(f"sim://?seed=1&fps={fps:g}&seconds=5&buffers={buffers}") as source:
        first = source.read()
        time.sleep(0.5)  # ten frame periods: frames 1-10 are exposed meanwhile
        late = [source.read() for _ in range(3)]
    assert isinstance(first, Frame) and all(isinstance(f, Frame) for f in late)
    index = late[0].index
    assert index >= 10 - buffers + 1  # the older frames were overwritten
    assert source.skipped == index - 1  # and counted
    assert [f.index for f in late] == [index, index + 1, index + 2]  # nothing lost after the late read
    for frame in late:  # each frame carries its exposure time, not the time it was read
        assert frame.capture_ns - first.capture_ns == pytest.approx(frame.index * 1e9 / fps, abs=1)


def test_sim_endless_and_bad_options(not_a_face: Path) -> None:
    from stream.synth.source import SimSource

    with SimSource("sim://?seed=2&realtime=0") as source:
        assert source.timeline.n_frames is None
        assert all(isinstance(source.read(), Frame) for _ in range(3))
    with pytest.raises(ConfigError, match="unknown sim:// option 'sed'"):
        SimSource("sim://?sed=2")
    with pytest.raises(ConfigError, match="seconds"):
        SimSource("sim://?seconds=abc")
    with pytest.raises(ConfigError, match="buffers must be >= 1"):
        SimSource("sim://?buffers=0")
    with pytest.raises(FaceNotFound, match=r"coffee\.png"):
        open_source(f"sim://?face={not_a_face}")
