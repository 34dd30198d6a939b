"""Neutral baseline: robust per-person normalisation, the same offline (per video) and live."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.neutral import NeutralBaseline, NeutralCollector, normalise_video, resting_snippets
from engine.bundle import load_bundle, save_bundle
from engine.data.features import VideoFeatures
from engine.export import export, random_windows
from engine.models import NetworkConfig, build_network
from engine.runtime import open_backend, stream_scores
from engine.train import TrainConfig, network_inputs, predict
from stream.config import FeatureConfig
from stream.errors import ConfigError

SNIPPET_S = FeatureConfig().snippet_seconds


def test_fit_is_robust_to_a_blink_in_the_resting_window() -> None:
    rng = np.random.default_rng(0)
    motion = 0.2 + 0.05 * rng.standard_normal((30, 4))  # (N, Dm) a person's resting noise
    geometry = 1.0 + 0.01 * rng.standard_normal((30, 3))
    clean = NeutralBaseline.fit(motion, geometry)
    blinked = motion.copy()
    blinked[10:12] = 5.0  # a blink: 2 of 30 snippets far out
    robust = NeutralBaseline.fit(blinked, geometry)
    assert np.allclose(clean.motion_level, 0.2, atol=0.03)
    assert np.allclose(clean.motion_spread, 0.05, rtol=0.4)
    assert np.allclose(robust.motion_level, clean.motion_level, atol=0.02)
    assert np.allclose(robust.motion_spread, clean.motion_spread, rtol=0.3)
    # A feature that does not move at rest is divided by the floor, never by zero.
    flat = NeutralBaseline.fit(np.zeros((5, 2)), np.ones((5, 2)))
    assert np.all(flat.motion_spread > 0) and np.all(
        np.isfinite(flat.apply(np.ones((3, 2)), np.ones((3, 2)), np.ones(3))[0])
    )
    with pytest.raises(ConfigError, match="resting"):
        NeutralBaseline.fit(np.zeros((0, 2)), np.zeros((0, 2)))


def test_normalise_video_skips_the_resting_window_and_standardises_the_rest() -> None:
    motion, geometry, valid = (a[0] for a in random_windows(1, 80, 6, 5, seed=1))
    valid[:2] = False  # no face at first
    m, g, ok, baseline = normalise_video(motion, geometry, valid, SNIPPET_S, seconds=2.0)
    rest = resting_snippets(valid, SNIPPET_S, 2.0)
    assert baseline is not None and baseline.snippets == len(rest) == round(2.0 / SNIPPET_S)
    assert not ok[: rest[-1] + 1].any() and ok[rest[-1] + 1 :].all() == valid[rest[-1] + 1 :].all()
    j = rest[-1] + 5
    assert np.allclose(m[j], (motion[j] - baseline.motion_level) / baseline.motion_spread, atol=1e-5)
    assert np.all(m[~ok] == 0) and np.all(g[~ok] == 0)
    # Too short a video for the resting window: nothing is scored.
    _, _, none_ok, none = normalise_video(motion[:5], geometry[:5], valid[:5], SNIPPET_S, seconds=2.0)
    assert none is None and not none_ok.any()


def test_collector_matches_the_offline_baseline_and_restarts() -> None:
    motion, geometry, valid = (a[0] for a in random_windows(1, 40, 6, 5, seed=2))
    valid[3] = False
    _, _, _, offline = normalise_video(motion, geometry, valid, SNIPPET_S, seconds=1.5)
    live = NeutralCollector(SNIPPET_S, 1.5)
    readiness = [live.observe(motion[j], geometry[j], bool(valid[j])) for j in range(len(valid))]
    assert live.ready and readiness.index(True) == resting_snippets(valid, SNIPPET_S, 1.5)[-1]
    np.testing.assert_array_equal(live.baseline.motion_level, offline.motion_level)
    np.testing.assert_array_equal(live.baseline.geometry_spread, offline.geometry_spread)
    live.restart()
    assert not live.ready
    with pytest.raises(ConfigError, match="not collected"):
        live.apply(motion[0], geometry[0], True)


@pytest.mark.parametrize("backend_name", ["torch", "onnxruntime"])
def test_offline_equals_live_with_a_neutral_baseline(tmp_path: Path, backend_name: str) -> None:
    torch.manual_seed(0)
    network = build_network(NetworkConfig(network="gim", embed_dim=16, neutral_s=1.0)).eval()
    folder = save_bundle(
        tmp_path / "n.mespot",
        network,
        TrainConfig(network=network.config, method="full"),
        FeatureConfig(flow_scales_s=(0.1,), eye_openness=False),  # 153 + 153 inputs
    )
    export(folder, "onnx")
    bundle = load_bundle(folder)
    motion, geometry, valid = (a[0] for a in random_windows(1, 150, 153, 153, seed=3))
    valid[:4] = False
    valid[60:66] = False
    feats = VideoFeatures("v", motion * valid[:, None], geometry * valid[:, None], valid, SNIPPET_S, 30.0)
    net = bundle.network()
    want = predict(net, bundle.method(net), feats)
    seen = network_inputs(feats, bundle.network_config)
    assert not seen.valid[: 4 + round(1.0 / SNIPPET_S)].any()  # the resting window is not scored
    with open_backend(bundle, backend_name) as backend:
        got = stream_scores(backend, feats.motion, feats.geometry, feats.valid)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5, equal_nan=True)
