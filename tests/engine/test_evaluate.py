"""Evaluation: mespot's matching rule on hand-computed cases, pooling, F1-ME variants, MEGC CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.evaluate import (
    Metrics,
    Report,
    SubmissionFileError,
    Tally,
    evaluate,
    evaluate_folds,
    match,
    read_megc_csv,
    write_megc_csv,
)
from stream.intervals import ExpressionType, Interval

ME, MAE = ExpressionType.ME, ExpressionType.MAE


def _iv(onset: int, offset: int, etype: ExpressionType = ME, score: float = 1.0) -> Interval:
    return Interval(onset=onset, offset=offset, type=etype, score=score)


# --- the matching rule --------------------------------------------------------------------------


def test_several_predictions_on_one_truth() -> None:
    truth = [_iv(10, 19)]
    preds = [
        _iv(11, 20, score=0.8),  # IoU 9 / 11
        _iv(10, 19, score=0.9),  # IoU 1
        _iv(10, 18, score=0.7),  # IoU 9 / 10
    ]
    res = match(preds, truth)
    assert res.me == Metrics(tp=1, fp=2, fn=0)
    assert res.pairs == ((1, 0),)  # the highest score takes the truth
    assert res.me.precision == pytest.approx(1 / 3)
    assert res.me.recall == 1.0
    assert res.me.f1 == pytest.approx(0.5)


def test_iou_exactly_half_is_a_hit_with_inclusive_frames() -> None:
    truth = [_iv(0, 9)]  # 10 frames
    # [4, 11]: 8 frames, overlap 4..9 = 6, union 0..11 = 12 -> exactly 0.5.
    assert match([_iv(4, 11)], truth).me == Metrics(1, 0, 0)
    # Exclusive counting would give 5 / 11 < 0.5 here; inclusive counting is the rule.
    # [4, 12]: 9 frames, overlap 6, union 13 -> 0.46.
    assert match([_iv(4, 12)], truth).me == Metrics(0, 1, 1)
    # A prediction inside: [10, 14] in [10, 19] -> 5 / 10.
    assert match([_iv(10, 14)], [_iv(10, 19)]).me.tp == 1
    # The brief's example: [15, 24] on [10, 19] -> 5 / 15.
    assert match([_iv(15, 24)], [_iv(10, 19)]).me.tp == 0


def test_touching_intervals() -> None:
    truth = [_iv(10, 19)]
    # Adjacent, no shared frame: IoU 0.
    assert match([_iv(20, 29)], truth).me == Metrics(0, 1, 1)
    # One shared frame (inclusive): IoU 1 / 19, still a miss.
    assert _iv(19, 28).iou(truth[0]) == pytest.approx(1 / 19)
    assert match([_iv(19, 28)], truth).me == Metrics(0, 1, 1)


def test_no_predictions() -> None:
    res = match([], [_iv(0, 9), _iv(50, 59, MAE)])
    assert res.me == Metrics(0, 0, 1)
    assert res.mae == Metrics(0, 0, 1)
    assert (res.overall.precision, res.overall.recall, res.overall.f1) == (0.0, 0.0, 0.0)


def test_no_ground_truth() -> None:
    res = match([_iv(0, 9), _iv(50, 59, MAE)], [])
    assert res.overall == Metrics(0, 2, 0)
    assert (res.overall.precision, res.overall.recall, res.overall.f1) == (0.0, 0.0, 0.0)


def test_nothing_at_all_is_zero_not_one() -> None:
    m = match([], []).overall
    assert m == Metrics(0, 0, 0)
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)


def test_wrong_type_is_fp_and_does_not_consume_the_truth() -> None:
    truth = [_iv(10, 19, ME)]
    preds = [_iv(10, 19, MAE, score=0.9), _iv(10, 19, ME, score=0.5)]
    res = match(preds, truth)
    assert res.mae == Metrics(tp=0, fp=1, fn=0)
    assert res.me == Metrics(tp=1, fp=0, fn=0)
    assert res.overall == Metrics(1, 1, 0)


def test_descending_score_order_decides() -> None:
    truth = [_iv(0, 9)]
    # The exact prediction scores lower, so the IoU-0.8 one takes the truth first.
    preds = [_iv(0, 9, score=0.2), _iv(0, 7, score=0.9)]
    res = match(preds, truth)
    assert res.pairs == ((1, 0),)
    assert res.me == Metrics(1, 1, 0)


def test_prediction_takes_the_best_unmatched_truth() -> None:
    truths = [_iv(0, 11), _iv(0, 9)]  # IoU 10 / 12 and 1 with the prediction
    res = match([_iv(0, 9)], truths)
    assert res.pairs == ((0, 1),)
    assert res.me == Metrics(1, 0, 1)


def test_each_truth_once_two_truths_two_predictions() -> None:
    truths = [_iv(0, 9), _iv(100, 149, MAE)]
    preds = [_iv(1, 9, score=0.5), _iv(100, 150, MAE, score=0.6), _iv(101, 149, MAE, score=0.4)]
    res = match(preds, truths)
    assert res.me == Metrics(1, 0, 0)
    assert res.mae == Metrics(1, 1, 0)


# --- pooling ------------------------------------------------------------------------------------


def test_counts_are_pooled_not_f1_averaged() -> None:
    truths = {"a": [_iv(0, 9)], "b": [_iv(0, 9)]}
    preds = {"a": [_iv(0, 9)], "b": [_iv(50, 59), _iv(70, 79), _iv(90, 99)]}
    rep = evaluate(preds, truths, fps=30.0)
    assert rep.videos["a"].me.f1 == 1.0
    assert rep.videos["b"].me.f1 == 0.0
    assert rep.me == Metrics(tp=1, fp=3, fn=1)
    assert rep.me.precision == pytest.approx(0.25)
    assert rep.me.recall == pytest.approx(0.5)
    assert rep.overall.f1 == pytest.approx(1 / 3)  # not the mean 0.5


def test_videos_missing_on_either_side_count() -> None:
    rep = evaluate({"x": [_iv(0, 9)]}, {"y": [_iv(0, 9, MAE)]}, fps={"x": 30.0, "y": 30.0})
    assert rep.videos["x"].me == Metrics(0, 1, 0)
    assert rep.videos["y"].mae == Metrics(0, 0, 1)
    with pytest.raises(KeyError, match="y"):
        evaluate({"x": []}, {"y": []}, fps={"x": 30.0})


def test_evaluate_folds_sums_counts() -> None:
    f1 = evaluate({"s1_v1": [_iv(0, 9)]}, {"s1_v1": [_iv(0, 9)]}, fps=30.0)
    f2 = evaluate({"s2_v1": [_iv(0, 9, MAE)]}, {"s2_v1": [_iv(0, 9)]}, fps=30.0)
    pooled = evaluate_folds({"s1": f1, "s2": f2})
    assert pooled.me == Metrics(tp=1, fp=0, fn=1)
    assert pooled.mae == Metrics(tp=0, fp=1, fn=0)
    assert pooled.overall == Metrics(1, 1, 1)
    assert pooled.folds["s2"].mae == Metrics(0, 1, 0)
    assert evaluate_folds([f1, f2]).overall == pooled.overall
    with pytest.raises(ValueError, match="s1_v1"):
        evaluate_folds({"a": f1, "b": f1})


# --- MC-WES F1-ME variants ----------------------------------------------------------------------


def test_f1_me_variants_at_30_fps() -> None:
    truths = {"v": [_iv(100, 114), _iv(200, 220), _iv(300, 310), _iv(400, 459, MAE)]}
    preds = {
        "v": [
            _iv(100, 114, MAE, 0.9),  # 15 frames = 0.5 s, typed MaE (e.g. by class)
            _iv(200, 224, MAE, 0.8),  # 25 frames = 0.83 s, IoU 21 / 25 with the 2nd ME
            _iv(400, 459, MAE, 0.7),  # the MaE
        ]
    }
    # The overall set also holds a low-score short proposal dropped at the operating point.
    overall = {"v": [*preds["v"], _iv(300, 310, ME, 0.05)]}
    rep = evaluate(preds, truths, fps=30.0, all_predictions=overall)
    assert rep.me == Metrics(0, 0, 3)
    assert rep.mae == Metrics(1, 2, 0)
    # <= 0.5 s from the overall set, as ME: 100-114 and 300-310 hit, 200-220 missed.
    assert rep.pooled.me_05 == Metrics(2, 0, 1)
    assert rep.f1_me_05 == pytest.approx(0.8)
    # <= 1.0 s: 200-224 joins and hits.
    assert rep.pooled.me_10 == Metrics(3, 0, 0)
    assert rep.f1_me_10 == 1.0
    # F1-ME(p): <= 0.5 s from the operating-point set only.
    assert rep.pooled.me_p == Metrics(1, 0, 2)
    assert rep.f1_me_p == pytest.approx(0.5)


def test_f1_me_variants_at_200_fps_are_in_seconds() -> None:
    truths = {"v": [_iv(0, 99), _iv(1000, 1100)]}  # 100 frames = 0.5 s; 101 frames
    preds = {"v": [_iv(0, 99, MAE, 0.9), _iv(1000, 1100, MAE, 0.8)]}
    rep = evaluate(preds, truths, fps=200.0)
    assert rep.pooled.me_05 == Metrics(1, 0, 1)  # the 101-frame one is over 0.5 s
    assert rep.pooled.me_10 == Metrics(2, 0, 0)
    # The same frame counts at 30 fps are long: 100 frames = 3.3 s.
    rep30 = evaluate(preds, truths, fps=30.0)
    assert rep30.pooled.me_05 == Metrics(0, 0, 2)


# --- report output ------------------------------------------------------------------------------


def test_report_dict_and_table() -> None:
    rep = evaluate({"v": [_iv(0, 9)]}, {"v": [_iv(0, 9), _iv(40, 99, MAE)]}, fps=30.0)
    d = rep.to_dict()
    assert d["iou"] == 0.5
    assert d["pooled"]["overall"] == {
        "tp": 1,
        "fp": 0,
        "fn": 1,
        "recall": 0.5,
        "precision": 1.0,
        "f1": pytest.approx(2 / 3),
    }
    assert set(d["pooled"]) == {"me", "mae", "overall", "f1_me_0.5", "f1_me_1.0", "f1_me_p"}
    assert d["videos"]["v"]["me"]["tp"] == 1
    table = rep.table()
    for row in ("ME", "MaE", "Overall", "F1-ME(0.5)", "F1-ME(1.0)", "F1-ME(p)"):
        assert row in table
    assert str(rep) == table
    assert Report(videos={}).overall == Metrics()
    assert Tally() + Tally() == Tally()


# --- MEGC CSV -----------------------------------------------------------------------------------


def test_megc_csv_round_trip(tmp_path: Path) -> None:
    preds = {
        "s15_0101": [_iv(50, 60, ME, 0.3), _iv(10, 40, MAE, 0.9)],
        "006_1": [_iv(5, 9, ME, 0.5)],
    }
    path = tmp_path / "sub.csv"
    write_megc_csv(path, preds)
    assert path.read_text().splitlines() == [
        "vid,pred_onset,pred_offset,type",
        "006_1,5,9,me",
        "s15_0101,10,40,mae",
        "s15_0101,50,60,me",
    ]
    back = read_megc_csv(path)
    assert back == {
        "006_1": [_iv(5, 9, ME, 1.0)],
        "s15_0101": [_iv(10, 40, MAE, 1.0), _iv(50, 60, ME, 1.0)],
    }
    write_megc_csv(path, preds, with_score=True)
    back = read_megc_csv(path)
    assert sorted(back["s15_0101"], key=lambda p: p.onset) == sorted(preds["s15_0101"], key=lambda p: p.onset)


def test_megc_csv_reader_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    with pytest.raises(SubmissionFileError, match="no such file"):
        read_megc_csv(path)
    path.write_text("vid,onset,offset,type\n")
    with pytest.raises(SubmissionFileError, match="lacks columns"):
        read_megc_csv(path)
    path.write_text("vid, pred_onset, pred_offset, type\nv,1,5,blink\n")
    with pytest.raises(SubmissionFileError, match=r"line 2.*blink"):
        read_megc_csv(path)
    path.write_text("vid,pred_onset,pred_offset,type\nv,1,x,me\n")
    with pytest.raises(SubmissionFileError, match="line 2"):
        read_megc_csv(path)
    path.write_text("vid,pred_onset,pred_offset,type\nv,9,5,me\n")
    with pytest.raises(SubmissionFileError, match="before its onset"):
        read_megc_csv(path)
    # Spaces after commas and upper-case types are accepted.
    path.write_text("vid, pred_onset, pred_offset, type\nv, 1, 5, ME\n\n")
    assert read_megc_csv(path) == {"v": [_iv(1, 5, ME)]}
