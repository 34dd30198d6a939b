"""The `gim` method: configuration, point targets, GIM pseudo labels, losses, scores and training."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from engine.data.features import VideoFeatures
from engine.data.records import VideoRecord
from engine.methods import METHODS, FullConfig, GimConfig, GimMethod, build_method
from engine.methods.gim import (
    gaussian_apex_frames,
    gaussian_labels,
    half_width,
    hard_negatives,
    pseudo_apex,
    pseudo_neutral,
    rough_duration,
)
from engine.models import NetworkConfig, build_network
from engine.train import TrainConfig, predict, spot, train
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval

SNIPPET_S = 8 / 30
FPS = 30.0
T = 96
DIM = 12
NET = NetworkConfig(
    network="gim", motion_dim=DIM, geometry_dim=DIM, embed_dim=16, dilations=(1,), window=8, dropout=0.0
)
ME, MAE = ExpressionType.ME, ExpressionType.MAE


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: one torch thread is much faster than two fighting for shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_video(name: str, seed: int, n: int = T) -> tuple[VideoRecord, VideoFeatures]:
    """Two MEs (1 snippet) and two MaEs (3-5 snippets) as motion bursts in noise; apex mid-burst."""
    rng = np.random.default_rng(seed)
    motion = rng.normal(0.0, 0.3, (n, DIM)).astype(np.float32)  # (T, Dm)
    geometry = rng.normal(0.0, 0.3, (n, DIM)).astype(np.float32)  # (T, Dg)
    kinds = [ME, ME, MAE, MAE]
    rng.shuffle(kinds)
    expressions = []
    start = int(rng.integers(6, 12))
    for kind in kinds:
        length = 1 if kind is ME else int(rng.integers(3, 6))
        dims = slice(0, 3) if kind is ME else slice(6, 9)
        motion[start : start + length, dims] += 2.0
        # Frames numbered from 1: snippet j covers frames 1 + 8j .. 8 + 8j.
        expressions.append(
            Interval(1 + 8 * start, 8 * (start + length), kind, apex=1 + 8 * start + 4 * length)
        )
        start += length + int(rng.integers(12, 18))
    assert start < n
    record = VideoRecord(name, "s1", FPS, tuple(expressions), n_frames=n * 8, first_frame=1)
    feats = VideoFeatures(name, motion, geometry, np.ones(n, bool), SNIPPET_S, FPS, first_frame=1)
    return record, feats


def make_method(**options) -> GimMethod:
    torch.manual_seed(0)
    network = build_network(NET)
    method = build_method("gim", network, options)
    assert isinstance(method, GimMethod)
    return method


def run_network(method: GimMethod, feats: VideoFeatures) -> tuple[np.ndarray, np.ndarray]:
    """(intensity (T,), intensity features (T, E)) of the method's network in eval mode."""
    net = method.network
    net.eval()
    with torch.no_grad():
        out = net(
            torch.from_numpy(feats.motion)[None],
            torch.from_numpy(feats.geometry)[None],
            torch.from_numpy(feats.valid)[None],
        )
    net.train()
    return out["intensity"][0].double().numpy(), out["intensity_embedding"][0].double().numpy()


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_defaults_are_the_papers_cas_me2_settings() -> None:
    c = GimConfig()
    assert c.kc_s == pytest.approx((16 / 30, 32 / 30))
    assert c.ks1_s == pytest.approx((3 / 30, 5 / 30)) and c.ks2_s == pytest.approx((2 / 30, 4 / 30))
    assert (c.delta, c.theta_start, c.theta_end, c.theta_epochs) == (1.2, 0.8, 0.5, 30)
    assert (c.stage1_epochs, c.stage2_epochs) == (1, 4)
    assert (c.lambda_smooth, c.lambda_norm, c.lambda_iac) == (0.1, 2.5, 1.4e-4)
    assert c.soft_labels and c.point_mode == "gaussian_apex"
    assert "gim" in METHODS
    method = make_method()
    assert method.whole_videos and set(method.snippet_targets) == {"points", "labels", "background"}


