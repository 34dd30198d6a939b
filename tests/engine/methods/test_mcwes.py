"""The `mcwes` method: config, targets, the MC-WES loss terms, masking, scores and a short training run."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from engine.methods import METHODS, McwesConfig, McwesMethod, build_method
from engine.methods.mcwes import (
    consistency_score,
    duration_mask,
    mil_loss,
    pair_videos,
    top_k_counts,
    top_k_mean,
)
from engine.models import NetworkConfig, build_network
from engine.train import TrainConfig, predict, train
from stream.errors import ConfigError

SNIPPET_S = 8 / 30
FPS = 30.0
DIM = 153
NET = NetworkConfig(embed_dim=16, dilations=(1,), window=8, dropout=0.0)


def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(NET).eval()


def batch(b: int = 4, t: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    motion = torch.randn(b, t, DIM, generator=g)  # (B, T, Dm)
    geometry = torch.randn(b, t, DIM, generator=g)  # (B, T, Dg)
    valid = torch.ones(b, t, dtype=torch.bool)  # (B, T)
    valid[1, 30:] = False  # padding
    valid[2, 10:14] = False  # a lost face inside the video
    return motion, geometry, valid


LABELS = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # (B, 2) ME, MaE
ETA = torch.tensor([2, 2, 4, 2])


# --------------------------------------------------------------------------------------------
# Config and registration
# --------------------------------------------------------------------------------------------


def test_defaults_are_the_papers_and_the_method_is_registered() -> None:
    c = McwesConfig()
    assert (c.h_mae, c.h_me, c.h_background) == (7.0, 9.0, 5.0)
    assert c.divisors == (5.0, 9.0, 7.0)  # T-CAM column order: background, ME, MaE
    assert (c.omega_low, c.omega_high) == (1.2, 1.4)
    assert (c.lambda_duration, c.lambda_feature, c.lambda_sparsity, c.lambda_guide) == (0.5, 0.5, 0.8, 0.8)
    assert c.feature_pairs == 3 and c.duration_window_s == pytest.approx(16 / 30)
    assert "mcwes" in METHODS and McwesMethod.whole_videos
    method = build_method("mcwes", network(), {"h_me": 11, "lambda_feature": 0.0})
    assert isinstance(method, McwesMethod) and method.config.h_me == 11
    assert McwesConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"h_mae": 0.5}, "h_mae"),
        ({"h_background": "5"}, "h_background"),
        ({"duration_window_s": 0.0}, "duration_window_s"),
        ({"omega_low": -1.0}, "omega_low"),
        ({"omega_low": 1.5, "omega_high": 1.4}, "omega_high"),
        ({"feature_pairs": 1.5}, "feature_pairs"),
        ({"feature_pairs": -1}, "feature_pairs"),
        ({"lambda_guide": -0.1}, "lambda_guide"),
        ({"lambda_mil": True}, "lambda_mil"),
        ({"lambda_duration": math.nan}, "lambda_duration"),
        ({"nope": 1}, "nope"),
    ],
)
def test_bad_options_name_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build_method("mcwes", network(), options)


def test_a_config_of_another_method_is_refused() -> None:
    from engine.methods import FullConfig

    with pytest.raises(ConfigError, match="McwesConfig"):
        McwesMethod(FullConfig(), network())


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def test_targets_are_video_level_only(make_video) -> None:
    method = McwesMethod(None, network())
    record, feats = make_video("s1_a", 0, kinds=("mae", "mae"))
    tg = method.targets(record, feats, np.random.default_rng(0))
    assert set(tg) == {"video_labels", "eta"}
    np.testing.assert_array_equal(tg["video_labels"], [0.0, 1.0])
    assert tg["video_labels"].dtype == np.float32
    assert tg["eta"].shape == () and int(tg["eta"]) == 2  # 16/30 s at 8/30 s per snippet
    fine = dataclasses.replace(feats, snippet_s=4 / 30)
    assert int(method.targets(record, fine, np.random.default_rng(0))["eta"]) == 4
    record, feats = make_video("s1_b", 1)
    np.testing.assert_array_equal(
        method.targets(record, feats, np.random.default_rng(0))["video_labels"], [1, 1]
    )


# --------------------------------------------------------------------------------------------
# Top-k distribution consistency (eq. 7-8)
# --------------------------------------------------------------------------------------------


def test_top_k_uses_the_valid_length_of_each_video() -> None:
    valid = torch.zeros(4, 100, dtype=torch.bool)
    for row, n in enumerate((100, 63, 4, 0)):
        valid[row, :n] = True
    k = top_k_counts(valid, McwesConfig().divisors)  # (4, 3) background, ME, MaE
    expected = [[max(1, math.floor(n / h)) for h in (5, 9, 7)] for n in (100, 63, 4, 0)]
    assert k.tolist() == expected == [[20, 11, 14], [12, 7, 9], [1, 1, 1], [1, 1, 1]]


def test_top_k_mean_never_selects_invalid_snippets() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 30, 3, generator=g)  # (B, T, C)
    valid = torch.ones(3, 30, dtype=torch.bool)
    valid[0, 20:] = False
    valid[1, ::3] = False
    scores[~valid] = 100.0  # would win every top-k if it were seen
    k = top_k_counts(valid, (5.0, 9.0, 7.0))
    pooled = top_k_mean(scores, valid, k)  # (B, C)
    for b in range(3):
        for c in range(3):
            vals = np.sort(scores[b, valid[b], c].numpy())[::-1]
            assert pooled[b, c].item() == pytest.approx(vals[: int(k[b, c])].mean(), rel=1e-6)
    assert not (pooled > 50).any()
    empty = torch.zeros(1, 30, dtype=torch.bool)
    assert top_k_mean(scores[:1], empty, torch.ones(1, 3, dtype=torch.long)).abs().sum() == 0


def test_mil_loss_is_the_unnormalised_cross_entropy() -> None:
    u = torch.tensor([[0.0, 1.0, 2.0]])
    y = torch.tensor([[1.0, 0.0, 1.0]])
    p = torch.softmax(u, dim=-1)[0]
    assert mil_loss(u, y).item() == pytest.approx(-(math.log(p[0]) + math.log(p[2])), rel=1e-6)


# --------------------------------------------------------------------------------------------
# Label-level duration consistency (eq. 9-10)
# --------------------------------------------------------------------------------------------


def _mask_reference(a: np.ndarray, v: np.ndarray, eta: int, lo: float, hi: float) -> np.ndarray:
    t = len(a)
    q = np.array([a[j : j + eta].mean() for j in range(t - eta + 1)])
    ok = np.array([v[j : j + eta].all() for j in range(t - eta + 1)])
    delta = np.abs(np.diff(q))
    defined = ok[1:] & ok[:-1]
    mean = delta[defined].mean() if defined.any() else 0.0
    mask = np.ones(t)
    for j in range(t - eta):
        if defined[j] and lo * mean < delta[j] < hi * mean:
            mask[j] = 0.0
    return mask


def test_duration_mask_marks_the_mid_sized_jumps() -> None:
    a = torch.tensor([[0, 0, 0, 0, 1, 1, 0, 0, 0, 0]], dtype=torch.float32)  # a 2-snippet ME
    valid = torch.ones(1, 10, dtype=torch.bool)
    # eta 2: Q = [0, 0, 0, .5, 1, .5, 0, 0, 0], Delta = [0, 0, .5, .5, .5, .5, 0, 0], mean .25.
    mask = duration_mask(a, valid, 2, 1.9, 2.1)
    assert mask.shape == (1, 10)
    assert mask[0].tolist() == [1, 1, 0, 0, 0, 0, 1, 1, 1, 1]
    assert duration_mask(a, valid, 2, 1.2, 1.4).eq(1).all()  # every Delta is 0 or 2 x mean
    assert duration_mask(torch.full((1, 10), 0.3), valid, 2, 0.0, 1.4).eq(1).all()  # flat: no Delta > 0
    assert duration_mask(a[:, :2], valid[:, :2], 2, 0.0, 9.0).eq(1).all()  # too short for a Delta


def test_duration_mask_matches_the_reference_and_ignores_invalid_windows() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.rand(3, 40, generator=g)
    valid = torch.ones(3, 40, dtype=torch.bool)
    valid[1, 30:] = False
    valid[2, 12:15] = False
    for eta in (1, 2, 4):
        mask = duration_mask(a * valid, valid, eta, 1.2, 1.4)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        for b in range(3):
            ref = _mask_reference((a * valid)[b].numpy(), valid[b].numpy(), eta, 1.2, 1.4)
            np.testing.assert_array_equal(mask[b].numpy(), ref)
        assert mask[1, 30 - eta :].eq(1).all()  # no Delta touches the padding
    method = McwesMethod(None, network())
    per_video = method.duration_masks(a, valid, ETA[:3])
    np.testing.assert_array_equal(
        per_video[2].numpy(), duration_mask(a[2:], valid[2:], 4, 1.2, 1.4)[0].numpy()
    )


# --------------------------------------------------------------------------------------------
# The loss through a real network
# --------------------------------------------------------------------------------------------


def test_loss_terms_are_finite_and_gradients_reach_the_network() -> None:
    net = network()
    method = McwesMethod(None, net)
    motion, geometry, valid = batch()
    out = net(motion, geometry, valid)
    loss, parts = method.loss(out, {"video_labels": LABELS, "eta": ETA}, valid)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(parts) == {"sc", "dc1", "dc2", "dc3", "fc", "sl", "gl", "smooth"}
    assert all(math.isfinite(v) for v in parts.values())
    assert 0.0 <= parts["fc"] <= 1.0 and 0.0 <= parts["sl"] <= 1.0
    weights = {"sc": 1, "dc1": 1, "dc2": 1, "dc3": 0.5, "fc": 0.5, "sl": 0.8, "gl": 0.8, "smooth": 0.5}
    assert loss.item() == pytest.approx(sum(weights[k] * v for k, v in parts.items()), rel=1e-5)
    loss.backward()
    for name in ("classifier.weight", "attention_motion.proj.weight", "attention_geometry.proj.weight"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    fusion = [p.grad for p in net.fusion.parameters()]
    assert all(g is not None for g in fusion) and sum(float(g.abs().sum()) for g in fusion) > 0


def test_zero_weights_drop_terms() -> None:
    net = network()
    method = McwesMethod({"lambda_duration": 0.0, "lambda_feature": 0.0, "lambda_smooth": 0.0}, net)
    motion, geometry, valid = batch()
    _, parts = method.loss(net(motion, geometry, valid), {"video_labels": LABELS, "eta": ETA}, valid)
    assert set(parts) == {"sc", "dc1", "dc2", "sl", "gl"}


def test_features_at_invalid_snippets_do_not_change_the_loss() -> None:
    net = network()
    method = McwesMethod(None, net)
    motion, geometry, valid = batch()
    targets = {"video_labels": LABELS, "eta": ETA}
    base, _ = method.loss(net(motion, geometry, valid), targets, valid)
    noise = torch.randn(motion.shape, generator=torch.Generator().manual_seed(9)) * 50
    m2 = torch.where(valid.unsqueeze(-1), motion, noise)
    g2 = torch.where(valid.unsqueeze(-1), geometry, -noise)
    other, _ = method.loss(net(m2, g2, valid), targets, valid)
    assert other.item() == pytest.approx(base.item(), rel=1e-5, abs=1e-6)


def test_padding_a_video_does_not_change_its_loss() -> None:
    net = network()
    method = McwesMethod(None, net)
    motion, geometry, _ = batch()
    motion, geometry = motion[:1, :30], geometry[:1, :30]
    valid = torch.ones(1, 30, dtype=torch.bool)
    targets = {"video_labels": LABELS[:1], "eta": ETA[:1]}
    alone, parts = method.loss(net(motion, geometry, valid), targets, valid)
    pad = torch.zeros(1, 17, DIM)
    padded_valid = torch.cat([valid, torch.zeros(1, 17, dtype=torch.bool)], dim=1)
    out = net(torch.cat([motion, pad], 1), torch.cat([geometry, pad], 1), padded_valid)
    padded, parts_p = method.loss(out, targets, padded_valid)
    assert padded.item() == pytest.approx(alone.item(), rel=1e-5)
    assert parts_p == pytest.approx(parts, rel=1e-5)


def test_feature_consistency_pairs_videos_sharing_a_label() -> None:
    valid = torch.ones(5, 8, dtype=torch.bool)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert pair_videos(labels, valid, 3) == [(0, 2), (1, 3)]
    assert pair_videos(labels, valid, 1) == [(0, 2)]
    assert pair_videos(labels, valid, 0) == []
    valid[2] = False  # a video without valid snippets is never paired
    assert pair_videos(labels, valid, 3) == [(0, 4), (1, 3)]
    assert pair_videos(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), valid[:2], 3) == []

    net = network()
    method = McwesMethod(None, net)
    motion, geometry, valid = batch()
    out = net(motion, geometry, valid)
    k_mae = top_k_counts(valid, method.config.divisors)[:, 2]
    fc = method.feature_consistency(out["embedding"], out["tcam"], out["attention"], valid, LABELS, k_mae)
    assert 0.0 <= fc.item() <= 1.0
    (grad,) = torch.autograd.grad(fc, out["embedding"])
    assert grad.abs().sum() > 0 and grad[~valid].abs().sum() == 0
    none = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    assert (
        method.feature_consistency(out["embedding"], out["tcam"], out["attention"], valid, none, k_mae) == 0
    )


# --------------------------------------------------------------------------------------------
# Scores and proposals
# --------------------------------------------------------------------------------------------


def test_scores_are_attention_times_class_share() -> None:
    net = network()
    method = McwesMethod(None, net)
    motion, geometry, valid = batch()
    out = net(motion, geometry, valid)
    cls, act = method.score_tensors(out)
    assert cls.shape == (4, 40, 2) and act.shape == (4, 40)
    assert ((cls >= 0) & (cls <= 1)).all() and ((act >= 0) & (act <= 1)).all()
    torch.testing.assert_close(cls.sum(-1), act)
    assert act[~valid].abs().sum() == 0
    cls1, act1 = method.scores({k: v[:1] for k, v in out.items()})
    assert cls1.shape == (40, 2) and act1.dtype == np.float64


def test_default_proposals_are_the_papers_multi_top_typed_by_class() -> None:
    p = McwesMethod.default_proposals()
    assert p.mode == "top" and p.top_divisors == tuple(float(h) for h in range(8, 23))
    assert (p.oic_source, p.type_rule, p.nms, p.nms_iou, p.min_score) == (
        "class",
        "class",
        "joint",
        0.01,
        0.1,
    )
    assert p.outer_ratio == 0.25 and p.video_score_weight == 0.0
    assert TrainConfig(method="mcwes", network=NET).proposals == p


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------


def test_training_reduces_the_loss_and_is_reproducible(make_video) -> None:
    kinds = [("me", "mae", "me"), ("mae", "mae"), ("me", "mae"), ("mae", "me")]
    videos = [make_video(f"s{i}_v", 100 + i, kinds=k) for i, k in enumerate(kinds)]
    cfg = TrainConfig(epochs=6, batch_size=2, steps_per_epoch=2, lr=1e-2, network=NET, method="mcwes", seed=3)
    net_a, hist_a = train(videos, cfg, progress=False)
    net_b, hist_b = train(videos, cfg, progress=False)
    assert hist_a == hist_b
    for (name, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # The MIL terms have a floor above 0 (-sum y log p with several positives), so the drop is modest.
    losses = [h["loss"] for h in hist_a]
    assert losses[-1] < losses[0] - 0.1 and losses[-1] == min(losses), losses
    assert {"dc1", "dc2", "dc3", "fc", "sc", "sl", "gl"} <= set(hist_a[0])
    method = build_method("mcwes", net_a)
    cls, act = predict(net_a, method, videos[0][1])
    assert cls.shape == (96, 2) and np.isfinite(act).all()


def test_clip_training_feeds_the_loss_clips_labelled_on_their_own(make_video, monkeypatch) -> None:
    """`clip_s`: each batch holds clips of the training videos, with each clip's own labels."""
    import engine.train as train_module

    kinds = [("me", "mae", "me"), ("mae", "mae"), ("me", "mae"), ("mae", "me")]
    videos = [make_video(f"s{i}_v", 100 + i, kinds=k) for i, k in enumerate(kinds)]
    seen: list[tuple[int, list[list[float]]]] = []
    whole_batch = train_module._whole_batch

    def spy(vids, targets, method, picks):
        out = whole_batch(vids, targets, method, picks)
        seen.append((out[0].shape[1], out[3]["video_labels"].tolist()))
        return out

    monkeypatch.setattr(train_module, "_whole_batch", spy)
    snippet_s = videos[0][1].snippet_s
    cfg = TrainConfig(
        epochs=2, batch_size=4, steps_per_epoch=3, network=NET, method="mcwes", clip_s=24 * snippet_s
    )
    _, hist = train(videos, cfg, progress=False)
    assert np.isfinite(hist[-1]["loss"])
    assert max(length for length, _ in seen) < 96  # clips, not the 96-snippet videos
    labels = {tuple(row) for _, rows in seen for row in rows}
    assert (0.0, 0.0) in labels and len(labels) >= 3  # clips without expressions, and of one type only


