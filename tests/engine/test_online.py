"""The online spotter: streamed intervals equal offline `propose` on the whole sequence, exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.online import OnlineSpotter, SpottedInterval
from engine.proposals import PRESETS, ProposalConfig, propose
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval

SNIPPET_S = 8 / 30

# Threshold-mode configurations covering every option that changes which proposals survive.
CONFIGS = {
    "default": ProposalConfig(),
    "gim": PRESETS["gim"],
    "joint-tight": ProposalConfig(
        nms="joint", nms_iou=0.01, min_score=0.05, oic_source="actionness", thresholds=(0.2, 0.45, 0.7)
    ),
    "short-wide-band": ProposalConfig(
        thresholds=(0.3, 0.6),
        max_duration_s=1.0,
        min_duration_s=0.1,
        outer_ratio=1.5,
        type_rule="class",
        me_max_s=0.3,
    ),
    "video-weight": ProposalConfig(video_score_weight=0.5, nms="joint", nms_iou=0.3),
    # MEs end 0.2 s sooner, MaEs 0.27 s later: published only once that frame is seen.
    "offset-shift": ProposalConfig(type_rule="class", offset_shift_s=(-0.2, 4 / 15)),
}
RATES = [(SNIPPET_S, 30.0), (SNIPPET_S, 200.0), (4 / 30, 30.0)]  # g = 8, 53.33, 4 frames


def _smooth(rng: np.random.Generator, n: int) -> np.ndarray:
    width = rng.uniform(1.0, 4.0)
    kernel = np.exp(-0.5 * (np.arange(-10, 11) / width) ** 2)
    x = np.convolve(rng.normal(size=n + 20), kernel / kernel.sum(), mode="valid")[:n]
    return 1.0 / (1.0 + np.exp(-3.0 * x))


def make_scores(seed: int, n: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) class scores and (T,) actionness, smooth or spiky, with NaN gaps."""
    rng = np.random.default_rng(seed)
    if kind == "smooth":
        act = _smooth(rng, n)
        cls = np.stack([_smooth(rng, n), _smooth(rng, n)], axis=1)  # (T, 2)
    else:
        act = rng.uniform(0.0, 0.3, n)
        spikes = rng.random(n) < 0.08
        act[spikes] = rng.uniform(0.3, 1.0, spikes.sum())
        cls = rng.uniform(0.0, 1.0, (n, 2))
    nan = rng.random(n) < 0.03
    for start in rng.integers(0, n, 3):
        nan[start : start + rng.integers(1, 12)] = True
    act[nan] = np.nan
    cls[nan] = np.nan
    return cls, act


def stream_all(spotter: OnlineSpotter, cls: np.ndarray, act: np.ndarray, **flush) -> list[SpottedInterval]:
    out: list[SpottedInterval] = []
    for j in range(len(act)):
        out += spotter.push(j, cls[j], act[j])
    return out + spotter.flush(**flush)


def by_time(intervals: list[Interval]) -> list[Interval]:
    return sorted(intervals, key=lambda iv: (iv.onset, iv.offset, iv.type.value))


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("kind", ["smooth", "spiky"])
def test_online_equals_offline_exactly(name: str, kind: str) -> None:
    config = CONFIGS[name]
    video = np.array([0.3, 0.6])
    checked = 0
    for seed in range(3):
        cls, act = make_scores(100 * seed + len(name), 260, kind)
        for snippet_s, fps in RATES:
            # The stream's length in frames: a shifted offset is clipped to its last frame.
            end = {"n_frames": int(len(act) * snippet_s * fps + 1e-6)}
            offline = propose(
                cls, config, snippet_s=snippet_s, fps=fps, actionness=act, video_scores=video, **end
            )
            spotter = OnlineSpotter(config, snippet_s, fps, video_scores=video)
            online = stream_all(spotter, cls, act, **end)
            # Same intervals, same scores (Interval equality is exact, floats included) ...
            assert by_time([s.interval for s in online]) == by_time(offline)
            # ... each published once ...
            keys = [(s.interval.onset, s.interval.offset, s.interval.type) for s in online]
            assert len(keys) == len(set(keys))
            # ... never before its end has been seen, and within the documented latency.
            for s in online:
                assert s.finalised_at >= s.end - 1
                assert s.latency_snippets <= spotter.max_latency_snippets
            if name == "offset-shift":
                moved = propose(
                    cls,
                    config,
                    snippet_s=snippet_s,
                    fps=fps,
                    actionness=act,
                    video_scores=video,
                    shift=False,
                    **end,
                )
                assert {iv.type for iv in offline} == set(ExpressionType)
                assert by_time(offline) != by_time(moved)  # the shift did move offsets
            checked += len(offline)
    assert checked > 10  # the sequences do produce proposals


