"""The live runner's sinks: every output reaches every sink, in order, on a real recording."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from engine.live import LiveRunner
from engine.online import SpottedInterval
from engine.sinks import ConsoleSink, Health, LiveEvent, Sink
from stream.frame import StatusEvent, StatusKind
from stream.intervals import ExpressionType, Interval
from stream.publish import Publisher

ANY_PORT = "tcp://127.0.0.1:*"


class Recorder(Sink):
    """Keeps what it is handed, and fails on the events it is told to."""

    def __init__(self, fail_on_event: int | None = None) -> None:
        self.calls: list[str] = []
        self.scores, self.events, self.statuses, self.health_seen = [], [], [], []
        self.snippets: list[int] = []
        self.fail_on_event = fail_on_event
        self.ended = self.closed = 0

    def snippet(self, snippet) -> None:
        self.calls.append("snippet")
        self.snippets.append(snippet.index)

    def score(self, score) -> None:
        self.calls.append("score")
        self.scores.append(score)

    def event(self, event: LiveEvent) -> None:
        self.calls.append("event")
        self.events.append(event)
        if self.fail_on_event is not None and len(self.events) == self.fail_on_event:
            raise RuntimeError("a sink that fails once")

    def status(self, status: StatusEvent) -> None:
        self.calls.append("status")
        self.statuses.append(status)

    def health(self, health: Health) -> None:
        self.health_seen.append(health)

    def end(self) -> None:
        self.ended += 1

    def close(self) -> None:
        self.closed += 1


def _journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(180)
def test_every_sink_sees_what_the_publisher_publishes(tmp_path: Path) -> None:
    first, second = Recorder(), Recorder()
    publisher = Publisher("sinks", ANY_PORT, None, journal=tmp_path / "sinks.jsonl")
    with LiveRunner(
        "sim://?seed=4&density=40&seconds=20", publisher=publisher, mode="fast", sinks=[first, second]
    ) as runner:
        report = runner.run()
        assert first.ended == second.ended == 1 and first.closed == 0
    assert first.closed == second.closed == 1  # the runner owns its sinks
    journal = _journal(tmp_path / "sinks.jsonl")
    for sink in (first, second):
        assert [s.index for s in sink.scores] == list(range(report.snippets))  # the journal keeps no scores
        assert sink.snippets == list(range(report.snippets))
        published = [m for m in journal if m["kind"] == "event"]
        assert [(e.interval.type.value, e.interval.onset, e.interval.offset) for e in sink.events] == [
            (m["type"], m["onset_frame"], m["offset_frame"]) for m in published
        ]
        statuses = [m for m in journal if m["kind"] == "status" and m["status"] != "heartbeat"]
        assert [(s.kind.value, s.detail) for s in sink.statuses] == [
            (m["status"], m["detail"]) for m in statuses
        ]
        assert sink.statuses[0].detail.startswith("started") and sink.statuses[-1].detail.startswith("end:")
        assert sink.health_seen and sink.health_seen[-1].drops == report.dropped
    assert first.events, "the simulation at density 40 should yield events"
    assert report.event_counts["me"] + report.event_counts["mae"] == len(first.events)
    # Each event's latency is measured by the runner from the capture of its offset frame.
    assert all(e.latency_s is not None and 0 <= e.latency_s < 60 for e in first.events)
    # A snippet reaches the sinks before its score.
    assert first.calls.index("snippet") < first.calls.index("score")


@pytest.mark.timeout(180)
def test_a_failing_sink_costs_one_error_and_the_stream_goes_on() -> None:
    failing, after = Recorder(fail_on_event=1), Recorder()
    with LiveRunner("sim://?seed=4&density=40&seconds=20", mode="fast", sinks=[failing, after]) as runner:
        report = runner.run()
    assert report.errors == 1 and report.end_reason == "end of stream"
    assert len(failing.events) == len(after.events) + 1  # the failing call stopped that event's hand-over
    assert any(s.detail.startswith("bad_frame: processing failed") for s in after.statuses)
    assert after.statuses[-1].detail.startswith("end:")


def test_add_sink_after_the_run_started_is_refused() -> None:
    with LiveRunner("sim://?seed=4&seconds=1", mode="fast") as runner:
        runner.run()
        with pytest.raises(RuntimeError, match="before run"):
            runner.add_sink(Recorder())


def test_console_sink_prints_events_on_stdout_and_statuses_on_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = ConsoleSink("cam0", out=out, err=err)
    spotted = SpottedInterval(Interval(30, 44, ExpressionType.ME, apex=36, score=0.8125), 3, 6, 7, None)
    console.event(LiveEvent(spotted, 30.0, 0.25))
    console.status(StatusEvent(StatusKind.FACE_LOST, 120, 4.0, 0, "no face for 0.5 s"))
    console.status(StatusEvent(StatusKind.SOURCE, -1, float(np.nan), 0, "started: x"))
    assert out.getvalue() == "cam0 event me frames 30-44 (1.000-1.467 s) score 0.812 latency 0.250 s\n"
    assert err.getvalue().splitlines() == [
        "status face_lost frame 120 no face for 0.5 s",
        "status source started: x",
    ]


class FailsAtTheEnd(Recorder):
    def end(self) -> None:
        super().end()
        raise OSError("disk full")


def test_a_sink_failing_at_the_end_of_the_stream_does_not_stop_the_others(caplog) -> None:
    failing, after = FailsAtTheEnd(), Recorder()
    with (
        caplog.at_level("ERROR"),
        LiveRunner("sim://?seed=4&seconds=2", mode="fast", sinks=[failing, after]) as r,
    ):
        report = r.run()
    assert report.end_reason == "end of stream"
    assert failing.ended == after.ended == 1 and "disk full" in caplog.text
