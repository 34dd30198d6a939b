"""The training-free baseline on features with known motion bursts."""

from __future__ import annotations

import numpy as np
import pytest

import engine.baseline as baseline_module
from engine.baseline import BaselineParams, TypedParams, fit, loso, snippet_scores, spot
from engine.data.features import VideoFeatures
from engine.data.records import Dataset, VideoRecord
from stream.errors import ConfigError
from stream.features import ROI_SETS, feature_names
from stream.intervals import ExpressionType, Interval

MOTION_NAMES, _ = feature_names(ROI_SETS.build("mesh17"))
SNIPPET_S = 8 / 30


def video(name: str, bursts: list[tuple[int, int, str, float]], t: int = 150, seed: int = 0) -> VideoFeatures:
    """Snippet features with noise and bursts of coherent motion (start, end, roi, px)."""
    rng = np.random.default_rng(seed)
    motion = np.zeros((t, 3 * len(MOTION_NAMES)), np.float32)
    motion[:, : len(MOTION_NAMES)] = rng.normal(0, 0.01, (t, len(MOTION_NAMES)))
    for start, end, roi, px in bursts:
        for scale in ("100ms", "200ms"):  # a burst shows at every flow scale
            motion[start:end, MOTION_NAMES.index(f"{roi}@{scale}.u")] += px
    return VideoFeatures(name, motion, np.zeros((t, 10), np.float32), np.ones(t, bool), SNIPPET_S, 30.0)


def frames(start: int, end: int, kind: ExpressionType) -> Interval:
    return Interval(start * 8, end * 8 - 1, kind)


def test_spots_bursts_and_ignores_blinks() -> None:
    v = video("v", [(30, 31, "mouth_corner_r", 0.4), (80, 83, "brow_inner_l", 0.5), (120, 121, "eye_r", 2.0)])
    preds = spot(v, BaselineParams(p=0.3, merge_gap_s=0, me_max_s=0.27))
    assert [(p.onset, p.offset, p.type) for p in sorted(preds, key=lambda p: p.onset)] == [
        (240, 247, ExpressionType.ME),
        (640, 663, ExpressionType.MAE),
    ]
    assert all(p.score > 0 for p in preds)


def test_invalid_snippets_score_nan_and_are_never_spotted() -> None:
    v = video("v", [(30, 32, "chin", 0.5)])
    valid = v.valid.copy()
    valid[30:32] = False
    v2 = VideoFeatures("v", v.motion, v.geometry, valid, SNIPPET_S, 30.0)
    s = snippet_scores(v2, BaselineParams())
    assert np.isnan(s[30:32]).all() and np.isfinite(s[:30]).all()
    assert not any(p.onset <= 255 and p.offset >= 240 for p in spot(v2, BaselineParams()))


def test_frames_follow_the_video_rate_and_first_frame() -> None:
    v = video("v", [(30, 31, "chin", 0.5)])
    v200 = VideoFeatures("v", v.motion, v.geometry, v.valid, SNIPPET_S, 200.0, first_frame=1)
    (p,) = spot(v200, BaselineParams(p=0.3, merge_gap_s=0))
    assert (p.onset, p.offset) == (1 + 1600, 1 + 1653)  # 8/30 s at 200 fps = 53.33 frames


