"""Where a live run's outputs go: one small interface for the publisher, the console and callers.

`engine.live.LiveRunner` computes everything a run produces (each snippet's scores, the intervals
the online spotter finalises, status events, its health) and hands each item to its sinks, in
order. A sink implements any of:

- ``snippet(snippet)``: a snippet, before it is scored;
- ``score(score)``: a snippet's scores (`engine.runtime.SnippetScore`);
- ``event(event)``: a finalised interval (`LiveEvent`);
- ``status(status)``: a `stream.frame.StatusEvent` (the pipeline's, the source's, the runner's own);
- ``health(health)``: what heartbeats report (`Health`), at most every 0.5 s;
- ``end()``: the stream ended and everything was handed over (flush what is buffered);
- ``close()``: release what it holds (the runner's `close` calls it once).

The base class does nothing for each, so a sink overrides only what it uses. The sinks mespot
ships: `PublisherSink` (the ZeroMQ topics, the snapshot endpoint and the journal, one record with
one sequence per topic: `stream.publish.Publisher`), `ConsoleSink` (one line per event on stdout,
one per status on stderr), `CallbackSink` (plain functions) and `engine.preview.Preview` (an
OpenCV window). The journal stays inside the publisher rather than being a sink of its own: it
must hold exactly the messages subscribers received, with their sequence numbers, which only the
publisher assigns.

A sink that raises makes the runner count a processing error for that item (the stream goes on,
docs/events.md); sinks are called on the runner's consumer thread, except ``health``, which the
reader thread may also call while no frame arrives.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from engine.online import SpottedInterval
from stream.frame import StatusEvent
from stream.intervals import Interval

if TYPE_CHECKING:
    from engine.runtime import SnippetScore
    from stream.publish import Publisher
    from stream.ring import Snippet

log = logging.getLogger(__name__)

__all__ = ["CallbackSink", "ConsoleSink", "Health", "LiveEvent", "PublisherSink", "Sink"]


@dataclass(frozen=True)
class LiveEvent:
    """A finalised interval as the runner handed it to its sinks.

    Attributes:
        spotted: the online spotter's interval (frames on the canonical clock, snippets).
        fps: the canonical frame rate of its frame numbers.
        latency_s: hand-over time minus the capture time of the offset frame (None when unknown).
        flushed: True when it was finalised by the end-of-stream flush.
    """

    spotted: SpottedInterval
    fps: float
    latency_s: float | None
    flushed: bool = False

    @property
    def interval(self) -> Interval:
        return self.spotted.interval

    def line(self, stream: str = "") -> str:
        """One printable line (the fields `mespot listen` prints for an event, without its
        sequence number, which only the publisher assigns)."""
        iv = self.interval
        score = "" if iv.score is None else f" score {iv.score:.3f}"
        latency = "" if self.latency_s is None else f" latency {self.latency_s:.3f} s"
        prefix = f"{stream} " if stream else ""
        return (
            f"{prefix}event {iv.type.value} frames {iv.onset}-{iv.offset} "
            f"({iv.onset / self.fps:.3f}-{iv.offset / self.fps:.3f} s){score}{latency}"
        )


@dataclass(frozen=True)
class Health:
    """What a run's heartbeats report.

    Attributes:
        fps: processing rate over the last interval (canonical frames a second; None: not yet).
        drops: frames dropped so far by the live policy.
        face: whether a face is present now (None: no frame processed yet).
        latency_s: the newest capture-to-score latency (None: nothing scored yet).
    """

    fps: float | None
    drops: int
    face: bool | None
    latency_s: float | None


class Sink:
    """One destination of a live run's outputs (module docstring); every method is optional."""

    def snippet(self, snippet: Snippet) -> None:
        """A snippet, before it is scored."""

    def score(self, score: SnippetScore) -> None:
        """A snippet's scores."""

    def event(self, event: LiveEvent) -> None:
        """A finalised interval."""

    def status(self, status: StatusEvent) -> None:
        """A status event."""

    def health(self, health: Health) -> None:
        """What heartbeats report now."""

    def end(self) -> None:
        """The stream ended: everything was handed over; flush what is buffered."""

    def close(self) -> None:
        """Release what the sink holds."""


class PublisherSink(Sink):
    """The stream's ZeroMQ topics, snapshot endpoint and journal (`stream.publish.Publisher`).

    Args:
        publisher: the publisher; the sink owns it (`close` closes it, fsyncing its journal).
        flush_s: how long `end` waits for everything published to be sent and journalled.
    """

    def __init__(self, publisher: Publisher, flush_s: float = 5.0) -> None:
        self.publisher = publisher
        self.flush_s = flush_s

    def score(self, score: SnippetScore) -> None:
        self.publisher.publish_scores(
            score.index,
            score.class_scores,
            score.actionness,
            start_s=score.start_s,
            end_s=score.end_s,
            capture_ns=score.capture_ns,
        )

    def event(self, event: LiveEvent) -> None:
        self.publisher.publish_event(event.spotted, fps=event.fps)

    def status(self, status: StatusEvent) -> None:
        self.publisher.publish_status_event(status)

    def health(self, health: Health) -> None:
        self.publisher.set_health(
            fps=health.fps, drops=health.drops, face=health.face, latency_s=health.latency_s
        )

    def end(self) -> None:
        if not self.publisher.flush(self.flush_s):
            log.warning(
                "publisher %s: not everything was sent within %g s", self.publisher.stream, self.flush_s
            )

    def close(self) -> None:
        self.publisher.close()


class ConsoleSink(Sink):
    """People watching a terminal: one line per event on `out`, one per status on `err`.

    Args:
        stream: the stream's name, printed before each event.
        out, err: where to print (None: the interpreter's stdout / stderr at the time of printing).
    """

    def __init__(self, stream: str = "", out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.stream = stream
        self._out, self._err = out, err

    def event(self, event: LiveEvent) -> None:
        print(event.line(self.stream), file=self._out or sys.stdout, flush=True)

    def status(self, status: StatusEvent) -> None:
        detail = f" {status.detail}" if status.detail else ""
        frame = f" frame {status.frame_index}" if status.frame_index >= 0 else ""
        print(f"status {status.kind.value}{frame}{detail}", file=self._err or sys.stderr, flush=True)


class CallbackSink(Sink):
    """Plain functions as a sink (each optional); what `LiveRunner`'s ``on_*`` arguments build."""

    def __init__(
        self,
        *,
        on_snippet: Callable[[Snippet], None] | None = None,
        on_score: Callable[[SnippetScore], None] | None = None,
        on_event: Callable[[LiveEvent], None] | None = None,
        on_status: Callable[[StatusEvent], None] | None = None,
        on_health: Callable[[Health], None] | None = None,
    ) -> None:
        self.on_snippet, self.on_score, self.on_event = on_snippet, on_score, on_event
        self.on_status, self.on_health = on_status, on_health

    def snippet(self, snippet: Snippet) -> None:
        if self.on_snippet is not None:
            self.on_snippet(snippet)

    def score(self, score: SnippetScore) -> None:
        if self.on_score is not None:
            self.on_score(score)

    def event(self, event: LiveEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def status(self, status: StatusEvent) -> None:
        if self.on_status is not None:
            self.on_status(status)

    def health(self, health: Health) -> None:
        if self.on_health is not None:
            self.on_health(health)
