"""Training, the `full` method and the LOSO driver on generated features with known bursts."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

import engine.train as train_module
from engine.data.features import VideoFeatures
from engine.data.records import Dataset, VideoRecord
from engine.evaluate import evaluate
from engine.methods import METHODS, FullConfig, FullMethod, build_method
from engine.models import NetworkConfig
from engine.proposals import OPERATING_GRID, ProposalConfig
from engine.train import (
    TrainConfig,
    choose_operating_point,
    grid_counts,
    loso,
    predict,
    spot,
    train,
)
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval

SNIPPET_S = 8 / 30  # 8 frames at 30 fps
FPS = 30.0
T = 256
DIM = 153
ME_DIMS = slice(0, 6)  # "ROIs" that move in a micro-expression
MAE_DIMS = slice(20, 26)  # and in a macro-expression
NET = NetworkConfig(embed_dim=32, dilations=(1, 2), window=16, dropout=0.0)


def make_video(name: str, subject: str, seed: int) -> tuple[VideoRecord, VideoFeatures]:
    """A video with 5 MEs (1 snippet) and 3 MaEs (4-8 snippets): motion bursts plus noise."""
    rng = np.random.default_rng(seed)
    motion = rng.normal(0.0, 0.3, (T, DIM)).astype(np.float32)  # (T, Dm)
    geometry = rng.normal(0.0, 0.3, (T, DIM)).astype(np.float32)  # (T, Dg)
    kinds = [ExpressionType.ME] * 5 + [ExpressionType.MAE] * 3
    rng.shuffle(kinds)
    expressions = []
    start = int(rng.integers(8, 16))
    for kind in kinds:
        n = 1 if kind is ExpressionType.ME else int(rng.integers(4, 9))
        dims = ME_DIMS if kind is ExpressionType.ME else MAE_DIMS
        motion[start : start + n, dims] += 2.0
        # Frames of the video's own numbering (from 1): snippet j covers frames 1 + 8j .. 8 + 8j.
        expressions.append(Interval(1 + 8 * start, 8 * (start + n), kind))
        start += n + int(rng.integers(16, 24))
    assert start < T
    record = VideoRecord(name, subject, FPS, tuple(expressions), n_frames=T * 8, first_frame=1)
    feats = VideoFeatures(name, motion, geometry, np.ones(T, bool), SNIPPET_S, FPS, first_frame=1)
    return record, feats


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, dict[str, VideoFeatures]]:
    pairs = [make_video(f"s{s}_v{v}", f"s{s}", 10 * s + v) for s in range(1, 4) for v in range(2)]
    return Dataset("synthetic", FPS, tuple(r for r, _ in pairs)), {f.video: f for _, f in pairs}


def pairs_of(dataset: Dataset, features: dict[str, VideoFeatures], subjects: set[str]):
    return [(r, features[r.video]) for r in dataset.videos if r.subject in subjects]


CONFIG = TrainConfig(epochs=6, batch_size=8, window=48, steps_per_epoch=10, lr=3e-3, network=NET)


def test_train_is_reproducible_and_the_loss_decreases(data) -> None:
    dataset, features = data
    videos = pairs_of(dataset, features, {"s1", "s2"})
    torch.manual_seed(123)
    outside = torch.rand(1)
    cfg = TrainConfig(epochs=4, batch_size=8, window=48, steps_per_epoch=6, lr=3e-3, network=NET)
    net_a, hist_a = train(videos, cfg, progress=False)
    net_b, hist_b = train(videos, cfg, progress=False)
    for (name, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert hist_a == hist_b
    assert not net_a.training
    assert hist_a[-1]["loss"] < 0.5 * hist_a[0]["loss"]
    # The caller's global RNG stream is untouched by training.
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), outside)
    other, _ = train(videos, dataclasses.replace(cfg, seed=1, epochs=1), progress=False)
    assert not torch.equal(next(other.parameters()), next(net_a.parameters()))


def test_an_ensemble_is_its_members_trained_alone_and_scores_their_mean(data, tmp_path) -> None:
    """Member i of `--ensemble N` is the network one training with seed + i gives; the ensemble's
    scores are the members' mean; its bundle loads back to the same scores."""
    from engine.bundle import load_bundle, save_bundle
    from engine.models import NetworkEnsemble
    from stream.config import FeatureConfig

    dataset, features = data
    videos = pairs_of(dataset, features, {"s1", "s2"})
    cfg = TrainConfig(epochs=2, batch_size=8, window=48, steps_per_epoch=3, lr=3e-3, network=NET, seed=5)
    ensemble, history = train(videos, dataclasses.replace(cfg, ensemble=2), progress=False)
    assert isinstance(ensemble, NetworkEnsemble) and not ensemble.training
    singles = [train(videos, dataclasses.replace(cfg, seed=5 + i), progress=False) for i in range(2)]
    for member, (single, _) in zip(ensemble.members, singles, strict=True):
        for (name, a), b in zip(member.state_dict().items(), single.state_dict().values(), strict=True):
            assert torch.equal(a, b), name
    for epoch, record in enumerate(history):  # the members' mean per epoch
        assert record["loss"] == pytest.approx(np.mean([h[epoch]["loss"] for _, h in singles]))
    method = build_method("full", ensemble, {})
    feats = features["s3_v0"]
    cls, act = predict(ensemble, method, feats)
    alone = [predict(single, build_method("full", single, {}), feats) for single, _ in singles]
    np.testing.assert_allclose(cls, np.mean([c for c, _ in alone], axis=0), atol=1e-6)
    np.testing.assert_allclose(act, np.mean([a for _, a in alone], axis=0), atol=1e-6)
    assert not np.allclose(alone[0][1], alone[1][1])  # two different networks
    # The bundle holds both members in one weights file and scores as the ensemble did.
    features_config = FeatureConfig(flow_scales_s=(0.1,), eye_openness=False)  # 153 + 153 wide
    with pytest.raises(ConfigError, match="2 network"):
        save_bundle(tmp_path / "bad.mespot", ensemble, cfg, features_config)
    bundle = load_bundle(
        save_bundle(tmp_path / "e.mespot", ensemble, dataclasses.replace(cfg, ensemble=2), features_config)
    )
    loaded = bundle.network()
    assert isinstance(loaded, NetworkEnsemble) and len(loaded.members) == 2
    again = predict(loaded, bundle.method(loaded), feats)
    np.testing.assert_array_equal(again[0], cls)
    np.testing.assert_array_equal(again[1], act)
    with pytest.raises(ConfigError, match="ensemble"):
        TrainConfig(ensemble=0)


