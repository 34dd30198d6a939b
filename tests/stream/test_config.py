"""The feature configuration: validation, round trip, hash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stream.config import FeatureConfig, check_number
from stream.errors import ConfigError


def test_round_trip_and_stable_digest() -> None:
    cfg = FeatureConfig(flow="farneback", flow_scales_s=(2 / 30, 0.2))
    again = FeatureConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.digest() == cfg.digest()
    assert FeatureConfig().digest() != cfg.digest()
    assert FeatureConfig().snippet_seconds == pytest.approx(4 / 30)
    assert (FeatureConfig().hop_frames, FeatureConfig().window_frames) == (4, 8)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"fps": 0}, "fps=0"),
        ({"flow_scales_s": (0,)}, "flow_scales_s=0"),
        ({"crop_size": 100.5}, "crop_size"),
        ({"flow": "lk"}, "flow='lk'"),
        ({"roi_set": "nope"}, "roi_set='nope'"),
        ({"hop_s": True}, "hop_s"),
        ({"hop_s": 0.15}, r"hop_s=0.15 s is 4.500 frames at fps=30"),
        ({"window_s": 0.01}, "window_s"),
        ({"hop_s": 8 / 30, "window_s": 4 / 30}, "window_s=.*must be >= hop_s"),
        ({"fps": 25}, r"hop_s=.* frames at fps=25"),
    ],
)
def test_bad_values_name_the_key(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FeatureConfig(**kwargs)


def test_unknown_keys_and_foreign_layout_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown feature config keys \['colour'\]"):
        FeatureConfig.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="layout version 99"):
        FeatureConfig.from_dict({"layout_version": 99})


def test_grid_in_seconds_serves_every_canonical_rate() -> None:
    # the same seconds, whole frames at 25, 30 and 200 fps
    for fps, hop, window in ((25, 4, 8), (30, 4, 8), (200, 32, 64)):
        cfg = FeatureConfig(fps=fps, hop_s=hop / fps, window_s=window / fps, flow_scales_s=(0.2, 0.4))
        assert (cfg.hop_frames, cfg.window_frames) == (hop, window)
    # a value typed to four digits is the same configuration as the exact fraction
    assert FeatureConfig(hop_s=0.1333).digest() == FeatureConfig().digest()


def test_flow_compose_is_recorded_only_when_on_so_older_digests_hold() -> None:
    # The shipped bundle's features were extracted before the option existed: same digest.
    bundle = json.loads((Path(__file__).parents[2] / "engine/assets/default.mespot/bundle.json").read_text())
    assert "flow_compose" not in FeatureConfig().to_dict()
    assert FeatureConfig.from_dict(bundle["features"]["config"]).digest() == bundle["features"]["digest"]
    composed = FeatureConfig(flow_compose=True)
    assert composed.to_dict()["flow_compose"] is True
    assert (
        FeatureConfig.from_dict(composed.to_dict()) == composed
        and composed.digest() != FeatureConfig().digest()
    )
    with pytest.raises(ConfigError, match="flow_compose"):
        FeatureConfig(flow_compose="yes")


def test_check_number_takes_numpy_scalars_as_the_numbers_they_hold() -> None:
    check_number("x", "a", np.float32(0.5), 0.0, 1.0)
    check_number("x", "b", np.int64(3), 1, 5, integer=True)
    for bad in (np.float64("nan"), np.bool_(True), np.array([0.5]), np.float64(2.0)):
        with pytest.raises(ConfigError, match="x c="):
            check_number("x", "c", bad, 0.0, 1.0)
    with pytest.raises(ConfigError, match="must be an integer"):
        check_number("x", "d", np.float64(3.0), 1, 5, integer=True)
