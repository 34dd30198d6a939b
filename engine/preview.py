"""A live view: the aligned face crop, the score timeline and the spotted intervals.

`Preview` is a sink of the live runner (`engine.sinks.Sink`): each score redraws the window,
each event shades its span. ``run_live.py --preview`` adds one; `Preview.open` returns None,
with a warning, where no window can open (no display), so the option is a no-op there.
"""

from __future__ import annotations

import collections
import logging
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from engine.sinks import LiveEvent, Sink
from stream.intervals import Interval

if TYPE_CHECKING:
    from engine.runtime import SnippetScore

log = logging.getLogger(__name__)


def _display_problem() -> str | None:
    """Why no window can open here, or None."""
    import os

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    return None


class Preview(Sink):
    """A live view: the aligned face crop, the score timeline and the spotted intervals.

    `render` draws the picture (a BGR array; no window needed); `show` puts it in an OpenCV window.
    `open` returns None, with a warning, where no window can open (no display), so ``--preview``
    is a no-op there. As a sink, each score redraws and each event is drawn.

    Args:
        snippet_s: seconds per snippet.
        fps: canonical frame rate (of the interval frames).
        thresholds: the operating point's thresholds (drawn as lines).
        history_s: seconds of timeline shown.
        face: returns the newest aligned face crop, or None (e.g. ``lambda: pipeline.last_aligned``'s
            crop); None: no face is drawn.
        on_closed: called when the user closes the window or presses q / Esc (e.g. the run's stop).
    """

    WINDOW = "mespot live"
    _COLOURS: ClassVar[dict[str, tuple[int, int, int]]] = {  # BGR
        "me": (60, 60, 230),
        "mae": (230, 140, 40),
        "act": (90, 200, 90),
    }

    def __init__(
        self,
        snippet_s: float,
        fps: float,
        thresholds: tuple[float, ...] = (),
        history_s: float = 20.0,
        *,
        face: Callable[[], np.ndarray | None] | None = None,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.snippet_s, self.fps, self.thresholds = snippet_s, fps, tuple(thresholds)
        self.face, self.on_closed = face, on_closed
        n = max(8, round(history_s / snippet_s))
        self.scores: collections.deque[SnippetScore] = collections.deque(maxlen=n)
        self.events: collections.deque[Interval] = collections.deque(maxlen=64)
        self._window = False

    @classmethod
    def open(cls, *args: Any, **kwargs: Any) -> Preview | None:
        """A preview, or None (with a warning) when no window can open here."""
        problem = _display_problem()
        if problem is None:
            try:
                import cv2

                cv2.namedWindow(cls.WINDOW, cv2.WINDOW_NORMAL)
            except Exception as exc:  # an OpenCV build without GUI support
                problem = f"OpenCV cannot open a window: {exc}"
        if problem is not None:
            log.warning("--preview: %s; running without a preview", problem)
            return None
        preview = cls(*args, **kwargs)
        preview._window = True
        return preview

    def add_score(self, score: SnippetScore) -> None:
        self.scores.append(score)

    def add_event(self, event: LiveEvent) -> None:
        self.events.append(event.interval)

    # -- as a sink of the live runner ---------------------------------------------------------

    def score(self, score: SnippetScore) -> None:
        self.add_score(score)
        if not self.show(None if self.face is None else self.face()) and self.on_closed is not None:
            self.on_closed()

    def event(self, event: LiveEvent) -> None:
        self.add_event(event)

    def end(self) -> None:
        self.close()  # the stream is over: nothing more to draw

    def render(self, face: np.ndarray | None, width: int = 720, height: int = 256) -> np.ndarray:
        """The preview picture: face crop on the left, score timeline with intervals on the right.

        Args:
            face: (S, S) grey or (S, S, 3) BGR face crop, or None (no face).

        Returns:
            (height, width, 3) uint8 BGR image.
        """
        import cv2

        canvas = np.full((height, width, 3), 24, np.uint8)
        side = height
        if face is not None:
            crop = face if face.ndim == 3 else cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
            canvas[:, :side] = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)
        else:
            cv2.putText(
                canvas, "no face", (side // 4, side // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2
            )
        x0, x1, y0, y1 = side + 10, width - 10, 20, height - 20
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (70, 70, 70), 1)
        n = self.scores.maxlen or 1
        if not self.scores:
            return canvas
        last = self.scores[-1].index
        first = last - n + 1

        def x_of(snippet: float) -> int:
            return int(x0 + (snippet - first) / max(n - 1, 1) * (x1 - x0))

        def y_of(value: float) -> int:
            return int(y1 - min(max(value, 0.0), 1.0) * (y1 - y0))

        g = self.snippet_s * self.fps
        for iv in self.events:  # spotted intervals as shaded bands
            a, b = x_of(iv.onset / g), x_of((iv.offset + 1) / g)
            if b < x0 or a > x1:
                continue
            colour = self._COLOURS[iv.type.value]
            cv2.rectangle(canvas, (max(a, x0), y0), (min(b, x1), y1), tuple(c // 3 for c in colour), -1)
        for thr in self.thresholds:
            cv2.line(canvas, (x0, y_of(thr)), (x1, y_of(thr)), (110, 110, 110), 1)
        series = {
            "me": [s.class_scores[0] for s in self.scores],
            "mae": [s.class_scores[1] for s in self.scores],
            "act": [s.actionness for s in self.scores],
        }
        indices = [s.index for s in self.scores]
        for name, values in series.items():
            for k in range(1, len(values)):
                v0, v1 = float(values[k - 1]), float(values[k])
                if math.isnan(v0) or math.isnan(v1):
                    continue
                p0, p1 = (x_of(indices[k - 1]), y_of(v0)), (x_of(indices[k]), y_of(v1))
                # actionness (what intervals are cut from) bold; the ME / MaE class split thin and dim
                colour = (
                    self._COLOURS[name] if name == "act" else tuple(c * 2 // 3 for c in self._COLOURS[name])
                )
                cv2.line(canvas, p0, p1, colour, 2 if name == "act" else 1)
        for k, name in enumerate(("me", "mae", "act")):
            cv2.putText(
                canvas,
                name,
                (x0 + 8 + 50 * k, height - 4),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                self._COLOURS[name],
                1,
            )
        return canvas

    def show(self, face: np.ndarray | None) -> bool:
        """Draw and show; False when the user closed the window or pressed q / Esc."""
        if not self._window:
            return True
        import cv2

        cv2.imshow(self.WINDOW, self.render(face))
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self._window:
            import cv2

            cv2.destroyWindow(self.WINDOW)
            self._window = False
