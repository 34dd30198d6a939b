"""Label views: video-level flags, point labels, full labels on the snippet grid, exact conversions."""

from __future__ import annotations

import logging
import math
from fractions import Fraction

import numpy as np
import pytest

from engine.data.labels import (
    BACKGROUND,
    MAE,
    ME,
    exact,
    frame_seconds,
    full_labels,
    interval_seconds,
    point_frames,
    point_labels,
    snippet_of_frame,
    video_level,
    video_level_vector,
)
from engine.data.records import VideoRecord
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval

T_ME, T_MAE = ExpressionType.ME, ExpressionType.MAE
SNIPPET = 8 / 30  # 8 frames at 30 fps, given as a float on purpose


def record(*intervals: Interval, fps: float = 30.0, first_frame: int = 0, **kw: object) -> VideoRecord:
    return VideoRecord("v", "s", fps, tuple(intervals), first_frame=first_frame, **kw)


def test_video_level() -> None:
    both = record(Interval(1, 5, T_ME), Interval(10, 40, T_MAE))
    assert video_level(both) == {T_ME: True, T_MAE: True}
    only_mae = record(Interval(10, 40, T_MAE))
    assert video_level(only_mae) == {"me": False, "mae": True}
    assert video_level(record()) == {T_ME: False, T_MAE: False}
    np.testing.assert_array_equal(video_level_vector(only_mae), np.array([0.0, 1.0], dtype=np.float32))


def test_exact_conversions() -> None:
    assert exact(8 / 30, "s") == Fraction(4, 15)
    assert exact(30000 / 1001, "fps") == Fraction(30000, 1001)
    assert exact(200, "fps") == 200
    with pytest.raises(ConfigError, match="snippet_s"):
        exact(0.0, "snippet_s")
    with pytest.raises(ConfigError):
        exact(float("nan"), "snippet_s")
    v = record()
    # Frame 8 starts exactly at 8/30 s, the start of snippet 1; a float division could give 0.999...
    assert frame_seconds(v, 8) == Fraction(8, 30)
    assert [snippet_of_frame(v, f, SNIPPET) for f in (0, 7, 8, 15, 16, 23, 24)] == [0, 0, 1, 1, 2, 2, 3]
    assert all(snippet_of_frame(v, 8 * k, SNIPPET) == k for k in range(2000))
    assert interval_seconds(v, Interval(8, 15, T_ME)) == (Fraction(8, 30), Fraction(16, 30))


def test_snippets_follow_each_videos_fps_and_first_frame() -> None:
    casme2 = record(first_frame=1)  # images numbered from 1
    assert [snippet_of_frame(casme2, f, SNIPPET) for f in (1, 8, 9, 17)] == [0, 0, 1, 2]
    samm = record(fps=200.0, first_frame=1)  # 8/30 s = 53 1/3 frames at 200 fps
    # Snippet k starts at position 160k/3: frame 161 (position 160, 0.8 s) starts snippet 3 exactly.
    frames = (1, 54, 55, 107, 108, 160, 161)
    assert [snippet_of_frame(samm, f, SNIPPET) for f in frames] == [0, 0, 1, 1, 2, 2, 3]
    # 200 fps with 32-frame snippets (0.16 s): frame 1 + 32k starts snippet k exactly.
    assert all(snippet_of_frame(samm, 1 + 32 * k, 0.16) == k for k in range(500))
    assert all(snippet_of_frame(samm, 32 * k, 0.16) == k - 1 for k in range(1, 500))
    gaps = record(first_frame=0, frame_runs=((0, 99), (110, 199)))
    assert snippet_of_frame(gaps, 112, SNIPPET) == 12  # position 102


def test_point_labels_random_are_seeded_and_inside() -> None:
    v = record(Interval(100, 108, T_ME, 104), Interval(200, 300, T_MAE), Interval(400, 400, T_ME))
    a = point_frames(v, 7)
    assert a == point_frames(v, 7)  # same seed, same points
    assert point_labels(v, SNIPPET, 7) == point_labels(v, SNIPPET, np.random.default_rng(7))
    draws = {tuple(p.frame for p in point_frames(v, seed)) for seed in range(200)}
    assert len(draws) > 100  # the frames do vary with the seed
    for frames in draws:
        for f, iv in zip(frames, v.expressions, strict=True):
            assert iv.onset <= f <= iv.offset
    seen = {f for frames in draws for f in frames[:1]}
    assert seen == set(range(100, 109))  # every frame of the ME, both ends included
    labels = point_labels(v, SNIPPET, 3)
    assert [lab.type for lab in labels] == [T_ME, T_MAE, T_ME]
    for lab, p in zip(labels, point_frames(v, 3), strict=True):
        assert lab.snippet == p.frame // 8


def test_shared_generator_advances_across_videos() -> None:
    v = record(Interval(0, 1000, T_MAE))
    gen = np.random.default_rng(0)
    assert point_frames(v, gen) != point_frames(v, gen)


def test_point_labels_apex_and_middle_fallback() -> None:
    v = record(Interval(100, 108, T_ME, 106), Interval(200, 301, T_MAE))  # second apex unknown
    assert point_frames(v, mode="apex") == [(106, T_ME), (250, T_MAE)]
    assert point_labels(v, SNIPPET, mode="apex") == [(13, T_ME), (31, T_MAE)]
    samm = record(Interval(1000, 1100, T_MAE, 1050), fps=200.0, first_frame=1)
    assert point_labels(samm, SNIPPET, mode="apex") == [(19, T_MAE)]  # 1049/200 s = 5.245 s


