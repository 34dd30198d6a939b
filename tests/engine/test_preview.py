"""The live preview: drawn without a window, a no-op where none can open, a sink of the runner."""

from __future__ import annotations

import numpy as np

from engine.online import SpottedInterval
from engine.preview import Preview
from engine.runtime import SnippetScore
from engine.sinks import LiveEvent
from stream.intervals import ExpressionType, Interval


def test_preview_renders_headless_and_is_a_no_op_without_display(monkeypatch, caplog) -> None:
    preview = Preview(snippet_s=8 / 30, fps=30.0, thresholds=(0.5,), history_s=5.0)
    for j in range(30):
        value = float(np.nan) if j == 10 else 0.5 + 0.4 * np.sin(j / 3)
        preview.add_score(SnippetScore(j, j * 8 / 30, j != 10, np.array([0.1, value], np.float32), value))
    preview.events.append(Interval(20 * 8, 24 * 8 - 1, ExpressionType.MAE, score=0.9))
    face = np.full((128, 128), 128, np.uint8)
    image = preview.render(face)
    assert image.shape == (256, 720, 3) and image.dtype == np.uint8
    assert not np.array_equal(image, preview.render(None))  # the face is drawn
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with caplog.at_level("WARNING"):
        assert Preview.open(8 / 30, 30.0) is None
    assert "no display" in caplog.text


def test_preview_as_a_sink_draws_scores_and_events_and_reports_its_window_closed() -> None:
    closed: list[bool] = []
    crops = iter([np.full((128, 128), 90, np.uint8), None])
    preview = Preview(8 / 30, 30.0, face=lambda: next(crops, None), on_closed=lambda: closed.append(True))
    preview.score(SnippetScore(0, 0.0, True, np.array([0.2, 0.7], np.float32), 0.7))
    spotted = SpottedInterval(Interval(0, 15, ExpressionType.ME, score=0.8), 0, 2, 3, None)
    preview.event(LiveEvent(spotted, 30.0, 0.3))
    assert [s.index for s in preview.scores] == [0] and list(preview.events) == [spotted.interval]
    assert closed == []  # no window: showing is a no-op, never a close
    preview.end()
    preview.close()  # twice is fine