def test_config_from_dict_round_trips_through_json() -> None:
    c = GimConfig.from_dict({"kc_s": [0.5, 1.0], "soft_labels": False, "point_mode": "apex"})
    assert c.kc_s == (0.5, 1.0) and isinstance(c.kc_s, tuple)
    again = GimConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c
    method = build_method("gim", build_network(NET), {"stage2_epochs": 0})
    assert method.config.stage2_epochs == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("delta", 0.5),
        ("delta", "1.2"),
        ("theta_start", 1.0),
        ("theta_end", 0.9),
        ("theta_end", 0.0),
        ("theta_epochs", -1),
        ("stage1_epochs", 1.5),
        ("stage2_epochs", True),
        ("kc_s", (0.0, 1.0)),
        ("kc_s", [0.5]),
        ("ks1_s", (-0.1, 0.1)),
        ("ks2_s", "0.1"),
        ("soft_labels", "yes"),
        ("point_mode", "middle"),
        ("point_sigma", 2.0),
        ("temperature", 0.0),
        ("lambda_iac", -1.0),
        ("lambda_norm", math.nan),
    ],
)
def test_bad_values_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        GimConfig.from_dict({key: value})
    with pytest.raises(ConfigError, match=key):
        TrainConfig(method="gim", network=NET, method_options={key: value})


def test_unknown_keys_and_foreign_configs_fail() -> None:
    with pytest.raises(ConfigError, match="lambda_contrast"):
        GimConfig.from_dict({"lambda_contrast": 1.0})
    with pytest.raises(ConfigError, match="GimConfig"):
        build_method("gim", build_network(NET), FullConfig())


# --------------------------------------------------------------------------------------------
# Grid conversion, schedule
# --------------------------------------------------------------------------------------------


def test_paper_frames_become_snippet_half_widths() -> None:
    c = GimConfig()
    for snippet_s, search, window, ks1, ks2 in (
        (8 / 30, (1, 1), (1, 2), (0, 1), (0, 1)),
        (4 / 30, (1, 2), (2, 4), (1, 1), (1, 1)),
    ):
        assert tuple(half_width(k / 4, snippet_s) for k in c.kc_s) == search
        assert tuple(half_width(k / 2, snippet_s) for k in c.kc_s) == window
        assert tuple(half_width(k, snippet_s) for k in c.ks1_s) == ks1
        assert tuple(half_width(k, snippet_s) for k in c.ks2_s) == ks2


def test_stages_switch_at_the_configured_epochs() -> None:
    method = make_method()
    assert [method.stage(e) for e in range(8)] == [1, 2, 2, 2, 2, 3, 3, 3]
    method = make_method(stage1_epochs=0, stage2_epochs=2)
    assert [method.stage(e) for e in range(4)] == [2, 2, 3, 3]
    method = make_method(stage1_epochs=3, stage2_epochs=0)
    assert [method.stage(e) for e in range(5)] == [1, 1, 1, 3, 3]


