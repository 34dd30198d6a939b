"""Records: VideoRecord frame positions, Dataset helpers, identity and subject folds, statistics,
frame scans."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data import DATASETS, Dataset, VideoRecord, load_dataset
from engine.data.records import Blink, Fold, frame_runs, natural_key, scan_frames
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval

ME, MAE = ExpressionType.ME, ExpressionType.MAE


def video(name: str, subject: str, *intervals: Interval, fps: float = 30.0, **kw: object) -> VideoRecord:
    return VideoRecord(name, subject, fps, tuple(intervals), **kw)


@pytest.fixture
def dataset() -> Dataset:
    return Dataset(
        "toy",
        30.0,
        (
            video("s2_b", "s2", Interval(10, 24, ME), Interval(100, 200, MAE), n_frames=300),
            video("s10_a", "s10", Interval(5, 200, MAE), n_frames=600),  # 196 frames = 6.53 s > 4 s
            video("s2_a", "s2", n_frames=90),
            video("s1_a", "s1", Interval(40, 47, ME), Interval(60, 80, ME), n_frames=150),
        ),
    )


def test_expressions_are_sorted_and_typed() -> None:
    v = video("v", "p", Interval(50, 60, MAE), Interval(10, 12, ME))
    assert [iv.onset for iv in v.expressions] == [10, 50]
    assert v.me == (Interval(10, 12, ME),) and v.mae == (Interval(50, 60, MAE),)
    assert v.has(ME) and v.has(MAE)
    with pytest.raises(TypeError, match="Interval"):
        VideoRecord("v", "p", 30.0, ((1, 2),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fps"):
        VideoRecord("v", "p", 0.0)
    with pytest.raises(ValueError, match="subject"):
        VideoRecord("v", "", 30.0)


def test_frame_position_contiguous_uses_first_frame() -> None:
    v = video("v", "p", first_frame=1)
    assert v.frame_position(1) == 0
    assert v.frame_position(31) == 30
    assert v.frame_time(31) == pytest.approx(1.0)
    assert video("w", "p", first_frame=0, fps=200.0).frame_time(200) == pytest.approx(1.0)


def test_frame_position_skips_gaps_in_the_numbering() -> None:
    # Images 0..99 and 110..199 on disk: frames 100..109 do not exist.
    v = video("v", "p", first_frame=0, n_frames=190, frame_runs=((0, 99), (110, 199)))
    assert v.frame_position(0) == 0
    assert v.frame_position(99) == 99
    assert v.frame_position(105) == 100  # in the gap: the next existing image
    assert v.frame_position(110) == 100
    assert v.frame_position(150) == 140
    assert v.frame_position(199) == 189
    assert v.frame_position(200) == 190  # past the end: one per frame
    assert v.frame_position(205) == 195
    assert v.last_frame == 199


def test_frame_runs_validation() -> None:
    assert frame_runs([3, 1, 2, 7, 8, 10]) == ((1, 3), (7, 8), (10, 10))
    with pytest.raises(ValueError, match="disjoint"):
        video("v", "p", first_frame=0, frame_runs=((0, 10), (5, 20)))
    with pytest.raises(ValueError, match="first_frame"):
        video("v", "p", first_frame=1, frame_runs=((0, 10),))


def test_scan_frames_reads_numbering(tmp_path: Path) -> None:
    for n in [*range(1, 6), *range(9, 12)]:
        (tmp_path / f"006_1_{n:05d}.jpg").touch()
    (tmp_path / "notes.txt").touch()
    scan = scan_frames(tmp_path)
    assert scan.n_frames == 8
    assert scan.first_frame == 1
    assert scan.runs == ((1, 5), (9, 11))


def test_scan_frames_numbers_frames_as_the_folder_source_orders_them(tmp_path: Path) -> None:
    """A suffix after the number (``frame12_l.jpg``): the loader's numbering and the folder
    source's order both use the last integer in the name."""
    from stream.sources import list_frame_images

    for n in (3, 4, 5, 12):
        (tmp_path / f"frame{n}_l.jpg").touch()
    scan = scan_frames(tmp_path)
    assert (scan.n_frames, scan.first_frame, scan.runs) == (4, 3, ((3, 5), (12, 12)))
    assert [p.name for p in list_frame_images(tmp_path)] == [f"frame{n}_l.jpg" for n in (3, 4, 5, 12)]


def test_blink_validation() -> None:
    assert Blink(3, 7, 5).length == 5
    with pytest.raises(ValueError):
        Blink(7, 3)
    with pytest.raises(ValueError):
        Blink(3, 7, 9)


def test_subjects_natural_order_and_lookup(dataset: Dataset) -> None:
    assert dataset.subjects() == ["s1", "s2", "s10"]
    assert [v.video for v in dataset.by_subject("s2")] == ["s2_a", "s2_b"]
    assert dataset.video("s10_a").subject == "s10"
    with pytest.raises(KeyError, match="s99"):
        dataset.by_subject("s99")
    with pytest.raises(KeyError, match="nope"):
        dataset.video("nope")
    assert natural_key("spNO.2") < natural_key("spNO.10")


def test_duplicate_video_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        Dataset("toy", 30.0, (video("a", "s1"), video("a", "s2")))


def test_loso_folds_leave_each_subject_out_once(dataset: Dataset) -> None:
    folds = dataset.loso_folds()
    assert folds == [(("s2", "s10"), "s1"), (("s1", "s10"), "s2"), (("s1", "s2"), "s10")]
    for train, test in folds:
        assert test not in train
        assert set(train) | {test} == set(dataset.subjects())
        held_out = dataset.subset([test])
        training = dataset.subset(train)
        assert {v.video for v in held_out.videos}.isdisjoint(v.video for v in training.videos)
        assert len(held_out) + len(training) == len(dataset)
    with pytest.raises(KeyError):
        dataset.subset(["s7"])


