"""CAS(ME)^2 loader on workbooks written here in the real layout (three sheets, first without header)."""

from __future__ import annotations

import logging
from pathlib import Path

import openpyxl
import pytest

from engine.data import AnnotationError, AnnotationNotFound, FramesNotFound, load_dataset
from engine.data.casme2 import load
from stream.intervals import ExpressionType, Interval

ME, MAE = ExpressionType.ME, ExpressionType.MAE

# subject index, clip, onset, apex, offset, AUs, coarse emotion, type, self-reported emotion
ROWS: list[tuple[object, ...]] = [
    (1, "disgust1_1", 100, 110, 120, "4+7", "negative", "micro-expression", "disgust"),
    (1, "disgust1_2", 300, 340, 0, "12", "positive", "macro-expression", "happy"),  # offset 0
    (1, "anger1_1", 50, 0, 80, "4", "negative", "macro-expression", "anger"),  # apex 0
    (2, "anger1_1", 200, 260, 240, "4+5", "negative", "macro-expression", "anger"),  # offset < apex
    (2, "anger1_2", 500, 530, 40, "4", "negative", "macro-expression", "anger"),  # offset < onset <= apex
    (2, "disgust1_1", 10, 0, 0, "9", "negative", "macro-expression", "disgust"),  # nothing usable
    (2, "happy1_1", 700, 706, 712, "12", "positive", "micro-expression", "happy"),
]
# naming rule1 as published copies have it (folder number, folder, index) ...
SUBJECTS_LAYOUTS = {
    "number-folder-index": [(15, "s15", 1), (16, "s16", 2)],
    "folder-number-index": [("s15", 15, 1), ("s16", 16, 2)],
    "index-folder": [(1, "s15"), (2, "s16")],
    "numbers-only": [(15, 15, 1), (16, 16, 2)],
}
# naming rule2: codes as numbers (leading zero lost) and as text.
VIDEOS = [(101, "disgust1"), ("0401", "anger1"), (502, "happy1")]


def write_casme2(
    path: Path, rows=ROWS, subjects=SUBJECTS_LAYOUTS["number-folder-index"], videos=VIDEOS
) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "CASFEcode_final"
    for row in rows:
        ws.append(list(row))
    for title, content in (("naming rule1", subjects), ("naming rule2", videos)):
        sheet = wb.create_sheet(title)
        for row in content:
            sheet.append(list(row))
    wb.save(path)
    return path


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    return write_casme2(tmp_path / "CAS(ME)^2code_final.xlsx")


def test_rows_map_to_videos_with_every_quirk_repaired(
    workbook: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        ds = load(workbook)
    assert ds.name == "casme2" and ds.fps == 30.0
    assert [v.video for v in ds.videos] == ["15_0101", "15_0401", "16_0401", "16_0502"]
    assert ds.subjects() == ["s15", "s16"]
    v = ds.video("15_0101")
    assert v.subject == "s15" and v.fps == 30.0 and v.frames_dir is None and v.n_frames is None
    assert v.expressions == (Interval(100, 120, ME, 110), Interval(300, 340, MAE, 340))  # offset 0 -> apex
    assert ds.video("15_0401").expressions == (Interval(50, 80, MAE, None),)  # apex 0 -> unknown
    # offset < apex: the annotated extent is kept, the apex dropped; offset < onset: apex as offset.
    assert ds.video("16_0401").expressions == (Interval(200, 240, MAE, None), Interval(500, 530, MAE, 530))
    assert ds.video("16_0502").expressions == (Interval(700, 712, ME, 706),)
    # Five quirk rows; row 6 (apex 0 and offset 0: no extent) is dropped. Each repair is logged.
    assert [r.row for r in ds.repairs] == [2, 3, 4, 5, 6, 6]
    assert [r.action for r in ds.repairs][-1] == "row dropped"
    assert all(r.sheet == "CASFEcode_final" for r in ds.repairs)
    warned = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warned) == 6
    assert "row 2" in warned[0].getMessage() and "offset" in warned[0].getMessage()
    stats = ds.statistics()
    assert (stats.n_repairs, stats.n_repaired_rows) == (6, 5)
    assert (stats.n_me, stats.n_mae) == (2, 4)


def test_missing_offset_can_be_apex_plus_frames(workbook: Path) -> None:
    ds = load(workbook, missing_offset_frames=20)
    assert ds.video("15_0101").expressions[1] == Interval(300, 360, MAE, 340)
    assert ds.video("16_0401").expressions[1] == Interval(500, 550, MAE, 530)