def test_point_labels_errors_and_grid_end(caplog: pytest.LogCaptureFixture) -> None:
    v = record(Interval(10, 12, T_ME), Interval(900, 950, T_MAE, 920))
    with pytest.raises(ConfigError, match="rng"):
        point_labels(v, SNIPPET)
    with pytest.raises(ConfigError, match="mode"):
        point_labels(v, SNIPPET, 0, mode="middle")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        assert point_labels(v, SNIPPET, mode="apex", n_snippets=100) == [(1, T_ME)]
    assert "outside the 100 snippets" in caplog.text


def test_full_labels_hand_computed() -> None:
    # 30 fps, 8-frame snippets, T = 10.
    v = record(
        Interval(2, 3, T_ME),  # 2 frames inside snippet 0: its centre marks snippet 0
        Interval(8, 31, T_MAE),  # snippets 1-3 exactly
        Interval(36, 44, T_ME),  # 4 frames of snippet 4 (exactly half) and 5 of snippet 5
        Interval(50, 75, T_MAE),  # 6 of snippet 6, all of 7 and 8, 4 of snippet 9 (half)
        Interval(60, 62, T_ME),  # inside the MaE, 3 frames of snippet 7, centre there: ME wins
    )
    labels = full_labels(v, 10, SNIPPET)
    assert labels.shape == (10, 3) and labels.dtype == np.float32
    np.testing.assert_array_equal(labels.sum(axis=1), np.ones(10))
    expected = [ME, MAE, MAE, MAE, ME, ME, MAE, ME, MAE, MAE]
    assert labels.argmax(axis=1).tolist() == expected


def test_full_labels_background_grid_end_and_200_fps(caplog: pytest.LogCaptureFixture) -> None:
    v = record(Interval(20, 27, T_MAE), Interval(300, 320, T_ME))
    with caplog.at_level(logging.WARNING):
        labels = full_labels(v, 4, SNIPPET)
    assert labels.argmax(axis=1).tolist() == [BACKGROUND, BACKGROUND, MAE, MAE]  # 4 of 8 frames in each
    assert "1 expression(s)" in caplog.text  # the ME lies past the 4 snippets
    # Frames 3..5 cover 3/8 of snippet 0 and miss half of it; the centre rule keeps the MaE.
    assert full_labels(record(Interval(3, 5, T_MAE)), 2, SNIPPET).argmax(axis=1).tolist() == [MAE, BACKGROUND]
    samm = record(Interval(1, 54, T_ME), fps=200.0, first_frame=1)  # snippet 0 is frames 1 .. 54.33
    assert full_labels(samm, 3, SNIPPET).argmax(axis=1).tolist() == [ME, BACKGROUND, BACKGROUND]
    assert full_labels(samm, 0, SNIPPET).shape == (0, 3)
    with pytest.raises(ConfigError, match="n_snippets"):
        full_labels(samm, -1, SNIPPET)


@pytest.mark.parametrize("per_type", [False, True], ids=["one-gap", "gap-per-type"])
def test_point_free_background_never_lies_within_the_longest_expression_of_a_point(
    tmp_path, per_type: bool
) -> None:
    """On every SynthSpot-v2 video (its annotations, no rendering), with random points and the
    gap set to the longest expression (of the point's own type, per_type), no background snippet
    touches an expression, and each lies at least its point's gap from every point."""
    from engine.data import load_dataset
    from engine.data.labels import point_free_background
    from stream.synth.dataset import IDENTITY_COLUMNS, RECIPES, recipe_rows, write_csv

    recipe = RECIPES["synthspot-v2"]
    write_csv(tmp_path / "a.csv", recipe_rows(recipe)[0], IDENTITY_COLUMNS)
    dataset = load_dataset("csv", tmp_path / "a.csv")
    snippet_s = 4 / 30
    longest = {
        kind: max(
            float(b - a)
            for v in dataset.videos
            for e in v.expressions
            if e.type == kind
            for a, b in [interval_seconds(v, e)]
        )
        for kind in (T_ME, T_MAE)
    }
    gaps = [longest[T_ME], longest[T_MAE]] if per_type else [max(longest.values())] * 2
    assert not per_type or gaps[0] < gaps[1] / 4  # the ME gap is much the shorter
    n = math.ceil(recipe.seconds / snippet_s)
    seen = 0
    for seed, video in enumerate(dataset.videos):
        points = np.zeros((n, 2))
        for p in point_labels(video, snippet_s, seed, "random", n_snippets=n):
            points[p.snippet, int(p.type == T_MAE)] = 1
        bg = point_free_background(points, np.ones(n, bool), snippet_s, gaps if per_type else gaps[0])
        truth = full_labels(video, n, snippet_s)
        for e in video.expressions:  # every snippet the expression touches
            a, b = interval_seconds(video, e)
            touched = np.arange(math.floor(a / snippet_s), min(n, math.ceil(b / snippet_s)))
            assert not bg[touched].any(), (video.video, e)
        assert not (bg & (truth[:, 0] == 0)).any()
        for i in np.flatnonzero(bg):
            for column, gap in enumerate(gaps):
                marks = np.flatnonzero(points[:, column])
                assert all((abs(i - p) - 1) * snippet_s >= gap - 1e-9 for p in marks)
        seen += int(bg.sum())
        if not video.expressions:
            assert bg.all()
    # and it still leaves background to learn from: most of the time with a gap per type
    assert seen > (0.5 if per_type else 0.2) * n * len(dataset.videos)