def test_fit_chooses_on_the_given_videos_and_loso_never_sees_the_held_out_subject() -> None:
    feats = {
        "a1": video("a1", [(20, 21, "chin", 0.4), (60, 64, "cheek_l", 0.5)], seed=1),
        "b1": video("b1", [(40, 41, "lip_upper", 0.4), (90, 95, "brow_outer_r", 0.5)], seed=2),
        "c1": video("c1", [(70, 71, "nose_wings", 0.4)], seed=3),
    }
    truths = {
        "a1": [frames(20, 21, ExpressionType.ME), frames(60, 64, ExpressionType.MAE)],
        "b1": [frames(40, 41, ExpressionType.ME), frames(90, 95, ExpressionType.MAE)],
        "c1": [frames(70, 71, ExpressionType.ME)],
    }
    params, report = fit([feats["a1"], feats["b1"]], truths)
    assert report.overall.f1 == pytest.approx(1.0)
    assert params.me.me_max_s < 2 * SNIPPET_S  # one-snippet runs are MEs, the 4-6 snippet ones not
    subjects = {"a1": "A", "b1": "B", "c1": "C"}
    result = loso([(("B", "C"), "A"), (("A", "C"), "B"), (("A", "B"), "C")], feats, subjects, truths)
    assert set(result.params) == {"A", "B", "C"}
    assert result.report.overall.f1 == pytest.approx(1.0)
    assert result.report.overall.tp == 5


def test_identity_folds_keep_every_variant_of_the_held_out_person_out_of_the_fit(monkeypatch) -> None:
    """3 identities x 2 subjects: the parameters of a fold are fitted without any of its person."""
    people = {"ann": ("s1", "s4"), "bob": ("s2", "s5"), "cy": ("s3", "s6")}
    rois = ("chin", "cheek_l", "lip_upper", "nose_wings", "brow_outer_r", "mouth_corner_r")
    feats, truths, records = {}, {}, []
    for person, subjects in people.items():
        for subject in subjects:
            i = int(subject[1:])
            name = f"{subject}_1"
            feats[name] = video(name, [(10 * i, 10 * i + 1, rois[i - 1], 0.4)], seed=i)
            truths[name] = [frames(10 * i, 10 * i + 1, ExpressionType.ME)]
            records.append(VideoRecord(name, subject, 30.0, tuple(truths[name]), identity=person))
    dataset = Dataset("morphs", 30.0, tuple(records))
    fitted: list[set[str]] = []
    real_fit = baseline_module.fit

    def fit_spy(videos, truths, grid=baseline_module.GRID, me_objective="overall"):
        fitted.append({v.video.split("_")[0] for v in videos})
        return real_fit(videos, truths, grid, me_objective)

    monkeypatch.setattr(baseline_module, "fit", fit_spy)
    subject_of = {r.video: r.subject for r in records}
    result = loso(dataset.folds(), feats, subject_of, truths)
    assert result.group == "identity" and list(result.folds) == ["ann", "bob", "cy"]
    for person, seen in zip(people, fitted, strict=True):
        assert seen == {s for p, subjects in people.items() if p != person for s in subjects}
        assert set(people[person]).isdisjoint(seen)
        assert {v.split("_")[0] for v in result.folds[person].videos} == set(people[person])
    rows = result.params_table()
    assert [(r["identity"], r["type"]) for r in rows[:2]] == [("ann", "me"), ("ann", "mae")]
    assert set(result.predictions) == set(feats)
    with pytest.raises(ValueError, match="on both sides"):
        loso([(("s1", "s2"), "s1")], feats, subject_of, truths)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"p=1\.5"):
        BaselineParams(p=1.5)


def test_the_flow_scale_is_chosen_on_the_training_videos() -> None:
    # the bursts show at the 0.2 s scale only, and the 0.1 s scale carries loud noise of its own
    rng = np.random.default_rng(5)
    feats, truths = [], {}
    for i in range(2):
        v = video(f"v{i}", [], seed=i)
        for start, roi in ((30 + 10 * i, "chin"), (90, "cheek_l")):
            v.motion[start : start + 2, MOTION_NAMES.index(f"{roi}@200ms.u")] += 0.5
        loud = [j for j, n in enumerate(MOTION_NAMES) if "@100ms" in n]
        v.motion[:, loud] += rng.normal(0, 0.3, (len(v.valid), len(loud))).astype(np.float32)
        feats.append(v)
        truths[v.video] = [
            frames(30 + 10 * i, 32 + 10 * i, ExpressionType.ME),
            frames(90, 92, ExpressionType.ME),
        ]
    params, report = fit(feats, truths)
    assert params.me.flow_scale == "200ms" and report.overall.f1 == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="flow_scale='50ms'"):
        snippet_scores(feats[0], BaselineParams(flow_scale="50ms"))