def morphs() -> Dataset:
    """3 identities (real people) x 2 subjects (morphs of that person) x 2 videos."""
    people = {"ann": ("s01", "s04"), "bob": ("s02", "s05"), "cy": ("s03", "s06")}
    return Dataset(
        "synth",
        30.0,
        tuple(
            video(f"{s}_{k}", s, Interval(10, 20, ME), identity=person, n_frames=100)
            for person, subjects in people.items()
            for s in subjects
            for k in (1, 2)
        ),
    )


def test_identity_defaults_to_the_subject(dataset: Dataset) -> None:
    assert video("v", "p").identity == "p"
    assert video("v", "p", identity="").identity == "p"
    assert video("v", "p", identity="q").identity == "q"
    assert dataset.identities() == dataset.subjects() and not dataset.has_identities()
    # Without identity information the identity folds are the subject folds.
    for group in ("identity", "subject"):
        folds = dataset.folds(group)
        assert [(f.train_subjects, f.name) for f in folds] == dataset.loso_folds()
        assert all(f.test_subjects == (f.name,) and f.group == group for f in folds)
    assert [Fold.of(pair) for pair in dataset.loso_folds()] == dataset.folds("subject")


def test_identity_folds_hold_out_every_subject_of_a_person() -> None:
    ds = morphs()
    assert ds.identities() == ["ann", "bob", "cy"] and ds.has_identities()
    assert ds.subjects_of("bob") == ("s02", "s05")
    folds = ds.folds()  # identity is the default
    assert [f.name for f in folds] == ["ann", "bob", "cy"]
    of = ds.group_of("identity")
    for fold in folds:
        held_out = set(ds.subjects_of(fold.name))
        assert set(fold.test_subjects) == held_out
        assert held_out.isdisjoint(fold.train_subjects)  # no morph of the test person in training
        assert {of[s] for s in fold.train_subjects} == set(ds.identities()) - {fold.name}
        assert set(fold.train_subjects) | held_out == set(ds.subjects())
        assert fold.train_groups == tuple(i for i in ds.identities() if i != fold.name)
        training = ds.subset(fold.train_subjects)
        assert fold.name not in training.identities()
        assert len(training) + len(ds.subset(fold.test_subjects)) == len(ds)
    # Subject folds hold out one morph and train on the other morph of the same person.
    by_subject = ds.folds("subject")
    assert len(by_subject) == 6 and by_subject[0].name == "s01" and "s04" in by_subject[0].train_subjects
    assert ds.statistics().n_identities == 3 and "6 subjects of 3 identities" in ds.summary()
    with pytest.raises(ConfigError, match="group 'person'"):
        ds.folds("person")
    with pytest.raises(KeyError, match="dan"):
        ds.subjects_of("dan")


def test_identity_folds_need_two_people_and_a_subject_is_one_person() -> None:
    one = Dataset("one", 30.0, (video("a", "s1", identity="ann"), video("b", "s2", identity="ann")))
    with pytest.raises(ConfigError, match="at least 2 identities, it has 1 \\(ann\\) over 2 subjects"):
        one.folds()
    assert [f.name for f in one.folds("subject")] == ["s1", "s2"]
    with pytest.raises(ValueError, match="subject 's1' has videos of identities 'ann' and 'bob'"):
        Dataset("bad", 30.0, (video("a", "s1", identity="ann"), video("b", "s1", identity="bob")))


def test_counts_and_statistics(dataset: Dataset) -> None:
    assert dataset.counts() == {"videos": 4, "subjects": 3, "me": 3, "mae": 2}
    stats = dataset.statistics()
    assert (stats.n_me, stats.n_mae, stats.n_videos, stats.n_subjects) == (3, 2, 4, 3)
    assert stats.videos_without_expressions == 1
    assert stats.me is not None and stats.mae is not None
    assert stats.me.min_s == pytest.approx(8 / 30)  # [40, 47] is 8 frames
    assert stats.me.max_s == pytest.approx(21 / 30)
    assert stats.mae.max_s == pytest.approx(196 / 30)
    # [60, 80] (0.7 s) breaks the 0.5 s ME definition; [5, 200] the 4 s MaE one.
    assert [(v, iv.onset) for v, iv in stats.me_over_max] == [("s1_a", 60)]
    assert [(v, iv.onset) for v, iv in stats.mae_over_max] == [("s10_a", 5)]
    assert stats.total_seconds == pytest.approx((300 + 600 + 90 + 150) / 30)
    text = dataset.summary()
    assert "2 MaE + 3 ME" in text and "longer than 4.0 s: 1" in text


def test_statistics_use_each_videos_fps() -> None:
    ds = Dataset("mixed", 30.0, (video("a", "p", Interval(0, 99, ME), fps=200.0),))
    stats = ds.statistics()
    assert stats.me is not None and stats.me.max_s == pytest.approx(0.5)
    assert stats.me_over_max == ()  # exactly 0.5 s is not longer than 0.5 s
    assert stats.total_seconds is None


def test_registry_names_and_unknown_name() -> None:
    assert DATASETS.names() == ["casme2", "casme3", "csv", "samm-lv"]
    with pytest.raises(ConfigError, match="casme2"):
        load_dataset("casme9", "x.xlsx")
    with pytest.raises(ValueError, match="already registered"):
        DATASETS.register("csv")(lambda *a, **k: None)