def test_full_loso_beats_chance_and_tunes_only_on_training_videos(data, monkeypatch) -> None:
    dataset, features = data
    seen: list[set[str]] = []

    def spy(videos, scores, base, grid=train_module.OPERATING_GRID, **kwargs):
        seen.append({r.video for r, _ in videos} | set(scores))
        return choose_operating_point(videos, scores, base, grid, **kwargs)

    monkeypatch.setattr(train_module, "choose_operating_point", spy)
    result = loso(dataset, features, CONFIG, progress=False)
    assert list(result.folds) == ["s1", "s2", "s3"]
    # Each fold's operating point was chosen on exactly its training subjects' videos.
    for (train_subjects, test_subject), ids in zip(dataset.loso_folds(), seen, strict=True):
        assert ids == {r.video for r in dataset.videos if r.subject in train_subjects}
        assert not any(r.video in ids for r in dataset.by_subject(test_subject))
    assert set(result.predictions) == {r.video for r in dataset.videos}
    assert set(result.operating_points) == {"s1", "s2", "s3"}
    # Each fold's point keeps the live budget on its training videos; its held-out videos' event
    # latency is estimated too.
    assert set(result.latency) == {"s1", "s2", "s3"}
    held_out_events = sum(len(lat.seconds["me"]) + len(lat.seconds["mae"]) for lat in result.latency.values())
    assert held_out_events > 0
    overall = result.report.overall
    assert overall.tp + overall.fn == 48
    # Measured with seeds 0-3: overall F1 0.81-0.91, ME 0.67-0.85, MaE 0.97-1.0 (chance: ~0).
    assert overall.f1 > 0.65, result.report.table()
    assert result.report.me.f1 > 0.4 and result.report.mae.f1 > 0.8, result.report.table()
    assert result.wall_s > 0 and len(result.histories["s1"]) == CONFIG.epochs


