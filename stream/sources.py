"""Frame sources: video files, image folders, cameras and RTSP streams behind one interface.

`open_source` picks the source from what the user typed:

    ======================================  =================
    spec                                    source
    ======================================  =================
    ``0``, ``"1"`` (int or all digits)      `CameraSource`
    ``rtsp://...``, ``rtsps://...``         `RtspSource`
    an existing folder                      `FolderSource`
    an existing file                        `VideoFileSource`
    ``other://...``                         the factory registered for that scheme in
                                            `SOURCE_SCHEMES` (``sim://``: the synthetic face
                                            source, stream/synth/source.py, loaded on first use)
    ======================================  =================

Every source yields `Frame` objects and in-band `SourceEvent` objects from `Source.read`; the
stream always finishes with exactly one ``END`` event, after which `read` returns ``None``.

Time: files use the container timestamps, shifted so that the first frame is at 0 s; folders use
``index / fps``; live sources (camera, RTSP) use the monotonic clock since their first frame, so a
reconnection gap shows in the media times.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import math
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2

from stream.config import check_number
from stream.errors import (
    CameraUnavailable,
    ConfigError,
    SourceCorrupt,
    SourceEmpty,
    SourceError,
    SourceNotFound,
    StreamUnreachable,
    redact_url,
)
from stream.frame import IMAGE_SUFFIXES, Frame, SourceEvent, SourceEventKind, frame_number
from stream.registry import Registry

log = logging.getLogger(__name__)

DEFAULT_FOLDER_FPS = 30.0
# Used when neither the container/driver nor the caller gives a usable rate.
FALLBACK_FPS = 30.0
_MAX_FPS = 10_000.0
_MAX_WAIT_S = 86_400.0  # a day: a longer timeout or back-off is a typo

SourceFactory = Callable[..., "Source"]
#: scheme (without ``://``) -> factory ``f(spec: str, *, fps: float | None, **options) -> Source``.
#: Register with ``@SOURCE_SCHEMES.register("sim")``; a scheme cannot be registered twice.
SOURCE_SCHEMES: Registry[Source] = Registry("source scheme")

# Scheme names that belong to sources still to come; they get a clearer message than "unknown".
# Schemes whose source lives in a module imported on first use (importing it registers the
# scheme), so `import stream.sources` stays light.
_SCHEME_MODULES = {"sim": "stream.synth.source"}


def _check_fps(fps: float | None, name: str = "fps") -> float | None:
    if fps is None:
        return None
    check_number("source", name, fps, 0.0, _MAX_FPS, lo_open=True)
    return float(fps)


def _usable_fps(value: float) -> bool:
    # OpenCV reports 0 (unknown) or absurd values (e.g. a 90 kHz RTP clock) when it has no rate.
    return math.isfinite(value) and 0 < value <= 1000.0


class Source(ABC):
    """A stream of frames from one input; a context manager.

    `read` returns the next `Frame` or `SourceEvent`. Every stream finishes with exactly one
    ``SourceEvent(END)`` (also after `close`), and every later `read` returns ``None``.

    Threading: `read` must be called from one thread at a time (usually a `stream.capture.Capture`
    thread). `close` may be called from any thread at any moment: it never blocks; if a read is in
    progress, the reader releases the device/file as soon as that read returns, and any wait between
    reconnection attempts wakes at once.

    Attributes:
        name: the input as the user gave it (path, URL or camera index), as a string.
        is_live: True for cameras and network streams (frames come in real time and may be
            dropped downstream), False for files and folders (every frame must be processed).
        nominal_fps: the rate the source announces; informative for live sources, the basis of
            media time for folders.
    """

    is_live: bool = False

    def __init__(self, name: str, nominal_fps: float) -> None:
        self.name = name
        self.nominal_fps = nominal_fps
        self._closed = threading.Event()
        self._io_lock = threading.Lock()
        self._released = False
        self._end_sent = False

    # -- public API -------------------------------------------------------------------------
    def read(self) -> Frame | SourceEvent | None:
        """Return the next frame or event; ``None`` once the END event has been returned.

        Returns:
            A `Frame`, a `SourceEvent` (``BAD_FRAME``, ``DISCONNECTED``, ``RECONNECTED`` and
            finally ``END``), or ``None`` after END.
        """
        if self._end_sent:
            return None
        with self._io_lock:
            if self._closed.is_set():
                self._release_once()
                item: Frame | SourceEvent = self._event(SourceEventKind.END, "closed")
            else:
                item = self._next()
                if self._closed.is_set():  # close() arrived while this read was in progress
                    self._release_once()
        if isinstance(item, SourceEvent) and item.kind is SourceEventKind.END:
            self._end_sent = True
            with self._io_lock:
                self._release_once()
        return item

    def close(self) -> None:
        """Stop the source and release its file/device; safe from any thread, never blocks."""
        self._closed.set()
        # If a read holds the lock, that reader releases the handle when its read returns.
        if self._io_lock.acquire(blocking=False):
            try:
                self._release_once()
            finally:
                self._io_lock.release()

    @property
    def closed(self) -> bool:
        """True once `close` has been called."""
        return self._closed.is_set()

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- for subclasses ---------------------------------------------------------------------
    @abstractmethod
    def _next(self) -> Frame | SourceEvent:
        """Produce the next item; return an END event when there are no more frames."""

    @abstractmethod
    def _release(self) -> None:
        """Release the underlying handle (called once, with the I/O lock held)."""

    def _release_once(self) -> None:
        if not self._released:
            self._released = True
            self._release()

    def _event(self, kind: SourceEventKind, detail: str = "", gap_s: float = 0.0) -> SourceEvent:
        return SourceEvent(kind, self.name, time.monotonic_ns(), detail, gap_s)


# -- files -----------------------------------------------------------------------------------
class VideoFileSource(Source):
    """A video file decoded with OpenCV's FFmpeg backend.

    Media time comes from the container timestamps (``CAP_PROP_POS_MSEC`` after each read),
    shifted so the first frame is at 0 s and kept non-decreasing. OpenCV reports a negative
    first timestamp for some .mov files (e.g. -16.7 ms where FFmpeg's own pts is 0); a negative
    first timestamp is therefore taken as 0. A frame without a usable timestamp falls back to
    ``index / nominal_fps``.

    A file that stops decoding before the frame count its container lists (a truncated
    download) is not an error: the frames that decode are delivered, then END says it ended early.

    Raises (from the constructor):
        SourceNotFound: no such file.
        SourceEmpty: the file is 0 bytes, or it opens but holds no video frames.
        SourceCorrupt: the file cannot be opened as a video, or not a single frame decodes.
    """

    def __init__(self, path: str | Path, *, fps: float | None = None) -> None:
        """Open the file and decode its first frame, so that bad input fails here.

        Args:
            path: the video file.
            fps: frame rate to assume when the container does not give a usable one.
        """
        fps = _check_fps(fps)
        self.path = Path(path)
        if not self.path.exists():
            raise SourceNotFound(self.path, "no such file")
        if self.path.is_dir():
            raise SourceError(self.path, "is a folder, not a video file (open_source() reads image folders)")
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise SourceNotFound(self.path, f"cannot stat the file: {exc}") from exc
        if size == 0:
            raise SourceEmpty(self.path, "the file is empty (0 bytes)")
        if not os.access(self.path, os.R_OK):
            raise SourceError(self.path, "the file is not readable (permission denied)")

        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceCorrupt(
                self.path, "OpenCV (FFmpeg) cannot open it as a video: damaged or not a video"
            )
        container_fps = cap.get(cv2.CAP_PROP_FPS)
        nominal = container_fps if _usable_fps(container_fps) else (fps or FALLBACK_FPS)
        super().__init__(str(path), nominal)
        self._cap: cv2.VideoCapture | None = cap
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count: int | None = int(count) if math.isfinite(count) and count > 0 else None
        self._index = 0
        self._origin_ms = 0.0
        self._last_t = 0.0

        first = self._decode()
        if first is None:
            self._release_once()
            if self.frame_count is None:
                raise SourceEmpty(self.path, "the video holds no frames")
            raise SourceCorrupt(
                self.path, f"not a single frame decodes (the container lists {self.frame_count})"
            )
        self._pending: Frame | None = first

    def _decode(self) -> Frame | None:
        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok or image is None or image.size == 0:
            return None
        now = time.monotonic_ns()
        raw_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        i = self._index
        if i == 0:
            # Media time starts at 0; a negative first timestamp is OpenCV's pre-edit-list value.
            self._origin_ms = raw_ms if math.isfinite(raw_ms) and raw_ms > 0 else 0.0
            t = 0.0
        elif math.isfinite(raw_ms) and raw_ms > 0:  # OpenCV reports 0 when a frame has no pts
            t = (raw_ms - self._origin_ms) / 1000.0
        else:
            t = i / self.nominal_fps
        t = max(t, self._last_t)  # never go back in time, whatever the container says
        self._last_t = t
        self._index += 1
        return Frame(index=i, media_time_s=t, capture_ns=now, image=image, source_index=i)

    def _next(self) -> Frame | SourceEvent:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        frame = self._decode()
        if frame is not None:
            return frame
        n = self._index
        promised = self.frame_count
        # Containers may list a few frames more than decode (edit lists trim encoder priming
        # frames: no_face.mp4 lists 98 and decodes 95), so only a clear shortfall is reported.
        if promised is not None and promised - n > max(4, math.ceil(0.005 * promised)):
            detail = f"ended early: {n} of the {promised} frames the container lists decoded (truncated?)"
            log.warning("%s: %s", self.name, detail)
        else:
            detail = f"end of file after {n} frames"
        return self._event(SourceEventKind.END, detail)

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# -- folders of images ---------------------------------------------------------------------


def frame_sort_key(path: Path) -> tuple[int, int, str]:
    """Sort key for frame images: the last integer in the file name, numerically.

    ``img2.jpg`` sorts before ``img10.jpg``; ``006_1_00002.jpg`` sorts by 2. Names without a
    number come after the numbered ones, by name.
    """
    number = frame_number(path.stem)
    if number is None:
        return (1, 0, path.name)
    return (0, number, path.name)


def list_frame_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (not recursive), in frame order."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=frame_sort_key)


class FolderSource(Source):
    """A folder of frame images (jpg, jpeg, png, bmp, tif, tiff), one clip per folder.

    Files are ordered by the last integer in their name, which fits the CAS(ME)^2 layout
    (``s15/15_0101disgustingteeth/img1.jpg``, numbered from 1) and SAMM-LV
    (``006_1/006_1_00001.jpg``). A frame's index is its position in that order, and its media
    time ``index / fps``; an image that cannot be read gives a BAD_FRAME event and leaves a gap in
    the indices, so times stay right.

    Raises (from the constructor):
        SourceNotFound: no such folder.
        SourceEmpty: the folder has no image files (not searched recursively).
    """

    def __init__(self, path: str | Path, *, fps: float | None = None) -> None:
        """List the folder's images.

        Args:
            path: the clip's folder.
            fps: the recording's frame rate (default 30; SAMM-LV is 200, CAS(ME)^2 30).
        """
        fps = _check_fps(fps)
        self.path = Path(path)
        if not self.path.exists():
            raise SourceNotFound(self.path, "no such folder")
        if not self.path.is_dir():
            raise SourceError(self.path, "is not a folder")
        files = list_frame_images(self.path)
        if not files:
            subdirs = sum(1 for p in self.path.iterdir() if p.is_dir())
            hint = f"; it has {subdirs} subfolder(s): pass one clip's folder" if subdirs else ""
            raise SourceEmpty(
                self.path, f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder{hint}"
            )
        super().__init__(str(path), fps or DEFAULT_FOLDER_FPS)
        self.files = files
        self._pos = 0

    def _next(self) -> Frame | SourceEvent:
        while self._pos < len(self.files):
            i = self._pos
            self._pos += 1
            file = self.files[i]
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None or image.size == 0:
                log.warning("%s: cannot read image %s, skipped", self.name, file.name)
                return self._event(SourceEventKind.BAD_FRAME, f"cannot read image {file}")
            return Frame(
                index=i,
                media_time_s=i / self.nominal_fps,
                capture_ns=time.monotonic_ns(),
                image=image,
                source_index=i,
            )
        return self._event(SourceEventKind.END, f"end of folder after {len(self.files)} images")

    def _release(self) -> None:
        pass  # no handle is kept between reads


# -- live sources ----------------------------------------------------------------------------
class _ReconnectingSource(Source):
    """A live OpenCV capture that reports and recovers from disconnections.

    After frames have flowed, a failed read (including OpenCV's read timeout, the stall
    watchdog) gives a DISCONNECTED event, the capture is released and reopened with exponential
    backoff; the first frame after a successful reopen is preceded by a RECONNECTED event whose
    ``gap_s`` is the time since the last frame. Indices continue; media time is the monotonic
    clock since the first frame, so the gap stays visible.
    """

    is_live = True

    def __init__(
        self,
        name: str,
        *,
        fps: float | None,
        backoff_initial_s: float,
        backoff_max_s: float,
        max_reconnect_s: float | None,
    ) -> None:
        fps = _check_fps(fps)
        check_number("source", "backoff_initial_s", backoff_initial_s, 0.0, _MAX_WAIT_S, lo_open=True)
        check_number("source", "backoff_max_s", backoff_max_s, backoff_initial_s, _MAX_WAIT_S)
        if max_reconnect_s is not None:  # None: never give up
            check_number("source", "max_reconnect_s", max_reconnect_s, 0.0, math.inf)
        super().__init__(name, fps or FALLBACK_FPS)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_reconnect_s = max_reconnect_s
        #: how many times the source has reconnected.
        self.reconnects = 0
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._first_ns: int | None = None
        self._last_frame_ns = 0
        self._pending: Frame | None = None

        # The first open must succeed and deliver a frame; otherwise the input is wrong.
        cap, problem = self._try_open()
        if cap is None:
            raise self._unreachable(problem)
        reported = cap.get(cv2.CAP_PROP_FPS)
        if fps is None and _usable_fps(reported):
            self.nominal_fps = reported
        self._pending = self._frame(cap, time.monotonic_ns())
        if self._pending is None:
            cap.release()
            raise self._unreachable("opened, but the first frame did not decode")
        self._cap = cap

    @abstractmethod
    def _open_capture(self) -> cv2.VideoCapture:
        """Create the OpenCV capture (may or may not be opened)."""

    @abstractmethod
    def _unreachable(self, problem: str) -> SourceError:
        """The error raised when the very first open fails."""

    def _stall_limit_s(self) -> float | None:
        """A read lasting this long counts as a stall (the watchdog); None: only failed reads."""
        return None

    def _try_open(self) -> tuple[cv2.VideoCapture | None, str]:
        """Open and read one frame; return (capture holding that frame, "") or (None, problem)."""
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            return None, "cannot open"
        if not cap.grab():
            cap.release()
            return None, "opened, but no frame arrived"
        return cap, ""

    def _frame(self, cap: cv2.VideoCapture, grabbed_ns: int) -> Frame | None:
        ok, image = cap.retrieve()
        if not ok or image is None or image.size == 0:
            return None
        if self._first_ns is None:
            self._first_ns = grabbed_ns
        self._last_frame_ns = grabbed_ns
        i = self._index
        self._index += 1
        t = (grabbed_ns - self._first_ns) / 1e9
        return Frame(index=i, media_time_s=t, capture_ns=grabbed_ns, image=image, source_index=i)

    def _next(self) -> Frame | SourceEvent:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        if self._cap is None:
            return self._reconnect()
        started = time.monotonic_ns()
        ok = self._cap.grab()
        now = time.monotonic_ns()
        took_s = (now - started) / 1e9
        limit_s = self._stall_limit_s()
        # After OpenCV's read timeout fires, grab() may still return True for a few calls while
        # it flushes the decoder's delayed frames (one timeout each), so a stall would take
        # about three timeouts to show. A grab that lasted the whole timeout is the stall itself.
        stalled = ok and limit_s is not None and took_s >= 0.95 * limit_s
        frame = self._frame(self._cap, now) if ok and not stalled else None
        if frame is not None:
            return frame
        silent_s = (now - self._last_frame_ns) / 1e9
        self._release_capture()
        why = f"stalled: a read waited {took_s:.2f} s" if stalled else "read failed"
        detail = f"no frame for {silent_s:.2f} s ({why}); reconnecting"
        log.warning("%s: disconnected: %s", self.name, detail)
        return self._event(SourceEventKind.DISCONNECTED, detail)

    def _reconnect(self) -> SourceEvent:
        start_ns = time.monotonic_ns()
        delay = self.backoff_initial_s
        attempts = 0
        last_problem = ""
        while True:
            wait = delay
            if self.max_reconnect_s is not None:
                left = self.max_reconnect_s - (time.monotonic_ns() - start_ns) / 1e9
                if left <= 0:
                    detail = (
                        f"gave up reconnecting after {self.max_reconnect_s:g} s "
                        f"({attempts} attempts; last: {last_problem or 'none tried'})"
                    )
                    log.error("%s: %s", self.name, detail)
                    return self._event(SourceEventKind.END, detail)
                wait = min(wait, left)
            # An Event, not sleep(): close() wakes this wait at once.
            if self._closed.wait(wait):
                return self._event(SourceEventKind.END, "closed while reconnecting")
            attempts += 1
            cap, last_problem = self._try_open()
            if cap is not None:
                now = time.monotonic_ns()
                gap_s = (now - self._last_frame_ns) / 1e9
                frame = self._frame(cap, now)
                if frame is not None:
                    self._cap = cap
                    self._pending = frame
                    self.reconnects += 1
                    detail = f"reconnected after {attempts} attempt(s), {gap_s:.2f} s without frames"
                    log.info("%s: %s", self.name, detail)
                    return self._event(SourceEventKind.RECONNECTED, detail, gap_s=gap_s)
                cap.release()
                last_problem = "opened, but the first frame did not decode"
            log.debug("%s: reconnect attempt %d failed: %s", self.name, attempts, last_problem)
            delay = min(delay * 2.0, self.backoff_max_s)

    def _release_capture(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _release(self) -> None:
        self._release_capture()


class CameraSource(_ReconnectingSource):
    """A local camera opened by index with ``cv2.VideoCapture(index)``.

    A camera that stops delivering (unplugged, driver error) is reported and reopened like a
    network stream; how long a silent camera blocks a read before that depends on the driver
    (V4L2 waits about 10 s).

    Raises (from the constructor):
        CameraUnavailable: no camera answers at that index, or it delivers no frame.
    """

    def __init__(
        self,
        index: int,
        *,
        fps: float | None = None,
        api: int = cv2.CAP_ANY,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 2.0,
        max_reconnect_s: float | None = None,
    ) -> None:
        """Open the camera and read its first frame.

        Args:
            index: camera index (0 is the default camera).
            fps: frame rate to announce when the driver reports none.
            api: OpenCV backend (``cv2.CAP_ANY``, ``cv2.CAP_V4L2``, ...).
            backoff_initial_s: first wait before reopening after a disconnection.
            backoff_max_s: the wait doubles up to this.
            max_reconnect_s: give up (END) after this long without success; None never gives up.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigError(f"camera index must be an int >= 0, got {index!r}")
        self.index = index
        self.api = api
        super().__init__(
            str(index),
            fps=fps,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            max_reconnect_s=max_reconnect_s,
        )

    def _open_capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.index, self.api)

    def _unreachable(self, problem: str) -> SourceError:
        return CameraUnavailable(self.index, f"no camera at index {self.index} ({problem})")


