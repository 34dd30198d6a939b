"""Operating-point calibration: chosen on the training subjects, stored in the bundle, used live."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.operating_point import (
    CALIBRATION_GRID,
    LATENCY_BUDGET_S,
    CalibrationError,
    GridPoint,
    bundle_scores,
    calibrate,
    calibration_subjects,
    choose,
    dataset_videos,
    evaluate_point,
    event_latency,
    fold_bundles,
    out_of_fold_scores,
    plot_calibration,
)
from engine.bundle import load_bundle, save_bundle, set_operating_point
from engine.cli import main
from engine.cli.calibrate import add_parser as add_calibrate_parser
from engine.data import load_dataset
from engine.evaluate import Metrics
from engine.live import LiveRunner
from engine.methods import METHODS
from engine.proposals import ProposalConfig
from engine.train import OPERATING_GRID, choose_operating_point
from stream.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


def run_cli(*argv: str) -> int:
    """``mespot calibrate ...`` through the subcommand's own parser (engine.cli wires the same one)."""
    parser = argparse.ArgumentParser(prog="mespot")
    add_calibrate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["calibrate", *argv])
    return args.func(args)


def videos_of(synth, bundle_path: Path, subjects=None):
    dataset = load_dataset("csv", synth.annotations)
    media = synth.annotations.parent / "videos"
    return dataset_videos(dataset, media, synth.features, load_bundle(bundle_path), subjects)


def test_the_point_chosen_on_training_subjects_is_stored_and_used_live(synth, bundle_copy: Path) -> None:
    before = load_bundle(bundle_copy)
    assert before.metadata["train_subjects"] == ["s01", "s02"]
    png = bundle_copy.parent / "points.png"
    common = [str(synth.annotations), "--features", str(synth.features), "--quiet"]
    assert run_cli(str(bundle_copy), *common, "--plot", str(png)) == 0

    bundle = load_bundle(bundle_copy)  # hashes still verify: only bundle.json changed
    calibration = bundle.metadata["calibration"]
    assert calibration["subjects"] == ["s01", "s02"] and calibration["other_subjects"] == []
    assert calibration["objective"] == "f1" and calibration["videos"] == 4
    assert calibration["latency_budget_s"] == dict(LATENCY_BUDGET_S)  # the live budget by default
    assert calibration["event_latency"]["me"]["events"] + calibration["event_latency"]["mae"]["events"] > 0
    assert calibration["grid"]["nms_iou"] == list(CALIBRATION_GRID["nms_iou"])
    # What the live runner and `mespot eval` read is the calibrated point.
    assert bundle.operating_point is not None
    assert bundle.proposal_config() == bundle.operating_point
    assert (
        bundle.operating_point.to_dict()
        == json.loads((bundle_copy / "bundle.json").read_text())["operating_point"]
    )
    video = synth.annotations.parent / "videos" / "s01_01.mp4"
    with LiveRunner(video, bundle_copy, backend="torch") as runner:
        assert runner.proposal_config == bundle.operating_point
    # ... and it is the sweep's best-F1 point on the same (training) videos.
    videos = videos_of(synth, bundle_copy)
    scores = bundle_scores(bundle, videos)
    again = calibrate(videos, scores, before.operating_point)
    assert again.config == bundle.operating_point
    best = max(p.overall.f1 for p in again.points)
    stored = evaluate_point(videos, scores, bundle.proposal_config())
    assert stored.overall.f1 == pytest.approx(best) == calibration["chosen"]["overall"]["f1"]
    assert best > 0  # a real choice, not a tie of zeros
    # The grid holds the training grid, so calibration never does worse than training's choice.
    assert best >= calibration["previous"]["overall"]["f1"]
    assert png.read_bytes()[:8] == PNG


def test_f1_objective_on_the_training_grid_equals_trainings_choice(synth, bundle_copy: Path) -> None:
    bundle = load_bundle(bundle_copy)
    videos = videos_of(synth, bundle_copy)
    scores = bundle_scores(bundle, videos)
    base = bundle.train_config.proposals
    ours = calibrate(videos, scores, base, grid=OPERATING_GRID)
    theirs, report = choose_operating_point(videos, scores, base)
    assert ours.config == theirs == bundle.operating_point  # what `mespot train` stored
    assert ours.point.overall == report.overall