def test_the_operating_point_keeps_the_live_latency_budget(slow_tail_video, caplog) -> None:
    """Two threshold sets find a MaE equally well; the one whose low threshold keeps the run open
    along the score's slow tail would publish it 2.1 s after its offset, over the 1.5 s budget."""
    videos, scores = slow_tail_video
    base = ProposalConfig(thresholds=(0.5,))
    grid = {"thresholds": ((0.05, 0.5), (0.5,))}
    free, _ = choose_operating_point(videos, scores, base, grid, latency_budget=None)
    assert free.thresholds == (0.05, 0.5)  # equal F1: the first point
    held, report = choose_operating_point(videos, scores, base, grid)
    assert held.thresholds == (0.5,) and report.overall.f1 == 1.0
    # A look-ahead counts in the latency: 0.9 s of it pushes even the fast set over a 1.3 s budget.
    # The trained network is not lost for it: the best point is kept, and the overrun said.
    with caplog.at_level(logging.WARNING, logger="engine.train"):
        over, _ = choose_operating_point(
            videos, scores, base, grid, latency_budget={"mae": 1.3}, lookahead_s=0.9
        )
    assert over.thresholds == (0.05, 0.5)
    assert any("keeps the median event latency within" in r.getMessage() for r in caplog.records)


def test_identity_loso_keeps_every_variant_of_the_held_out_person_out_of_training(monkeypatch) -> None:
    """3 identities x 2 subjects: neither training nor the operating point sees the test person."""
    people = {"ann": ("s1", "s4"), "bob": ("s2", "s5"), "cy": ("s3", "s6")}
    records, feats = [], {}
    for person, subjects in people.items():
        for subject in subjects:
            rec, f = make_video(f"{subject}_v0", subject, 10 * int(subject[1:]))
            records.append(dataclasses.replace(rec, identity=person))
            feats[rec.video] = f
    dataset = Dataset("morphs", FPS, tuple(records))
    trained: list[set[str]] = []
    tuned: list[set[str]] = []
    real_train = train_module.train

    def train_spy(videos, config, *, progress=True):
        trained.append({r.subject for r, _ in videos})
        return real_train(videos, config, progress=progress)

    def tune_spy(videos, scores, base, grid=train_module.OPERATING_GRID, **kwargs):
        tuned.append({r.subject for r, _ in videos} | {v.split("_")[0] for v in scores})
        return choose_operating_point(videos, scores, base, grid, **kwargs)

    monkeypatch.setattr(train_module, "train", train_spy)
    monkeypatch.setattr(train_module, "choose_operating_point", tune_spy)
    tiny = TrainConfig(epochs=1, batch_size=2, window=16, steps_per_epoch=1, network=NET)
    result = loso(dataset, feats, tiny, progress=False)  # identity is the default
    assert result.group == "identity" and list(result.folds) == ["ann", "bob", "cy"]
    for person, seen_in_training, seen_in_tuning in zip(people, trained, tuned, strict=True):
        held_out = set(people[person])
        others = {s for p, subjects in people.items() if p != person for s in subjects}
        assert seen_in_training == others and seen_in_tuning == others
        assert held_out.isdisjoint(seen_in_training) and held_out.isdisjoint(seen_in_tuning)
        assert set(result.plan[person].test_subjects) == held_out
        assert {v.split("_")[0] for v in result.folds[person].videos} == held_out
    assert set(result.predictions) == {r.video for r in dataset.videos}
    # Subject folds hold out one morph: its twin is in training.
    trained.clear()
    by_subject = loso(dataset, feats, tiny, group="subject", folds=1, progress=False)
    assert by_subject.group == "subject" and list(by_subject.folds) == ["s1"]
    assert "s4" in trained[0] and "s1" not in trained[0]
    with pytest.raises(ConfigError, match="fold group"):
        loso(dataset, feats, tiny, group="person", progress=False)


