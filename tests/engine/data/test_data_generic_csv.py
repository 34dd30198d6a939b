"""Generic CSV loader (the layout users and the synthetic data generator write)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data import AnnotationError, AnnotationNotFound, FramesNotFound, load_dataset
from engine.data.errors import column_letter
from engine.data.generic import load
from stream.intervals import ExpressionType, Interval

ME, MAE = ExpressionType.ME, ExpressionType.MAE

CSV = """video,subject,onset,apex,offset,type
clip01,p1,120,131,140,me
clip01,p1,300,,420,MaE
clip02,p2,10,12,14,Micro
clip03,p2,,,,

clip04,p3,0,5,80,macro
"""


def write(tmp_path: Path, text: str, name: str = "labels.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_rows_types_negatives_and_defaults(tmp_path: Path) -> None:
    ds = load(write(tmp_path, CSV))
    assert ds.name == "csv" and ds.fps == 30.0
    assert [v.video for v in ds.videos] == ["clip01", "clip02", "clip03", "clip04"]
    assert ds.subjects() == ["p1", "p2", "p3"]
    c1 = ds.video("clip01")
    assert c1.expressions == (Interval(120, 140, ME, 131), Interval(300, 420, MAE, None))
    assert (c1.fps, c1.first_frame, c1.frames_dir, c1.n_frames) == (30.0, 0, None, None)
    assert ds.video("clip02").expressions == (Interval(10, 14, ME, 12),)
    assert ds.video("clip03").expressions == ()  # declared without expressions: a negative
    assert ds.video("clip04").expressions == (Interval(0, 80, MAE, 5),)
    assert ds.repairs == ()
    assert load_dataset("csv", write(tmp_path, CSV, "b.csv")).counts() == ds.counts()


def test_fps_column_argument_and_first_frame(tmp_path: Path) -> None:
    text = (
        "Video,Subject,Onset,Apex,Offset,Type,FPS\nv1,s1,1,,10,me,200\nv1,s1,20,25,30,me,\nv2,s2,1,2,3,mae,\n"
    )
    ds = load(write(tmp_path, text), fps=25.0, first_frame=1)
    assert ds.video("v1").fps == 200.0 and ds.video("v2").fps == 25.0
    assert ds.fps == 25.0  # mixed rates: the nominal one is the argument
    assert ds.video("v1").first_frame == 1 and ds.video("v1").frame_position(1) == 0
    with pytest.raises(
        AnnotationError, match="row 2, column C \\(onset\\): onset 0 is before the first frame 1"
    ):
        load(write(tmp_path, "video,subject,onset,apex,offset,type\nv,s,0,,3,me\n", "z.csv"), first_frame=1)


def test_semicolons_bom_and_no_apex_column(tmp_path: Path) -> None:
    text = "video;subject;onset;offset;type\nv1;s1;5;9;ME\n"
    ds = load(write(tmp_path, text, encoding="utf-8-sig"))
    assert ds.video("v1").expressions == (Interval(5, 9, ME),)


def test_root_resolves_folders_and_files(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    (root / "clip01").mkdir(parents=True)
    for n in range(500):
        (root / "clip01" / f"{n:06d}.png").touch()
    (root / "clip02").mkdir()
    for n in range(12):  # shorter than clip02's annotation [10, 14]
        (root / "clip02" / f"{n}.jpg").touch()
    (root / "clip03").mkdir()
    (root / "clip04").write_bytes(b"")  # a video file named like the video id
    ds = load(write(tmp_path, CSV), root=root)
    c1 = ds.video("clip01")
    assert (c1.frames_dir, c1.n_frames, c1.first_frame, c1.last_frame) == (root / "clip01", 500, 0, 499)
    assert ds.video("clip02").expressions == (Interval(10, 11, ME, None),)  # cut at the last frame
    assert [r.problem for r in ds.repairs] == ["offset 14 is after the last frame 11"]
    assert ds.video("clip04").frames_dir == root / "clip04" and ds.video("clip04").n_frames is None
    (root / "clip04").unlink()
    with pytest.raises(FramesNotFound, match="clip04"):
        load(write(tmp_path, CSV), root=root)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(AnnotationNotFound):
        load(tmp_path / "none.csv")
    with pytest.raises(AnnotationError, match="is empty"):
        load(write(tmp_path, "\n\n"))
    with pytest.raises(AnnotationError, match="no rows"):
        load(write(tmp_path, "video,subject,onset,apex,offset,type\n", "h.csv"))


def test_header_is_required(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="no header row with the columns 'video'"):
        load(write(tmp_path, "clip01,p1,120,131,140,me\n"))
    with pytest.raises(AnnotationError, match="row 1: header row lacks the column\\(s\\) 'type'"):
        load(write(tmp_path, "video,subject,onset,apex,offset\nv,s,1,2,3\n", "n.csv"))


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("v,s,abc,,10,me", "column C (onset)", "'abc' is not a number"),
        ("v,s,1.5,,10,me", "column C (onset)", "1.5 is not a whole frame number"),
        ("v,s,12,,10,me", "column C (onset)", "onset 12 is after the offset 10"),
        ("v,s,1,,10,meso", "column F (type)", "unknown expression type 'meso'"),
        ("v,s,1,,10,", "column F (type)", "is empty"),
        ("v,s,1,,,me", "column E (offset)", "is empty"),
        ("v,s,1,20,10,me", "column D (apex)", "apex 20 lies outside [1, 10]"),
        ("clip01,p9,1,,10,me", "column B (subject)", "has subject 'p9' here but 'p1'"),
        (",s,1,,10,me", "column A (video)", "is empty"),
    ],
)
def test_bad_rows_name_file_row_and_column(tmp_path: Path, row: str, column: str, message: str) -> None:
    path = write(tmp_path, "video,subject,onset,apex,offset,type\nclip01,p1,1,2,3,me\n" + row + "\n")
    with pytest.raises(AnnotationError) as err:
        load(path)
    text = str(err.value)
    assert str(path) in text and "row 3" in text and column in text and message in text
    assert err.value.sheet is None and err.value.row == 3


def test_conflicting_fps_is_an_error(tmp_path: Path) -> None:
    text = "video,subject,onset,apex,offset,type,fps\nv,s,1,,3,me,30\nv,s,5,,9,me,60\n"
    with pytest.raises(AnnotationError, match="row 3, column G \\(fps\\): video 'v' has fps 60"):
        load(write(tmp_path, text))
    with pytest.raises(AnnotationError, match="fps -1 must be > 0"):
        load(write(tmp_path, "video,subject,onset,apex,offset,type,fps\nv,s,1,,3,me,-1\n", "n.csv"))


def test_column_letters() -> None:
    assert [column_letter(i) for i in (0, 25, 26, 27, 701, 702)] == ["A", "Z", "AA", "AB", "ZZ", "AAA"]


# -- identities -----------------------------------------------------------------------------------

IDENTITY_CSV = """Video,Subject,Onset,Offset,Type,IDENTITY
s01_01,s01,10,14,me,ann
s01_01,s01,30,60,mae,
s04_01,s04,,,,ann
s02_01,s02,5,9,me,bob
s05_01,s05,5,9,me,bob
s03_01,s03,5,9,me,
"""


def test_identity_column(tmp_path: Path) -> None:
    ds = load(write(tmp_path, IDENTITY_CSV))
    identity = {v.video: v.identity for v in ds.videos}
    # an empty cell says nothing (the other row of s01_01 gives it); a video with none is its subject
    assert identity == {"s01_01": "ann", "s04_01": "ann", "s02_01": "bob", "s05_01": "bob", "s03_01": "s03"}
    assert ds.identities() == ["ann", "bob", "s03"]
    assert [(f.name, f.test_subjects) for f in ds.folds()] == [
        ("ann", ("s01", "s04")),
        ("bob", ("s02", "s05")),
        ("s03", ("s03",)),
    ]
    # an identity column wins over subjects.json
    (tmp_path / "subjects.json").write_text('[{"name": "s01", "base": "x"}]')
    assert load(write(tmp_path, IDENTITY_CSV, "again.csv")).video("s01_01").identity == "ann"


def test_disagreeing_identities_name_the_file_and_line(tmp_path: Path) -> None:
    text = "video,subject,onset,offset,type,identity\nv1,s1,1,3,me,ann\nv1,s1,5,9,me,bob\n"
    with pytest.raises(
        AnnotationError,
        match=r"x\.csv, row 3, column F \(identity\): video 'v1' has identity 'bob' here but 'ann'",
    ):
        load(write(tmp_path, text, "x.csv"))
    # two videos of one subject must be one person (an empty identity is the subject)
    text = "video,subject,onset,offset,type,identity\nv1,s1,1,3,me,ann\nv2,s1,5,9,me,\n"
    with pytest.raises(
        AnnotationError,
        match=r"y\.csv, row 3, column F \(identity\): subject 's1' has identity 's1' in video 'v2' but 'ann'",
    ):
        load(write(tmp_path, text, "y.csv"))


def test_subjects_json_gives_the_person_else_the_base_photo(tmp_path: Path) -> None:
    # what `mespot synth` writes (stream.synth.identity.Identity.to_dict), with an optional person
    (tmp_path / "subjects.json").write_text(
        '[{"name": "s01", "base": "man_outdoor", "base_sha256": "ab"},'
        ' {"name": "s02", "base": "man_webcam", "person": "man"},'
        ' {"name": "s03", "base": "astronaut"},'
        ' {"name": "s04", "base": "man_outdoor", "person": "man"}]'
    )
    text = "video,subject,onset,offset,type\n" + "".join(f"s0{i}_01,s0{i},5,9,me\n" for i in range(1, 6))
    ds = load(write(tmp_path, text, "annotations.csv"))
    identity = {v.subject: v.identity for v in ds.videos}
    # s05 is not listed: its own identity
    assert identity == {"s01": "man_outdoor", "s02": "man", "s03": "astronaut", "s04": "man", "s05": "s05"}
    assert [f.name for f in ds.folds()] == ["astronaut", "man", "man_outdoor", "s05"]
    # without subjects.json each subject is its own identity
    other = tmp_path / "other"
    other.mkdir()
    ds = load(write(other, text, "annotations.csv"))
    assert [v.identity for v in ds.videos] == [v.subject for v in ds.videos]
    assert not ds.has_identities()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read as JSON"),
        ('[{"base": "x"}]', "subject entry 1 has no 'name'"),
        ('[{"name": "s01"}]', "subject 's01' has neither 'person' nor 'base'"),
        ('"s01"', "must hold a list of subjects"),
    ],
)
def test_a_bad_subjects_json_names_the_file(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "subjects.json").write_text(content)
    with pytest.raises(AnnotationError, match=f"subjects.json.*{message}"):
        load(write(tmp_path, "video,subject,onset,offset,type\nv,s01,1,2,me\n"))