def test_a_bundle_without_operating_point_falls_back_with_a_warning(
    synth, bundle_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trained = load_bundle(bundle_copy)
    bare = save_bundle(
        tmp_path / "bare.mespot",
        trained.network(),
        trained.train_config,
        trained.feature_config,
        operating_point=None,
        metadata={"train_subjects": ["s01", "s02"]},
    )
    with caplog.at_level(logging.WARNING, logger="engine.bundle"):
        fallback = load_bundle(bare).proposal_config()
    assert fallback == METHODS.get("full").default_proposals()  # the method's documented default
    assert any("no operating point" in r.getMessage() for r in caplog.records)

    caplog.clear()
    common = [str(synth.annotations), "--features", str(synth.features), "--quiet"]
    with caplog.at_level(logging.WARNING, logger="engine.bundle"):
        assert run_cli(str(bare), *common) == 0
    assert any("no operating point" in r.getMessage() for r in caplog.records)  # "before" = the default
    calibrated = load_bundle(bare)
    assert calibrated.metadata["calibration"]["previous"]["operating_point"] == fallback.to_dict()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="engine.bundle"):
        assert calibrated.proposal_config() == calibrated.operating_point
    assert not caplog.records  # calibrated: no more fallback


def test_false_alarm_objective_keeps_the_target_on_the_calibration_data(synth, bundle_copy: Path) -> None:
    png = bundle_copy.parent / "fa.png"
    bundle = load_bundle(bundle_copy)
    videos = videos_of(synth, bundle_copy)
    scores = bundle_scores(bundle, videos)
    sweep = calibrate(videos, scores, bundle.operating_point)
    top = max(p.overall.recall for p in sweep.points)
    cheapest_top = min(p.fa_per_min() for p in sweep.points if p.overall.recall == top)
    target = max(p.fa_per_min() for p in sweep.points if p.fa_per_min() < cheapest_top)  # binds
    common = [str(synth.annotations), "--features", str(synth.features), "--quiet", "--plot", str(png)]
    objective = ["--objective", "false-alarms", "--max-fa-per-min", str(target), "--no-latency-budget"]
    assert run_cli(str(bundle_copy), *common, *objective) == 0

    stored = load_bundle(bundle_copy)
    point = evaluate_point(videos, scores, stored.proposal_config())
    assert point.fa_per_min() <= target
    feasible = [p for p in sweep.points if p.fa_per_min() <= target]
    assert point.overall.recall == max(p.overall.recall for p in feasible)  # the highest recall under the cap
    assert any(p.overall.recall > point.overall.recall for p in sweep.points)  # the cap did bind
    chosen = stored.metadata["calibration"]["chosen"]
    assert chosen["overall"]["fa_per_min"] <= target
    assert stored.metadata["calibration"]["max_fa_per_min"] == target
    assert stored.metadata["calibration"]["latency_budget_s"] is None
    assert stored.metadata["calibration"]["event_latency"]["processing_s"] == pytest.approx(0.1)
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 20_000


def point(fp: int, tp: int, minutes: float = 2.0, **setting) -> GridPoint:
    return GridPoint(ProposalConfig(**setting), setting, Metrics(tp, fp, 5 - tp), Metrics(), minutes)


def test_choice_rules_on_hand_made_points(tmp_path: Path) -> None:
    points = [
        point(0, 1),  # 0 FA/min, recall 0.2
        point(2, 3, min_score=0.1),  # 1 FA/min, recall 0.6, F1 0.6
        point(6, 4, min_score=0.2),  # 3 FA/min, recall 0.8, F1 0.57
        point(2, 3, min_score=0.3),  # a tie of the second: the earlier wins
    ]
    assert choose(points, "f1") == 1
    assert choose(points, "false-alarms", max_fa_per_min=1.0) == 1
    assert choose(points, "false-alarms", max_fa_per_min=3.0) == 2
    assert choose(points, "false-alarms", max_fa_per_min=0.5) == 0
    assert choose(points, "f1", max_fa_per_min=0.5) == 0  # F1 under a cap
    assert choose(points, "false-alarms", max_fa_per_min=1.0, target_class="mae") == 0  # no MaE at all
    with pytest.raises(CalibrationError, match=r"lowest is 0\.5 per minute"):
        choose([point(1, 1), point(4, 2)], "false-alarms", max_fa_per_min=0.2)
    with pytest.raises(ConfigError, match="needs a target"):
        choose(points, "false-alarms")
    with pytest.raises(ConfigError, match="objective"):
        choose(points, "recall")
    # A further test (the latency budget) takes the points in the objective's order, ties by index.
    assert choose(points, "f1", admissible=lambda i: True) == 1
    assert choose(points, "f1", admissible=lambda i: i != 1) == 3
    assert choose(points, "f1", admissible=lambda i: i not in (1, 3)) == 2
    assert choose(points, "false-alarms", max_fa_per_min=1.0, admissible=lambda i: i != 1) == 3
    with pytest.raises(CalibrationError, match="latency budget"):
        choose(points, "f1", admissible=lambda i: False)
    with pytest.raises(CalibrationError, match="none of the 2 best"):
        choose(points, "f1", admissible=lambda i: i == 0, max_candidates=2)


