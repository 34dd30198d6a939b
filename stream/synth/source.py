"""``sim://``: a live source of synthetic face video that publishes its own ground truth.

    sim://?seed=3&face=/path/img.jpg&fps=30&seconds=60&realtime=1

Options (in the URL's query, or as keyword arguments of `open_source`, which win over the URL):

    seed        timeline and subject seed (default 0)
    face        face photo (a file, ``skimage:astronaut`` or ``bundled:single_face``, the default)
    subject     which variant of that photo (shape, tone, light, framing; odd ones mirrored; 0)
    fps         frame rate (default: open_source's fps, else 30)
    seconds     length; absent = endless
    realtime    1 (default): frames paced on the wall clock like a camera; 0: as fast as
                rendering goes
    buffers     frames the camera holds for a reader that comes late (default 4, OpenCV's
                V4L2 default): a reader late by more than that loses the older frames, counted
                in `skipped`; 1 keeps only the newest frame
    width, height   frame size (default 640 x 480)
    density     expressions per 100 s (default 3.5, as CAS(ME)^2)
    me_share    fraction of MEs (default 1/3)
    distractors 0 turns off blinks, head motion, lighting changes, drift and noise (default 1)

`SimSource.ground_truth` lists the expressions whose offset has been shown so far (with times),
so a live test can compare what a spotter reported with the truth.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from stream.errors import ConfigError, SourceError
from stream.frame import Frame, SourceEvent, SourceEventKind
from stream.intervals import Interval
from stream.sources import SOURCE_SCHEMES, Source
from stream.synth.identity import IdentitySpec, LandmarkDetector, load_face, make_identity
from stream.synth.render import Renderer
from stream.synth.timeline import Expression, Timeline, TimelineConfig

log = logging.getLogger(__name__)

DEFAULT_BUFFERS = 4  # frames a camera driver holds for its reader (OpenCV's V4L2 default)

_BOOL = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}
_OPTIONS: dict[str, type] = {
    "seed": int,
    "face": str,
    "subject": int,
    "fps": float,
    "seconds": float,
    "realtime": bool,
    "width": int,
    "height": int,
    "density": float,
    "me_share": float,
    "distractors": bool,
    "buffers": int,
}


@dataclass(frozen=True, slots=True)
class TruthEvent:
    """One ground-truth expression of a simulated stream.

    Attributes:
        interval: frames (inclusive) and type, as the spotter's proposals are.
        onset_s: media time of the onset frame.
        apex_s: media time of the apex frame.
        offset_s: media time of the offset frame.
        aus: its action units ("AU6+AU12", "R14").
        amplitude: peak displacement, px@100IOD.
    """

    interval: Interval
    onset_s: float
    apex_s: float
    offset_s: float
    aus: str
    amplitude: float


def _parse(spec: str) -> dict[str, Any]:
    parts = urlsplit(spec)
    if parts.scheme.lower() != "sim":
        raise SourceError(spec, "not a sim:// URL")
    if parts.netloc or parts.path.strip("/"):
        raise SourceError(spec, "sim:// takes its options in the query: sim://?seed=3&seconds=60")
    out: dict[str, Any] = {}
    for key, raw in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in _OPTIONS:
            raise ConfigError(f"{spec}: unknown sim:// option {key!r}; valid: {', '.join(sorted(_OPTIONS))}")
        kind = _OPTIONS[key]
        try:
            if kind is bool:
                out[key] = _BOOL[raw.lower()]
            else:
                out[key] = kind(raw)
        except (KeyError, ValueError):
            raise ConfigError(f"{spec}: sim:// option {key}={raw!r} is not a valid {kind.__name__}") from None
    return out


@SOURCE_SCHEMES.register("sim")
class SimSource(Source):
    """Synthetic face video, rendered frame by frame from a seeded timeline.

    Raises (from the constructor):
        SourceNotFound / SourceCorrupt / FaceNotFound: the face photo is missing, unreadable or
            holds no face.
        ConfigError: an unknown option or an out-of-range value.
    """

    is_live = True

    def __init__(
        self,
        spec: str = "sim://",
        *,
        fps: float | None = None,
        seed: int | None = None,
        face: str | None = None,
        subject: int | None = None,
        seconds: float | None = None,
        realtime: bool | None = None,
        width: int | None = None,
        height: int | None = None,
        density: float | None = None,
        me_share: float | None = None,
        distractors: bool | None = None,
        buffers: int | None = None,
    ) -> None:
        """Build the subject and the timeline (MediaPipe runs once here).

        Args:
            spec: the ``sim://`` URL with its options.
            fps: frame rate when the URL gives none (open_source passes its own fps here).
            seed, face, subject, seconds, realtime, width, height, density, me_share,
                distractors, buffers: override the URL's options (see the module docstring).
        """
        opts = _parse(spec)
        given = {
            "seed": seed,
            "face": face,
            "subject": subject,
            "seconds": seconds,
            "realtime": realtime,
            "width": width,
            "height": height,
            "density": density,
            "me_share": me_share,
            "distractors": distractors,
            "buffers": buffers,
        }
        opts.update({k: v for k, v in given.items() if v is not None})
        rate = opts.get("fps", fps if fps is not None else 30.0)
        self.seed = int(opts.get("seed", 0))
        self.realtime = bool(opts.get("realtime", True))
        self.seconds = opts.get("seconds")
        self.buffers = int(opts.get("buffers", DEFAULT_BUFFERS))
        if self.buffers < 1:
            raise ConfigError(f"{spec}: buffers must be >= 1 (the camera holds at least its newest frame)")
        if self.seed < 0 or opts.get("subject", 0) < 0:
            raise ConfigError(f"{spec}: seed and subject must be >= 0")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ConfigError(f"{spec}: seconds must be > 0 (leave it out for an endless stream)")
        config = TimelineConfig(
            fps=float(rate),
            density=float(opts.get("density", TimelineConfig.density)),
            me_share=float(opts.get("me_share", TimelineConfig.me_share)),
            distractors=bool(opts.get("distractors", True)),
        )
        super().__init__(spec, config.fps)
        base = load_face(opts.get("face", "bundled:single_face"))
        variant = int(opts.get("subject", 0))
        identity_spec = IdentitySpec.draw(np.random.default_rng([self.seed, 7, variant]), base.name, variant)
        size = (int(opts.get("width", 640)), int(opts.get("height", 480)))
        with LandmarkDetector() as detector:
            self.identity = make_identity(f"sim{variant}", base, identity_spec, detector, size)
        self.timeline = (
            Timeline.generate(config, self.seed, self.seconds)
            if self.seconds is not None
            else Timeline.endless(config, self.seed)
        )
        self._renderer: Renderer | None = Renderer.for_timeline(self.identity, self.timeline)
        self._lock = threading.Lock()
        self._next_index = 0
        self._shown = -1  # last frame index handed out
        self._t0_ns: int | None = None
        self.skipped = 0  # frames lost because the reader came later than `buffers` frames
        log.info(
            "%s: subject from %s (IOD %.0f px), %s, %g fps",
            spec,
            base.source,
            self.identity.iod,
            f"{self.seconds:g} s" if self.seconds else "endless",
            config.fps,
        )

    # -- ground truth ------------------------------------------------------------------------
    def ground_truth(self, *, include_pending: bool = False) -> list[TruthEvent]:
        """Expressions whose offset frame has been shown (all generated ones with include_pending)."""
        with self._lock:
            shown = self._shown
            expressions: list[Expression] = self.timeline.expressions
        fps = self.timeline.fps
        out = []
        for e in expressions:
            env = e.envelope
            if include_pending or env.offset <= shown:
                out.append(
                    TruthEvent(
                        e.interval(), env.onset / fps, env.apex / fps, env.offset / fps, e.label, e.amplitude
                    )
                )
        return sorted(out, key=lambda x: x.interval.onset)

    @property
    def frames_shown(self) -> int:
        """Index of the last frame handed out + 1."""
        return self._shown + 1

    # -- Source ---------------------------------------------------------------------------------
    def _next(self) -> Frame | SourceEvent:
        renderer = self._renderer
        if renderer is None:
            return self._event(SourceEventKind.END, "closed")
        fps = self.timeline.fps
        n = self._next_index
        captured_ns = None
        if self.realtime:
            # Frame k is exposed at t0 + k / fps whether or not anyone reads it; like a camera
            # driver, the source holds the newest `buffers` exposed frames for a late reader.
            now = time.monotonic_ns()
            if self._t0_ns is None:
                self._t0_ns = now
            due = self._t0_ns + round(n * 1e9 / fps)
            if due > now:
                # an Event, not sleep(): close() wakes this wait at once
                if self._closed.wait((due - now) / 1e9):
                    return self._event(SourceEventKind.END, "closed")
            else:
                newest = int((now - self._t0_ns) * fps // 1e9)
                oldest_held = newest - self.buffers + 1
                if oldest_held > n:  # overwritten before the reader came
                    self.skipped += oldest_held - n
                    n = oldest_held
            captured_ns = self._t0_ns + round(n * 1e9 / fps)
        if self.timeline.n_frames is not None and n >= self.timeline.n_frames:
            return self._event(SourceEventKind.END, f"end of the {self.seconds:g} s simulation")
        image = renderer.render(self.timeline.state(n))
        with self._lock:
            self._shown = n
        self._next_index = n + 1
        if captured_ns is None:
            captured_ns = time.monotonic_ns()
        return Frame(index=n, media_time_s=n / fps, capture_ns=captured_ns, image=image, source_index=n)

    def _release(self) -> None:
        self._renderer = None
