"""The capture thread: reads a source in the background into a bounded queue.

    with Capture(open_source("rtsp://cam/stream")) as capture:
        for item in capture:                      # Frame or SourceEvent, END last
            ...

Drop policy (see DESIGN.md, "Streaming stages are bounded"):

- ``"live"`` (default for live sources): when the queue is full the OLDEST queued frame is dropped
  to make room for the newest, and counted in `Capture.dropped`. Events are never dropped.
- ``"replay"`` (default for files and folders): the reader waits for room; nothing is dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Literal

from stream.errors import ConfigError, MespotError
from stream.frame import Frame, SourceEvent, SourceEventKind
from stream.sources import Source

log = logging.getLogger(__name__)

Policy = Literal["live", "replay"]
Item = Frame | SourceEvent


class CaptureError(MespotError):
    """The capture thread failed while reading its source; the original error is ``__cause__``."""


class _Failure:
    """Queued in place of an item when the reader thread raised."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_CLOSED = object()  # queued by close() to wake a consumer blocked in get()


class _FrameQueue(queue.Queue):
    """A `queue.Queue` that can make room by dropping its oldest frame, and whose blocking put
    gives up when a stop event is set (woken by `wake_producer`, not by polling)."""

    def put_until(self, item: object, stop: threading.Event) -> bool:
        """Block until there is room, then put; return False (item not put) once stop is set."""
        with self.not_full:
            while 0 < self.maxsize <= self._qsize():
                if stop.is_set():
                    return False
                self.not_full.wait()
            self._append(item)
            return True

    def put_dropping_oldest_frame(self, item: object) -> tuple[bool, int]:
        """Put without blocking, dropping the oldest queued Frame if the queue is full.

        Returns:
            (placed, dropped): whether ``item`` is in the queue, and how many frames were dropped
            (1 when an old frame made room, or when ``item`` is a frame that found the queue full
            of events only and was itself dropped).
        """
        with self.mutex:
            if self.maxsize <= 0 or self._qsize() < self.maxsize:
                self._append(item)
                return True, 0
            for k, queued in enumerate(self.queue):
                if isinstance(queued, Frame):
                    del self.queue[k]
                    self.unfinished_tasks -= 1
                    self._append(item)
                    return True, 1
            if isinstance(item, Frame):
                return False, 1  # only events are queued: they outrank the new frame
            return False, 0  # an event with no frame to drop: the caller waits for room

    def put_force(self, item: object) -> None:
        """Put even if the queue is full (sentinels that must reach the consumer)."""
        with self.mutex:
            self._append(item)

    def wake_producer(self) -> None:
        """Wake a producer blocked in `put_until` so it can see its stop event."""
        with self.mutex:
            self.not_full.notify_all()

    def _append(self, item: object) -> None:
        # Same bookkeeping as Queue.put; the caller holds self.mutex.
        self._put(item)
        self.unfinished_tasks += 1
        self.not_empty.notify()


