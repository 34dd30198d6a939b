"""SAMM-LV (SAMM Long Videos; 200 fps, 32 subjects, 147 annotated long videos).

Workbook ``SAMM_LongVideos_V3_Release.xlsx`` (MEGC copy ``SAMMLV_gt.xlsx``), sheet
``FACS_Movement_Only``: nine preamble rows, then the header row (Subject, Filename, Inducement
Code, Onset, Apex, Offset, Duration, Type, Action Units, Notes). The header is searched for in the
first rows, so copies with a different preamble length load too. ``Filename`` ``006_1_2`` is
expression 2 of video ``006_1``; ``Type`` is ``Macro`` or ``Micro - 1/2``.

Frames: ``<root>/006_1/006_1_00001.jpg ...``; the video id is ``006_1``, its subject ``006``.

Quirks, each repaired value logged as a warning and kept in `Dataset.repairs`:

- apex -1: not annotated -> unknown (None).
- non-integer frame numbers (subject 006): rounded to the nearest frame, halves up.
- onset 0 on some Macro rows (the expression is under way when the recording starts): the onset
  becomes the video's first frame (frame 1, or the first image number on disk), keeping the
  interval; the row is not dropped.
- Macro intervals longer than 800 frames (4 s): kept as annotated and listed by
  `Dataset.statistics().mae_over_max`.
- ``Duration`` is not read; lengths follow from onset and offset, counted inclusively.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from engine.data.errors import AnnotationError, FramesNotFound
from engine.data.records import DATASETS, Dataset
from engine.data.tables import (
    Col,
    RepairLog,
    Row,
    Sheet,
    build_video,
    expression_type,
    find_child,
    find_header,
    make_interval,
    number,
    read_workbook,
    text,
)
from stream.intervals import ExpressionType

log = logging.getLogger(__name__)

FPS = 200.0
FIRST_FRAME = 1  # 006_1_00001.jpg
SHEET = "FACS_Movement_Only"
PREAMBLE_ROWS = 9
COLUMNS: dict[str, tuple[str, ...]] = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "inducement": ("Inducement Code",),
    "onset": ("Onset",),
    "apex": ("Apex",),
    "offset": ("Offset",),
    "duration": ("Duration",),
    "type": ("Type",),
    "aus": ("Action Units",),
    "notes": ("Notes",),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "type")
TYPES = {"macro": ExpressionType.MAE, "micro-1/2": ExpressionType.ME, "micro": ExpressionType.ME}

_FILENAME = re.compile(r"^(?P<video>(?P<subject>\d+)_\d+)_(?P<n>\d+)$")


def _subject(sheet: Sheet, row: int, col: Col) -> str:
    """Subject as a 3-digit id (6, 6.0 and '006' all give '006')."""
    value = text(sheet, row, col)
    assert value is not None
    return value.zfill(3) if value.isdigit() else value


def _frame(
    sheet: Sheet, row: int, col: Col, video: str, repairs: RepairLog, *, required: bool = True
) -> int | None:
    """A frame number, rounding a non-integer one (subject 006) with a logged repair."""
    x = number(sheet, row, col)
    if x is None:
        if required:
            raise sheet.error("is empty; a frame number is required", row=row, col=col)
        return None
    n = math.floor(x + 0.5)  # halves up, not Python's round-half-even
    if n != x:
        repairs.add(sheet, row, col.name, video, f"non-integer frame {x:g}", f"rounded to {n}")
    return n


@DATASETS.register("samm-lv")
def load(annotation_path: str | Path, *, root: Path | None = None) -> Dataset:
    """Load SAMM-LV from its annotation workbook.

    Args:
        annotation_path: ``SAMM_LongVideos_V3_Release.xlsx`` or ``SAMMLV_gt.xlsx``.
        root: the folder holding one frame folder per video (``006_1``, ...); None leaves
            frames_dir unset.

    Raises:
        AnnotationNotFound: no such file.
        AnnotationError: no ``FACS_Movement_Only`` sheet, a missing column, a bad file name,
            a non-numeric frame, an unknown type, an onset after its offset.
        FramesNotFound: `root` given but a video's folder is not there.
    """
    book = read_workbook(annotation_path)
    sheet = book.sheet(SHEET)
    header, cols = find_header(sheet, COLUMNS, REQUIRED, max_rows=PREAMBLE_ROWS + 20)
    if header != PREAMBLE_ROWS:
        log.info(
            "%s: header found at row %d (the V3 release has it at row %d)",
            sheet.file,
            header + 1,
            PREAMBLE_ROWS + 1,
        )
    repairs = RepairLog(log)

    rows: dict[str, list[Row]] = {}
    subjects: dict[str, str] = {}
    for r in range(header + 1, len(sheet.rows)):
        if sheet.row_is_blank(r):
            continue
        subject = _subject(sheet, r, cols["subject"])
        filename = text(sheet, r, cols["filename"])
        assert filename is not None
        m = _FILENAME.match(filename)
        if m is None:
            raise sheet.error(
                f"file name {filename!r} is not <subject>_<video>_<expression> (e.g. 006_1_2)",
                row=r,
                col=cols["filename"],
            )
        video = m["video"]
        if subject.isdigit() and int(m["subject"]) != int(subject):
            raise sheet.error(
                f"subject {subject} does not match the file name {filename}", row=r, col=cols["subject"]
            )
        onset = _frame(sheet, r, cols["onset"], video, repairs)
        offset = _frame(sheet, r, cols["offset"], video, repairs)
        apex = _frame(sheet, r, cols["apex"], video, repairs, required=False)
        kind = expression_type(sheet, r, cols["type"], TYPES)
        assert onset is not None and offset is not None
        rows.setdefault(video, []).append(
            make_interval(
                sheet,
                r,
                video,
                onset,
                apex,
                offset,
                kind,
                repairs,
                onset_col=cols["onset"],
                apex_col=cols["apex"],
            )
        )
        subjects[video] = m["subject"].zfill(3)

    if not rows:
        raise AnnotationError(sheet.file, "has a header but no annotation rows", sheet=sheet.name)
    videos = []
    for video, video_rows in rows.items():
        where = None
        if root is not None:
            where = find_child(Path(root), video)
            if where is None or not where.is_dir():
                raise FramesNotFound(video, Path(root) / video, "no such folder under the dataset root")
        videos.append(
            build_video(
                video, subjects[video], FPS, video_rows, repairs, frames_dir=where, first_frame=FIRST_FRAME
            )
        )
    dataset = Dataset("samm-lv", FPS, tuple(videos), tuple(repairs.items), book.file)
    log.info("loaded %s: %s; %d values repaired", book.file, dataset.counts(), len(repairs.items))
    return dataset
