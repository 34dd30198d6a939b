"""The live runner: source -> capture -> pipeline -> scorer -> online spotter -> sinks.

    with LiveRunner("sim://", publisher=Publisher("cam0"), sinks=[ConsoleSink("cam0")]) as runner:
        report = runner.run()            # until the end of the stream or runner.stop()

The runner computes; its sinks (`engine.sinks`) deliver: every snippet, score, finalised interval,
status event and health update is handed to each sink in turn, the publisher first
(`PublisherSink`), then the console, a preview (`engine.preview`) or a caller's own.

`LiveRunner` wires the same objects offline evaluation uses, nothing re-implemented (DESIGN
invariant 1): `stream.pipeline.Pipeline` turns frames into snippets, the bundle's exported scorer
(`engine.runtime.open_backend` + `StreamScorer`) scores each snippet from the last W, and
`engine.online.OnlineSpotter` at the bundle's operating point calls `engine.proposals.propose`
and finalises intervals. Every snippet's scores, every finalised interval and every status event
(face found / lost, time gap, source events) go to the sinks; the `stream.publish.Publisher`'s
heartbeats carry the runner's health (processing fps, dropped frames, face present, capture-to-
score latency).

Time and latency: each snippet carries the monotonic capture time of its newest frame; an
interval's offset frame is the last frame of its last snippet, so ``capture_ns`` of an event is
the capture time of its offset frame and its latency (``latency_s`` in the event message, and
`engine.sinks.LiveEvent.latency_s`) is publish (hand-over) time minus that capture time.

Look-ahead: a bundle whose network sees L snippets past the one it scores (``Bundle.lookahead``,
``lookahead_s`` = L x hop seconds) has each snippet's score only when snippet + L arrives, so its
scores, and with them its events, come ``lookahead_s`` later. The runner accounts for it:
`max_latency_s` is the online spotter's worst case plus ``lookahead_s``, `LiveReport.lookahead_s`
and the ``started`` status event state it, and every latency is measured from the scored snippet's
own capture time (the capture-to-score latency of the heartbeats and the report, and each event's
``latency_s``), so the look-ahead is inside the numbers published. At the end of the stream the
last L scores are flushed (as the whole-sequence forward computes them) before the online spotter.

Robustness: a frame that is not a BGR image becomes a ``bad_frame`` source event; a processing
error on one frame is reported on the status topic and the stream goes on (the run gives up only
after `max_consecutive_errors` in a row); lost faces and time gaps are status events, and
cameras and RTSP feeds reconnect inside their `Source`. At the end of the stream, on `stop` (a
`threading.Event`, set by the SIGINT/SIGTERM handlers of ``run_live.py``) or after
``duration_s``, the online spotter is flushed (pending intervals are finalised and published),
the publisher is flushed, and `close` closes it, fsyncing the journal.

Modes for recordings (files, frame folders, ``sim://``): ``"fast"`` replays every frame as fast as
possible (replay policy, nothing dropped); ``"realtime"`` paces the frames at their media times on
the wall clock (`PacedSource`) under the live policy (keep newest, count drops), as a camera would
deliver them. Cameras and RTSP feeds are always live.

Pauses: a full garbage collection walks every tracked object with the GIL held. After start-up
(torch, MediaPipe, the model) that is about 240,000 objects and ~110 ms (docs/benchmarks.md),
long enough for the capture thread to miss a 30 fps frame. `freeze_startup_heap` collects once
and freezes what is alive, so later collections walk only what the stream allocates;
``run_live`` calls it just before the stream starts (a process embedding `LiveRunner` decides for
itself).

``run_live.py`` and ``mespot live`` are the command line (`engine.cli.live`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from engine.bundle import Bundle, load_bundle
from engine.online import OnlineSpotter, SpottedInterval
from engine.runtime import SnippetScore, StreamScorer, open_backend
from engine.runtime.base import Backend
from engine.sinks import CallbackSink, Health, LiveEvent, PublisherSink, Sink
from stream.capture import Capture, CaptureError, Policy
from stream.config import FeatureConfig
from stream.errors import ConfigError
from stream.frame import Frame, SourceEvent, SourceEventKind, StatusEvent, StatusKind
from stream.intervals import Interval
from stream.pipeline import Pipeline
from stream.publish import Publisher
from stream.ring import Snippet
from stream.sources import PacedSource, Source, open_source

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BUNDLE",
    "NEUTRAL_RESTART",
    "LiveEvent",
    "LiveReport",
    "LiveRunner",
    "Mode",
    "default_bundle",
    "open_live_source",
]

Mode = Literal["auto", "realtime", "fast"]
MODES: tuple[str, ...] = ("auto", "realtime", "fast")
#: The bundle shipped with mespot (a GIM model trained on SynthSpot-v1, with scorer.onnx).
DEFAULT_BUNDLE = ("assets", "default.mespot")
_IDLE_WAIT_S = 0.25  # how long the reader waits for a frame before refreshing health and stop
_HEALTH_EVERY_S = 0.5
#: The publisher command that makes a running spotter collect its neutral baseline afresh.
NEUTRAL_RESTART = "neutral_restart"
NEUTRAL_COLLECTING = "neutral baseline: collecting afresh"
NEUTRAL_NONE = "neutral baseline: the model uses none"


def default_bundle() -> Path:
    """The model bundle shipped with mespot (``engine/assets/default.mespot``)."""
    return Path(str(resources.files("engine").joinpath(*DEFAULT_BUNDLE)))


# ------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------


def freeze_startup_heap() -> float:
    """Collect once, then exempt every object alive now from later collections (`gc.freeze`).

    For a long-running live process, called when start-up is over: the modules, the model and the
    pipeline live as long as the process, and walking them in every full collection stalls the
    capture thread (see the module docstring). Objects frozen here are never collected, so call it
    once, after start-up and before the stream, not in a loop.

    Returns:
        Seconds the start-up collection took.
    """
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - t0


def _is_sim(spec: object) -> bool:
    return isinstance(spec, str) and spec.lower().startswith("sim://")


def open_live_source(
    spec: str | int | Path, mode: Mode = "auto", *, source_fps: float | None = None
) -> tuple[Source, Policy]:
    """Open a source for a live run and choose its capture policy.

    Args:
        spec: camera index, ``rtsp://`` URL, video file, frame folder or ``sim://...``.
        mode: ``"fast"``: recordings replayed as fast as possible, nothing dropped (``sim://``
            renders without pacing); ``"realtime"``: recordings paced at their frame rate under
            the live policy (``sim://`` paced on the wall clock); ``"auto"``: the source's own
            policy (live sources live, recordings replayed; ``sim://`` as its URL says).
        source_fps: the frame rate of a frame folder (its images carry no timestamps).

    Returns:
        (the open source, "live" or "replay").

    Raises:
        SourceError: the input cannot be opened (names it and the problem).
        ConfigError: ``mode="fast"`` on a camera or network stream, or an unknown mode.
    """
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    if _is_sim(spec):
        options = {} if mode == "auto" else {"realtime": mode == "realtime"}
        src = open_source(spec, fps=source_fps, **options)
        realtime = getattr(src, "realtime", True)
        return src, "live" if realtime else "replay"
    src = open_source(spec, fps=source_fps)
    if src.is_live:
        if mode == "fast":
            src.close()
            raise ConfigError(
                f"--fast applies to recordings (files, frame folders, sim://), not to the live source {spec}"
            )
        return src, "live"
    if mode == "realtime":
        return PacedSource(src), "live"
    return src, "replay"


def _frame_problem(frame: Frame) -> str | None:
    """Why a frame cannot go through the pipeline (not a non-empty BGR uint8 image), or None."""
    image = frame.image
    if not isinstance(image, np.ndarray):
        return f"frame {frame.index}: image is a {type(image).__name__}, not an array"
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        return f"frame {frame.index}: image of shape {image.shape}, expected (H, W, 3)"
    if image.dtype != np.uint8:
        return f"frame {frame.index}: image of dtype {image.dtype}, expected uint8"
    if not math.isfinite(frame.media_time_s):
        return f"frame {frame.index}: media time {frame.media_time_s}"
    return None


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------


@dataclass
class LiveReport:
    """What a run did (filled while it runs; final after `LiveRunner.run` returns).

    Attributes:
        source: the source's name.
        policy: the capture policy ("live" or "replay").
        backend: the scoring backend's name.
        bundle: the bundle folder.
        frames: source frames the runner received (frames dropped by the live policy not counted).
        canonical_frames: canonical frames processed.
        snippets: snippets scored.
        valid_snippets: snippets with features (a face in every frame).
        dropped: frames dropped by the live policy (plus frames a simulated camera skipped).
        source_skipped: of `dropped`, the frames the source itself lost because its reader came
            later than its buffers hold (``sim://``'s `skipped`); the rest were dropped from a full
            capture queue (processing too slow).
        bad_frames: source frames reported as bad (undecodable or malformed).
        errors: frames whose processing failed (reported, then skipped).
        status: status kind -> how many were published.
        events: finalised intervals (the newest 10,000).
        event_counts: type ("me", "mae") -> intervals published.
        wall_s: wall time of the run.
        media_s: media seconds of the stream processed.
        end_reason: "end of stream", "stopped", "duration" or "error".
        error: the error that ended the run, or None.
        score_latency_s: capture-to-score latency (seconds) of each of the newest 10,000 snippets:
            from the capture of its newest frame to its score (with a look-ahead, the score comes
            `lookahead_s` after the snippet, and this latency includes it).
        lookahead_s: the bundle's look-ahead in seconds: scores and events come this much later
            than with a strictly causal network (0.0: strictly causal).
    """

    source: str
    policy: str
    backend: str
    bundle: str
    frames: int = 0
    canonical_frames: int = 0
    snippets: int = 0
    valid_snippets: int = 0
    dropped: int = 0
    source_skipped: int = 0
    bad_frames: int = 0
    errors: int = 0
    status: dict[str, int] = field(default_factory=dict)
    events: collections.deque[LiveEvent] = field(default_factory=lambda: collections.deque(maxlen=10_000))
    event_counts: dict[str, int] = field(default_factory=lambda: {"me": 0, "mae": 0})
    wall_s: float = 0.0
    media_s: float = 0.0
    end_reason: str = ""
    error: str | None = None
    score_latency_s: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=10_000)
    )
    lookahead_s: float = 0.0

    def latencies(self, etype: str | None = None) -> list[float]:
        """Event latencies (seconds) of the kept events, of one type or all."""
        return [
            e.latency_s
            for e in self.events
            if e.latency_s is not None and (etype is None or e.interval.type.value == etype)
        ]

    def summary(self) -> str:
        """One line for people."""
        speed = self.media_s / self.wall_s if self.wall_s > 0 else 0.0
        events = ", ".join(f"{k} {v}" for k, v in self.event_counts.items())
        lat = self.latencies()
        lat_txt = f", event latency p50 {np.median(lat):.2f} s" if lat else ""
        skipped = f" ({self.source_skipped} skipped by the source)" if self.source_skipped else ""
        ahead = f" (look-ahead {self.lookahead_s:.2f} s included)" if self.lookahead_s and lat else ""
        return (
            f"{self.source}: {self.end_reason}; {self.media_s:.1f} s of stream in {self.wall_s:.1f} s "
            f"({speed:.2f}x real time), {self.frames} frames, {self.snippets} snippets "
            f"({self.valid_snippets} valid), dropped {self.dropped}{skipped}, bad {self.bad_frames}, "
            f"errors {self.errors}; events: {events}{lat_txt}{ahead}"
        )


# ------------------------------------------------------------------------------------------
# The runner
# ------------------------------------------------------------------------------------------


class LiveRunner:
    """Runs one stream end to end (module docstring); a context manager.

    Everything that can fail on bad input (the bundle, its feature configuration against the
    pipeline's, the backend, the publisher, the source) fails in the constructor, before a frame
    is read.

    Args:
        source: an open `Source`, or what `open_live_source` takes (camera index, URL, file,
            folder, ``sim://...``).
        bundle: a loaded bundle or its folder; None: the default bundle (`default_bundle`).
        mode: for a source given by name, "auto", "realtime" or "fast" (`open_live_source`).
        policy: the capture policy for an open `Source` (None: live for live sources, else replay).
        backend: "auto", "tensorrt", "onnxruntime" or "torch".
        backend_options: extra options for the backend (window, threads, device, ...).
        feature_config: the pipeline's feature configuration; None: the bundle's. A configuration
            the bundle was not trained on is refused (`engine.bundle.FeatureMismatchError`).
        publisher: where to publish (the runner owns it: `close` closes it); None: publish
            nothing (events are still in the report and handed to the sinks). It becomes the first
            sink (`engine.sinks.PublisherSink`) and serves the runner's commands.
        sinks: where else each snippet, score, event, status and health goes, in this order
            after the publisher (`engine.sinks.Sink`: the console, a preview, ...); the runner
            owns them (`close` closes them).
        stop: set it (from any thread or a signal handler) to stop the run; the runner sets it
            too when the run ends. None: a fresh event (`stop` method).
        duration_s: stop after this many seconds of stream (media time); None: no limit.
        source_fps: frame rate of a frame folder (a source given by name).
        threaded: run face tracking in a worker thread beside the rest (`Pipeline.run`).
        queue_size: the capture queue's size.
        on_event, on_status, on_score, on_snippet: plain functions called with each `LiveEvent`,
            `StatusEvent`, `SnippetScore` and `Snippet` (before it is scored), as a last sink
            (`engine.sinks.CallbackSink`), on the runner's thread.
        max_consecutive_errors: processing errors in a row after which the run gives up.
    """

    def __init__(
        self,
        source: Source | str | int | Path,
        bundle: Bundle | str | Path | None = None,
        *,
        mode: Mode = "auto",
        policy: Policy | None = None,
        backend: str = "auto",
        backend_options: dict[str, Any] | None = None,
        feature_config: FeatureConfig | None = None,
        publisher: Publisher | None = None,
        sinks: Sequence[Sink] = (),
        stop: threading.Event | None = None,
        duration_s: float | None = None,
        source_fps: float | None = None,
        threaded: bool = True,
        queue_size: int = 64,
        on_event: Callable[[LiveEvent], None] | None = None,
        on_status: Callable[[StatusEvent], None] | None = None,
        on_score: Callable[[SnippetScore], None] | None = None,
        on_snippet: Callable[[Snippet], None] | None = None,
        max_consecutive_errors: int = 25,
    ) -> None:
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
            raise ConfigError(f"duration_s={duration_s!r}: must be > 0 seconds (None: no limit)")
        if max_consecutive_errors < 1:
            raise ConfigError(f"max_consecutive_errors={max_consecutive_errors}: must be >= 1")
        self.publisher = publisher
        callbacks = CallbackSink(
            on_snippet=on_snippet, on_score=on_score, on_event=on_event, on_status=on_status
        )
        self.sinks: list[Sink] = [
            *([PublisherSink(publisher)] if publisher is not None else []),
            *sinks,
            *([callbacks] if any((on_snippet, on_score, on_event, on_status)) else []),
        ]
        self.stop_event = stop if stop is not None else threading.Event()
        self.duration_s = duration_s
        self.threaded = threaded
        self.queue_size = queue_size
        self.max_consecutive_errors = max_consecutive_errors
        self.backend: Backend | None = None
        self.pipeline: Pipeline | None = None
        self.source: Source | None = None
        self._capture: Capture | None = None
        self._ran = False
        self._finished = False
        try:
            self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle or default_bundle())
            self.feature_config = feature_config or self.bundle.feature_config
            # The pipeline runs this configuration: it must be the bundle's (DESIGN invariant 4).
            self.bundle.check_features(self.feature_config)
            self.backend = open_backend(self.bundle, backend, **(backend_options or {}))
            self.scorer = StreamScorer(self.backend)
            self.fps = self.feature_config.fps
            self.snippet_s = self.feature_config.snippet_seconds
            self.proposal_config = self.bundle.proposal_config()
            self.spotter = OnlineSpotter(self.proposal_config, self.snippet_s, self.fps)
            self.pipeline = Pipeline(self.feature_config)
            if isinstance(source, Source):
                self.source = source
                self.policy: Policy = policy or ("live" if source.is_live else "replay")
            else:
                self.source, self.policy = open_live_source(source, mode, source_fps=source_fps)
                if policy is not None:
                    self.policy = policy
        except BaseException:
            self.close()
            raise
        self.report = LiveReport(
            source=self.source.name,
            policy=self.policy,
            backend=self.backend.name,
            bundle=str(self.bundle.path),
            lookahead_s=self.lookahead_s,
        )
        self._health_lock = threading.Lock()
        self._health_mark: tuple[int, int] | None = None  # (monotonic ns, canonical frames)
        self._health: Health | None = None  # the newest handed to the sinks
        self._start_ns = 0
        self._first_media: float | None = None
        self._last_media = 0.0
        self._consecutive_errors = 0
        self._neutral_restart = threading.Event()
        if self.publisher is not None:
            self.publisher.on_command(NEUTRAL_RESTART, self.restart_neutral)

    # -- public API -------------------------------------------------------------------------

    @property
    def lookahead_s(self) -> float:
        """The bundle's look-ahead in seconds: each score comes this much after its snippet."""
        return self.bundle.lookahead_s

    @property
    def max_latency_s(self) -> float:
        """Worst-case delay after an interval's last snippet before it is published: the network's
        look-ahead plus the online spotter's finalisation delay."""
        return self.lookahead_s + self.spotter.max_latency_s

    def add_sink(self, sink: Sink) -> None:
        """Hand everything from now on to one more sink (after the others); before `run`. The
        runner owns it (`close` closes it).

        Raises:
            RuntimeError: the run has started.
        """
        if self._ran:
            raise RuntimeError("LiveRunner.add_sink: add sinks before run()")
        self.sinks.append(sink)

    def stop(self) -> None:
        """Ask the run to stop (any thread); it flushes and returns promptly."""
        self.stop_event.set()

    @property
    def uses_neutral(self) -> bool:
        """Whether the bundle's network normalises by a per-person neutral baseline."""
        return self.scorer.neutral is not None

    def restart_neutral(self) -> str:
        """Collect the per-person neutral baseline afresh (a new person); any thread, never blocks.

        Only sets a flag: the scoring thread restarts the collector before it scores the next
        snippet and publishes a ``source`` status event saying so. This is the publisher's
        ``neutral_restart`` command.

        Returns:
            What happens (the command reply's detail).
        """
        self._neutral_restart.set()
        if self.uses_neutral:
            return "neutral baseline: collecting afresh from the next snippet"
        return "neutral baseline: the model uses none (nothing to restart)"

    def run(self) -> LiveReport:
        """Process the stream until it ends, `stop` is called or ``duration_s`` is reached.

        Returns:
            The report. ``end_reason`` is "error" (and ``error`` set) when the source failed or
            processing failed `max_consecutive_errors` times in a row; everything spotted before
            was published.

        Raises:
            RuntimeError: run called twice.
        """
        if self._ran:
            raise RuntimeError("LiveRunner.run: a runner runs once (make a new one)")
        self._ran = True
        assert self.source is not None and self.pipeline is not None
        report = self.report
        self._start_ns = time.monotonic_ns()
        ahead = f", look-ahead {report.lookahead_s:.3g} s" if report.lookahead_s else ""
        self._publish_status(
            "source",
            detail=f"started: {self.source.name} ({self.policy}, backend {report.backend}, "
            f"bundle {Path(report.bundle).name}{ahead})",
        )
        self._capture = capture = Capture(self.source, policy=self.policy, queue_size=self.queue_size)
        items = self._items(capture)
        try:
            while True:
                outputs = self.pipeline.run(items, threaded=self.threaded)
                try:
                    for out in outputs:
                        if isinstance(out, Snippet):
                            self._on_snippet(out)
                        else:
                            self._on_status(out)
                    break
                except CaptureError as exc:
                    report.end_reason, report.error = "error", str(exc)
                    log.error("%s", exc)
                    self._publish_status("source", detail=f"error: {exc}")
                    break
                except Exception as exc:
                    # One frame's processing failed: report it and go on with the next frames.
                    report.errors += 1
                    self._consecutive_errors += 1
                    log.error("processing failed (%d in a row): %r", self._consecutive_errors, exc)
                    self._publish_status("source", detail=f"bad_frame: processing failed: {exc!r}")
                    if self._consecutive_errors >= self.max_consecutive_errors:
                        report.end_reason = "error"
                        report.error = f"{self._consecutive_errors} processing errors in a row; last: {exc!r}"
                        self._publish_status("source", detail=f"error: {report.error}")
                        break
                finally:
                    outputs.close()  # stops and joins the pipeline's worker before `items` is reused
        finally:
            with contextlib.suppress(ValueError):  # still running in a worker that did not stop
                items.close()
            capture.close()
            self._finish()
        return report

    def close(self) -> None:
        """Release everything: source, pipeline, backend, and the publisher (fsyncing its journal)."""
        if self._ran and not self._finished:
            self._finish()
        if self._capture is not None:
            self._capture.close()
        if self.source is not None:
            self.source.close()
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None
        if self.backend is not None:
            self.backend.close()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # one sink's failure must not keep the others open
                log.error("closing sink %r failed: %r", sink, exc)

    def __enter__(self) -> LiveRunner:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def truth(self) -> list[Interval] | None:
        """A ``sim://`` source's ground truth so far, in canonical frames (None for other sources)."""
        src = self.source.inner if isinstance(self.source, PacedSource) else self.source
        ground_truth = getattr(src, "ground_truth", None)
        if ground_truth is None:
            return None
        out = []
        for t in ground_truth():
            iv = t.interval
            if abs(src.nominal_fps - self.fps) > 1e-9:  # to the canonical clock
                iv = dataclasses.replace(
                    iv, onset=round(t.onset_s * self.fps), offset=round(t.offset_s * self.fps), apex=None
                )
            out.append(iv)
        return out

    # -- the reader side (the pipeline's worker thread when threaded) -------------------------

    def _items(self, capture: Capture) -> Iterator[Frame | SourceEvent]:
        """Items from the capture; bad frames become events; stop and duration end the stream."""
        assert self.source is not None
        name = self.source.name
        while True:
            if self.stop_event.is_set():
                yield SourceEvent(SourceEventKind.END, name, time.monotonic_ns(), "stopped")
                self.report.end_reason = self.report.end_reason or "stopped"
                return
            try:
                item = capture.get(timeout=_IDLE_WAIT_S)
            except TimeoutError:
                self._update_health(time.monotonic_ns())
                continue
            if item is None:  # closed under us
                self.report.end_reason = self.report.end_reason or "stopped"
                return
            if isinstance(item, Frame):
                problem = _frame_problem(item)
                if problem is not None:
                    self.report.frames += 1
                    self.report.bad_frames += 1
                    yield SourceEvent(SourceEventKind.BAD_FRAME, name, item.capture_ns, problem)
                    continue
                if self._first_media is None:
                    self._first_media = item.media_time_s
                media = item.media_time_s - self._first_media
                if self.duration_s is not None and media >= self.duration_s:
                    self.report.end_reason = "duration"
                    yield SourceEvent(
                        SourceEventKind.END, name, time.monotonic_ns(), f"duration of {self.duration_s:g} s"
                    )
                    return
                self.report.frames += 1
                self._last_media = max(self._last_media, media)
                yield item
                continue
            if item.kind is SourceEventKind.BAD_FRAME:
                self.report.bad_frames += 1
            yield item
            if item.kind is SourceEventKind.END:
                self.report.end_reason = self.report.end_reason or "end of stream"
                return

    # -- the consumer side ------------------------------------------------------------------

    def _on_snippet(self, snippet: Snippet) -> None:
        for sink in self.sinks:
            sink.snippet(snippet)
        if self._neutral_restart.is_set():
            self._neutral_restart.clear()
            self.scorer.restart_neutral()
            detail = NEUTRAL_COLLECTING if self.uses_neutral else NEUTRAL_NONE
            log.info("snippet %d: %s", snippet.index, detail)
            self._publish_status("source", detail=detail)
        # Snippets lost to a processing error are scored as invalid, as gaps are.
        gap = self.scorer.fill_gap(
            snippet.index, self.snippet_s, self.feature_config.window_frames, snippet.capture_ns
        )
        for score in gap:
            self._on_score(score)
        self._on_score(self.scorer.push(snippet))
        self._consecutive_errors = 0
        self._update_health(time.monotonic_ns())

    def _on_score(self, score: SnippetScore | None) -> None:
        """Publish one snippet's score and feed it to the online spotter (None: no score yet, the
        look-ahead of the first snippets is not complete)."""
        if score is None:
            return
        now = time.monotonic_ns()
        report = self.report
        report.snippets += 1
        report.valid_snippets += int(score.valid)
        capture_ns = score.capture_ns
        if capture_ns is not None:  # the scored snippet's capture: the look-ahead counts
            report.score_latency_s.append((now - capture_ns) / 1e9)
        for sink in self.sinks:
            sink.score(score)
        for spotted in self.spotter.push(
            score.index, score.class_scores, score.actionness, capture_ns=capture_ns
        ):
            self._publish_event(spotted)

    def _on_status(self, event: StatusEvent) -> None:
        source_event = event.source_event
        if source_event is not None and source_event.kind is SourceEventKind.END:
            self._flush_spotter()  # the intervals still pending come before the end of the stream
        kind = event.kind.value
        self.report.status[kind] = self.report.status.get(kind, 0) + 1
        for sink in self.sinks:
            sink.status(event)

    def _publish_status(self, kind: str, *, detail: str) -> None:
        """The runner's own status (start, errors, neutral baseline), not tied to a frame."""
        self._on_status(StatusEvent(StatusKind(kind), -1, math.nan, time.monotonic_ns(), detail))

    def _publish_event(self, spotted: SpottedInterval, *, flushed: bool = False) -> None:
        now = time.monotonic_ns()
        latency = None if spotted.capture_ns is None else (now - spotted.capture_ns) / 1e9
        event = LiveEvent(spotted, self.fps, latency, flushed)
        self.report.events.append(event)
        etype = spotted.interval.type.value
        self.report.event_counts[etype] = self.report.event_counts.get(etype, 0) + 1
        for sink in self.sinks:
            sink.event(event)

    def _flush_spotter(self) -> None:
        """Score the last look-ahead snippets, then finalise and publish every pending interval (a
        second call finds none)."""
        for score in self.scorer.flush():
            self._on_score(score)
        for spotted in self.spotter.flush():
            self._publish_event(spotted, flushed=True)

    def _count_drops(self, capture: Capture) -> None:
        skipped = int(getattr(self.source, "skipped", 0))  # a simulated camera's late reads
        self.report.source_skipped = skipped
        self.report.dropped = capture.dropped + skipped

    def _update_health(self, now_ns: int) -> None:
        """Refresh what heartbeats report (at most every 0.5 s); any thread."""
        pipe, capture = self.pipeline, self._capture
        if pipe is None or capture is None:
            return
        with self._health_lock:
            frames = pipe.times.frames
            mark = self._health_mark
            if mark is not None and now_ns - mark[0] < _HEALTH_EVERY_S * 1e9:
                return
            self._health_mark = (now_ns, frames)
            fps = None if mark is None else (frames - mark[1]) / ((now_ns - mark[0]) / 1e9)
            self._count_drops(capture)
            self.report.canonical_frames = frames
            self._health = health = Health(
                fps=fps,
                drops=self.report.dropped,
                face=None if frames == 0 else pipe.face_present,
                latency_s=self.report.score_latency_s[-1] if self.report.score_latency_s else None,
            )
            for sink in self.sinks:
                sink.health(health)

    def _finish(self) -> None:
        """End of stream: flush the online spotter, publish what it finalises, flush the publisher."""
        if self._finished:
            return
        self._finished = True
        report = self.report
        try:
            self._flush_spotter()
        finally:
            report.wall_s = (time.monotonic_ns() - self._start_ns) / 1e9
            report.media_s = self._last_media + (1.0 / self.fps if self._first_media is not None else 0.0)
            if self._capture is not None:
                self._count_drops(self._capture)
            if self.pipeline is not None:
                report.canonical_frames = self.pipeline.times.frames
            report.end_reason = report.end_reason or "end of stream"
            last = self._health or Health(fps=None, drops=0, face=None, latency_s=None)
            final = dataclasses.replace(last, drops=report.dropped)
            for sink in self.sinks:
                try:
                    sink.health(final)
                    sink.end()
                except Exception as exc:  # the stream is over: one sink's failure must not hide the rest
                    log.error("sink %r failed at the end of the stream: %r", sink, exc)
