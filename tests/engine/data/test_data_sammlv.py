"""SAMM-LV loader on workbooks written here in the real layout (nine preamble rows, then the header)."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from engine.data import AnnotationError, FramesNotFound, load_dataset
from engine.data.labels import point_labels, snippet_of_frame
from engine.data.sammlv import load
from stream.intervals import ExpressionType, Interval

ME, MAE = ExpressionType.ME, ExpressionType.MAE
HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset",
    "Apex",
    "Offset",
    "Duration",
    "Type",
    "Action Units",
    "Notes",
]
# Subject, Filename, Inducement, Onset, Apex, Offset, Duration, Type, AUs, Notes
ROWS: list[list[object]] = [
    [6, "006_1_1", 1, 100.4, 120.5, 140.6, 41, "Micro - 1/2", "R12", ""],  # non-integer frames
    [6, "006_1_2", 1, 1000, -1, 1150, 151, "Macro", "12", "apex not coded"],  # apex -1
    [7, "007_3_1", 3, 0, 200, 1500, 1501, "Macro", "4+7", ""],  # onset 0, longer than 800 frames
    [7, "007_3_2", 3, 2000, 2050, 2080, 81, "Micro - 1/2", "14", ""],
    [7, "007_4_1", 4, 10, 20, 900, 891, "Macro", "6+12", ""],  # longer than 800 frames
]


def write_samm(
    path: Path, rows: list[list[object]] = ROWS, header: list[str] = HEADER, preamble: int = 9
) -> Path:
    wb = openpyxl.Workbook()
    wb.active.title = "Read Me"  # the movement sheet is found by name, not position
    ws = wb.create_sheet("FACS_Movement_Only")
    ws.append(["SAMM Long Videos - FACS movements"])
    for i in range(1, preamble):
        ws.append([f"preamble line {i}"] if i % 2 else [])
    ws.append(header)
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    return write_samm(tmp_path / "SAMM_LongVideos_V3_Release.xlsx")


def test_rows_map_to_videos_with_quirks(workbook: Path) -> None:
    ds = load(workbook)
    assert ds.name == "samm-lv" and ds.fps == 200.0
    assert [v.video for v in ds.videos] == ["006_1", "007_3", "007_4"]
    assert ds.subjects() == ["006", "007"]
    v = ds.video("006_1")
    assert v.fps == 200.0 and v.first_frame == 1
    # 100.4 -> 100, 120.5 -> 121 (halves up), 140.6 -> 141; apex -1 -> unknown.
    assert v.expressions == (Interval(100, 141, ME, 121), Interval(1000, 1150, MAE, None))
    # onset 0: the expression is under way at the first frame (1); the interval is kept.
    assert ds.video("007_3").expressions == (Interval(1, 1500, MAE, 200), Interval(2000, 2080, ME, 2050))
    problems = [(r.row, r.column, r.problem) for r in ds.repairs]
    assert problems == [
        (11, "Onset", "non-integer frame 100.4"),
        (11, "Offset", "non-integer frame 140.6"),
        (11, "Apex", "non-integer frame 120.5"),
        (12, "Apex", "apex -1 (not annotated)"),
        (13, "onset", "onset 0 is before the first frame 1"),
    ]


def test_statistics_flag_long_macro_and_use_200_fps(workbook: Path) -> None:
    stats = load(workbook).statistics()
    assert (stats.n_me, stats.n_mae) == (2, 3)
    assert [(v, iv.onset) for v, iv in stats.mae_over_max] == [("007_3", 1), ("007_4", 10)]
    assert stats.me is not None
    assert stats.me.max_s == pytest.approx(81 / 200)  # [2000, 2080] is 81 frames at 200 fps
    assert stats.me_over_max == ()


def test_header_found_after_another_preamble_length(tmp_path: Path) -> None:
    ds = load_dataset("samm-lv", write_samm(tmp_path / "SAMMLV_gt.xlsx", preamble=4))
    assert len(ds.videos) == 3


def test_snippets_use_200_fps(workbook: Path) -> None:
    v = load(workbook).video("007_3")
    snippet = 8 / 30  # 53 1/3 frames at 200 fps
    assert snippet_of_frame(v, 1, snippet) == 0
    assert snippet_of_frame(v, 54, snippet) == 0  # position 53: 0.265 s
    assert snippet_of_frame(v, 55, snippet) == 1  # position 54: 0.270 s
    assert snippet_of_frame(v, 2000, snippet) == 37  # 1999 / 200 s = 9.995 s
    assert point_labels(v, snippet, mode="apex") == [(3, MAE), (38, ME)]  # 199/200 s; 2049/200 s


def make_frames(folder: Path, first: int, last: int) -> None:
    folder.mkdir(parents=True)
    for n in range(first, last + 1):
        (folder / f"{folder.name}_{n:05d}.jpg").touch()


def test_frame_folders_and_clipping(tmp_path: Path) -> None:
    rows = [
        ROWS[0],
        [7, "007_3_1", 3, 0, 20, 150, 151, "Macro", "4+7", ""],
        [7, "007_3_2", 3, 200, 205, 230, 31, "Micro - 1/2", "14", ""],  # runs past the last image
    ]
    workbook = write_samm(tmp_path / "short.xlsx", rows=rows)
    root = tmp_path / "SAMM_longvideos"
    make_frames(root / "006_1", 1, 150)
    make_frames(root / "007_3", 1, 210)
    ds = load(workbook, root=root)
    v = ds.video("007_3")
    assert (v.frames_dir, v.n_frames, v.first_frame, v.last_frame) == (root / "007_3", 210, 1, 210)
    assert v.expressions == (Interval(1, 150, MAE, 20), Interval(200, 210, ME, 205))
    assert [r.problem for r in ds.repairs][-2:] == [
        "onset 0 is before the first frame 1",
        "offset 230 is after the last frame 210",
    ]


def test_missing_frame_folder(workbook: Path, tmp_path: Path) -> None:
    with pytest.raises(FramesNotFound, match="006_1"):
        load(workbook, root=tmp_path)


def test_missing_sheet(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "Sheet1"
    wb.save(tmp_path / "x.xlsx")
    with pytest.raises(AnnotationError, match=r"no sheet 'FACS_Movement_Only'.*'Sheet1'"):
        load(tmp_path / "x.xlsx")


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = [h for h in HEADER if h != "Offset"]
    path = write_samm(tmp_path / "x.xlsx", rows=[r[:5] + r[6:] for r in ROWS], header=header)
    with pytest.raises(AnnotationError, match=r"row 10.*lacks the column.*'Offset'") as err:
        load(path)
    assert err.value.sheet == "FACS_Movement_Only"


def test_no_header_row(tmp_path: Path) -> None:
    path = write_samm(tmp_path / "x.xlsx", header=["a", "b", "c"])
    with pytest.raises(AnnotationError, match="no header row"):
        load(path)


@pytest.mark.parametrize(
    ("bad_row", "column", "message"),
    [
        ([6, "006_1_3", 1, "n/a", 5, 9, 5, "Macro", "", ""], "column D (Onset)", "'n/a' is not a number"),
        ([6, "006_1_3", 1, 1, 5, 9, 5, "Meso", "", ""], "column H (Type)", "unknown expression type 'Meso'"),
        ([6, "006-1-3", 1, 1, 5, 9, 5, "Macro", "", ""], "column B (Filename)", "is not <subject>_<video>"),
        ([8, "006_1_3", 1, 1, 5, 9, 5, "Macro", "", ""], "column A (Subject)", "does not match"),
        (
            [6, "006_1_3", 1, 30, 5, 9, 5, "Macro", "", ""],
            "column D (Onset)",
            "onset 30 is after the offset 9",
        ),
        ([6, "006_1_3", 1, 1, 5, None, 5, "Macro", "", ""], "column F (Offset)", "is empty"),
    ],
)
def test_bad_rows_name_file_row_and_column(tmp_path: Path, bad_row: list, column: str, message: str) -> None:
    path = write_samm(tmp_path / "bad.xlsx", rows=[*ROWS[:2], bad_row])
    with pytest.raises(AnnotationError) as err:
        load(path)
    text = str(err.value)
    assert str(path) in text and "row 13" in text and column in text and message in text
