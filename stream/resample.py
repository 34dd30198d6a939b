"""Resampling a stream of frames to the canonical rate by their timestamps.

Inputs come at 23.976, 26.4, 30 or 200 fps (and at a jittery rate when live). Everything after
this stage sees one clock: frame n has media time n / fps. Each canonical tick takes the source
frame nearest to it in time, decided causally as soon as the first source frame at or after the
tick arrives (so live latency grows by at most one source frame).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from stream.errors import ConfigError
from stream.frame import Frame


@dataclass(frozen=True, slots=True)
class TimeGap:
    """Canonical ticks that no source frame covered (a stall, a reconnect, a dropped burst).

    Attributes:
        first_index: first canonical index not emitted.
        count: number of canonical ticks skipped.
        seconds: length of the hole in media time.
    """

    first_index: int
    count: int
    seconds: float


class Resampler:
    """Maps source frames (any rate) to canonical frames at `fps`.

    Args:
        fps: canonical rate.
        max_hold_s: a source frame may stand in for ticks at most this far from it; a longer
            hole between two source frames becomes a TimeGap instead of repeated stale images.
    """

    def __init__(self, fps: float = 30.0, *, max_hold_s: float = 0.25) -> None:
        if not 1.0 <= fps <= 1000.0:
            raise ConfigError(f"fps={fps}: the canonical rate must lie in [1, 1000]")
        if max_hold_s <= 0:
            raise ConfigError(f"max_hold_s={max_hold_s}: must be > 0")
        self.fps = float(fps)
        self.max_hold_s = float(max_hold_s)
        self._next = 0  # next canonical index to emit
        self._prev: Frame | None = None
        self._t0: float | None = None

    def reset(self) -> None:
        self._next, self._prev, self._t0 = 0, None, None

    def push(self, frame: Frame) -> Iterator[Frame | TimeGap]:
        """Feed one source frame; yields the canonical frames (and gaps) it settles."""
        if self._t0 is None:
            self._t0 = frame.media_time_s
        t = frame.media_time_s - self._t0
        prev = self._prev
        if prev is None:
            yield self._emit(frame)
            self._prev = frame
            return
        t_prev = prev.media_time_s - self._t0
        if t < t_prev:  # non-monotonic timestamp: treat as the same instant as the previous frame
            t = t_prev
        if t - t_prev > self.max_hold_s:
            # A hole: ticks close to either side are still served, the middle becomes a gap.
            while self._tick_time(self._next) <= t_prev + self.max_hold_s:
                yield self._emit(prev)
            first = self._next
            resume = max(self._next, math.ceil((t - self.max_hold_s) * self.fps - 1e-9))
            if resume > first:
                self._next = resume
                yield TimeGap(first, resume - first, (resume - first) / self.fps)
        while self._tick_time(self._next) <= t:
            tick = self._tick_time(self._next)
            # nearest in time; a tie goes to the earlier frame
            yield self._emit(prev if tick - t_prev <= t - tick else frame)
        self._prev = frame

    def _tick_time(self, n: int) -> float:
        return n / self.fps

    def _emit(self, src: Frame) -> Frame:
        n = self._next
        self._next += 1
        return Frame(
            index=n,
            media_time_s=n / self.fps,
            capture_ns=src.capture_ns,
            image=src.image,
            source_index=src.source_index,
        )
