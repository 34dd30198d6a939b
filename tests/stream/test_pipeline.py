"""The one pipeline on real videos: offline equals live, face loss is a reported gap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.config import FeatureConfig
from stream.frame import Frame, StatusEvent, StatusKind
from stream.pipeline import Extraction, Pipeline, extract
from stream.ring import Snippet
from stream.sources import open_source


def stream_frame_by_frame(path: Path, config: FeatureConfig) -> list[Snippet | StatusEvent]:
    """What a live runner does: read one frame, push it, collect what comes out."""
    outputs: list[Snippet | StatusEvent] = []
    with open_source(path) as src, Pipeline(config) as pipe:
        while (item := src.read()) is not None:
            outputs.extend(pipe.push(item))
    return outputs


@pytest.mark.parametrize("name", ["single_face.mp4", "face_noface.mov"])
def test_streaming_equals_batch_extraction(videos: Path, name: str) -> None:
    config = FeatureConfig()
    live = Extraction.collect(iter(stream_frame_by_frame(videos / name, config)), config)
    batch = extract(videos / name, config)  # threaded two-stage run through the capture thread
    assert len(batch.valid) > 0 and batch.valid.any()
    np.testing.assert_array_equal(live.valid, batch.valid)
    np.testing.assert_array_equal(live.start_s, batch.start_s)
    np.testing.assert_array_equal(live.motion, batch.motion)  # exactly, not approximately
    np.testing.assert_array_equal(live.geometry, batch.geometry)
    assert [(e.kind, e.frame_index) for e in live.events] == [(e.kind, e.frame_index) for e in batch.events]


def test_face_present_throughout(videos: Path) -> None:
    config = FeatureConfig()
    result = extract(videos / "single_face.mp4", config)
    n = 72 // config.hop_frames  # 72 frames, one snippet per hop
    assert result.motion.shape[0] == n and result.geometry.shape[0] == n
    # a snippet is valid once its whole window has flow at every scale (the first max(k) frames have none)
    hop, window = config.hop_frames, config.window_frames
    warm = next(j for j in range(n) if (j + 1) * hop - window >= max(config.flow_ks))
    assert result.valid.tolist() == [False] * warm + [True] * (n - warm)
    assert np.isfinite(result.motion).all() and np.isfinite(result.geometry).all()
    assert [e.kind for e in result.events if e.kind != StatusKind.SOURCE] == [StatusKind.FACE_FOUND]


def test_face_lost_mid_stream_is_a_reported_gap(videos: Path) -> None:
    result = extract(videos / "face_noface.mov")  # ~26.4 fps, face for ~2.7 s, then a cut
    lost = [e for e in result.events if e.kind == StatusKind.FACE_LOST]
    assert len(lost) == 1
    lost_s = lost[0].media_time_s
    assert 2.3 < lost_s < 3.0, lost_s
    after = result.start_s >= lost_s
    assert after.any() and not result.valid[after].any()  # no features without a face
    assert not result.motion[after].any() and not result.geometry[after].any()
    config = result.config
    # snippets before a full window
    warm = -(-(config.window_frames + max(config.flow_ks)) // config.hop_frames)
    assert result.valid[result.start_s + config.snippet_seconds < lost_s][warm:].all()
    # resampled to 30 fps: ~6.4 s of media -> one snippet per hop
    assert len(result.valid) == pytest.approx(6.4 / config.snippet_seconds, abs=1)


def test_face_found_mid_stream(videos: Path) -> None:
    result = extract(videos / "noface_face.mov")
    found = [e for e in result.events if e.kind == StatusKind.FACE_FOUND]
    assert len(found) == 1 and found[0].media_time_s > 3.0
    before = result.start_s + result.config.snippet_seconds <= found[0].media_time_s
    assert before.any() and not result.valid[before].any()
    assert result.valid[result.start_s > found[0].media_time_s + 0.5].sum() >= 3


def test_never_a_face(videos: Path) -> None:
    result = extract(videos / "no_face.mp4")
    assert len(result.valid) > 0 and not result.valid.any()
    assert not [e for e in result.events if e.kind == StatusKind.FACE_FOUND]


def test_frames_are_resampled_to_the_canonical_clock(videos: Path) -> None:
    with open_source(videos / "no_face.mp4") as src, Pipeline() as pipe:  # ~23.7 fps source
        outs = []
        while (item := src.read()) is not None:
            outs.extend(pipe.push(item))
    snippets = [o for o in outs if isinstance(o, Snippet)]
    assert [s.index for s in snippets] == list(range(len(snippets)))
    assert pipe.times.frames > pipe.times.source_frames  # upsampled: more canonical than source frames


def test_synthetic_gap_resets_history() -> None:
    """A 2 s hole in the timestamps: a time_gap event and invalid snippets over the hole."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)  # no face: exercises the clock only
    times = [i / 30 for i in range(30)] + [3.0 + i / 30 for i in range(30)]
    with Pipeline() as pipe:
        outs = [o for i, t in enumerate(times) for o in pipe.push(Frame(i, t, 0, img, i))]
    gaps = [o for o in outs if isinstance(o, StatusEvent) and o.kind == StatusKind.TIME_GAP]
    assert len(gaps) == 1 and "without source frames" in gaps[0].detail
    snippets = [o for o in outs if isinstance(o, Snippet)]
    assert [s.index for s in snippets] == list(range(len(snippets)))


def test_stopping_early_ends_the_worker_thread(videos: Path) -> None:
    """A consumer that stops reading (a closed generator) must not leave the face thread behind."""
    import threading

    with open_source(videos / "single_face.mp4") as src, Pipeline() as pipe:
        items = iter(src.read, None)
        outputs = pipe.run(items, threaded=True)
        next(o for o in outputs if isinstance(o, Snippet))
        outputs.close()
    assert not [t for t in threading.enumerate() if t.name == "mespot-face" and t.is_alive()]


def test_a_failing_source_reaches_the_consumer() -> None:
    def broken():
        yield Frame(0, 0.0, 0, np.zeros((120, 160, 3), np.uint8), 0)
        raise OSError("camera unplugged")

    with Pipeline() as pipe, pytest.raises(OSError, match="camera unplugged"):
        list(pipe.run(broken(), threaded=True))


def test_a_threaded_run_holds_opencv_at_one_thread_and_restores_it(videos: Path) -> None:
    """While the two halves run, OpenCV's pool is one thread (the halves fill the cores); after
    the run the caller's setting is back. The features do not depend on it: the streaming run
    above, at OpenCV's own thread count, equals the threaded one exactly."""
    import cv2

    before = cv2.getNumThreads()
    seen = []
    with open_source(videos / "single_face.mp4") as src, Pipeline(FeatureConfig()) as pipe:

        def items():
            while (item := src.read()) is not None:
                seen.append(cv2.getNumThreads())
                yield item

        assert sum(1 for _ in pipe.run(items(), threaded=True)) > 0
    assert seen and set(seen) == {1}
    assert cv2.getNumThreads() == before
