"""The seeded script: deterministic, and statistically like CAS(ME)^2 (durations, density, background)."""

from __future__ import annotations

import numpy as np
import pytest

from stream.errors import ConfigError
from stream.intervals import ExpressionType
from stream.synth.actions import ACTION_UNITS, profile
from stream.synth.dataset import timeline_stats
from stream.synth.timeline import Envelope, Timeline, TimelineConfig


def test_profile_rises_holds_and_falls() -> None:
    t = np.arange(0, 21)
    v = profile(t, 2, 8, 12, 20)
    assert v[2] == 0 and v[20] == 0 and v[8] == 1 and np.all(v[8:13] == 1)
    assert np.all(np.diff(v[2:9]) > 0) and np.all(np.diff(v[12:21]) < 0)
    env = Envelope(2, 8, 12, 20)
    assert env.value(2) == 0 and env.value(10) == 1 and env.length == 19
    assert env.progress(2) == 0 and env.progress(30) == 1


def test_same_seed_same_timeline_and_a_longer_video_keeps_its_beginning() -> None:
    config = TimelineConfig()
    a = Timeline.generate(config, 3, 600).to_dict()
    b = Timeline.generate(config, 3, 600).to_dict()
    assert a == b
    assert Timeline.generate(config, 4, 600).to_dict()["expressions"] != a["expressions"]
    short = Timeline.generate(config, 3, 120)  # two whole segments of the 600 s timeline
    long = Timeline.generate(config, 3, 600)
    assert short.expressions == [e for e in long.expressions if e.envelope.offset < short.n_frames]
    assert short.blinks == [b for b in long.blinks if b.envelope.offset < short.n_frames]
    endless = Timeline.endless(config, 3)
    for n in (0, 1000, 3599, 2500):
        assert endless.state(n) == long.state(n)


@pytest.fixture(scope="module")
def many() -> list[Timeline]:
    """Twelve 10-minute timelines (two hours: the statistics settle)."""
    return [Timeline.generate(TimelineConfig(), seed, 600) for seed in range(12)]


def test_durations_amplitudes_and_action_units_stay_in_their_ranges(many: list[Timeline]) -> None:
    fps = 30.0
    me_lo, me_hi = TimelineConfig().me_amplitude
    mae_lo, mae_hi = TimelineConfig().mae_amplitude
    assert me_hi <= mae_lo  # micro-expressions are the weaker ones
    for t in many:
        for e in t.expressions:
            seconds = e.envelope.length / fps
            if e.type is ExpressionType.ME:
                assert 0.17 <= seconds <= 0.5
                assert me_lo <= e.amplitude <= me_hi
                assert 1 <= len(e.aus) <= 2
                assert len({ACTION_UNITS[a.au].half for a in e.aus}) == 1  # local
            else:
                assert 0.5 < seconds <= 4.0
                assert mae_lo <= e.amplitude <= mae_hi
                assert 1 <= len(e.aus) <= 4
            assert e.envelope.onset < e.envelope.apex < e.envelope.offset
            assert max(a.weight for a in e.aus) == 1.0
        for b in t.blinks:
            assert 0.1 <= b.envelope.length / fps <= 0.4
        # distractors never overlap an ME (the ME's label stays clean), blinks do overlap MaEs
        mes = [e.envelope for e in t.expressions if e.type is ExpressionType.ME]
        for ev in [*t.blinks, *t.head_moves, *t.light_changes]:
            assert not any(ev.envelope.onset <= m.offset and m.onset <= ev.envelope.offset for m in mes)
        assert t.expressions[0].envelope.onset >= 2.5 * fps  # the tracker and neutral settle first


def test_density_and_background_share_are_close_to_casme2(many: list[Timeline]) -> None:
    stats = timeline_stats(many)
    assert 2.8 <= stats["expressions"]["per_100s"] <= 4.3, stats["expressions"]
    assert 0.94 <= stats["background_share"] <= 0.98, stats["background_share"]
    assert 0.25 <= stats["expressions"]["me_share"] <= 0.42
    assert sum(stats["me"]["by_a_mae"].values()) >= 3  # some MEs next to or inside a MaE
    assert 5 <= stats["blink"]["per_min"] <= 19
    assert stats["blink"]["shorter_than_0.5s"] == stats["blink"]["count"]  # as short as MEs
    assert all(stats["head"]["by_kind"][k] > 0 for k in ("shift", "excursion", "posture"))
    assert stats["light"]["count"] > 0 and stats["jpeg_videos"] > 0


def test_high_frame_rates_keep_durations_in_seconds() -> None:
    t = Timeline.generate(TimelineConfig(fps=200.0, density=20.0), 1, 120)
    assert t.expressions
    for e in t.expressions:
        seconds = e.envelope.length / 200.0
        assert (0.17 <= seconds <= 0.5) if e.type is ExpressionType.ME else (0.5 < seconds <= 4.0)


def test_bad_configuration_names_the_key() -> None:
    with pytest.raises(ConfigError, match="density"):
        TimelineConfig(density=-1)
    with pytest.raises(ConfigError, match="me_duration"):
        TimelineConfig(me_duration=(0.4, 0.2))
    with pytest.raises(ConfigError, match="unknown timeline config keys"):
        TimelineConfig.from_dict({"densty": 3})
    with pytest.raises(ConfigError, match="seed"):
        Timeline.generate(TimelineConfig(), -1, 10)