@pytest.mark.parametrize("layout", sorted(SUBJECTS_LAYOUTS))
def test_subject_sheet_layouts(tmp_path: Path, layout: str) -> None:
    ds = load(write_casme2(tmp_path / "a.xlsx", subjects=SUBJECTS_LAYOUTS[layout]))
    assert ds.subjects() == ["s15", "s16"]


def test_registry_and_header_row_tolerated(tmp_path: Path) -> None:
    titled = [("subject", "clip", "onset", "apex", "offset", "AU", "emotion", "type", "self"), *ROWS]
    ds = load_dataset("casme2", write_casme2(tmp_path / "t.xlsx", rows=titled))
    assert len(ds.videos) == 4


def make_frames(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for n in range(1, count + 1):
        (folder / f"img{n}.jpg").touch()


def test_frame_folders_resolved_under_root(workbook: Path, tmp_path: Path) -> None:
    rawpic = tmp_path / "CAS(ME)^2" / "rawpic"
    make_frames(rawpic / "s15" / "15_0101disgustingteeth", 400)
    make_frames(rawpic / "s15" / "15_0401girlcrashing", 90)
    make_frames(rawpic / "s16" / "16_0401girlcrashing", 520)  # ends before [500, 530] does
    make_frames(rawpic / "s16" / "16_0502funnyerrors", 800)
    ds = load(workbook, root=rawpic.parent)  # the folder holding rawpic works too
    v = ds.video("15_0101")
    assert v.frames_dir == rawpic / "s15" / "15_0101disgustingteeth"
    assert (v.n_frames, v.first_frame, v.last_frame) == (400, 1, 400)
    assert v.frame_position(1) == 0
    assert ds.video("16_0401").expressions[1] == Interval(500, 520, MAE, None)  # cut at the last frame
    assert ds.repairs[-1].problem == "offset 530 is after the last frame 520"
    assert ds.statistics().total_seconds == pytest.approx((400 + 90 + 520 + 800) / 30)


def test_missing_frame_folder(workbook: Path, tmp_path: Path) -> None:
    make_frames(tmp_path / "s15" / "15_0101disgustingteeth", 10)
    with pytest.raises(FramesNotFound, match="15_0401"):
        load(workbook, root=tmp_path)


def test_missing_file() -> None:
    with pytest.raises(AnnotationNotFound, match="no such file") as err:
        load(Path("/nonexistent/CAS(ME)^2code_final.xlsx"))
    assert isinstance(err.value, FileNotFoundError)


def test_not_a_workbook(tmp_path: Path) -> None:
    bad = tmp_path / "code.xlsx"
    bad.write_text("subject,clip\n")
    with pytest.raises(AnnotationError, match="not an Excel workbook"):
        load(bad)


def test_missing_sheet(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(list(ROWS[0]))
    wb.save(tmp_path / "one.xlsx")
    with pytest.raises(AnnotationError, match="sheet 2") as err:
        load(tmp_path / "one.xlsx")
    assert err.value.file == tmp_path / "one.xlsx"


@pytest.mark.parametrize(
    ("bad_row", "column", "message"),
    [
        (
            (1, "disgust1_3", "abc", 110, 120, "", "", "micro-expression", ""),
            "column C (onset)",
            "'abc' is not a number",
        ),
        (
            (1, "disgust1_3", 100, 110, 120.5, "", "", "micro-expression", ""),
            "column E (offset)",
            "not a whole",
        ),
        (
            (1, "disgust1_3", 100, 110, 120, "", "", "meso-expression", ""),
            "column H (expression type)",
            "unknown",
        ),
        (
            (9, "disgust1_3", 100, 110, 120, "", "", "micro-expression", ""),
            "column A (subject index)",
            "index 9",
        ),
        ((1, "sad9_1", 100, 110, 120, "", "", "micro-expression", ""), "column B (clip name)", "'sad9'"),
        # apex 0 and an offset before the onset: no documented repair covers it.
        (
            (1, "disgust1_3", 200, 0, 150, "", "", "macro-expression", ""),
            "column C (onset)",
            "after the offset",
        ),
    ],
)
def test_bad_rows_name_file_row_and_column(tmp_path: Path, bad_row: tuple, column: str, message: str) -> None:
    path = write_casme2(tmp_path / "bad.xlsx", rows=[*ROWS[:2], bad_row])
    with pytest.raises(AnnotationError) as err:
        load(path)
    text = str(err.value)
    assert str(path) in text and "row 3" in text and column in text and message in text
    assert err.value.row == 3 and err.value.sheet == "CASFEcode_final"