def test_each_type_is_spotted_with_its_own_parameters() -> None:
    """Two MEs close together need no merging; a MaE that shows as two bursts (onset and offset)
    must be merged. One parameter set cannot have both."""
    feats, truths = [], {}
    for i in range(3):
        bursts = [
            (20 + 7 * i, 21 + 7 * i, "chin", 0.5),
            (23 + 7 * i, 24 + 7 * i, "nose_wings", 0.5),
            (80, 82, "cheek_l", 0.6),
            (85, 87, "cheek_l", 0.6),
        ]
        v = video(f"v{i}", bursts, seed=10 + i)
        feats.append(v)
        truths[v.video] = [
            frames(20 + 7 * i, 21 + 7 * i, ExpressionType.ME),
            frames(23 + 7 * i, 24 + 7 * i, ExpressionType.ME),
            frames(80, 87, ExpressionType.MAE),
        ]
    params, report = fit(feats, truths)
    assert round(params.mae.merge_gap_s / SNIPPET_S) >= 3 > round(params.me.merge_gap_s / SNIPPET_S)
    # Every expression found (the MaE pass also merges the ME pair into a false MaE).
    assert report.me.f1 == pytest.approx(1.0) and report.mae.recall == pytest.approx(1.0)
    got = spot(feats[0], params)
    assert [iv.onset for iv in got if iv.type is ExpressionType.ME] == [160, 184]
    assert 640 in [iv.onset for iv in got if iv.type is ExpressionType.MAE]
    assert [iv.onset for iv in got] == sorted(iv.onset for iv in got)
    # Either set alone loses one type: the ME set splits the MaE, the MaE set merges the MEs.
    whole_mae = frames(80, 87, ExpressionType.MAE)
    me_only, mae_only = spot(feats[0], params.me), spot(feats[0], params.mae)
    assert not any((iv.onset, iv.offset) == (whole_mae.onset, whole_mae.offset) for iv in me_only)
    assert ExpressionType.ME not in {iv.type for iv in mae_only}
    assert spot(feats[0], TypedParams(params.me, params.me)) == me_only


def test_the_me_set_can_be_chosen_on_me_f1() -> None:
    """With ``me_objective="me"`` the ME set is the grid's best on ME F1 beside the chosen MaEs;
    on the same training videos its ME F1 is never below the overall objective's."""
    rng = np.random.default_rng(3)
    feats, truths = [], {}
    for i in range(3):
        # two clear MEs, one faint ME at the noise level, one MaE, and loud noise bursts
        bursts = [
            (20, 21, "chin", 0.5),
            (50, 51, "nose_wings", 0.5),
            (70, 71, "cheek_l", 0.08),
            (100, 104, "cheek_l", 0.6),
            (120 + i, 121 + i, "brow_outer_r", 0.1),
            (135, 136, "lip_upper", 0.09),
        ]
        v = video(f"v{i}", bursts, seed=20 + i)
        noise = rng.normal(0, 0.03, (len(v.valid), len(MOTION_NAMES)))
        v.motion[:, : len(MOTION_NAMES)] += noise.astype(np.float32)
        feats.append(v)
        truths[v.video] = [
            frames(20, 21, ExpressionType.ME),
            frames(50, 51, ExpressionType.ME),
            frames(70, 71, ExpressionType.ME),
            frames(100, 104, ExpressionType.MAE),
        ]
    by_overall, report_overall = fit(feats, truths)
    by_me, report_me = fit(feats, truths, me_objective="me")
    assert by_me.mae == by_overall.mae  # the MaE set does not depend on the ME objective
    assert report_me.me.f1 >= report_overall.me.f1
    assert report_overall.overall.f1 >= report_me.overall.f1
    with pytest.raises(ValueError, match="me_objective='best'"):
        fit(feats, truths, me_objective="best")