# --------------------------------------------------------------------------------------------
# mespot's fixes: cosine L_fc, attention smoothness
# --------------------------------------------------------------------------------------------


def test_cosine_feature_consistency_keeps_acting_at_any_feature_scale() -> None:
    g = torch.Generator().manual_seed(3)
    t, d = 40, 16
    feats_a, feats_b = torch.randn(t, d, generator=g), torch.randn(t, d, generator=g)
    feats_b[10:15] = feats_a[5:10] + 0.05 * torch.randn(5, d, generator=g)  # b echoes a's expression
    logits = torch.randn(t, 3, generator=g)
    att_a = torch.full((t,), 0.05)
    att_a[5:10] = 0.9
    valid = torch.ones(t, dtype=torch.bool)
    shared = torch.tensor([0.0, 1.0])
    on = torch.full((t,), 0.05)
    on[10:15] = 0.9  # b's attention where its features echo a's
    off = torch.full((t,), 0.05)
    off[25:30] = 0.9  # elsewhere
    for scale in (1.0, 100.0):
        fa, fb = feats_a * scale, feats_b * scale
        good = consistency_score(fa, logits, att_a, valid, fb, on, shared, 5, "cosine")
        bad = consistency_score(fa, logits, att_a, valid, fb, off, shared, 5, "cosine")
        assert good > bad + 0.1, (scale, good, bad)  # it rewards attention on similar snippets
    big_a, big_b = feats_a * 100, feats_b * 100
    same = consistency_score(feats_a, logits, att_a, valid, feats_b, on, shared, 5, "cosine")
    torch.testing.assert_close(same, consistency_score(big_a, logits, att_a, valid, big_b, on, shared, 5))
    # Raw dot products saturate eq. 12's softmax: every snippet's max is ~1, attention is not told apart.
    dot_on = consistency_score(big_a, logits, att_a, valid, big_b, on, shared, 5, "dot")
    dot_off = consistency_score(big_a, logits, att_a, valid, big_b, off, shared, 5, "dot")
    assert abs(float(dot_on - dot_off)) < 0.05


