"""The feature configuration: validation, round trip, hash."""

from __future__ import annotations

import pytest

from stream.config import FeatureConfig
from stream.errors import ConfigError


def test_round_trip_and_stable_digest() -> None:
    cfg = FeatureConfig(flow="farneback", skip_k=2)
    again = FeatureConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.digest() == cfg.digest()
    assert FeatureConfig().digest() != cfg.digest()
    assert FeatureConfig().snippet_seconds == pytest.approx(8 / 30)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"fps": 0}, "fps=0"),
        ({"skip_k": 0}, "skip_k=0"),
        ({"crop_size": 100.5}, "crop_size"),
        ({"flow": "lk"}, "flow='lk'"),
        ({"roi_set": "nope"}, "roi_set='nope'"),
        ({"snippet_frames": True}, "snippet_frames"),
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
