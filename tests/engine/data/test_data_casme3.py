"""CAS(ME)^3 part A loader on .xls workbooks written here (xlwt) in the real layout, frames as text."""

from __future__ import annotations

from pathlib import Path

import pytest
import xlwt

from engine.data import AnnotationError, FramesNotFound, load_dataset
from engine.data.casme3 import load
from engine.data.labels import snippet_of_frame
from engine.data.records import Blink
from stream.intervals import ExpressionType, Interval

ME, MAE = ExpressionType.ME, ExpressionType.MAE
HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Expression type", "objective class"]
ROWS: list[list[object]] = [
    ["spNO.1", "a", "120", "130", "150", "4+7", "Micro-expression", "negative"],  # 31 frames: > 15
    ["spNO.1", "B", "10", "20", "60", "12", "Macro-expression", "positive"],  # upper-case file name
    ["spNO.2", "c", 5, "", "12", "4", "Micro-expression", "negative"],  # a number cell, no apex
    ["spNO.10", "a", "300", "320", "400", "6+12", "Macro-expression", "positive"],
    ["spNO.1", "a", "400", "410", "412", "1+2", "Micro-expression", "surprise"],
]
BLINK_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset"]
BLINKS: list[list[object]] = [
    ["spNO.1", "a", "200", "203", "206"],
    ["spNO.1", "a", "50", "", "55"],
    ["spNO.1", "b", "100", "102", "104"],
    ["spNO.3", "d", "1", "2", "3"],  # a video without expression rows
]


def write_casme3(
    path: Path,
    rows: list[list[object]] = ROWS,
    header: list[str] = HEADER,
    blinks: list[list[object]] | None = BLINKS,
) -> Path:
    wb = xlwt.Workbook()
    sheets = [("AU+Emotion", header, rows)]
    if blinks is not None:
        sheets.append(("eye blink", BLINK_HEADER, blinks))
    for title, head, content in sheets:
        ws = wb.add_sheet(title)
        for r, row in enumerate([head, *content]):
            for c, value in enumerate(row):
                ws.write(r, c, value)  # str stays a text cell, as the release stores frames
    wb.save(str(path))
    return path


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    return write_casme3(tmp_path / "CAS(ME)3_part_A_v2.xls")