# OPENCV_FFMPEG_CAPTURE_OPTIONS is read by OpenCV when a capture opens and is process-global;
# RtspSource sets it only around its own open, under this lock.
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ffmpeg_env_lock = threading.Lock()


def _with_ffmpeg_option(current: str | None, key: str, value: str) -> str:
    """Add ``key;value`` to an OPENCV_FFMPEG_CAPTURE_OPTIONS string unless the key is set."""
    pairs = [p for p in (current or "").split("|") if p]
    if any(p.split(";", 1)[0] == key for p in pairs):
        return "|".join(pairs)  # the user's own choice wins
    return "|".join([*pairs, f"{key};{value}"])


class RtspSource(_ReconnectingSource):
    """An RTSP stream read with OpenCV's FFmpeg backend, over TCP by default.

    Transport: OpenCV takes FFmpeg options from the environment variable
    ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, which is process-global. The source adds
    ``rtsp_transport;<transport>`` to it only while its own capture opens (under a lock, then
    restores the previous value); an ``rtsp_transport`` the user already put there wins. Another
    thread opening an FFmpeg capture at that very moment sees the option too (harmless: only the
    RTSP demuxer reads it).

    Timeouts: ``open_timeout_s`` bounds each open (``CAP_PROP_OPEN_TIMEOUT_MSEC``) and
    ``read_timeout_s`` bounds each read (``CAP_PROP_READ_TIMEOUT_MSEC``; OpenCV restarts that
    clock for every frame, so it is the stall watchdog: time since the last frame). After that
    timeout fires OpenCV may still hand out the decoder's delayed frames, one per further timeout;
    the source does not wait for them: a read that lasted ``read_timeout_s`` is a stall. A read
    that fails or stalls gives DISCONNECTED, then the stream is reopened with exponential backoff
    and RECONNECTED (with ``gap_s``) precedes the next frame. `close` cannot interrupt an open or
    read in progress inside OpenCV (each is bounded by its timeout) but wakes a backoff wait at
    once.

    Raises (from the constructor):
        StreamUnreachable: the very first open fails or delivers no frame within the timeouts.
    """

    def __init__(
        self,
        url: str,
        *,
        fps: float | None = None,
        transport: str = "tcp",
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 2.0,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 2.0,
        max_reconnect_s: float | None = None,
    ) -> None:
        """Open the stream and read its first frame.

        Args:
            url: ``rtsp://`` or ``rtsps://`` URL.
            fps: frame rate to announce when the stream reports none.
            transport: FFmpeg ``rtsp_transport`` ("tcp", "udp", ...).
            open_timeout_s: limit for each open.
            read_timeout_s: limit for each read; a longer stall counts as a disconnection.
            backoff_initial_s: first wait before reopening after a disconnection.
            backoff_max_s: the wait doubles up to this.
            max_reconnect_s: give up (END) after this long without success; None (the default,
                for live use) never gives up.
        """
        for key, value in (("open_timeout_s", open_timeout_s), ("read_timeout_s", read_timeout_s)):
            check_number("rtsp source", key, value, 0.0, _MAX_WAIT_S, lo_open=True)
        if not re.fullmatch(r"[a-z_]+", transport):
            raise ConfigError(
                f"transport must be an FFmpeg rtsp_transport name like 'tcp', got {transport!r}"
            )
        self.url = url  # with its credentials: FFmpeg needs them; never shown (name is redacted)
        self.transport = transport
        self.open_timeout_s = float(open_timeout_s)
        self.read_timeout_s = float(read_timeout_s)
        super().__init__(
            redact_url(url),
            fps=fps,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            max_reconnect_s=max_reconnect_s,
        )

    def _open_capture(self) -> cv2.VideoCapture:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            round(self.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            round(self.read_timeout_s * 1000),
        ]
        with _ffmpeg_env_lock:
            previous = os.environ.get(_FFMPEG_ENV)
            os.environ[_FFMPEG_ENV] = _with_ffmpeg_option(previous, "rtsp_transport", self.transport)
            try:
                return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
            finally:
                if previous is None:
                    del os.environ[_FFMPEG_ENV]
                else:
                    os.environ[_FFMPEG_ENV] = previous

    def _stall_limit_s(self) -> float | None:
        return self.read_timeout_s

    def _unreachable(self, problem: str) -> SourceError:
        return StreamUnreachable(
            self.url, f"{problem} within {self.open_timeout_s:g} s (transport {self.transport})"
        )