def test_theta_falls_linearly_then_stays() -> None:
    method = make_method()
    assert method.theta(0) == pytest.approx(0.8)
    assert method.theta(15) == pytest.approx(0.65)
    assert method.theta(30) == pytest.approx(0.5)
    assert method.theta(99) == pytest.approx(0.5)
    values = [method.theta(e) for e in range(40)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert make_method(theta_epochs=0).theta(0) == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# Point targets and stage-1 hard labels
# --------------------------------------------------------------------------------------------


def test_point_targets_hold_one_snippet_per_expression() -> None:
    record, feats = make_video("v", 1)
    targets = make_method(point_mode="apex").targets(record, feats, np.random.default_rng(0))
    assert set(targets) == {"points", "labels", "background"}
    points = targets["points"]
    assert points.shape == (T, 2) and points.dtype == np.float32
    for iv in record.expressions:
        col = 0 if iv.type is ME else 1
        assert points[(iv.apex - 1) // 8, col] == 1.0
    assert points.sum() == len(record.expressions)


@pytest.mark.parametrize("mode", ["gaussian_apex", "random"])
def test_sampled_points_lie_inside_their_expressions_and_follow_the_seed(mode: str) -> None:
    record, feats = make_video("v", 2)
    method = make_method(point_mode=mode)
    a = method.targets(record, feats, np.random.default_rng(5))["points"]
    b = method.targets(record, feats, np.random.default_rng(5))["points"]
    np.testing.assert_array_equal(a, b)
    for iv in record.expressions:
        col = 0 if iv.type is ME else 1
        inside = a[(iv.onset - 1) // 8 : (iv.offset - 1) // 8 + 1, col]
        assert inside.sum() == 1.0
    assert a.sum() == len(record.expressions)


def test_gaussian_apex_frames_centre_on_the_apex() -> None:
    iv = Interval(101, 160, MAE, apex=120)
    record = VideoRecord("v", "s", FPS, (iv,), n_frames=400)
    rng = np.random.default_rng(0)
    frames = np.array([gaussian_apex_frames(record, rng, 1 / 6)[0].frame for _ in range(400)])
    assert frames.min() >= 101 and frames.max() <= 160
    assert abs(np.median(frames) - 120) <= 2
    assert 3 < frames.std() < 12  # sigma = 60 / 6 = 10 frames, truncated at the onset side
    assert gaussian_apex_frames(record, rng, 0.0)[0].frame == 120


def test_stage1_labels_cover_exactly_the_hard_range_clipped_to_the_video() -> None:
    iv_me = Interval(41, 48, ME, apex=44)  # snippet 5
    iv_mae_start = Interval(1, 24, MAE, apex=3)  # point in snippet 0: range clipped at the start
    iv_mae_end = Interval(8 * 19 + 1, 8 * 20, MAE, apex=8 * 19 + 4)  # snippet 19 = the last one
    record = VideoRecord("v", "s", FPS, (iv_me, iv_mae_start, iv_mae_end), n_frames=160, first_frame=1)
    feats = VideoFeatures("v", np.zeros((20, DIM), np.float32), np.zeros((20, DIM), np.float32),
                          np.ones(20, bool), SNIPPET_S, FPS, first_frame=1)  # fmt: skip
    labels = make_method(point_mode="apex").targets(record, feats, np.random.default_rng(0))["labels"]
    # ME k_s1 = 3 frames -> 0 snippets; MaE k_s1 = 5 frames -> 1 snippet at 8/30 s.
    np.testing.assert_array_equal(np.flatnonzero(labels[:, 0]), [5])
    np.testing.assert_array_equal(np.flatnonzero(labels[:, 1]), [0, 1, 18, 19])
    assert set(np.unique(labels)) == {0.0, 1.0}
    wide = make_method(point_mode="apex", ks1_s=(16 / 30, 5 / 30)).targets(record, feats, 0)["labels"]
    np.testing.assert_array_equal(np.flatnonzero(wide[:, 0]), [3, 4, 5, 6, 7])


def test_points_past_the_feature_grid_are_dropped() -> None:
    record, feats = make_video("v", 3)
    short = VideoFeatures("v", feats.motion[:20], feats.geometry[:20], feats.valid[:20], SNIPPET_S, FPS, 1)
    points = make_method(point_mode="apex").targets(record, short, np.random.default_rng(0))["points"]
    assert points.shape == (20, 2)
    assert points.sum() == sum((iv.apex - 1) // 8 < 20 for iv in record.expressions)


# --------------------------------------------------------------------------------------------
# GIM steps (eq. 1-5)
# --------------------------------------------------------------------------------------------


def test_pseudo_apex_is_the_highest_valid_snippet_within_the_search_range() -> None:
    a = np.array([0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.95, 0.2])
    valid = np.ones(8, bool)
    assert pseudo_apex(a, valid, 4, 1) == 5
    assert pseudo_apex(a, valid, 4, 2) == 6
    assert pseudo_apex(a, valid, 4, 0) == 4
    assert pseudo_apex(a, valid, 0, 3) == 2  # clipped at the start
    valid[6] = False
    assert pseudo_apex(a, valid, 4, 2) == 2  # 0.95 is at an invalid snippet
    assert pseudo_apex(np.full(8, 0.5), np.ones(8, bool), 4, 3) == 4  # ties: nearest the point
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.random(40)
        p, half = int(rng.integers(0, 40)), int(rng.integers(0, 6))
        v = pseudo_apex(a, np.ones(40, bool), p, half)
        assert abs(v - p) <= half
        assert a[v] == a[max(0, p - half) : p + half + 1].max()


def test_duration_grows_as_theta_falls() -> None:
    a = np.array([0.0, 0.3, 0.55, 0.7, 0.85, 0.95, 0.85, 0.6, 0.45, 0.2, 0.0])
    valid = np.ones(len(a), bool)
    durations = [rough_duration(a, valid, 5, 5, theta) for theta in (0.9, 0.8, 0.65, 0.5, 0.4, 0.1)]
    assert durations == [1, 3, 4, 6, 7, 9]
    assert rough_duration(a, valid, 5, 1, 0.5) == 3  # limited to k_c / 2 around the apex
    assert rough_duration(a, valid, 5, 5, 0.99) == 1  # the pseudo-apex itself always counts
    valid[3] = False
    assert rough_duration(a, valid, 5, 5, 0.5) == 5
    # Over the schedule: theta falls, so the estimate of a fixed intensity profile never shrinks.
    method = make_method()
    by_epoch = [rough_duration(a, np.ones(len(a), bool), 5, 5, method.theta(e)) for e in range(0, 40, 5)]
    assert all(x <= y for x, y in itertools.pairwise(by_epoch)) and by_epoch[0] < by_epoch[-1]


def test_gaussian_labels_peak_at_the_centre_and_lie_in_0_1() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    valid = np.ones(30, bool)
    idx, values = gaussian_labels(x, valid, 12, 3, 1.2 * 6)
    np.testing.assert_array_equal(idx, np.arange(9, 16))
    assert values[idx == 12][0] == 1.0
    assert np.all((values > 0) & (values <= 1)) and np.sum(values == 1.0) == 1
    d2 = ((x[9:16] - x[12]) ** 2).sum(1)
    np.testing.assert_allclose(values, np.exp(-d2 / (2 * d2.sum() / 7.2)))
    valid[14] = False
    idx, _ = gaussian_labels(x, valid, 12, 3, 7.2)
    assert 14 not in idx
    idx, values = gaussian_labels(x, np.ones(30, bool), 1, 3, 7.2)
    np.testing.assert_array_equal(idx, np.arange(0, 5))  # clipped at the start
    same = np.ones((10, 4))
    assert np.all(gaussian_labels(same, np.ones(10, bool), 5, 2, 6.0)[1] == 1.0)


def test_stage3_labels_peak_at_the_pseudo_apex_within_its_estimated_range() -> None:
    record, feats = make_video("v", 4)
    for soft in (True, False):
        method = make_method(point_mode="apex", soft_labels=soft, half_min_s=(0, 0), half_max_s=(10, 10))
        targets = method.targets(record, feats, np.random.default_rng(0))
        epoch = 7
        assert method.stage(epoch) == 3
        fresh = method.on_step(
            0, epoch, method.network, [(record, feats)], [targets], np.random.default_rng(1)
        )
        assert fresh is not None and len(fresh) == 1
        labels = fresh[0]["labels"]
        np.testing.assert_array_equal(fresh[0]["points"], targets["points"])
        assert labels.shape == (T, 2) and labels.dtype == np.float32
        a, _ = run_network(method, feats)
        for c in range(2):
            search = half_width(method.config.kc_s[c] / 4, SNIPPET_S)
            window = half_width(method.config.kc_s[c] / 2, SNIPPET_S)
            covered = np.zeros(T, bool)
            for p in np.flatnonzero(targets["points"][:, c]):
                v = pseudo_apex(a, feats.valid, int(p), search)
                assert abs(v - p) <= search
                assert labels[v, c] == 1.0
                duration = rough_duration(a, feats.valid, v, window, method.theta(epoch))
                half = math.floor(1.2 * duration / 2 + 1e-9)
                span = slice(max(0, v - half), v + half + 1)
                assert np.all((labels[span, c] > 0) & (labels[span, c] <= 1))
                if not soft:
                    assert np.all(labels[span, c] == 1.0)
                covered[span] = True
            assert np.all(labels[~covered, c] == 0.0)


def test_stage2_labels_are_a_gaussian_on_the_labelled_snippet() -> None:
    record, feats = make_video("v", 5)
    method = make_method(point_mode="apex", ks2_s=(8 / 30, 16 / 30))  # 1 and 2 snippets
    targets = method.targets(record, feats, np.random.default_rng(0))
    fresh = method.on_step(0, 2, method.network, [(record, feats)], [targets], np.random.default_rng(1))
    labels = fresh[0]["labels"]
    for c, half in ((0, 1), (1, 2)):
        covered = np.zeros(T, bool)
        for p in np.flatnonzero(targets["points"][:, c]):
            assert labels[p, c] == 1.0
            span = slice(p - half, p + half + 1)
            assert np.all((labels[span, c] > 0) & (labels[span, c] <= 1))
            covered[span] = True
        assert np.all(labels[~covered, c] == 0.0)


def test_on_step_runs_once_per_epoch_from_stage_2_and_restores_the_mode() -> None:
    record, feats = make_video("v", 6)
    method = make_method()
    targets = [method.targets(record, feats, np.random.default_rng(0))]
    net, rng = method.network, np.random.default_rng(0)
    net.train()
    assert method.on_step(0, 0, net, [(record, feats)], targets, rng) is None  # stage 1
    assert method.on_step(1, 1, net, [(record, feats)], targets, rng) is not None
    assert net.training
    assert method.on_step(2, 1, net, [(record, feats)], targets, rng) is None  # same epoch
    net.eval()
    assert method.on_step(3, 2, net, [(record, feats)], targets, rng) is not None
    assert not net.training


def test_overlapping_instances_of_one_class_keep_one_label_per_snippet() -> None:
    a = Interval(8 * 10 + 1, 8 * 11, MAE, apex=8 * 10 + 4)  # snippet 10
    b = Interval(8 * 11 + 1, 8 * 12, MAE, apex=8 * 11 + 4)  # snippet 11
    record = VideoRecord("v", "s", FPS, (a, b), n_frames=8 * 30, first_frame=1)
    rng = np.random.default_rng(0)
    feats = VideoFeatures("v", rng.normal(size=(30, DIM)).astype(np.float32),
                          rng.normal(size=(30, DIM)).astype(np.float32), np.ones(30, bool),
                          SNIPPET_S, FPS, first_frame=1)  # fmt: skip
    # Stage 2 throughout, MaE range +-2 snippets: the two ranges share snippets 9-12.
    method = make_method(point_mode="apex", ks2_s=(0.1, 16 / 30), stage2_epochs=100)
    targets = method.targets(record, feats, rng)
    seen = set()
    for seed in range(8):
        out = method.on_step(
            0, 1 + seed, method.network, [(record, feats)], [targets], np.random.default_rng(seed)
        )
        labels = out[0]["labels"][:, 1]
        np.testing.assert_array_equal(np.flatnonzero(labels), np.arange(8, 14))
        assert np.all(labels <= 1.0)
        seen.add(tuple(np.round(labels[9:13], 6)))
    assert len(seen) > 1  # the retained label varies with the random draw


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def batch_of(method: GimMethod, pairs, stage3: bool = True):
    """Whole-video batch tensors: motion, geometry, valid, targets."""
    rng = np.random.default_rng(0)
    targets = [method.targets(r, f, rng) for r, f in pairs]
    if stage3:
        targets = method.on_step(0, 9, method.network, pairs, targets, rng)
    n = max(len(f.valid) for _, f in pairs)

    def pad(x):
        return np.concatenate([x, np.zeros((n - len(x), *x.shape[1:]), x.dtype)])

    motion = torch.from_numpy(np.stack([pad(f.motion) for _, f in pairs]))
    geometry = torch.from_numpy(np.stack([pad(f.geometry) for _, f in pairs]))
    valid = torch.from_numpy(np.stack([pad(f.valid) for _, f in pairs]))
    tgt = {k: torch.from_numpy(np.stack([pad(t[k]) for t in targets])) for k in targets[0]}
    return motion, geometry, valid, tgt


def test_loss_is_finite_and_reaches_both_branches() -> None:
    method = make_method()
    pairs = [make_video("a", 7), make_video("b", 8, n=80)]
    motion, geometry, valid, tgt = batch_of(method, pairs)
    assert tgt["labels"].shape == (2, T, 2)
    net = method.network
    net.train()
    outputs = net(motion, geometry, valid)
    loss, parts = method.loss(outputs, tgt, valid)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(parts) == {"gim", "action", "smooth", "norm", "iac"}
    assert all(math.isfinite(v) for v in parts.values()) and parts["iac"] > 0 and parts["action"] > 0
    c = method.config
    expected = (
        parts["gim"]
        + parts["action"]
        + c.lambda_smooth * parts["smooth"]
        + c.lambda_norm * parts["norm"]
        + c.lambda_iac * parts["iac"]
    )
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for name in ("intensity_branch", "action_branch", "backbone", "fusion"):
        grads = [p.grad for n, p in net.named_parameters() if n.startswith(name)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_loss_on_random_inputs_and_empty_targets() -> None:
    method = make_method()
    g = torch.Generator().manual_seed(0)
    outputs = {
        "intensity": torch.rand(3, 20, generator=g, requires_grad=True),
        "action": torch.randn(3, 20, 2, generator=g, requires_grad=True),
        "intensity_embedding": torch.randn(3, 20, 16, generator=g, requires_grad=True),
        "embedding": torch.randn(3, 20, 16, generator=g, requires_grad=True),
    }
    valid = torch.ones(3, 20, dtype=torch.bool)
    labels = torch.zeros(3, 20, 2)
    labels[0, 4:7, 0] = torch.tensor([0.6, 1.0, 0.7])
    labels[1, 10:15, 1] = 1.0
    loss, parts = method.loss(outputs, {"labels": labels, "points": torch.zeros(3, 20, 2)}, valid)
    assert torch.isfinite(loss)
    loss.backward()
    # IAC contrasts the shared feature F ("embedding"); the intensity branch's features are unused.
    assert outputs["intensity_embedding"].grad is None
    used = [v for k, v in outputs.items() if k != "intensity_embedding"]
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in used)
    branch = make_method(iac_source="intensity")
    b_loss, b_parts = branch.loss(outputs, {"labels": labels, "points": torch.zeros(3, 20, 2)}, valid)
    b_loss.backward()
    assert outputs["intensity_embedding"].grad is not None and b_parts["iac"] != parts["iac"]
    # No label at all: only the smooth and norm terms remain, still finite and differentiable.
    empty, parts = method.loss(outputs, {"labels": torch.zeros(3, 20, 2)}, valid)
    assert torch.isfinite(empty) and parts["gim"] == parts["action"] == parts["iac"] == 0.0
    empty.backward()


def test_invalid_snippets_do_not_change_the_loss() -> None:
    method = make_method()
    pairs = [make_video("a", 9), make_video("b", 10, n=100)]
    motion, geometry, valid, tgt = batch_of(method, pairs)
    valid[0, 40:46] = False
    valid[1, 0:3] = False
    net = method.network
    net.eval()  # no dropout anyway; eval keeps the comparison exact
    base, _ = method.loss(net(motion, geometry, valid), tgt, valid)
    m2, g2 = motion.clone(), geometry.clone()
    m2[~valid] = 50.0 * torch.randn_like(m2[~valid])
    g2[~valid] = -7.0
    changed, _ = method.loss(net(m2, g2, valid), tgt, valid)
    assert torch.equal(base, changed)
    # Outputs and labels at invalid snippets are ignored too.
    outputs = {k: v.clone() for k, v in net(motion, geometry, valid).items()}
    outputs["intensity"][~valid] = 0.9
    outputs["action"][~valid] = 30.0
    outputs["intensity_embedding"][~valid] = 5.0
    outputs["embedding"][~valid] = -5.0
    tgt2 = dict(tgt)
    tgt2["labels"] = tgt["labels"].clone()
    tgt2["labels"][~valid] = 1.0
    again, _ = method.loss(outputs, tgt2, valid)
    assert torch.allclose(base, again, rtol=0, atol=1e-6)


def test_pseudo_neutral_takes_the_lowest_unlabelled_valid_snippets() -> None:
    a = torch.tensor([[0.9, 0.1, 0.05, 0.3, 0.8, 0.02, 0.2, 0.6]])
    ok = torch.tensor([[True, True, True, True, True, False, True, True]])
    expression = torch.tensor([[True, False, False, False, True, False, False, True]])
    neutral = pseudo_neutral(a, ok, expression)
    # N_exp = 3, 4 unlabelled valid snippets: the 3 lowest are 2 (0.05), 1 (0.1), 6 (0.2).
    assert neutral.tolist() == [[False, True, True, False, False, False, True, False]]
    expression = torch.tensor([[True, True, True, True, True, False, True, False]])
    assert pseudo_neutral(a, ok, expression).tolist() == [[False] * 7 + [True]]  # min(6, 1)


def test_iac_matches_eq_7_and_8_by_hand() -> None:
    method = make_method(temperature=0.5)
    f = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, -0.8]]), dim=-1)
    labels = torch.tensor([[1.0, 0.0], [0.7, 0.0], [0.0, 0.0], [0.0, 0.9]])  # ME, ME, neutral, MaE
    neutral = torch.tensor([False, False, True, False])
    got = float(method.iac_loss(f, labels, neutral))
    y = [1, 1, 0, 2]
    ah = [1.0, 0.7, 0.0, 0.9]
    fn = f.numpy().astype(np.float64)
    total = 0.0
    for i in range(4):
        others = [e for e in range(4) if e != i]
        q = [e for e in others if y[e] == y[i]]
        if not q:
            continue

        def w(i, j):
            return 1 - abs(ah[i] - ah[j]) if y[i] == y[j] else abs(ah[i] - ah[j])

        den = sum(w(i, e) * math.exp(fn[i] @ fn[e] / 0.5) for e in others)
        total += -sum(math.log(w(i, p) * math.exp(fn[i] @ fn[p] / 0.5) / den) for p in q) / len(q)
    assert got == pytest.approx(total, rel=1e-5)