def test_rows_blinks_and_quirks(workbook: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = load(workbook)
    assert ds.name == "casme3" and ds.fps == 30.0
    assert [v.video for v in ds.videos] == ["spNO.1_a", "spNO.1_b", "spNO.2_c", "spNO.10_a"]
    assert ds.subjects() == ["spNO.1", "spNO.2", "spNO.10"]
    a = ds.video("spNO.1_a")
    # The type comes from the label: [120, 150] is 31 frames (1.03 s) and stays an ME.
    assert a.expressions == (Interval(120, 150, ME, 130), Interval(400, 412, ME, 410))
    assert a.blinks == (Blink(50, 55, None), Blink(200, 206, 203))
    assert ds.video("spNO.1_b").expressions == (Interval(10, 60, MAE, 20),)
    assert ds.video("spNO.1_b").blinks == (Blink(100, 104, 102),)
    assert ds.video("spNO.2_c").expressions == (Interval(5, 12, ME, None),)
    assert [(r.row, r.column, r.action) for r in ds.repairs] == [(3, "Filename", "lower-cased")]
    stats = ds.statistics()
    assert [(v, iv.onset) for v, iv in stats.me_over_max] == [("spNO.1_a", 120)]
    assert stats.n_blinks == 3
    assert "1 blinks of 1 videos without expression rows not loaded" in caplog.text


def test_blinks_optional_and_required(tmp_path: Path) -> None:
    no_sheet = write_casme3(tmp_path / "noblink.xls", blinks=None)
    assert load(no_sheet).statistics().n_blinks == 0  # warned, not fatal
    with pytest.raises(AnnotationError, match="no sheet 'eye blink'"):
        load(no_sheet, blinks=True)
    assert load_dataset("casme3", tmp_path / "noblink.xls", blinks=False).statistics().n_blinks == 0


def test_bad_blink_row_is_dropped_with_a_repair_or_raises_when_required(tmp_path: Path) -> None:
    path = write_casme3(tmp_path / "b.xls", blinks=[*BLINKS[:2], ["spNO.1", "a", "90", "", "80"]])
    ds = load(path)
    assert ds.video("spNO.1_a").blinks == (Blink(50, 55, None), Blink(200, 206, 203))
    assert ds.repairs[-1].action == "blink dropped" and ds.repairs[-1].row == 4
    with pytest.raises(AnnotationError, match="blink onset 90 is after its offset 80"):
        load(path, blinks=True)


def make_frames(folder: Path, numbers: list[int]) -> None:
    folder.mkdir(parents=True)
    for n in numbers:
        (folder / f"{n}.jpg").touch()


def test_frame_gaps_are_exact_with_frames_on_disk(workbook: Path, tmp_path: Path) -> None:
    root = tmp_path / "part_A"
    make_frames(root / "spNO.1" / "a" / "color", [*range(0, 100), *range(110, 500)])  # 100..109 missing
    (root / "spNO.1" / "a" / "depth").mkdir()
    make_frames(root / "spNO.1" / "B", list(range(1, 90)))  # upper case on disk too
    make_frames(root / "spNO.2" / "c", list(range(0, 40)))
    make_frames(root / "spNO.10" / "a", list(range(0, 600)))
    ds = load(workbook, root=root)
    a = ds.video("spNO.1_a")
    assert a.frames_dir == root / "spNO.1" / "a" / "color"
    assert (a.n_frames, a.first_frame, a.frame_runs) == (490, 0, ((0, 99), (110, 499)))
    assert a.frame_position(120) == 110  # ten frames earlier than the number says
    assert snippet_of_frame(a, 120, 8 / 30) == 13  # position 110 // 8
    b = ds.video("spNO.1_b")
    assert (b.frames_dir, b.first_frame) == (root / "spNO.1" / "B", 1)


def test_missing_frame_folder(workbook: Path, tmp_path: Path) -> None:
    with pytest.raises(FramesNotFound, match=r"spNO\.1_a"):
        load(workbook, root=tmp_path)


def test_missing_sheet(tmp_path: Path) -> None:
    wb = xlwt.Workbook()
    wb.add_sheet("Sheet1").write(0, 0, "x")
    wb.save(str(tmp_path / "x.xls"))
    with pytest.raises(AnnotationError, match="no sheet 'AU\\+Emotion'"):
        load(tmp_path / "x.xls")


def test_missing_column(tmp_path: Path) -> None:
    header = [*HEADER[:6], "Kind", HEADER[7]]
    with pytest.raises(AnnotationError, match=r"row 1: header row lacks the column.*'Expression type'"):
        load(write_casme3(tmp_path / "x.xls", header=header))


@pytest.mark.parametrize(
    ("bad_row", "column", "message"),
    [
        (
            ["spNO.3", "a", "12a", "13", "20", "", "Micro-expression", ""],
            "column C (Onset)",
            "'12a' is not a number",
        ),
        (["spNO.3", "a", "12", "13", "20", "", "blink", ""], "column G (Expression type)", "unknown"),
        (["spNO.3", "a", "12", "13", "", "", "Micro-expression", ""], "column E (Offset)", "is empty"),
        (
            ["spNO.3", "a", "30", "13", "20", "", "Micro-expression", ""],
            "column C (Onset)",
            "after the offset",
        ),
        (["spNO.3", "a", "12.5", "13", "20", "", "Micro-expression", ""], "column C (Onset)", "not a whole"),
    ],
)
def test_bad_rows_name_file_row_and_column(tmp_path: Path, bad_row: list, column: str, message: str) -> None:
    path = write_casme3(tmp_path / "bad.xls", rows=[*ROWS[:2], bad_row])
    with pytest.raises(AnnotationError) as err:
        load(path)
    text = str(err.value)
    assert str(path) in text and "sheet 'AU+Emotion'" in text and "row 4" in text
    assert column in text and message in text
