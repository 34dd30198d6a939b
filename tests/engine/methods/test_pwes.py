"""The `pwes` method: config, point targets, MPLG, the focal loss, DFCL, masking and a short training run."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.data.labels import full_labels
from engine.methods import METHODS, McwesMethod, PwesConfig, PwesMethod, build_method
from engine.methods.mcwes import top_k_counts
from engine.methods.pwes import (
    info_nce,
    mplg,
    point_top_k,
    region_classes,
    region_vectors,
    snippet_focal_loss,
)
from engine.models import NetworkConfig, build_network
from engine.train import TrainConfig, _whole_batch, predict, train
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval

SNIPPET_S = 8 / 30
FPS = 30.0
DIM = 153
NET = NetworkConfig(embed_dim=16, dilations=(1,), window=8, dropout=0.0)


def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(NET).eval()


def ready(method: PwesMethod, videos: list, seed: int = 0) -> tuple:
    """Targets of `videos`, prepare(), and one whole-video batch of all of them."""
    rng = np.random.default_rng(seed)
    targets = [method.targets(r, f, rng) for r, f in videos]
    method.prepare(targets)
    motion, geometry, valid, batch = _whole_batch(videos, targets, method, list(range(len(videos))))
    return targets, motion, geometry, valid, batch


def refine(method: PwesMethod) -> None:
    """Move the method past its pre-training steps."""
    method.on_step(method.config.pretrain_steps, 0, method.network, [], [], np.random.default_rng(0))


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def test_defaults_are_the_papers() -> None:
    c = PwesConfig()
    # The MC-WES baseline without L_dc^3 and L_fc (Table I), lambda1..5 of sec. 4.3.
    assert c.lambda_duration == 0.0 and c.lambda_feature == 0.0
    assert (c.lambda_mil, c.lambda_mil_attention, c.lambda_snippet, c.lambda_contrast) == (1.0, 1.0, 1.0, 0.1)
    assert (c.lambda_guide, c.lambda_sparsity, c.lambda_saliency) == (1.0, 0.8, 1.0)
    assert (c.pretrain_steps, c.fg_threshold, c.temperature, c.select_ratio) == (80, 0.8, 1.0, 0.3)
    assert c.regions == (10, 2, 3) and (c.h_mae, c.h_me, c.h_background) == (7.0, 9.0, 5.0)
    assert c.point_mode == "random" and c.use_mplg and c.use_dfcl
    assert "pwes" in METHODS and issubclass(PwesMethod, McwesMethod) and PwesMethod.whole_videos
    assert PwesMethod.snippet_targets == ("points", "background", "pseudo", "possible")
    # mespot's fixes (docs/methods.md): point-free background, MPLG from an eval-mode forward.
    assert c.background_gap_s == (0.5, 4.0) and c.pseudo_source == "eval" and c.class_regions
    assert c.mil_k == "points"  # the MIL pools what the points' expressions can cover
    method = build_method("pwes", network(), {"point_mode": "apex", "use_dfcl": False})
    assert isinstance(method, PwesMethod) and method.config.point_mode == "apex"
    assert PwesConfig.from_dict(c.to_dict()) == c
    # A gap per point type (ME, MaE), as JSON gives it: a list, kept as a tuple.
    typed = PwesConfig.from_dict({"background_gap_s": [0.5, 4]})
    assert typed.background_gap_s == (0.5, 4.0)
    assert PwesConfig.from_dict(json.loads(json.dumps(typed.to_dict()))) == typed


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"point_mode": "middle"}, "point_mode"),
        ({"use_mplg": 1}, "use_mplg"),
        ({"use_dfcl": "no"}, "use_dfcl"),
        ({"pretrain_steps": -1}, "pretrain_steps"),
        ({"pretrain_steps": 2.5}, "pretrain_steps"),
        ({"select_ratio": 0.0}, "select_ratio"),
        ({"fg_threshold": 1.0}, "fg_threshold"),
        ({"temperature": 0.0}, "temperature"),
        ({"regions_me": 0}, "regions_me"),
        ({"regions_background": 300}, "regions_background"),
        ({"lambda_contrast": -1.0}, "lambda_contrast"),
        ({"h_me": 0.0}, "pwes config h_me"),
        ({"background_gap_s": 0.0}, "background_gap_s"),
        ({"background_gap_s": [0.5]}, "background_gap_s"),
        ({"background_gap_s": [0.5, "4"]}, "background_gap_s"),
        ({"background_gap_s": True}, "background_gap_s"),
        ({"mil_k": "count"}, "mil_k"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_options_name_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build_method("pwes", network(), options)


# --------------------------------------------------------------------------------------------
# Point targets
# --------------------------------------------------------------------------------------------


def _span(iv: Interval) -> range:
    """Snippets holding the frames of an interval (frames from 1, 8 per snippet)."""
    return range((iv.onset - 1) // 8, (iv.offset - 1) // 8 + 1)


def test_points_fall_inside_their_expressions_and_are_reproducible(make_video) -> None:
    method = PwesMethod(None, network())
    record, feats = make_video("s1_a", 4)
    tg = method.targets(record, feats, np.random.default_rng(7))
    assert set(tg) == {
        "points",
        "background",
        "pseudo",
        "possible",
        "video_labels",
        "eta",
        "video_index",
        "point_k",
    }
    points = tg["points"]
    assert points.shape == (96, 3) and points.dtype == np.float32
    assert points[:, 0].sum() == 0 and points.sum() == len(record.expressions)
    for iv in record.expressions:
        col = 1 if iv.type is ExpressionType.ME else 2
        assert points[list(_span(iv)), col].sum() == 1
    np.testing.assert_array_equal(tg["video_labels"], [1.0, 1.0])
    again = method.targets(record, feats, np.random.default_rng(7))
    np.testing.assert_array_equal(again["points"], points)
    assert int(again["video_index"]) == int(tg["video_index"]) == 0
    other, feats2 = make_video("s1_b", 5, kinds=("mae",))
    tg2 = method.targets(other, feats2, np.random.default_rng(7))
    assert int(tg2["video_index"]) == 1
    np.testing.assert_array_equal(tg2["video_labels"], [0.0, 1.0])


def test_random_points_vary_and_apex_points_sit_on_the_apex(make_video) -> None:
    record, feats = make_video("s1_a", 4)
    random = PwesMethod(None, network())
    draws = {random.targets(record, feats, np.random.default_rng(s))["points"].tobytes() for s in range(12)}
    assert len(draws) > 1  # the MaE (5 snippets) gets different random points
    apex = PwesMethod({"point_mode": "apex"}, network())
    points = apex.targets(record, feats, np.random.default_rng(0))["points"]
    for iv in record.expressions:
        col = 1 if iv.type is ExpressionType.ME else 2
        assert points[(iv.apex - 1) // 8, col] == 1


# --------------------------------------------------------------------------------------------
# MPLG
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_mplg_invariants_on_random_inputs(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    t = 60
    emb = torch.randn(t, 8, generator=g)
    probs = torch.rand(t, 2, generator=g) ** 0.3  # many high probabilities
    att = torch.rand(t, generator=g)
    valid = torch.rand(t, generator=g) > 0.15
    points = torch.zeros(t, 2)
    for s in torch.randperm(t, generator=g)[:4].tolist():
        points[s, s % 2] = 1.0
    points[7] = 1.0  # a snippet holding points of both classes
    labels = mplg(emb, probs, att, points, valid, 0.3, 0.5)
    assert labels.shape == (t, 3) and set(labels.unique().tolist()) <= {0.0, 1.0}
    fg, bg = labels[:, 1:], labels[:, 0]
    assert not ((bg > 0) & (fg.sum(1) > 0)).any()  # never foreground and background
    assert labels[~valid].abs().sum() == 0  # invalid snippets get nothing
    on_point = valid & (points.sum(1) > 0)
    torch.testing.assert_close(fg[on_point], points[on_point])  # points stay their class(es)
    n = int(valid.sum())
    k = math.floor(0.3 * n)
    assert (fg[~on_point].sum(1) > 0).sum() <= k  # pseudo foreground only among the top k of A'
    assert bg.sum() <= 2 * k
    # The background snippets are the lowest-attention valid ones.
    if bg.sum() > 0:
        assert att[bg > 0].max() <= att[valid & (bg == 0) & (fg.sum(1) == 0)].min()


def test_mplg_labels_what_the_points_explain() -> None:
    t = 30
    emb = torch.randn(t, 8, generator=torch.Generator().manual_seed(1)) * 0.1
    me, mae = torch.zeros(8), torch.zeros(8)
    me[0], mae[1] = 5.0, 5.0
    emb[4:7] += me  # an ME around the point at 5
    emb[15:20] += mae  # a MaE around the point at 17
    probs = torch.full((t, 2), 0.05)
    probs[4:7, 0] = 0.95
    probs[15:20, 1] = 0.95
    att = torch.full((t,), 0.1)
    att[4:7] = 0.9
    att[15:20] = 0.9
    att[25:] = 0.0  # the quietest snippets
    points = torch.zeros(t, 2)
    points[5, 0] = 1.0
    points[17, 1] = 1.0
    valid = torch.ones(t, dtype=torch.bool)
    labels = mplg(emb, probs, att, points, valid, 0.3, 0.8)  # k = 9: the 8 expression snippets + 1
    assert torch.nonzero(labels[:, 1]).squeeze(1).tolist() == [4, 5, 6]
    assert torch.nonzero(labels[:, 2]).squeeze(1).tolist() == [15, 16, 17, 18, 19]
    bg = torch.nonzero(labels[:, 0]).squeeze(1).tolist()
    assert len(bg) == 18 and set(range(25, 30)) <= set(bg)
    assert not set(bg) & {4, 5, 6, 15, 16, 17, 18, 19}
    # A theta above the refined scores keeps only the points as foreground.
    strict = mplg(emb, probs, att, points, valid, 0.3, 0.99)
    assert torch.nonzero(strict[:, 1:].sum(1)).squeeze(1).tolist() == [5, 17]
    # A video without points gets no foreground at all (no class is present), only background.
    none = mplg(emb, probs, att, torch.zeros(t, 2), valid, 0.3, 0.8)
    assert none[:, 1:].sum() == 0 and none[:, 0].sum() == 18
    assert mplg(emb, probs, att, points, torch.zeros(t, dtype=torch.bool), 0.3, 0.8).sum() == 0


# --------------------------------------------------------------------------------------------
# Losses and the memory bank
# --------------------------------------------------------------------------------------------


def test_focal_loss_matches_eq_16() -> None:
    probs = torch.tensor([[[0.2, 0.7, 0.1], [0.9, 0.9, 0.9], [0.5, 0.5, 0.5]]])  # (1, 3, 3)
    labels = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, False, True]])  # the second snippet is invalid, the third unlabelled
    expected = -(0.2**2 * math.log(0.8) + 0.3**2 * math.log(0.7) + 0.1**2 * math.log(0.9))
    assert snippet_focal_loss(probs, labels, valid).item() == pytest.approx(expected, rel=1e-5)
    assert snippet_focal_loss(probs, torch.zeros_like(labels), valid).item() == 0.0


def test_class_balanced_focal_loss_weighs_each_class_equally() -> None:
    # Nine background snippets at one loss, one ME snippet at another, one snippet labelled twice.
    probs = torch.full((1, 12, 3), 0.5)
    probs[0, :9, 0] = 0.9  # confident, right background
    probs[0, 9, 1] = 0.1  # a missed ME
    labels = torch.zeros(1, 12, 3)
    labels[0, :9, 0] = 1.0
    labels[0, 9, 1] = 1.0
    labels[0, 10, 1:] = 1.0  # ME and MaE at once
    valid = torch.ones(1, 12, dtype=torch.bool)
    p = probs.clamp(1e-6, 1 - 1e-6)
    per = -(labels * (1 - p) ** 2 * torch.log(p) + (1 - labels) * p**2 * torch.log(1 - p)).sum(-1)[0]
    bg, me, mae = per[:9].mean(), (per[9] + per[10]) / 2, per[10]
    got = snippet_focal_loss(probs, labels, valid, class_balance=True).item()
    assert got == pytest.approx(((bg + me + mae) / 3).item(), rel=1e-5)
    plain = snippet_focal_loss(probs, labels, valid).item()
    assert plain == pytest.approx(per[:11].mean().item(), rel=1e-5)
    assert got > plain  # the missed ME is no longer drowned by nine easy background snippets
    # Invalid snippets never count; a batch without labels costs nothing.
    assert snippet_focal_loss(probs, labels, torch.zeros_like(valid), class_balance=True).item() == 0.0
    with pytest.raises(ConfigError, match="class_balance"):
        PwesConfig(class_balance=1)


def test_region_vectors_follow_the_configured_counts() -> None:
    regions = (10, 2, 3)
    assert region_classes(regions).tolist() == [0] * 11 + [1] * 3 + [2] * 4
    emb = torch.randn(40, 6, generator=torch.Generator().manual_seed(2))
    labels = torch.zeros(40, 3)
    labels[:25, 0] = 1.0  # 25 background snippets: 10 groups
    labels[30, 1] = 1.0  # one ME snippet: q_ME,0 and one of the two groups
    valid = torch.ones(40, dtype=torch.bool)
    vectors, present = region_vectors(emb, labels, valid, regions)
    assert vectors.shape == (18, 6) and present.shape == (18,)
    assert present.tolist() == [True] * 11 + [True, True, False] + [False] * 4
    torch.testing.assert_close(vectors[0], F.normalize(emb[:25].mean(0), dim=0))
    torch.testing.assert_close(vectors[1], F.normalize(emb[:3].mean(0), dim=0))  # 25 -> 3, 3, 3, 3, 3, 2 ...
    torch.testing.assert_close(vectors[11], F.normalize(emb[30], dim=0))
    torch.testing.assert_close(vectors.norm(dim=1)[present], torch.ones(int(present.sum())))


def test_info_nce_matches_eq_17_and_skips_the_own_video() -> None:
    u = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    keys = F.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0], [1.0, 1.0], [1.0, 0.0]]), dim=1)
    key_class = torch.tensor([1, 2, 0, 1])
    key_video = torch.tensor([5, 5, 6, 0])  # the last key is the first anchor's own video
    loss = info_nce(u, torch.tensor([1, 2]), torch.tensor([0, 1]), keys, key_class, key_video, 0.5)
    s = (u @ keys.T / 0.5).numpy()
    a0 = -math.log(math.exp(s[0, 0]) / sum(math.exp(s[0, j]) for j in range(3)))
    a1 = -math.log(math.exp(s[1, 1]) / sum(math.exp(s[1, j]) for j in range(4)))
    assert loss.item() == pytest.approx((a0 + a1) / 2, rel=1e-5)
    # The only MaE key belongs to the anchor's own video: no positive, no loss.
    none = info_nce(u[1:], torch.tensor([2]), torch.tensor([5]), keys, key_class, key_video, 0.5)
    assert none.item() == 0.0


def test_memory_bank_sizes_and_updates(make_video) -> None:
    videos = [make_video(f"s{i}_v", 10 + i) for i in range(3)]
    method = PwesMethod({"regions_background": 5, "regions_me": 1, "regions_mae": 2}, network())
    _, motion, geometry, valid, batch = ready(method, videos)
    assert method.bank is not None and method.bank.shape == (3, 6 + 2 + 3, 16)
    assert method.bank_present is not None and not method.bank_present.any()
    default = PwesMethod(None, network())
    ready(default, videos)
    assert default.bank is not None and default.bank.shape == (3, 11 + 3 + 4, 16)
    refine(method)
    out = method.network(motion[:2], geometry[:2], valid[:2])
    _, parts = method.loss(out, {k: v[:2] for k, v in batch.items()}, valid[:2])
    assert parts["fcl"] == 0.0  # an empty bank has no positives yet
    assert method.bank_present[:2].any(dim=1).all() and not method.bank_present[2].any()
    norms = method.bank.norm(dim=-1)[method.bank_present]
    torch.testing.assert_close(norms, torch.ones_like(norms))
    out = method.network(motion, geometry, valid)
    _, parts = method.loss(out, batch, valid)
    assert parts["fcl"] > 0 and method.bank_present[2].any()


# --------------------------------------------------------------------------------------------
# The loss through a real network
# --------------------------------------------------------------------------------------------


PAPER = {"background_gap_s": None, "pseudo_source": "batch", "mil_k": "divisor"}


def test_loss_before_and_after_pretraining(make_video) -> None:
    videos = [
        make_video(f"s{i}_v", 20 + i, kinds=k) for i, k in enumerate([("me", "mae"), ("mae",), ("me",)])
    ]
    method = PwesMethod(PAPER, network())
    _, motion, geometry, valid, batch = ready(method, videos)
    out = method.network(motion, geometry, valid)
    loss, parts = method.loss(out, batch, valid)
    assert set(parts) == {"sc", "dc1", "dc2", "sl", "gl", "scl", "fcl", "label_fg", "label_bg"}  # no dc3, fc
    assert parts["label_bg"] == 0.0 and 0 < parts["label_fg"] < 0.05  # the points alone
    assert torch.isfinite(loss) and parts["fcl"] == 0.0
    # Before MPLG the snippet loss sees the points only.
    labels = method.pseudo_labels(out, batch, valid)
    torch.testing.assert_close(labels, batch["points"].float())
    refine(method)
    assert method.refining
    labels = method.pseudo_labels(out, batch, valid)
    assert labels[..., 0].sum() > 0  # MPLG adds background labels
    assert not ((labels[..., 0] > 0) & (labels[..., 1:].sum(-1) > 0)).any()
    on_point = batch["points"].sum(-1) > 0
    torch.testing.assert_close(labels[on_point], batch["points"][on_point].float())
    method.loss(out, batch, valid)  # fills the bank
    out = method.network(motion, geometry, valid)
    loss, parts = method.loss(out, batch, valid)
    assert torch.isfinite(loss) and parts["fcl"] > 0
    weights = {
        "sc": 1,
        "dc1": 1,
        "dc2": 1,
        "sl": 0.8,
        "gl": 1,
        "scl": 1,
        "fcl": 0.1,
        "label_fg": 0,
        "label_bg": 0,
    }
    assert parts["label_bg"] > 0.3
    assert loss.item() == pytest.approx(sum(weights[k] * v for k, v in parts.items()), rel=1e-5)
    loss.backward()
    for name in ("classifier.weight", "attention_motion.proj.weight", "backbone.0.conv.conv.weight"):
        grad = dict(method.network.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_point_top_k_counts_each_point_as_its_longest_expression() -> None:
    points = np.zeros((40, 2), dtype=np.float32)
    points[[3, 20], 0] = 1.0  # two ME points
    points[9, 1] = 1.0  # one MaE point
    # At 4/30 s a snippet: ME 0.5 s -> 4 snippets, MaE 4 s -> 30.
    np.testing.assert_array_equal(point_top_k(points, 4 / 30), [8, 30])
    np.testing.assert_array_equal(point_top_k(points[:, ::-1] * 0, 4 / 30), [0, 0])


def test_mil_k_from_points_replaces_the_divisor_only_where_a_class_has_points(make_video) -> None:
    videos = [make_video("s0_v", 40, kinds=("me", "mae")), make_video("s1_v", 41, kinds=("mae",))]
    divisor = PwesMethod(PAPER, network())
    method = PwesMethod({**PAPER, "mil_k": "points"}, network())
    targets, motion, geometry, valid, batch = ready(method, videos)
    ks = method.top_k(valid.bool(), batch)
    paper = top_k_counts(valid.bool(), divisor.config.divisors)
    torch.testing.assert_close(ks[:, 0], paper[:, 0])  # the background keeps T / h
    n_valid = valid.bool().sum(dim=1)
    for b, t in enumerate(targets):
        for col, cls in ((1, 0), (2, 1)):
            want = min(int(t["point_k"][cls]), int(n_valid[b])) if t["point_k"][cls] else int(paper[b, col])
            assert int(ks[b, col]) == want
    assert targets[1]["point_k"][0] == 0 and int(ks[1, 1]) == int(paper[1, 1])  # no ME point
    _, parts = method.loss(method.network(motion, geometry, valid), batch, valid)
    _, paper_parts = divisor.loss(divisor.network(motion, geometry, valid), batch, valid)
    assert parts["dc1"] != pytest.approx(paper_parts["dc1"])  # the MIL pools other snippets


def test_switches_turn_mplg_and_dfcl_off(make_video) -> None:
    videos = [make_video(f"s{i}_v", 30 + i) for i in range(2)]
    method = PwesMethod({**PAPER, "use_mplg": False, "use_dfcl": False}, network())
    _, motion, geometry, valid, batch = ready(method, videos)
    refine(method)
    out = method.network(motion, geometry, valid)
    torch.testing.assert_close(method.pseudo_labels(out, batch, valid), batch["points"].float())
    _, parts = method.loss(out, batch, valid)
    assert parts["fcl"] == 0.0 and method.bank_present is not None and not method.bank_present.any()
    only_dfcl = PwesMethod({**PAPER, "use_mplg": False}, network())
    _, motion, geometry, valid, batch = ready(only_dfcl, videos)
    refine(only_dfcl)
    only_dfcl.loss(only_dfcl.network(motion, geometry, valid), batch, valid)
    assert only_dfcl.bank_present is not None
    assert only_dfcl.bank_present.any() and not only_dfcl.bank_present[:, :11].any()  # no background set


def test_features_at_invalid_snippets_do_not_change_the_loss(make_video) -> None:
    videos = [make_video(f"s{i}_v", 40 + i) for i in range(3)]

    def run(noisy: bool) -> list[float]:
        method = PwesMethod(None, network())
        _, motion, geometry, valid, batch = ready(method, videos)
        valid[0, 80:] = False  # padding-like tail
        valid[1, 30:34] = False  # a lost face
        if noisy:
            noise = torch.randn(motion.shape, generator=torch.Generator().manual_seed(3)) * 40
            motion = torch.where(valid.unsqueeze(-1), motion, noise)
            geometry = torch.where(valid.unsqueeze(-1), geometry, -noise)
        losses = []
        for step in (0, 80, 81):
            method.on_step(step, 0, method.network, [], [], np.random.default_rng(0))
            loss, _ = method.loss(method.network(motion, geometry, valid), batch, valid)
            losses.append(loss.item())
        return losses

    assert run(True) == pytest.approx(run(False), rel=1e-5, abs=1e-6)


def test_scores_are_the_suppressed_sigmoid_tcam() -> None:
    method = PwesMethod(None, network())
    motion, geometry = torch.randn(2, 20, DIM), torch.randn(2, 20, DIM)
    valid = torch.ones(2, 20, dtype=torch.bool)
    valid[1, 15:] = False
    out = method.network(motion, geometry, valid)
    cls, act = method.score_tensors(out)
    assert cls.shape == (2, 20, 2) and act.shape == (2, 20)
    assert ((cls >= 0) & (cls <= 1)).all() and cls[~valid].abs().sum() == 0
    torch.testing.assert_close(cls, torch.sigmoid(out["tcam"][..., 1:]) * out["attention"].unsqueeze(-1))
    assert PwesMethod.default_proposals() == McwesMethod.default_proposals()


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------


def test_training_reduces_the_loss_and_is_reproducible(make_video) -> None:
    kinds = [("me", "mae", "me"), ("mae", "mae"), ("me", "mae"), ("mae", "me")]
    videos = [make_video(f"s{i}_v", 100 + i, kinds=k) for i, k in enumerate(kinds)]
    cfg = TrainConfig(
        epochs=6,
        batch_size=2,
        steps_per_epoch=2,
        lr=1e-2,
        network=NET,
        method="pwes",
        method_options={"pretrain_steps": 3},
        seed=3,
    )
    net_a, hist_a = train(videos, cfg, progress=False)
    net_b, hist_b = train(videos, cfg, progress=False)
    assert hist_a == hist_b
    for (name, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    losses = [h["loss"] for h in hist_a]
    assert losses[-1] < losses[0] - 0.1 and losses[-1] == min(losses), losses
    assert hist_a[0]["fcl"] == 0.0 and hist_a[-1]["fcl"] > 0.0  # DFCL starts after pre-training
    cls, act = predict(net_a, build_method("pwes", net_a), videos[0][1])
    assert cls.shape == (96, 2) and np.isfinite(act).all()


# --------------------------------------------------------------------------------------------
# mespot's fixes: point-free background, MPLG in eval mode
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_mplg_never_makes_known_background_foreground(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    t = 60
    emb, probs, att = (
        torch.randn(t, 8, generator=g),
        torch.rand(t, 2, generator=g) ** 0.2,
        torch.rand(t, generator=g),
    )
    valid = torch.rand(t, generator=g) > 0.1
    points = torch.zeros(t, 2)
    points[10, 0] = points[40, 1] = 1.0
    known = torch.zeros(t, dtype=torch.bool)
    known[20:32] = True
    known[55:] = True
    labels = mplg(emb, probs, att, points, valid, 0.3, 0.1, known)  # a low theta: much foreground
    assert labels[known, 1:].sum() == 0  # known background never becomes foreground
    torch.testing.assert_close(labels[:, 0] > 0, known & valid)  # and is exactly the background
    assert labels[~known & valid, 1:].sum() > 2  # foreground still grows around the points


def test_point_free_background_starts_the_snippet_loss(make_video) -> None:
    record, feats = make_video("s1_a", 4)
    method = PwesMethod({"background_gap_s": 4.0}, network())  # one gap for every point
    tg = method.targets(record, feats, np.random.default_rng(0))
    bg = tg["background"] > 0
    assert 0.2 < bg.mean() < 0.9
    truth = full_labels(record, len(feats.valid), feats.snippet_s)  # (T, 3)
    assert not (bg & (truth[:, 0] == 0)).any()  # never inside an expression
    np.testing.assert_array_equal(tg["pseudo"][:, 0], tg["background"])
    np.testing.assert_array_equal(tg["pseudo"][:, 1:], tg["points"][:, 1:])
    # A video without expressions is background throughout.
    empty = dataclasses.replace(record, expressions=())
    assert method.targets(empty, feats, np.random.default_rng(0))["background"].all()
    # A gap per point type (the longest ME, the longest MaE: the default) adds background near ME
    # points only.
    typed = PwesMethod(None, network())
    tb = typed.targets(record, feats, np.random.default_rng(0))["background"] > 0
    assert (tb >= bg).all() and tb.sum() > bg.sum() and not (tb & (truth[:, 0] == 0)).any()


def test_eval_mode_pseudo_labels_are_reproducible_from_the_weights(make_video) -> None:
    videos = [make_video(f"s{i}_v", 50 + i, kinds=k) for i, k in enumerate([("me", "mae"), ("mae", "me")])]
    torch.manual_seed(0)
    net = build_network(dataclasses.replace(NET, dropout=0.5)).train()  # dropout on
    method = PwesMethod({"fg_threshold": 0.3}, net)
    rng = np.random.default_rng(0)
    targets = [method.targets(r, f, rng) for r, f in videos]
    first = method.refresh_pseudo_labels(net, videos, targets)
    second = method.refresh_pseudo_labels(net, videos, targets)
    assert net.training  # the mode is restored
    twin = build_network(dataclasses.replace(NET, dropout=0.5))
    twin.load_state_dict(net.state_dict())
    third = PwesMethod({"fg_threshold": 0.3}, twin).refresh_pseudo_labels(twin.train(), videos, targets)
    for a, b, c in zip(first, second, third, strict=True):
        np.testing.assert_array_equal(a["pseudo"], b["pseudo"])
        np.testing.assert_array_equal(a["pseudo"], c["pseudo"])
        assert a["pseudo"][:, 1:].sum() >= a["points"][:, 1:].sum()  # at least the points
    # The trainer gets them at the first step of each epoch once pre-training is over, not before.
    rng = np.random.default_rng(0)
    assert method.on_step(0, 0, net, videos, targets, rng) is None
    fresh = method.on_step(method.config.pretrain_steps, 5, net, videos, targets, rng)
    assert (
        fresh is not None
        and method.on_step(method.config.pretrain_steps + 1, 5, net, videos, fresh, rng) is None
    )
    np.testing.assert_array_equal(fresh[0]["pseudo"], first[0]["pseudo"])


def test_class_regions_keep_mplg_foreground_near_points_of_its_class(make_video) -> None:
    """With class_regions, MPLG's pseudo foreground of a class lies within that class's longest
    expression of one of its points, and the regions hold every true expression snippet."""
    from engine.data.labels import class_regions

    videos = [make_video(f"s{i}_v", 60 + i, kinds=k) for i, k in enumerate([("me", "mae"), ("mae",)])]
    torch.manual_seed(0)
    net = build_network(NET)
    loose_options = {"fg_threshold": 0.05, "select_ratio": 1.0, "background_gap_s": None}
    free = PwesMethod({**loose_options, "class_regions": False}, net)
    bound = PwesMethod({**loose_options, "class_regions": True}, net)
    rng = np.random.default_rng(0)
    targets = [bound.targets(r, f, rng) for r, f in videos]
    loose = free.refresh_pseudo_labels(net, videos, targets)
    tight = bound.refresh_pseudo_labels(net, videos, targets)
    for (record, feats), a, b in zip(videos, loose, tight, strict=True):
        possible = b["possible"] > 0  # (T, 2)
        truth = full_labels(record, len(feats.valid), feats.snippet_s)  # (T, 3)
        inside = truth[:, 1:] > 0.5
        assert not (inside & ~possible & feats.valid[:, None]).any()  # every expression is possible
        assert not (b["pseudo"][:, 1:].astype(bool) & ~possible).any()
        assert (b["pseudo"][:, 1:] <= a["pseudo"][:, 1:]).all()
    assert sum(t["pseudo"][:, 1:].sum() for t in tight) < sum(t["pseudo"][:, 1:].sum() for t in loose)
    # A video without ME points has no possible ME snippet.
    assert not (targets[1]["possible"][:, 0] > 0).any() and targets[1]["possible"][:, 1].any()
    assert class_regions(np.zeros((5, 2)), np.ones(5, bool), 0.1).shape == (5, 2)