# -- dispatch ----------------------------------------------------------------------------------
SOURCE_SCHEMES.register("rtsp")(RtspSource)
SOURCE_SCHEMES.register("rtsps")(RtspSource)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _check_options(factory: Callable[..., Any], options: dict[str, Any], what: str) -> None:
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = sorted(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "fps")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {what}; valid: {', '.join(allowed) or 'none'}"
        )


def open_source(spec: str | int | Path, *, fps: float | None = None, **options: Any) -> Source:
    """Open the source that ``spec`` names.

    Args:
        spec: camera index (int or all-digit string), ``rtsp://``/``rtsps://`` URL, a folder of
            frame images, a video file, or ``scheme://...`` for a scheme registered in
            `SOURCE_SCHEMES`.
        fps: for folders, the frame rate (default 30); for other sources, the rate to assume
            when the input does not report one.
        **options: passed to the source class (e.g. ``read_timeout_s`` for RTSP); unknown
            options are a ConfigError naming the valid ones.

    Returns:
        An open `Source` (the first frame of files and live sources has already been read, so
        bad input fails here, not at the first `read`).

    Raises:
        SourceError: a subclass naming the input and the problem (SourceNotFound, SourceCorrupt,
            SourceEmpty, CameraUnavailable, StreamUnreachable), or SourceError itself for an
            unknown or not yet available scheme.
        ConfigError: an unknown option or an out-of-range value.
    """
    if isinstance(spec, bool):
        raise ConfigError(f"source must be a path, URL or camera index, got {spec!r}")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        _check_options(CameraSource, options, "a camera")
        return CameraSource(int(spec), fps=fps, **options)
    if isinstance(spec, str) and (m := _SCHEME.match(spec)):
        scheme = m.group(1).lower()
        if scheme not in SOURCE_SCHEMES and scheme in _SCHEME_MODULES:
            importlib.import_module(_SCHEME_MODULES[scheme])
        if scheme not in SOURCE_SCHEMES:
            known = ", ".join(f"{s}://" for s in SOURCE_SCHEMES.names())
            raise SourceError(spec, f"unknown scheme {scheme}://; known: {known}")
        factory = SOURCE_SCHEMES.get(scheme)
        _check_options(factory, options, f"{scheme}:// sources")
        return factory(spec, fps=fps, **options)
    path = Path(spec)
    if path.is_dir():
        _check_options(FolderSource, options, "a frame folder")
        return FolderSource(path, fps=fps, **options)
    if path.exists():
        _check_options(VideoFileSource, options, "a video file")
        return VideoFileSource(path, fps=fps, **options)
    raise SourceNotFound(spec, "no such file or folder")