def test_latency_is_short_for_an_isolated_spike() -> None:
    act = np.zeros(60)
    act[20:23] = 0.9  # one 0.8 s bump (24 frames: MaE), then quiet
    cls = np.stack([act, act / 2], axis=1)
    spotter = OnlineSpotter(ProposalConfig(), SNIPPET_S, 30.0)
    got = [(j, s) for j in range(60) for s in spotter.push(j, cls[j], act[j])]
    assert len(got) == 1
    j, s = got[0]
    assert (s.start, s.end) == (20, 23)
    assert s.interval.type is ExpressionType.MAE
    # Finalised once its right OIC band (1 snippet) has been seen: the push of snippet 23.
    assert j == s.finalised_at == 23 and s.latency_snippets == 1
    assert spotter.max_latency_snippets == 20  # Lmax 16 + bmax 4 at 8 frames / 30 fps
    assert spotter.max_latency_s == pytest.approx(20 * SNIPPET_S)


def test_index_holes_are_invalid_snippets() -> None:
    cls, act = make_scores(7, 200, "smooth")
    keep = np.ones(200, bool)
    keep[[30, 31, 32, 90, 150, 151]] = False
    cls_nan, act_nan = cls.copy(), act.copy()
    cls_nan[~keep] = np.nan
    act_nan[~keep] = np.nan
    config = CONFIGS["default"]
    offline = propose(cls_nan, config, snippet_s=SNIPPET_S, fps=30.0, actionness=act_nan)
    spotter = OnlineSpotter(config, SNIPPET_S, 30.0)
    online: list[SpottedInterval] = []
    for j in np.flatnonzero(keep):
        online += spotter.push(int(j), cls[j], act[j])
    online += spotter.flush()
    assert by_time([s.interval for s in online]) == by_time(offline)
    backwards = OnlineSpotter(config, SNIPPET_S, 30.0)
    backwards.push(5, [0.1, 0.2], 0.1)
    with pytest.raises(ValueError, match="indices must increase"):
        backwards.push(5, [0.1, 0.2], 0.1)


def test_late_start_frame_offset_and_clipped_end() -> None:
    """A stream starting at snippet 40 is the whole sequence with 40 invalid snippets before it;
    frame_offset and n_frames pass through as in `propose`."""
    cls, act = make_scores(11, 240, "spiky")
    act[-3:] = 0.95  # a run touching the end, clipped by n_frames
    cls_full, act_full = cls.copy(), act.copy()
    cls_full[:40] = np.nan
    act_full[:40] = np.nan
    n_frames = 240 * 8 - 5
    clip = {"frame_offset": 1, "n_frames": n_frames}
    config = CONFIGS["default"]
    offline = propose(cls_full, config, snippet_s=SNIPPET_S, fps=30.0, actionness=act_full, **clip)
    spotter = OnlineSpotter(config, SNIPPET_S, 30.0, frame_offset=1)
    online: list[SpottedInterval] = []
    for j in range(40, 240):
        online += spotter.push(j, cls[j], act[j])
    online += spotter.flush(n_frames=n_frames)
    assert by_time([s.interval for s in online]) == by_time(offline)
    assert any(s.interval.offset == n_frames for s in online)  # clipped to the last frame (1-based)


def test_default_actionness_and_capture_time() -> None:
    cls, _ = make_scores(3, 150, "smooth")
    config = CONFIGS["gim"]
    offline = propose(cls, config, snippet_s=SNIPPET_S, fps=30.0)  # actionness: max over classes
    spotter = OnlineSpotter(config, SNIPPET_S, 30.0)
    online: list[SpottedInterval] = []
    for j in range(150):
        online += spotter.push(j, cls[j], capture_ns=1_000_000 * j)
    online += spotter.flush()
    assert by_time([s.interval for s in online]) == by_time(offline)
    assert online
    for s in online:  # the capture time of the snippet holding the offset frame
        assert s.capture_ns == 1_000_000 * (s.end - 1)