class Capture:
    """Reads a `Source` in a daemon thread into a bounded queue; a context manager.

    The capture owns the source: closing the capture closes the source. Iterating yields every
    queued item up to and including the END event. An exception raised by the source in the
    reader thread is raised in the consumer, after the items queued before it, as `CaptureError`
    with the original exception as ``__cause__``.

    Attributes:
        source: the source being read.
        policy: "live" or "replay".
        frames_read: frames the reader got from the source (delivered or dropped).
        dropped: frames dropped by the live policy.
        delivered: frames handed to the consumer.
        last_capture_ns: ``capture_ns`` of the last frame read from the source (None before).
    """

    def __init__(self, source: Source, *, queue_size: int = 64, policy: Policy | None = None) -> None:
        """Start reading.

        Args:
            source: an open source (see `stream.sources.open_source`).
            queue_size: maximum number of queued items (>= 1).
            policy: "live" (drop the oldest frame when full) or "replay" (wait for room); default
                "live" for live sources, "replay" otherwise.
        """
        if policy is None:
            policy = "live" if source.is_live else "replay"
        if policy not in ("live", "replay"):
            raise ConfigError(f"policy must be 'live' or 'replay', got {policy!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigError(f"queue_size must be an int >= 1, got {queue_size!r}")
        self.source = source
        self.policy: Policy = policy
        self.queue_size = queue_size
        self.frames_read = 0
        self.dropped = 0
        self.delivered = 0
        self.last_capture_ns: int | None = None
        self._queue = _FrameQueue(maxsize=queue_size)
        self._stop = threading.Event()
        self._finished = False  # END, close or a failure reached the consumer
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"capture:{source.name}", daemon=True)
        self._thread.start()

    # -- consumer side ----------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Item | None:
        """Return the next frame or event; None after END has been returned or after `close`.

        Args:
            timeout: seconds to wait; None waits until something arrives.

        Raises:
            TimeoutError: nothing arrived within ``timeout``.
            CaptureError: the reader thread failed (raised again on every later call).
        """
        if self._failure is not None:
            self._raise_failure()
        if self._finished or self._stop.is_set():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.source.name}: no frame or event within {timeout} s") from None
        if item is _CLOSED:
            self._finished = True
            return None
        if isinstance(item, _Failure):
            self._finished = True
            self._failure = item.exc
            self._raise_failure()
        assert isinstance(item, Frame | SourceEvent)
        if isinstance(item, Frame):
            self.delivered += 1
        elif item.kind is SourceEventKind.END:
            self._finished = True
        return item

    def __iter__(self) -> Iterator[Item]:
        while (item := self.get()) is not None:
            yield item

    def qsize(self) -> int:
        """Items waiting in the queue now (approximate, as for `queue.Queue`)."""
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        """True while the reader thread is alive."""
        return self._thread.is_alive()

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the reader thread and close the source; prompt even if nobody reads.

        Items still queued are discarded: `get` returns None from now on (a consumer blocked in
        `get` in another thread wakes up with None).

        A read blocked inside OpenCV cannot be interrupted; the thread (a daemon) then exits when
        that read returns, bounded by the source's own read timeout, and a warning is logged if
        it outlives ``timeout_s``.
        """
        if self._stop.is_set():
            return
        self._stop.set()
        self.source.close()  # never blocks; wakes a reconnect wait
        self._queue.wake_producer()
        self._queue.put_force(_CLOSED)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning(
                    "%s: capture thread still in a read %.1f s after close; it exits when the read returns",
                    self.source.name,
                    timeout_s,
                )

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Capture({self.source!r}, policy={self.policy!r}, read={self.frames_read}, "
            f"dropped={self.dropped}, queued={self.qsize()})"
        )

    def _raise_failure(self) -> None:
        exc = self._failure
        assert exc is not None
        raise CaptureError(f"{self.source.name}: the capture thread failed: {exc!r}") from exc

    # -- reader thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self.source.read()
                if item is None:  # END was already taken from this source by someone else
                    item = SourceEvent(
                        SourceEventKind.END, self.source.name, time.monotonic_ns(), "source already ended"
                    )
                if isinstance(item, Frame):
                    self.frames_read += 1
                    self.last_capture_ns = item.capture_ns
                if not self._put(item):
                    break
                if isinstance(item, SourceEvent) and item.kind is SourceEventKind.END:
                    break
        except BaseException as exc:  # handed to the consumer, never lost in this thread
            log.error("%s: capture thread failed", self.source.name, exc_info=exc)
            self._queue.put_until(_Failure(exc), self._stop)
        finally:
            self.source.close()

    def _put(self, item: Item) -> bool:
        """Queue one item under the policy; False when the capture is stopping."""
        if self.policy == "live":
            placed, dropped = self._queue.put_dropping_oldest_frame(item)
            self.dropped += dropped
            if placed or isinstance(item, Frame):
                return True
        # replay, or a live event that found no frame to drop: wait for room (never dropped)
        return self._queue.put_until(item, self._stop)


__all__ = ["Capture", "CaptureError", "Policy"]