class PacedSource(Source):
    """A recording delivered like a camera: each frame is released at its media time.

    Frames are read from the wrapped source and handed out at ``t0 + media_time_s`` on the
    monotonic clock (``t0``: when the first frame was read), with ``capture_ns`` set to that release
    time. A consumer that cannot keep up loses frames to the live capture policy, as with a camera.
    `close` wakes a wait at once.

    Args:
        inner: an open, finite source (file, folder).
    """

    is_live = True

    def __init__(self, inner: Source) -> None:
        super().__init__(inner.name, inner.nominal_fps)
        self.inner = inner
        self._t0_ns: int | None = None
        self._t0_media = 0.0

    def _next(self) -> Frame | SourceEvent:
        item = self.inner.read()
        if item is None:
            return self._event(SourceEventKind.END, "source already ended")
        if not isinstance(item, Frame):
            return item
        now = time.monotonic_ns()
        if self._t0_ns is None:
            self._t0_ns, self._t0_media = now, item.media_time_s
        due = self._t0_ns + round((item.media_time_s - self._t0_media) * 1e9)
        if due > now and self._closed.wait((due - now) / 1e9):  # an Event: close() wakes it
            return self._event(SourceEventKind.END, "closed")
        return dataclasses.replace(item, capture_ns=time.monotonic_ns())

    def _release(self) -> None:
        self.inner.close()


__all__ = [
    "DEFAULT_FOLDER_FPS",
    "IMAGE_SUFFIXES",
    "SOURCE_SCHEMES",
    "CameraSource",
    "FolderSource",
    "PacedSource",
    "RtspSource",
    "Source",
    "SourceFactory",
    "VideoFileSource",
    "frame_sort_key",
    "list_frame_images",
    "open_source",
]