# --------------------------------------------------------------------------------------------
# Scores and proposals
# --------------------------------------------------------------------------------------------


def test_scores_are_the_action_softmax_and_the_intensity() -> None:
    method = make_method()
    _, feats = make_video("v", 11)
    net = method.network
    net.eval()
    with torch.no_grad():
        out = net(torch.from_numpy(feats.motion)[None], torch.from_numpy(feats.geometry)[None],
                  torch.from_numpy(feats.valid)[None])  # fmt: skip
    cls, act = method.score_tensors(out)
    assert cls.shape == (1, T, 2) and act.shape == (1, T)
    torch.testing.assert_close(cls.sum(-1), torch.ones(1, T))
    assert torch.equal(act, out["intensity"])
    proposals = GimMethod.default_proposals()
    assert (proposals.mode, proposals.oic_source, proposals.type_rule, proposals.nms) == (
        "threshold",
        "actionness",
        "apex",
        "class",
    )
    assert TrainConfig(method="gim", network=NET).proposals == proposals


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------


def test_training_runs_all_stages_reproducibly_and_lowers_the_loss() -> None:
    videos = [make_video(f"v{i}", 20 + i) for i in range(4)]
    cfg = TrainConfig(
        epochs=8,
        batch_size=2,
        lr=3e-3,
        network=NET,
        method="gim",
        method_options={"stage1_epochs": 1, "stage2_epochs": 2, "theta_epochs": 5},
    )
    net_a, hist_a = train(videos, cfg, progress=False)
    net_b, hist_b = train(videos, cfg, progress=False)
    assert hist_a == hist_b
    for (name, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert len(hist_a) == 8 and all(math.isfinite(v) for h in hist_a for v in h.values())
    assert hist_a[-1]["loss"] < hist_a[0]["loss"]
    assert hist_a[-1]["gim"] < hist_a[0]["gim"]
    method = build_method("gim", net_a, cfg.method_options)
    record, feats = videos[0]
    scores = predict(net_a, method, feats)
    assert scores[0].shape == (T, 2) and np.all((scores[1] >= 0) & (scores[1] <= 1))
    for iv in spot(scores, (record, feats), cfg.proposals):
        assert iv.type in (ME, MAE) and 1 <= iv.onset <= iv.offset <= T * 8


# --------------------------------------------------------------------------------------------
# mespot's fixes: hard negatives from point-free background, the duration clamp
# --------------------------------------------------------------------------------------------


def test_hard_negatives_are_the_loudest_known_background() -> None:
    a = torch.tensor([[0.1, 0.9, 0.8, 0.2, 0.95, 0.3], [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]])
    known = torch.tensor([[True, True, True, True, False, True], [False, False, True, True, True, False]])
    hard = hard_negatives(a, known, torch.tensor([2, 5]))
    assert hard[0].nonzero().squeeze(1).tolist() == [1, 2]  # not 4: it is not known background
    assert hard[1].nonzero().squeeze(1).tolist() == [2, 3, 4]  # fewer known than asked


def test_point_free_background_feeds_hard_negatives_into_the_loss() -> None:
    record, feats = make_video("v", 3)
    method = make_method(point_mode="apex")
    tg = method.targets(record, feats, np.random.default_rng(0))
    bg = tg["background"] > 0
    assert 0.1 < bg.mean() < 0.9 and not (bg & (tg["points"].sum(1) > 0)).any()
    t = len(bg)
    labels = torch.as_tensor(tg["labels"])[None]
    a = torch.full((1, t), 0.05)
    loud = int(np.flatnonzero(bg)[len(np.flatnonzero(bg)) // 2])
    a[0, loud] = 0.99  # a blink-like burst far from every point
    a.requires_grad_(True)
    outputs = {
        "intensity": a,
        "action": torch.zeros(1, t, 2),
        "embedding": torch.randn(1, t, 16),
        "intensity_embedding": torch.randn(1, t, 16),
    }
    valid = torch.ones(1, t, dtype=torch.bool)
    targets = {"labels": labels, "background": torch.as_tensor(tg["background"])[None]}
    with_hard, _ = method.loss(outputs, targets, valid)
    (grad,) = torch.autograd.grad(with_hard, a)
    assert grad[0, loud] > 0  # the burst is pushed down
    paper = make_method(point_mode="apex", background_gap_s=None)
    without, _ = paper.loss(outputs, targets, valid)
    (grad_paper,) = torch.autograd.grad(without, a)
    # Eq. 6 alone never picks it: only the sparsity and smoothness terms push it down.
    assert grad[0, loud] > grad_paper[0, loud] + 0.02


def test_stage3_half_range_is_clamped_to_the_duration_prior() -> None:
    record, feats = make_video("v", 4)
    prior = (2 * SNIPPET_S, 3 * SNIPPET_S)
    method = make_method(point_mode="apex", half_min_s=prior, half_max_s=prior)
    targets = method.targets(record, feats, np.random.default_rng(0))
    fresh = method.on_step(0, 7, method.network, [(record, feats)], [targets], np.random.default_rng(1))
    assert fresh is not None
    for c, half in ((0, 2), (1, 3)):
        runs = np.flatnonzero(np.diff(np.concatenate([[0], fresh[0]["labels"][:, c] > 0, [0]]).astype(int)))
        lengths = runs[1::2] - runs[::2]
        assert len(lengths) and (lengths <= 2 * half + 1).all() and (lengths == 2 * half + 1).any(), lengths
    with pytest.raises(ConfigError, match="half_min_s"):
        make_method(half_min_s=(0.5, 0.5), half_max_s=(0.2, 0.6))
