"""The capture thread: drop policies, ordering, failures and shutdown, on real sources."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import pytest

from stream.capture import Capture, CaptureError
from stream.errors import ConfigError
from stream.frame import Frame, SourceEvent, SourceEventKind
from stream.sources import Source, VideoFileSource, open_source


def test_replay_policy_never_drops(videos: Path) -> None:
    source = open_source(videos / "single_face.mp4")
    with Capture(source, queue_size=4) as capture:
        assert capture.policy == "replay"  # the default for a file
        items = []
        for item in capture:
            items.append(item)
            time.sleep(0.002)  # a consumer slower than the decoder
    frames = [i for i in items if isinstance(i, Frame)]
    assert [f.index for f in frames] == list(range(72))
    assert isinstance(items[-1], SourceEvent) and items[-1].kind is SourceEventKind.END
    assert capture.dropped == 0
    assert capture.frames_read == capture.delivered == 72
    assert capture.last_capture_ns == frames[-1].capture_ns
    assert capture.get() is None  # after END
    assert source.closed


def test_live_policy_drops_oldest_frames_with_a_slow_consumer(videos: Path) -> None:
    capture = Capture(open_source(videos / "single_face.mp4"), queue_size=4, policy="live")
    items = []
    for item in capture:
        items.append(item)
        # A consumer far slower than decoding: wait until the reader has filled the queue and
        # gone on (not a fixed per-item delay, which a loaded machine's decoder can fall behind).
        deadline = time.monotonic() + 5.0
        while capture.dropped == 0 and capture.frames_read < 72 and time.monotonic() < deadline:
            time.sleep(0.005)
    capture.close()
    frames = [i for i in items if isinstance(i, Frame)]
    indices = [f.index for f in frames]
    assert capture.dropped > 0
    assert capture.frames_read == 72
    assert len(frames) + capture.dropped == 72 == capture.delivered + capture.dropped
    assert indices == sorted(set(indices))  # in order, no repeats
    assert indices[-1] == 71  # the newest frame is kept
    assert isinstance(items[-1], SourceEvent) and items[-1].kind is SourceEventKind.END


def test_live_policy_never_drops_events(tmp_path: Path, videos: Path) -> None:
    # A folder where every other image is unreadable: BAD_FRAME events between frames.
    cap = cv2.VideoCapture(str(videos / "single_face.mp4"))
    for k in range(1, 41):
        ok, image = cap.read()
        assert ok
        if k % 2:
            cv2.imwrite(str(tmp_path / f"img{k}.png"), image[::4, ::4])
        else:
            (tmp_path / f"img{k}.png").write_bytes(b"not a png")
    cap.release()

    capture = Capture(open_source(tmp_path), queue_size=3, policy="live")
    items = []
    for item in capture:
        items.append(item)
        time.sleep(0.01)
    bad = [i for i in items if isinstance(i, SourceEvent) and i.kind is SourceEventKind.BAD_FRAME]
    assert len(bad) == 20
    assert capture.dropped > 0
    frames = sum(isinstance(i, Frame) for i in items)
    assert frames + capture.dropped == 20


class FailingSource(Source):
    """A real video source that breaks after a few frames, as a faulty driver would."""

    def __init__(self, inner: VideoFileSource, fail_after: int) -> None:
        super().__init__(inner.name, inner.nominal_fps)
        self.inner = inner
        self.fail_after = fail_after
        self.count = 0

    def _next(self) -> Frame | SourceEvent:
        if self.count == self.fail_after:
            raise OSError("device went away")
        self.count += 1
        item = self.inner.read()
        assert item is not None
        return item

    def _release(self) -> None:
        self.inner.close()


def test_reader_exception_reaches_the_consumer(videos: Path) -> None:
    source = FailingSource(VideoFileSource(videos / "single_face.mp4"), fail_after=5)
    capture = Capture(source, queue_size=8)
    got = []
    with pytest.raises(CaptureError, match="device went away") as info:
        for item in capture:
            got.append(item.index)
    assert got == [0, 1, 2, 3, 4]  # what was read before the failure is delivered first
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(CaptureError):  # and it stays failed
        capture.get()
    capture.close()
    assert source.closed and source.inner.closed


def test_close_is_prompt_when_nobody_reads(videos: Path) -> None:
    source = open_source(videos / "face_noface.mov")
    capture = Capture(source, queue_size=2)  # replay: the reader blocks on the full queue
    deadline = time.monotonic() + 5
    while capture.qsize() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert capture.qsize() == 2
    t0 = time.monotonic()
    capture.close()
    assert time.monotonic() - t0 < 1.0
    assert not capture.running
    assert source.closed
    assert capture.get() is None


def test_bad_arguments(videos: Path) -> None:
    with open_source(videos / "single_face.mp4") as source:
        with pytest.raises(ConfigError, match="policy"):
            Capture(source, policy="fast")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="queue_size"):
            Capture(source, queue_size=0)