def test_event_latency_is_the_online_spotters_wait_and_the_budget_holds_it(slow_tail_video) -> None:
    """Both threshold sets find the MaE exactly. With 0.5 alone it is published once its right OIC
    band (4 snippets) has been seen; with 0.05 beside it the spotter must wait until the low run
    has grown past max_duration_s (4 s: snippet 50) before nothing can change the interval, 16
    snippets after its last one. The latency budget turns the slow set down."""
    videos, scores = slow_tail_video
    base = ProposalConfig(thresholds=(0.5,))
    slow = event_latency(videos, scores, dataclasses.replace(base, thresholds=(0.05, 0.5)), processing_s=0.0)
    fast = event_latency(videos, scores, base, processing_s=0.0)
    assert slow.seconds["mae"] == pytest.approx((16 * 4 / 30,))
    assert fast.seconds["mae"] == pytest.approx((4 * 4 / 30,))
    assert slow.seconds["me"] == fast.seconds["me"] == ()
    with_allowance = event_latency(videos, scores, base, lookahead_s=0.2)
    assert with_allowance.p50("mae") == pytest.approx(4 * 4 / 30 + 0.2 + with_allowance.processing_s)
    assert with_allowance.p50("me") is None and with_allowance.within({"me": 0.01, "mae": 1.0})

    grid = {"thresholds": ((0.05, 0.5), (0.5,))}  # equal F1: the first wins unless the budget says no
    free = calibrate(videos, scores, base, grid=grid, latency_budget=None)
    assert free.point.setting["thresholds"] == (0.05, 0.5) and free.point.overall.f1 == 1.0
    held = calibrate(videos, scores, base, grid=grid)  # the live budget by default
    assert held.latency_budget == LATENCY_BUDGET_S
    assert held.point.setting["thresholds"] == (0.5,) and held.point.overall.f1 == 1.0
    assert held.latency.p50("mae") <= LATENCY_BUDGET_S["mae"] < free.latency.p50("mae")
    meta = held.metadata()
    assert meta["latency_budget_s"] == dict(LATENCY_BUDGET_S)
    assert meta["event_latency"]["mae"]["events"] == 1
    assert meta["event_latency"]["mae"]["p50_s"] == pytest.approx(held.latency.p50("mae"), abs=1e-4)
    assert "estimated live event latency (budget ME 0.5 s, MaE 1.5 s)" in held.table()
    with pytest.raises(CalibrationError, match="latency budget"):
        calibrate(videos, scores, base, grid=grid, latency_budget={"mae": 0.3})
    with pytest.raises(ConfigError, match="latency budget mae=-1"):
        calibrate(videos, scores, base, grid=grid, latency_budget={"mae": -1})