def test_flush_nan_and_errors() -> None:
    config = CONFIGS["default"]
    # All invalid: nothing, and flush finishes the stream.
    spotter = OnlineSpotter(config, SNIPPET_S, 30.0)
    assert all(spotter.push(j, [np.nan, np.nan], np.nan) == [] for j in range(50))
    assert spotter.flush() == []
    assert spotter.flush() == []
    with pytest.raises(RuntimeError, match="after flush"):
        spotter.push(50, [0.1, 0.1], 0.1)
    # A run that is still open at the end is published by flush (offline closes it at T).
    spotter = OnlineSpotter(config, SNIPPET_S, 30.0)
    assert [s for j in range(10) for s in spotter.push(j, [0.9, 0.1], 0.9 if j >= 7 else 0.0)] == []
    (last,) = spotter.flush()
    assert (last.start, last.end, last.finalised_at) == (7, 10, 9)
    # A NaN splits a run in two.
    spotter = OnlineSpotter(ProposalConfig(thresholds=(0.5,)), SNIPPET_S, 30.0)
    values = [0.0, 0.9, 0.9, np.nan, 0.9, 0.9, 0.0, 0.0, 0.0]
    spans = [(s.start, s.end) for j, v in enumerate(values) for s in spotter.push(j, [v, 0.0], v)]
    assert sorted(spans + [(s.start, s.end) for s in spotter.flush()]) == [(1, 3), (4, 6)]
    # Bad input and configuration.
    with pytest.raises(ValueError, match="2 values"):
        OnlineSpotter(config, SNIPPET_S, 30.0).push(0, [0.1, 0.2, 0.3], 0.1)
    with pytest.raises(ValueError, match="finite or NaN"):
        OnlineSpotter(config, SNIPPET_S, 30.0).push(0, [0.1, np.inf], 0.1)
    with pytest.raises(ConfigError, match="video_scores"):
        OnlineSpotter(CONFIGS["video-weight"], SNIPPET_S, 30.0)
    with pytest.raises(ConfigError, match=">= 1 frame"):
        OnlineSpotter(config, 0.01, 30.0)
    with pytest.raises(ConfigError, match="top_window_s"):
        OnlineSpotter(PRESETS["mc-wes-casme2"], SNIPPET_S, 30.0, top_window_s=2.0, video_scores=[0, 0])


def test_memory_stays_bounded_over_100k_pushes() -> None:
    rng = np.random.default_rng(5)
    n = 100_000
    act = rng.uniform(0.0, 0.3, n)
    starts = np.flatnonzero(rng.random(n) < 0.01)
    for k in range(4):
        act[np.minimum(starts + k, n - 1)] = 0.8
    act[rng.random(n) < 0.01] = np.nan
    cls = np.stack([act, act / 2], axis=1)
    config = ProposalConfig(thresholds=(0.5,))
    spotter = OnlineSpotter(config, SNIPPET_S, 30.0)
    bound = 2 * spotter.lmax + spotter.bmax + 1
    most_pending = most_unfinalised = published = 0
    for j in range(n):
        published += len(spotter.push(j, cls[j], act[j]))
        most_pending = max(most_pending, spotter.pending_spans)
        most_unfinalised = max(most_unfinalised, spotter.unfinalised_snippets)
    published += len(spotter.flush())
    assert published > 500
    assert spotter.window_len <= spotter.capacity < 100
    assert most_unfinalised <= bound
    assert most_pending <= bound


def test_multi_top_is_sane() -> None:
    """Multi-top cannot be exact (k depends on T); online uses a sliding window of T snippets."""
    n = 900
    rng = np.random.default_rng(2)
    act = rng.uniform(0.0, 0.2, n)
    bumps = list(range(40, n - 20, 60))
    for b in bumps:
        act[b : b + 3] = [0.7, 0.95, 0.7]  # clear bumps, one every 16 s
    act[300:320] = np.nan
    cls = np.stack([act, act * 0.8], axis=1)
    config = dataclasses.replace(PRESETS["mc-wes-casme2"], video_score_weight=0.0)
    spotter = OnlineSpotter(config, SNIPPET_S, 30.0, top_window_s=30.0)
    online = stream_all(spotter, cls, act)
    ivs = [s.interval for s in online]
    # No duplicates: joint NMS at IoU 0.01 means no two published intervals overlap.
    for i, a in enumerate(ivs):
        for b in ivs[i + 1 :]:
            assert a.iou(b) <= config.nms_iou
    # Bounded latency: exactly bmax snippets after the last snippet (flush excepted).
    assert {s.latency_snippets for s in online if s.finalised_at < n - 1} == {spotter.bmax}
    # Every clear bump outside the NaN stretch is found.
    found = {b for b in bumps for iv in ivs if iv.onset <= b * 8 + 12 <= iv.offset}
    assert found == {b for b in bumps if not 300 <= b < 320}
    assert spotter.window_len <= spotter.capacity == round(30.0 / SNIPPET_S)


