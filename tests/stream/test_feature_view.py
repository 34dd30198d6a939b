"""Reading one feature configuration out of features extracted with a richer one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.config import FeatureConfig
from stream.errors import ConfigError
from stream.extract_cache import FeatureCache
from stream.feature_view import feature_view
from stream.pipeline import extract

RICH = FeatureConfig()  # two flow scales, eye openness, 4-frame grid with an 8-frame window
LEAN = FeatureConfig(flow_scales_s=(0.1,), eye_openness=False, hop_s=8 / 30, window_s=8 / 30)


@pytest.fixture(scope="module")
def extractions(videos: Path) -> dict[str, object]:
    clip = videos / "single_face.mp4"
    return {"rich": extract(clip, RICH), "lean": extract(clip, LEAN)}


def _arrays(x) -> dict[str, np.ndarray]:
    return {"motion": x.motion, "geometry": x.geometry, "valid": x.valid, "start_s": x.start_s}


def test_a_view_gives_the_numbers_of_direct_extraction(extractions) -> None:
    rich, lean = extractions["rich"], extractions["lean"]
    view = feature_view(RICH, LEAN)
    got = view.apply(_arrays(rich))
    assert view.stride == 2
    assert got["motion"].shape == lean.motion.shape and got["geometry"].shape == lean.geometry.shape
    np.testing.assert_array_equal(got["start_s"], lean.start_s)
    both = got["valid"] & lean.valid
    assert both.sum() >= len(lean.valid) - 2
    np.testing.assert_array_equal(got["motion"][both], lean.motion[both])  # exactly
    np.testing.assert_array_equal(got["geometry"][both], lean.geometry[both])
    # the view may only lose validity where the dropped longer scale was still warming up
    assert not (got["valid"] & ~lean.valid).any()
    lost = np.flatnonzero(lean.valid & ~got["valid"])
    assert (lost * LEAN.snippet_seconds < max(RICH.flow_scales_s) + LEAN.window_s).all()


def test_the_cache_reads_a_lean_configuration_out_of_a_rich_one(
    tmp_path: Path, videos: Path, extractions
) -> None:
    from engine.data.features import dataset_features
    from engine.data.records import Dataset, VideoRecord

    clip = tmp_path / "clip.mp4"
    clip.write_bytes((videos / "single_face.mp4").read_bytes())
    FeatureCache(tmp_path / "features", RICH).store(clip, extractions["rich"])
    dataset = Dataset("csv", 30.0, [VideoRecord("clip", "s1", 30.0)])
    feats = dataset_features(dataset, tmp_path, tmp_path / "features", LEAN, extract=None)["clip"]
    assert not (tmp_path / "features" / LEAN.digest()).exists()  # nothing extracted
    assert feats.motion.shape[1] == extractions["lean"].motion.shape[1]
    assert feats.config == LEAN and feats.snippet_s == pytest.approx(8 / 30)


@pytest.mark.parametrize(
    "target,match",
    [
        (FeatureConfig(flow_scales_s=(0.1, 0.3)), r"flow_scales_s: \[0.3\]"),
        (FeatureConfig(pooling="robust"), "pooling"),
        (FeatureConfig(hop_s=6 / 30), "hop_s"),
        (FeatureConfig(hop_s=8 / 30, window_s=12 / 30), "window_s"),
    ],
)
def test_what_a_view_cannot_give_is_refused_naming_the_field(target: FeatureConfig, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        feature_view(RICH, target)
    with pytest.raises(ConfigError, match="eye_openness"):
        feature_view(LEAN, FeatureConfig(flow_scales_s=(0.1,), hop_s=8 / 30, window_s=8 / 30))