def test_held_out_subjects_are_refused_unless_allowed(
    synth, bundle_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trained = load_bundle(bundle_copy)
    fold = save_bundle(  # as `mespot train --loso` writes a fold's bundle
        tmp_path / "fold.mespot",
        trained.network(),
        trained.train_config,
        trained.feature_config,
        operating_point=trained.operating_point,
        metadata={"train_subjects": ["s01"], "held_out_subject": "s02"},
    )
    bundle = load_bundle(fold)
    assert calibration_subjects(bundle, ["s01", "s02"]) == (["s01"], [])  # default: training subjects
    with pytest.raises(CalibrationError, match=r"\['s02'\].*held-out subject.*--allow-other-subjects"):
        calibration_subjects(bundle, ["s01", "s02"], ["s01", "s02"])
    common = [str(synth.annotations), "--features", str(synth.features), "--quiet"]
    with pytest.raises(CalibrationError, match="leaks evaluation data"):
        run_cli(str(fold), *common, "--subjects", "s02")
    assert load_bundle(fold).operating_point == trained.operating_point  # untouched
    with caplog.at_level(logging.WARNING, logger="calibration.operating_point"):
        assert run_cli(str(fold), *common, "--subjects", "s02", "--allow-other-subjects") == 0
    assert any("NOT TRAINED ON" in r.getMessage() for r in caplog.records)
    assert load_bundle(fold).metadata["calibration"]["other_subjects"] == ["s02"]
    with pytest.raises(CalibrationError, match="not in the dataset"):
        calibration_subjects(bundle, ["s01", "s02"], ["s09"])


def test_set_operating_point_refuses_a_damaged_bundle(bundle_copy: Path) -> None:
    (bundle_copy / "weights.pt").write_bytes(b"not the weights")
    with pytest.raises(Exception, match="damaged or replaced"):
        set_operating_point(bundle_copy, ProposalConfig(), {"objective": "f1"})


def test_the_plot_is_a_png(synth, bundle_copy: Path, tmp_path: Path) -> None:
    bundle = load_bundle(bundle_copy)
    videos = videos_of(synth, bundle_copy, ["s01"])
    result = calibrate(
        videos,
        bundle_scores(bundle, videos),
        bundle.operating_point,
        objective="false-alarms",
        max_fa_per_min=5.0,
        target_class="mae",
        previous=bundle.operating_point,
    )
    out = plot_calibration(result, tmp_path / "sub" / "plot.png", title="test")
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 20_000
    assert result.subjects == ("s01",) and "chosen" in result.table()


def test_out_of_fold_calibration_scores_each_subject_with_the_fold_that_held_it_out(
    synth, bundle_copy: Path, tmp_path: Path
) -> None:
    run = tmp_path / "loso"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = ["train", str(synth.annotations), "--features", str(synth.features)]
        args += ["--loso", "--group", "subject"]
        assert main([*args, "--epochs", "20", "--out", str(run), "--quiet"]) == 0
    finally:
        torch.set_num_threads(before)
    folds = fold_bundles(run)
    assert sorted(f.metadata["held_out_subjects"][0] for f in folds) == ["s01", "s02"]
    bundle = load_bundle(bundle_copy)
    videos = videos_of(synth, bundle_copy)
    scores = out_of_fold_scores(bundle, folds, videos)
    # Every video's scores are its own fold's, which never trained on that video's subject.
    for fold in folds:
        (subject,) = fold.metadata["held_out_subjects"]
        assert subject not in fold.metadata["train_subjects"]
        mine = [v for v in videos if v[0].subject == subject]
        for video, (cls, act) in bundle_scores(fold, mine).items():
            np.testing.assert_array_equal(scores[video][0], cls)
            np.testing.assert_array_equal(scores[video][1], act)
    own = bundle_scores(bundle, videos)
    assert any(not np.array_equal(own[v][1], scores[v][1], equal_nan=True) for v in own)

    common = [str(synth.annotations), "--features", str(synth.features), "--quiet"]
    assert run_cli(str(bundle_copy), *common, "--out-of-fold", str(run)) == 0
    stored = load_bundle(bundle_copy)
    assert stored.metadata["calibration"]["scores"] == "out-of-fold"
    assert len(stored.metadata["calibration"]["folds"]) == 2
    assert stored.operating_point == calibrate(videos, scores, bundle.operating_point).config

    # Training with --operating-point out-of-fold makes the same choice in one command (the
    # same seed gives the same networks): calibration on the training grid from the LOSO run.
    oof_bundle = tmp_path / "oof.mespot"
    torch.set_num_threads(1)
    try:
        args = ["train", str(synth.annotations), "--features", str(synth.features), "--group", "subject"]
        args += ["--operating-point", "out-of-fold", "--epochs", "20", "--out", str(oof_bundle), "--quiet"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(before)
    assert load_bundle(oof_bundle).metadata["operating_point_scores"] == "out-of-fold"
    assert run_cli(str(bundle_copy), *common, "--out-of-fold", str(run), "--grid", "training") == 0
    assert load_bundle(oof_bundle).operating_point == load_bundle(bundle_copy).operating_point

    # On the training grid with the bundle's own scores, calibration is training's choice.
    assert run_cli(str(bundle_copy), *common, "--grid", "training") == 0
    assert load_bundle(bundle_copy).operating_point == bundle.operating_point
    assert load_bundle(bundle_copy).metadata["calibration"]["scores"] == "the bundle's own"

    # A subject no fold held out cannot be scored out of fold.
    with pytest.raises(CalibrationError, match="held out by none"):
        out_of_fold_scores(bundle, folds[:1], videos)
    with pytest.raises(CalibrationError, match="no fold bundles"):
        fold_bundles(tmp_path / "nowhere")