def test_predict_gives_nan_at_invalid_snippets_and_equals_a_prefix(data) -> None:
    dataset, features = data
    videos = pairs_of(dataset, features, {"s1"})
    cfg = TrainConfig(epochs=1, batch_size=2, window=32, steps_per_epoch=2, network=NET)
    net, _ = train(videos, cfg, progress=False)
    method = build_method("full", net)
    f = features["s2_v0"]
    valid = f.valid.copy()
    valid[50:60] = False
    cls, act = predict(net, method, VideoFeatures(f.video, f.motion, f.geometry, valid, SNIPPET_S, FPS, 1))
    assert cls.shape == (T, 2) and act.shape == (T,)
    assert np.isnan(act[50:60]).all() and np.isfinite(act[:50]).all()
    assert np.all((cls[:50] >= 0) & (cls[:50] <= 1))
    # Causal: scoring a prefix gives the same scores as the whole video (offline == live).
    short = VideoFeatures(f.video, f.motion[:40], f.geometry[:40], f.valid[:40], SNIPPET_S, FPS, 1)
    np.testing.assert_allclose(predict(net, method, short)[1], predict(net, method, f)[1][:40], atol=1e-5)


def test_full_loss_is_masked_and_class_balanced() -> None:
    method = FullMethod(None, torch.nn.Identity())
    labels = np.zeros(100, np.int64)
    labels[:4] = 1
    labels[10:14] = 2
    method.prepare([{"labels": labels}])
    w = method.class_weights
    assert w[1] > 10 * w[0] and w[2] > 10 * w[0]
    logits = torch.zeros(1, 5, 3)
    logits[0, 3] = torch.tensor([0.0, 50.0, 0.0])  # badly wrong on an invalid snippet
    target = {"labels": torch.zeros(1, 5, dtype=torch.long)}
    valid = torch.tensor([[True, True, True, False, True]])
    loss, parts = method.loss({"tcam": logits}, target, valid)
    assert loss.item() == pytest.approx(np.log(3), rel=1e-5) and parts["ce"] == pytest.approx(loss.item())
    cls, act = method.scores({"tcam": logits})
    assert cls.shape == (5, 2) and act[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"window": 1}, "window"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"method": "nope"}, "method"),
        ({"method_options": {"bogus": 1}}, "bogus"),
        ({"method_options": {"max_class_weight": 0.5}}, "max_class_weight"),
        ({"network": {"embed_dim": 8}}, "network"),
    ],
)
def test_config_validation(changes, key) -> None:
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**changes)


def test_config_round_trip_and_registry() -> None:
    cfg = TrainConfig(network=NET, method_options={"label_smoothing": 0.1}, proposals=ProposalConfig())
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown train config keys"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="already registered"):
        METHODS.register("full")(FullMethod)
    with pytest.raises(ConfigError, match="label_smoothing"):
        FullConfig(label_smoothing=0.7)
    with pytest.raises(ConfigError, match="choose one of"):
        build_method("no-such-method", torch.nn.Identity())
    with pytest.raises(ConfigError, match="FullConfig"):
        FullMethod(NET, torch.nn.Identity())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no training videos"):
        train([], cfg)


def test_augmentation_keeps_training_reproducible_and_changes_the_batches() -> None:
    from engine.train import augment_batch

    rng = np.random.default_rng(0)
    motion, geometry = torch.ones(3, 10, 4), torch.zeros(3, 10, 5)
    m_std, g_std = torch.full((4,), 2.0), torch.full((5,), 0.5)
    m, g = augment_batch(motion, geometry, m_std, g_std, 1.0, rng)
    assert m.shape == motion.shape and g.shape == geometry.shape
    # Each sample has its own gain and its own constant face-shape offset.
    gains = m.mean(dim=(1, 2))
    assert len(set(gains.round(decimals=3).tolist())) == 3
    offsets = g.mean(dim=1)  # (3, 5): the per-sample offset dominates the per-snippet noise
    assert (offsets.std(dim=0) > 0.1).all()
    m0, g0 = augment_batch(motion, geometry, m_std, g_std, 1e-9, np.random.default_rng(0))
    torch.testing.assert_close(m0, motion)
    torch.testing.assert_close(g0, geometry)
    with pytest.raises(ConfigError, match="augment"):
        TrainConfig(augment=2.5)