def test_smoothness_penalises_bursty_attention() -> None:
    b, t = 2, 40
    valid = torch.ones(b, t, dtype=torch.bool)
    method = McwesMethod({"lambda_feature": 0.0, "lambda_duration": 0.0}, network())

    def outputs(att: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "tcam": torch.zeros(b, t, 3),
            "attention": att,
            "attention_motion": att,
            "attention_geometry": att,
            "embedding": torch.zeros(b, t, 4),
        }

    run = torch.zeros(b, t)
    run[:, 10:18] = 0.8  # one run
    burst = torch.zeros(b, t)
    burst[:, 10:18:2] = 0.8  # the same mass as bursts
    tg = {"video_labels": LABELS[:b], "eta": ETA[:b]}
    _, smooth = method.loss(outputs(run), tg, valid)
    _, bursty = method.loss(outputs(burst), tg, valid)
    assert bursty["smooth"] > 3 * smooth["smooth"] > 0
    assert smooth["smooth"] == pytest.approx(2 * 0.8 / 39)


def test_the_operating_grid_lets_training_identities_choose_mode_and_type_rule() -> None:
    from engine.methods import GimMethod, PwesMethod
    from engine.proposals import OPERATING_GRID

    grid = McwesMethod.operating_grid()
    assert grid["mode"] == ("top", "threshold") and grid["type_rule"] == ("class", "duration")
    assert grid["duration_check"] == (False, True)  # on a class-typed span, off first
    assert {k: v for k, v in grid.items() if k in OPERATING_GRID} == dict(OPERATING_GRID)
    assert PwesMethod.operating_grid() == grid
    # GIM: the duration check on the apex type, off (the paper's rule) first.
    assert dict(GimMethod.operating_grid()) == {**OPERATING_GRID, "duration_check": (False, True)}
    # Calibration offers the same choices over its wider thresholds.
    from calibration.operating_point import CALIBRATION_GRID, calibration_grid

    for name, method in (("mcwes", McwesMethod), ("gim", GimMethod)):
        extra = {k: v for k, v in method.operating_grid().items() if k not in OPERATING_GRID}
        assert dict(calibration_grid(name)) == {**CALIBRATION_GRID, **extra}
