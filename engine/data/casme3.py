"""CAS(ME)^3 part A (30 fps, about 100 subjects, 956 annotated videos).

Workbook ``CAS(ME)3_part_A_v2.xls``:

- sheet ``AU+Emotion``: header row, then Subject (``spNO.1``), Filename (``a`` - ``m``), Onset,
  Apex, Offset (often stored as text), AU, Expression type (``Macro-expression`` /
  ``Micro-expression``), objective class;
- sheet ``eye blink``: blinks, with Subject, Filename, Onset, (Apex,) Offset columns.

Frames: ``<root>/spNO.1/a/`` (or its ``color`` subfolder when the images are there); the video id
is ``spNO.1_a``, its subject ``spNO.1``.

Quirks and how they are handled:

- frame numbers stored as text: parsed as numbers (whole numbers only).
- upper-case file names (``B``): normalised to lower case, logged as a repair.
- most labelled MEs are longer than 15 frames (0.5 s): the type always comes from the
  ``Expression type`` label, never from the duration; `Dataset.statistics().me_over_max` lists them.
- gaps in the frame numbering: with ``root`` the image file numbers give each frame's position,
  so frame -> time conversions skip the gaps exactly (`VideoRecord.frame_position`).
- blinks go to `VideoRecord.blinks` (hard negatives), not to the expressions. Blinks of videos
  without any expression row are counted in a warning and not loaded (the annotated videos are
  the dataset, as in the published protocols).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from engine.data.errors import AnnotationError, FramesNotFound
from engine.data.records import DATASETS, Blink, Dataset
from engine.data.tables import (
    Col,
    RepairLog,
    Row,
    Sheet,
    Workbook,
    build_video,
    expression_type,
    find_child,
    find_header,
    frame,
    make_interval,
    read_workbook,
    text,
)
from stream.frame import IMAGE_SUFFIXES
from stream.intervals import ExpressionType

log = logging.getLogger(__name__)

FPS = 30.0
# Used only without frames on disk; with `root` the first image number is read from the files.
FIRST_FRAME = 0
SHEET = "AU+Emotion"
BLINK_SHEET = "eye blink"
COLUMNS: dict[str, tuple[str, ...]] = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("Onset", "Onset frame"),
    "apex": ("Apex", "Apex frame"),
    "offset": ("Offset", "Offset frame"),
    "au": ("AU", "Action Units"),
    "type": ("Expression type", "Type"),
    "class": ("objective class", "Objective class"),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "type")
BLINK_REQUIRED = ("subject", "filename", "onset", "offset")
TYPES = {
    "macro-expression": ExpressionType.MAE,
    "micro-expression": ExpressionType.ME,
    "macro": ExpressionType.MAE,
    "micro": ExpressionType.ME,
}

_SUBJECT = re.compile(r"^sp\s*no\.?\s*(\d+)$", re.IGNORECASE)


def _subject(sheet: Sheet, row: int, col: Col) -> str:
    """``spNO.1`` in its canonical spelling (``spno.1``, ``spNO. 1`` accepted)."""
    value = text(sheet, row, col)
    assert value is not None
    m = _SUBJECT.match(value)
    return f"spNO.{int(m.group(1))}" if m else value


def _filename(sheet: Sheet, row: int, col: Col, subject: str, repairs: RepairLog | None) -> str:
    value = text(sheet, row, col)
    assert value is not None
    if value != value.lower() and repairs is not None:
        repairs.add(
            sheet,
            row,
            col.name,
            f"{subject}_{value.lower()}",
            f"upper-case file name {value!r}",
            "lower-cased",
        )
    return value.lower()


def frames_dir(root: Path, subject: str, filename: str) -> Path:
    """``<root>/spNO.1/a``, or its ``color`` subfolder when the images are there.

    Raises:
        FramesNotFound: no such folder.
    """
    video = f"{subject}_{filename}"
    subject_dir = find_child(root, subject)
    where = find_child(subject_dir, filename) if subject_dir is not None else None
    if where is None or not where.is_dir():
        raise FramesNotFound(video, root / subject / filename, "no such folder under the dataset root")
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in where.iterdir())
    color = find_child(where, "color")
    if not has_images and color is not None and color.is_dir():
        return color
    return where


def _blinks(book: Workbook, wanted: bool | None, repairs: RepairLog) -> dict[str, list[Blink]]:
    """Blinks by video id. `wanted`: True requires the sheet, None loads it when usable, False skips."""
    if wanted is False:
        return {}
    try:
        sheet = book.sheet(BLINK_SHEET)
        header, cols = find_header(sheet, COLUMNS, BLINK_REQUIRED)
    except AnnotationError as exc:
        if wanted:
            raise
        log.warning("blinks not loaded: %s", exc)
        return {}
    strict = bool(wanted)
    out: dict[str, list[Blink]] = {}
    for r in range(header + 1, len(sheet.rows)):
        if sheet.row_is_blank(r):
            continue
        try:
            subject = _subject(sheet, r, cols["subject"])
            video = f"{subject}_{_filename(sheet, r, cols['filename'], subject, None)}"
            onset = frame(sheet, r, cols["onset"])
            offset = frame(sheet, r, cols["offset"])
            apex = frame(sheet, r, cols["apex"], required=False) if "apex" in cols else None
            assert onset is not None and offset is not None
            if offset < onset:
                raise sheet.error(
                    f"blink onset {onset} is after its offset {offset}", row=r, col=cols["onset"]
                )
        except AnnotationError as exc:
            if strict:
                raise
            # Blinks are auxiliary: a bad blink row must not stop the expressions from loading.
            repairs.add(sheet, r, exc.column or "row", "?", exc.problem, "blink dropped")
            continue
        if apex is not None and not onset <= apex <= offset:
            apex = None
        out.setdefault(video, []).append(Blink(onset, offset, apex))
    return out


@DATASETS.register("casme3")
def load(annotation_path: str | Path, *, root: Path | None = None, blinks: bool | None = None) -> Dataset:
    """Load CAS(ME)^3 part A from its annotation workbook.

    Args:
        annotation_path: ``CAS(ME)3_part_A_v2.xls`` (an .xlsx copy works too).
        root: the folder holding ``spNO.1`` ...; None leaves frames_dir unset.
        blinks: True: the ``eye blink`` sheet must load; None (default): load it when present and
            readable, else warn; False: do not read it.

    Raises:
        AnnotationNotFound: no such file.
        AnnotationError: no ``AU+Emotion`` sheet, a missing column, a non-numeric frame, an unknown
            type, an onset after its offset; with blinks=True, the same for the blink sheet.
        FramesNotFound: `root` given but a video's folder is not there.
    """
    book = read_workbook(annotation_path)
    sheet = book.sheet(SHEET)
    header, cols = find_header(sheet, COLUMNS, REQUIRED)
    repairs = RepairLog(log)

    rows: dict[str, list[Row]] = {}
    keys: dict[str, tuple[str, str]] = {}
    for r in range(header + 1, len(sheet.rows)):
        if sheet.row_is_blank(r):
            continue
        subject = _subject(sheet, r, cols["subject"])
        filename = _filename(sheet, r, cols["filename"], subject, repairs)
        video = f"{subject}_{filename}"
        onset = frame(sheet, r, cols["onset"])
        offset = frame(sheet, r, cols["offset"])
        apex = frame(sheet, r, cols["apex"], required=False)
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
        keys[video] = (subject, filename)
    if not rows:
        raise AnnotationError(sheet.file, "has a header but no annotation rows", sheet=sheet.name)

    blink_map = _blinks(book, blinks, repairs)
    orphans = {v: len(b) for v, b in blink_map.items() if v not in rows}
    if orphans:
        log.warning(
            "%d blinks of %d videos without expression rows not loaded (e.g. %s)",
            sum(orphans.values()),
            len(orphans),
            ", ".join(sorted(orphans)[:3]),
        )
    videos = []
    for video, video_rows in rows.items():
        subject, filename = keys[video]
        where = frames_dir(Path(root), subject, filename) if root is not None else None
        videos.append(
            build_video(
                video,
                subject,
                FPS,
                video_rows,
                repairs,
                frames_dir=where,
                first_frame=FIRST_FRAME,
                blinks=blink_map.get(video, ()),
            )
        )
    dataset = Dataset("casme3", FPS, tuple(videos), tuple(repairs.items), book.file)
    log.info("loaded %s: %s; %d values repaired", book.file, dataset.counts(), len(repairs.items))
    return dataset
