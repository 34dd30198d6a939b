"""RTSP against a real GStreamer RTSP server: first open, drop, stall, reconnect, give up, close.

The server (tests/support/rtsp_server.py) runs under the system python; the tests skip with the
reason when its GStreamer bindings are missing (see the ``rtsp_server`` fixture).
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from stream.capture import Capture
from stream.errors import StreamUnreachable
from stream.frame import Frame, SourceEvent, SourceEventKind
from stream.sources import RtspSource, open_source

pytestmark = [pytest.mark.rtsp, pytest.mark.timeout(60)]
log = logging.getLogger(__name__)

Kind = SourceEventKind


def take_frames(capture: Capture, n: int, timeout_s: float = 10.0) -> list[Frame]:
    """The next n frames; fails on any event or if they take longer than timeout_s."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < n:
        item = capture.get(timeout=max(0.0, deadline - time.monotonic()))
        assert isinstance(item, Frame), f"expected a frame, got {item!r}"
        frames.append(item)
    return frames


def next_event(capture: Capture, timeout_s: float) -> tuple[SourceEvent, list[Frame]]:
    """Skip frames up to the next event; return it with the frames seen before it."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout_s
    while True:
        item = capture.get(timeout=max(0.0, deadline - time.monotonic()))
        if isinstance(item, SourceEvent):
            return item, frames
        assert isinstance(item, Frame)
        frames.append(item)


def test_reconnects_after_the_server_restarts(rtsp_server) -> None:
    source = open_source(rtsp_server.url, read_timeout_s=2.0)
    assert isinstance(source, RtspSource) and source.is_live
    with Capture(source) as capture:
        assert capture.policy == "live"
        before = take_frames(capture, 40)
        assert [f.index for f in before] == list(range(40))
        assert before[0].media_time_s == 0.0
        # Wall-clock media time. FFmpeg's stream probing at open buffers ~0.75 s of frames that
        # arrive in a burst; the rest come at 30 fps.
        assert 0.3 < before[-1].media_time_s < 3.0

        rtsp_server.kill()
        killed = time.monotonic()
        time.sleep(0.5)  # the server stays down a while
        restarted = rtsp_server.start()

        event, _ = next_event(capture, timeout_s=5.0)
        assert event.kind is Kind.DISCONNECTED
        event, _ = next_event(capture, timeout_s=max(0.1, restarted + 5.0 - time.monotonic()))
        reconnected = time.monotonic()
        assert event.kind is Kind.RECONNECTED
        assert reconnected - restarted < 5.0
        down_s = restarted - killed
        assert down_s - 0.2 < event.gap_s < reconnected - killed + 1.0
        log.info("reconnected %.2f s after the restart; gap_s %.2f", reconnected - restarted, event.gap_s)

        after = take_frames(capture, 15)
    # indices continue and the gap shows in the (wall-clock) media time
    last_before = max(f.index for f in before)
    assert after[0].index > last_before
    assert [f.index for f in after] == sorted({f.index for f in after})
    assert after[0].media_time_s - before[-1].media_time_s >= event.gap_s - 0.05
    assert source.reconnects == 1


def test_stall_triggers_the_watchdog(rtsp_server) -> None:
    source = open_source(rtsp_server.url, read_timeout_s=1.0, open_timeout_s=2.0)
    with Capture(source) as capture:
        take_frames(capture, 5)
        rtsp_server.pause()  # the connection stays up, nothing arrives
        paused = time.monotonic()
        event, _ = next_event(capture, timeout_s=4.0)
        assert event.kind is Kind.DISCONNECTED
        stalled = time.monotonic() - paused
        assert stalled < 2.0  # about read_timeout_s after the last frame
        log.info("stall noticed %.2f s after the server froze", stalled)
        rtsp_server.resume()
        event, _ = next_event(capture, timeout_s=10.0)
        assert event.kind is Kind.RECONNECTED and event.gap_s > 1.0
        take_frames(capture, 5)


def test_unreachable_url_fails_fast(free_tcp_port: int) -> None:
    url = f"rtsp://127.0.0.1:{free_tcp_port}/clip"
    t0 = time.monotonic()
    with pytest.raises(StreamUnreachable, match=str(free_tcp_port)) as info:
        open_source(url, open_timeout_s=2.0)
    assert time.monotonic() - t0 < 3.0
    assert info.value.source == url


def test_gives_up_after_max_reconnect_s(rtsp_server) -> None:
    source = open_source(rtsp_server.url, max_reconnect_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.2)
    with Capture(source) as capture:
        take_frames(capture, 3)
        rtsp_server.kill()
        event, _ = next_event(capture, timeout_s=5.0)
        assert event.kind is Kind.DISCONNECTED
        event, _ = next_event(capture, timeout_s=5.0)
        assert event.kind is Kind.END and "gave up" in event.detail
        assert capture.get(timeout=1.0) is None


def test_close_interrupts_the_reconnect_wait(rtsp_server) -> None:
    # Long backoff: after the first failed attempt the reader sits in a 30 s wait.
    source = open_source(rtsp_server.url, backoff_initial_s=0.1, backoff_max_s=30.0)
    capture = Capture(source)
    take_frames(capture, 3)
    rtsp_server.kill()
    event, _ = next_event(capture, timeout_s=5.0)
    assert event.kind is Kind.DISCONNECTED
    time.sleep(0.5)  # one attempt fails (connection refused), then the long wait

    # The consumer is blocked in get() on an empty queue while another thread closes.
    result: list[object] = []
    consumer = threading.Thread(target=lambda: result.append(capture.get()))
    consumer.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    capture.close()
    consumer.join(2.0)
    assert time.monotonic() - t0 < 1.0
    assert not capture.running and not consumer.is_alive()
    assert result == [None]


def test_credentials_in_a_url_are_never_shown(free_tcp_port: int, caplog) -> None:
    from stream.errors import redact_url

    assert redact_url("rtsp://admin:s3cret@cam.local:554/live?token=abc&x=1") == (
        "rtsp://admin:***@cam.local:554/live?token=***&x=1"
    )
    assert redact_url("rtsps://:p@w0rd@10.0.0.2/a") == "rtsps://:***@10.0.0.2/a"
    assert redact_url("clip.mp4") == "clip.mp4" and redact_url("rtsp://cam/a") == "rtsp://cam/a"
    url = f"rtsp://admin:s3cret@127.0.0.1:{free_tcp_port}/clip?password=hunter2"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StreamUnreachable) as info:
        open_source(url, open_timeout_s=1.0)
    shown = str(info.value) + caplog.text
    assert "admin:***@" in str(info.value) and str(free_tcp_port) in str(info.value)
    assert "s3cret" not in shown and "hunter2" not in shown


def test_a_source_with_credentials_is_named_without_them(rtsp_server) -> None:
    url = rtsp_server.url.replace("rtsp://", "rtsp://viewer:s3cret@")
    with RtspSource(url, open_timeout_s=10.0) as source:
        assert source.name == rtsp_server.url.replace("rtsp://", "rtsp://viewer:***@")
        assert isinstance(source.read(), Frame)  # the real URL, credentials included, was used
