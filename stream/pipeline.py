"""The one pipeline: any source -> canonical frames -> face -> alignment -> flow -> features -> snippets.

Live runs and offline extraction use the same `Pipeline.push`; `extract` is only a loop over
`stream_snippets`, never a second implementation (DESIGN invariant 1, kept by a test).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stream.align import AlignedFace, Aligner
from stream.config import FeatureConfig
from stream.face import FaceState, FaceTracker
from stream.features import ROI_SETS, FrameFeatures, RegionFeaturizer, feature_names
from stream.flow import FLOWS, MultiScaleFlow
from stream.frame import Frame, SourceEvent, StatusEvent, StatusKind
from stream.resample import Resampler, TimeGap
from stream.ring import Snippet, SnippetAssembler

log = logging.getLogger(__name__)


Output = Snippet | StatusEvent


@dataclass(frozen=True, slots=True)
class _Observed:
    """A canonical frame after the first half (face tracking)."""

    frame: Frame
    landmarks: np.ndarray | None  # (468, 2) image pixels, None without a face
    repeat: bool  # same source frame as the previous canonical frame
    events: list[StatusEvent]


@dataclass(frozen=True, slots=True)
class _Gap:
    gap: TimeGap
    capture_ns: int


_Staged = _Observed | _Gap | StatusEvent


@dataclass
class StageTimes:
    """Accumulated wall time per stage (ns) and counts, for benchmarks and the status topic."""

    ns: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("resample", "face", "align", "flow", "features"), 0)
    )
    source_frames: int = 0
    frames: int = 0

    def per_frame_ms(self) -> dict[str, float]:
        n = max(self.frames, 1)
        return {k: v / n / 1e6 for k, v in self.ns.items()}


class Pipeline:
    """Stateful frame -> snippet processor. Feed it with `push`; it never blocks.

    Args:
        config: the feature configuration.
        flow_options: extra keyword arguments for the flow estimator (e.g. device for tvl1);
            they must not change the features' meaning.
    """

    def __init__(self, config: FeatureConfig | None = None, **flow_options: object) -> None:
        self.config = config = config or FeatureConfig()
        self.resampler = Resampler(config.fps, max_hold_s=config.max_hold_s)
        self.tracker = FaceTracker(mesh_every=config.mesh_every)
        self.aligner = Aligner(config.crop_size, deadband_px=config.align_deadband_px)
        self.flow = MultiScaleFlow(
            FLOWS.build(config.flow, **flow_options), config.flow_ks, compose=config.flow_compose
        )
        self.motion_names, self.geometry_names = feature_names(ROI_SETS.build(config.roi_set), config)
        self.featurizer = RegionFeaturizer.from_config(config)
        self.assembler = SnippetAssembler(
            config.hop_frames,
            config.window_frames,
            config.fps,
            len(self.motion_names),
            len(self.geometry_names),
        )
        self.times = StageTimes()
        # first-half state (the worker thread's when threaded)
        self._last_source_index: int | None = None
        self._last_landmarks: np.ndarray | None = None
        self._last_index = -1
        # second-half state
        self._last_aligned: AlignedFace | None = None

    @property
    def face_present(self) -> bool:
        """Whether the face tracker sees a face now."""
        return self.tracker.state is FaceState.PRESENT

    @property
    def last_aligned(self) -> AlignedFace | None:
        """The last aligned face (None without a face); the featurizing thread's state, for a
        preview that draws it."""
        return self._last_aligned

    def push(self, item: Frame | SourceEvent) -> list[Output]:
        """Feed one source frame or source event; returns the outputs it completed."""
        return [out for staged in self._observe(item) for out in self._featurize(staged)]

    def run(self, items: Iterable[Frame | SourceEvent], *, threaded: bool = True) -> Iterator[Output]:
        """Process a whole stream of items, yielding outputs as they complete.

        With `threaded`, resampling and face tracking (the first half) run in a worker thread
        while alignment, flow and features (the second half) run in the caller's, overlapping on
        two cores.
        Both halves are the same methods `push` calls, in the same order, so the outputs are
        identical to the unthreaded run.

        While it runs threaded, OpenCV's own worker pool is held at one thread (and restored
        after): the two halves already fill two cores, and splitting a 128 px crop's flow or a
        frame's colour conversion over a pool only adds hand-offs between them (docs/benchmarks.md,
        "Extraction: less held in Python, one OpenCV thread"). OpenCV's results do not depend on
        its thread count.
        """
        if not threaded:
            for item in items:
                yield from self.push(item)
            return
        opencv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            yield from self._run_threaded(items)
        finally:
            cv2.setNumThreads(opencv_threads)

    def _run_threaded(self, items: Iterable[Frame | SourceEvent]) -> Iterator[Output]:
        handoff: queue.Queue = queue.Queue(maxsize=16)
        stop = threading.Event()
        done = object()

        def hand_over(x: object) -> bool:
            """Queue x for the consumer; False once the consumer has stopped (never blocks it)."""
            while not stop.is_set():
                try:
                    handoff.put(x, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def first_half() -> None:
            try:
                for item in items:
                    for staged in self._observe(item):
                        if not hand_over(staged):
                            return
                hand_over(done)
            except BaseException as exc:  # handed to the consumer, re-raised there
                hand_over(exc)

        worker = threading.Thread(target=first_half, name="mespot-face", daemon=True)
        worker.start()
        try:
            while (staged := handoff.get()) is not done:
                if isinstance(staged, BaseException):
                    raise staged
                yield from self._featurize(staged)
        finally:
            stop.set()
            worker.join(timeout=5)

    def _observe(self, item: Frame | SourceEvent) -> Iterator[_Staged]:
        """First half: resample and track the face. Yields what the second half needs."""
        if isinstance(item, SourceEvent):
            yield StatusEvent(
                StatusKind.SOURCE,
                self._last_index,
                self._last_index / self.config.fps,
                item.capture_ns,
                f"{item.kind.value}: {item.detail}".rstrip(": "),
                item,
            )
            return
        self.times.source_frames += 1
        t0 = time.monotonic_ns()
        settled = list(self.resampler.push(item))
        self.times.ns["resample"] += time.monotonic_ns() - t0
        for x in settled:
            if isinstance(x, TimeGap):
                self._last_source_index = None
                yield _Gap(x, item.capture_ns)
                continue
            self._last_index = x.index
            events: list[StatusEvent] = []
            t0 = time.monotonic_ns()
            repeat = x.source_index == self._last_source_index
            if not repeat:  # a repeated source frame (upsampling) shows the same face: track once
                obs = self.tracker.process(x)
                if obs.changed:
                    kind = StatusKind.FACE_FOUND if obs.present else StatusKind.FACE_LOST
                    events.append(StatusEvent(kind, x.index, x.media_time_s, x.capture_ns))
                self._last_source_index, self._last_landmarks = x.source_index, obs.landmarks
            self.times.ns["face"] += time.monotonic_ns() - t0
            yield _Observed(x, self._last_landmarks, repeat, events)

    def _featurize(self, staged: _Staged) -> list[Output]:
        """Second half: alignment, skip-k flow, region features, snippet assembly."""
        if isinstance(staged, StatusEvent):
            return [staged]
        if isinstance(staged, _Gap):
            # Flow and the neutral face must not span a hole in time.
            gap = staged.gap
            self.aligner.reset()
            self.flow.reset()
            self.featurizer.reset()
            log.info("time gap of %.2f s at frame %d", gap.seconds, gap.first_index)
            return [
                StatusEvent(
                    StatusKind.TIME_GAP,
                    gap.first_index,
                    gap.first_index / self.config.fps,
                    staged.capture_ns,
                    f"{gap.count} frames ({gap.seconds:.2f} s) without source frames",
                )
            ]
        frame = staged.frame
        out: list[Output] = list(staged.events)
        self.times.frames += 1
        ta = time.monotonic_ns()
        if staged.landmarks is None:
            aligned = None
        elif staged.repeat and self._last_aligned is not None:
            aligned = self._last_aligned
        else:
            aligned = self.aligner(frame.image, staged.landmarks)
        self._last_aligned = aligned
        t0 = time.monotonic_ns()
        self.times.ns["align"] += t0 - ta
        if aligned is None:
            self.aligner.reset()
            self.flow.reset()
            self.featurizer.reset()
            t1 = t0
            feats = FrameFeatures(frame.index, None, None)
        else:
            flows = self.flow.push(aligned.crop)
            t1 = time.monotonic_ns()
            feats = self.featurizer.push(frame.index, aligned, flows)
        for snippet in self.assembler.push(feats, frame.capture_ns):
            out.append(snippet)
        self.times.ns["flow"] += t1 - t0
        self.times.ns["features"] += time.monotonic_ns() - t1
        return out

    def close(self) -> None:
        self.tracker.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream_snippets(
    source: str | int | Path,
    config: FeatureConfig | None = None,
    *,
    policy: str | None = None,
    source_fps: float | None = None,
    **flow_options: object,
) -> Iterator[Output]:
    """Run any source through the pipeline, yielding snippets and status events as they complete.

    Args:
        source: camera index, rtsp:// URL, video file or frame folder.
        config: feature configuration (defaults if None).
        policy: capture policy, "live" (keep newest, count drops) or "replay" (never drop);
            by default live sources are live and files are replayed.
        source_fps: frame rate of a frame folder (its images carry no timestamps).
    """
    from stream.capture import Capture
    from stream.sources import open_source

    with (
        open_source(source, fps=source_fps) as src,
        Capture(src, policy=policy) as capture,
        Pipeline(config, **flow_options) as pipe,
    ):
        yield from pipe.run(capture)


@dataclass
class Extraction:
    """Snippet features of one whole input, as arrays (the offline view of the same stream).

    Attributes:
        motion: (T, 3 * Dm) float32.
        geometry: (T, 3 * Dg) float32.
        valid: (T,) bool.
        start_s: (T,) float64 snippet start times.
        events: status events (face found / lost, gaps, source events) in order.
        config: the feature configuration.
    """

    motion: np.ndarray
    geometry: np.ndarray
    valid: np.ndarray
    start_s: np.ndarray
    events: list[StatusEvent]
    config: FeatureConfig

    @classmethod
    def collect(cls, outputs: Iterator[Output], config: FeatureConfig) -> Extraction:
        snippets: list[Snippet] = []
        events: list[StatusEvent] = []
        for o in outputs:
            (snippets if isinstance(o, Snippet) else events).append(o)
        roi = ROI_SETS.build(config.roi_set)
        dm, dg = (3 * len(n) for n in feature_names(roi, config))
        return cls(
            motion=np.stack([s.motion for s in snippets]) if snippets else np.zeros((0, dm), np.float32),
            geometry=np.stack([s.geometry for s in snippets]) if snippets else np.zeros((0, dg), np.float32),
            valid=np.array([s.valid for s in snippets], bool),
            start_s=np.array([s.start_s for s in snippets], np.float64),
            events=events,
            config=config,
        )


def extract(
    source: str | int | Path,
    config: FeatureConfig | None = None,
    *,
    source_fps: float | None = None,
    **flow_options: object,
) -> Extraction:
    """Snippet features of a whole file or folder: a loop over `stream_snippets` in replay mode."""
    config = config or FeatureConfig()
    outputs = stream_snippets(source, config, policy="replay", source_fps=source_fps, **flow_options)
    return Extraction.collect(outputs, config)