@pytest.mark.parametrize("kind", ["smooth", "spiky", "ties"])
@pytest.mark.parametrize("shift", [(0.0, 0.0), (-0.2, 4 / 15)])
def test_multi_top_skips_only_pushes_that_publish_nothing(kind: str, shift, monkeypatch) -> None:
    """The multi-top spotter runs `propose` only where a span can end; every interval, its
    finalising snippet and capture time are those of running it at every push."""
    config = dataclasses.replace(
        PRESETS["mc-wes-casme2"], video_score_weight=0.0, nms_iou=0.1, offset_shift_s=shift
    )
    published = 0
    for seed in range(3):
        cls, act = make_scores(seed, 700, "smooth" if kind == "smooth" else "spiky")
        if kind == "ties":  # saturated and quantised scores: many equal values to rank
            act = np.where(np.isnan(act), np.nan, np.round(act * 4) / 4)
        calls = []
        run = OnlineSpotter._propose

        def counted(self, *args, _run=run, _calls=calls, **kwargs):
            _calls.append(1)
            return _run(self, *args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(OnlineSpotter, "_propose", counted)
            fast = stream_all(OnlineSpotter(config, 4 / 30, 30.0, top_window_s=20.0), cls, act, n_frames=2800)
            skipping = len(calls)
            m.setattr(OnlineSpotter, "_top_run_may_end", lambda *a: True)
            every = stream_all(
                OnlineSpotter(config, 4 / 30, 30.0, top_window_s=20.0), cls, act, n_frames=2800
            )
        assert fast == every
        assert skipping < 0.5 * (len(calls) - skipping)
        published += len(every)
    assert published >= 8  # intervals compared, over the seeds


def test_offset_shift_moves_offsets_by_type_and_clips_at_the_end() -> None:
    """MaE offsets move later, ME offsets sooner (never before the onset); a MaE whose new offset
    passes the stream's end is clipped to the last frame, online as offline."""
    config = ProposalConfig(type_rule="duration", offset_shift_s=(-0.5, 1.0))
    act = np.zeros(120)
    act[10:13] = 0.9  # 3 snippets of 8 frames: 24 frames at 30 fps, an ME by duration
    act[40:52] = 0.9  # 96 frames: a MaE
    act[-10:] = 0.9  # a MaE touching the end
    cls = np.stack([act, act], axis=1)
    n_frames = 120 * 8
    plain = propose(
        cls,
        dataclasses.replace(config, offset_shift_s=(0.0, 0.0)),
        snippet_s=SNIPPET_S,
        fps=30.0,
        actionness=act,
        n_frames=n_frames,
    )
    shifted = propose(cls, config, snippet_s=SNIPPET_S, fps=30.0, actionness=act, n_frames=n_frames)
    assert [iv.onset for iv in shifted] == [iv.onset for iv in plain]
    for a, b in zip(plain, shifted, strict=True):
        if a.type == ExpressionType.ME:
            assert b.offset == max(a.onset, a.offset - 15)
        else:
            assert b.offset == min(a.offset + 30, n_frames - 1)
    assert max(iv.offset for iv in shifted) == n_frames - 1
    spotter = OnlineSpotter(config, SNIPPET_S, 30.0)
    online = stream_all(spotter, cls, act, n_frames=n_frames)
    assert by_time([s.interval for s in online]) == by_time(shifted)
    for s in online:  # nothing published ends after the newest frame seen
        assert s.interval.offset <= (s.finalised_at + 1) * 8 - 1


def test_offset_shift_is_validated_and_round_trips() -> None:
    config = ProposalConfig(offset_shift_s=[-0.1, 0.2])
    assert config.offset_shift_s == (-0.1, 0.2)
    assert ProposalConfig.from_dict(config.to_dict()) == config
    assert ProposalConfig.from_dict(
        {k: v for k, v in config.to_dict().items() if k != "offset_shift_s"}
    ).offset_shift_s == (0.0, 0.0)
    for bad in ((0.1,), (0.0, 3.0), (0.0, float("nan")), "ab", (True, 0.0)):
        with pytest.raises(ConfigError, match="offset_shift_s"):
            ProposalConfig(offset_shift_s=bad)
