"""Training videos cut into labelled clips (engine/data/clips.py, `TrainConfig.clip_s`)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from engine.data.clips import clip_bounds, cut_into_clips
from engine.data.features import VideoFeatures
from engine.data.labels import full_labels, video_level_vector
from engine.data.records import Blink, VideoRecord
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval

FPS = 30.0
SNIPPET_S = 4 / 30  # 4 frames a snippet
T = 600  # 80 s


def video(expressions: tuple[Interval, ...], blinks: tuple[Blink, ...] = (), first_frame: int = 1):
    rng = np.random.default_rng(0)
    motion = rng.normal(size=(T, 6)).astype(np.float32)
    geometry = rng.normal(size=(T, 4)).astype(np.float32)
    valid = rng.random(T) > 0.05
    record = VideoRecord("v1", "s1", FPS, expressions, n_frames=4 * T, blinks=blinks, first_frame=first_frame)
    return record, VideoFeatures("v1", motion, geometry, valid, SNIPPET_S, FPS, first_frame=first_frame)


def test_clips_tile_the_video_and_no_cut_splits_an_expression() -> None:
    # A MaE over frames 598-700 (snippets 149-175) straddles the nominal 20 s cut at snippet 150.
    mae = Interval(598 + 1, 700 + 1, ExpressionType.MAE, apex=650 + 1)
    me = Interval(1300 + 1, 1312 + 1, ExpressionType.ME, apex=1305 + 1)
    record, feats = video((mae, me))
    bounds = clip_bounds(record, feats, 20.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == T
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # contiguous, no gap, no overlap
    assert bounds[0][1] == 176  # moved past the MaE's last snippet (175)
    busy = full_labels(record, T, SNIPPET_S)[:, 0] < 1  # (T,) an expression in the snippet
    for _, end in bounds[:-1]:  # no expression runs across a cut
        assert not (busy[end - 1] and busy[end])
    # 25 s = 188 snippets: a cut at 564 would leave a tail of 36, under half a clip: it joins the clip before.
    assert clip_bounds(record, feats, 25.0) == [(0, 188), (188, 376), (376, 600)]


def test_each_clip_holds_its_expressions_and_the_features_between_its_cuts() -> None:
    mae = Interval(101, 160, ExpressionType.MAE, apex=130)
    me = Interval(1301, 1313, ExpressionType.ME, apex=1306)
    blink = Blink(1401, 1409, 1405)
    record, feats = video((mae, me), (blink,))
    clips = cut_into_clips(record, feats, 20.0)
    assert [c.video for c, _ in clips] == [f"v1@{a}" for a, _ in clip_bounds(record, feats, 20.0)]
    assert [tuple(video_level_vector(c)) for c, _ in clips] == [(0, 1), (0, 0), (1, 0), (0, 0)]
    (clip, part) = clips[2]  # snippets 300-449: frames 1201-1800 of the video
    assert clip.expressions == (Interval(100, 112, ExpressionType.ME, apex=105),)
    assert clip.blinks == (Blink(200, 208, 204),)
    assert (clip.first_frame, clip.frame_runs, clip.n_frames) == (0, None, 600)
    np.testing.assert_array_equal(part.motion, feats.motion[300:450])
    np.testing.assert_array_equal(part.geometry, feats.geometry[300:450])
    np.testing.assert_array_equal(part.valid, feats.valid[300:450])
    # The clip's snippet labels are the video's over the same snippets.
    own = full_labels(clip, 150, SNIPPET_S)
    np.testing.assert_array_equal(own, full_labels(record, T, SNIPPET_S)[300:450])


def test_a_clip_shorter_than_two_snippets_is_refused_naming_the_field() -> None:
    record, feats = video(())
    with pytest.raises(ConfigError, match="clip_s"):
        cut_into_clips(record, feats, 0.1)
    assert len(cut_into_clips(record, feats, 3600.0)) == 1


def test_train_config_takes_clip_s_for_whole_video_methods_only() -> None:
    from engine.train_config import TrainConfig

    with pytest.raises(ConfigError, match="clip_s"):
        TrainConfig(method="full", clip_s=20.0)
    with pytest.raises(ConfigError, match="clip_s"):
        TrainConfig(method="mcwes", clip_s=0.1)
    cfg = TrainConfig(method="mcwes", clip_s=20.0)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert "clip_s" not in TrainConfig(method="mcwes").to_dict()  # runs before the option read alike