def test_the_grid_search_counts_each_point_as_a_fresh_spot_would(data) -> None:
    """`grid_counts` spots once per setting of the pre-NMS fields and counts each type once per
    value of its offset shift; every point's counts equal evaluating a fresh `spot` there, and
    the shift varies fastest."""
    dataset, features = data
    videos = pairs_of(dataset, features, {"s1", "s2"})
    rng = np.random.default_rng(3)
    scores = {}
    for record, feats in videos:
        act = np.clip(feats.motion[:, :26].mean(axis=1) + rng.normal(0, 0.05, T), 0, 1)  # (T,)
        scores[record.video] = (np.stack([act, rng.uniform(0, 1, T)], axis=1), act)  # (T, 2), (T,)
    shifts = ((0.0, 0.0), (-0.2, 0.0), (0.0, 0.4), (-0.2, 0.4))
    grid = {
        "offset_shift_s": shifts,
        "thresholds": ((0.1, 0.3), (0.2,)),
        "nms_iou": (0.5, 0.1),
        "me_share_min": (0.5, 0.3),  # points that retype some spans and leave others (the memo)
        "type_rule": ("class", "duration"),  # the duration rule ignores the share line
    }
    base = ProposalConfig(type_rule="class")
    truths = {record.video: list(record.expressions) for record, _ in videos}
    points = list(grid_counts(videos, scores, base, grid))
    assert [p[0]["offset_shift_s"] for p in points[:4]] == list(shifts)  # varies fastest
    assert len(points) == 64
    seen = set()
    for setting, config, me, mae in points:
        assert config == dataclasses.replace(base, **setting)
        preds = {
            record.video: spot(scores[record.video], (record, feats), config) for record, feats in videos
        }
        report = evaluate(preds, truths, FPS)
        assert (me, mae) == (report.me, report.mae)
        seen.add((me, mae))
    assert len(seen) > 4  # the shifts do change the counts
    assert "offset_shift_s" in OPERATING_GRID and OPERATING_GRID["offset_shift_s"][0] == (0.0, 0.0)


def test_out_of_fold_operating_points_are_chosen_on_scores_of_networks_that_never_saw_the_video(
    data, monkeypatch
) -> None:
    """Nested leave-one-out: each training video is scored by an inner network trained without
    its group, and the fold's point is chosen on those scores; the held-out group stays unseen."""
    dataset, features = data
    networks: list[tuple[set[str], object]] = []
    chosen_on: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    real_train = train_module.train

    def train_spy(videos, config, *, progress=True):
        network, history = real_train(videos, config, progress=progress)
        networks.append(({r.subject for r, _ in videos}, network))
        return network, history

    def tune_spy(videos, scores, base, grid=train_module.OPERATING_GRID, **kwargs):
        chosen_on.append(dict(scores))
        return choose_operating_point(videos, scores, base, grid, **kwargs)

    monkeypatch.setattr(train_module, "train", train_spy)
    monkeypatch.setattr(train_module, "choose_operating_point", tune_spy)
    tiny = TrainConfig(epochs=2, batch_size=4, window=32, steps_per_epoch=2, network=NET)
    result = loso(
        dataset, features, tiny, group="subject", folds=1, progress=False, operating_point="out-of-fold"
    )
    assert list(result.folds) == ["s1"]
    # The outer network, then one inner network per training subject, none of them on s1.
    assert [subjects for subjects, _ in networks] == [{"s2", "s3"}, {"s3"}, {"s2"}]
    outer_scores = chosen_on[-1]  # the inner runs chose their own points first
    assert {v.split("_")[0] for v in outer_scores} == {"s2", "s3"}
    method = build_method("full", networks[0][1])
    for subjects, network in networks[1:]:
        (unseen,) = {"s2", "s3"} - subjects
        for rec, feats in pairs_of(dataset, features, {unseen}):
            cls, act = predict(network, build_method("full", network), feats)
            np.testing.assert_array_equal(outer_scores[rec.video][0], cls)
            np.testing.assert_array_equal(outer_scores[rec.video][1], act)
            own = predict(networks[0][1], method, feats)[1]
            assert not np.array_equal(own, act, equal_nan=True)
    with pytest.raises(ConfigError, match="at least 3 subject groups"):
        loso(dataset.subset(["s1", "s2"]), features, tiny, group="subject", operating_point="out-of-fold")
    with pytest.raises(ConfigError, match="operating_point='best'"):
        loso(dataset, features, tiny, operating_point="best")
