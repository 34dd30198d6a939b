"""CAS(ME)^2 (30 fps, 22 subjects, 98 long videos): the annotation workbook and its frame folders.

Workbook (``CAS(ME)^2code_final.xlsx``, MEGC copy ``CASME_sq_gt.xlsx``), read by position:

- sheet 1, no header: subject index, clip name (``anger1_1`` = expression 1 of video ``anger1``),
  onset, apex, offset, AUs, coarse emotion, type (``macro-expression`` / ``micro-expression``),
  self-reported emotion;
- sheet 2 ("naming rule1"): subject index -> subject folder (1 -> s15 ... 22 -> s40);
- sheet 3 ("naming rule2"): video code -> video name (0101 = disgust1, 0401 = anger1, ...).

Frames: ``<root>/s15/15_0101disgustingteeth/img1.jpg ...`` (``root`` may also be the folder that
holds ``rawpic``). A video's id is ``<folder number>_<code>`` (``15_0101``), its subject ``s15``.

Quirks, each repaired row logged as a warning and kept in `Dataset.repairs`:

- offset 0 (44 MaE rows): the offset was not annotated; it becomes apex + `missing_offset_frames`
  (default 0, i.e. the apex, as the widely used MEGC evaluation code does; 20 is the other
  published choice). A row with neither offset nor apex is dropped (its extent is unknown).
- apex 0 (one row): the apex was not annotated; it becomes unknown (None).
- offset < apex (three rows): when onset <= offset the annotated extent [onset, offset] is kept
  (it is what published evaluation scores) and the apex becomes unknown; when the offset is even
  before the onset it is treated as a missing offset (apex + missing_offset_frames).
"""

from __future__ import annotations

import logging
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
    frame,
    make_interval,
    read_workbook,
    text,
)
from stream.intervals import ExpressionType

log = logging.getLogger(__name__)

FPS = 30.0
FIRST_FRAME = 1  # images are numbered from 1 (img1.jpg)
TYPES = {"macro-expression": ExpressionType.MAE, "micro-expression": ExpressionType.ME}

# Sheet 1 has no header: its columns by position, named as the layout describes them.
SUBJECT = Col("subject index", 0)
CLIP = Col("clip name", 1)
ONSET = Col("onset", 2)
APEX = Col("apex", 3)
OFFSET = Col("offset", 4)
TYPE = Col("expression type", 7)

_SUBJECT_FOLDER = re.compile(r"^s(\d+)$", re.IGNORECASE)


def _whole(value: object) -> int | None:
    """An integer from a number or a digit string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _is_title(value: object) -> bool:
    """A text cell that is not a number: a column title where data was expected."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def subject_folders(sheet: Sheet) -> dict[int, int]:
    """Sheet 2: subject index -> folder number (1 -> 15 for ``s15``).

    Copies differ in columns (``15 | s15 | 1``, ``s15 | 15 | 1``, ``1 | s15``), so each row is read
    by content: the folder is the ``sNN`` cell, or else the largest number; the index is the
    smallest remaining number (indices 1-22 are below folder numbers 15-40). Rows without
    numbers (titles) are skipped.

    Raises:
        AnnotationError: a row with a folder but no index, or an index given twice.
    """
    mapping: dict[int, int] = {}
    for r, cells in enumerate(sheet.rows):
        folder = None
        for v in cells:
            m = _SUBJECT_FOLDER.match(v.strip()) if isinstance(v, str) else None
            if m:
                folder = int(m.group(1))
                break
        ints = [n for n in (_whole(v) for v in cells) if n is not None]
        if folder is None:
            if not ints:
                continue
            if len(ints) < 2:
                raise sheet.error("expected a subject index and its folder (e.g. 1 and s15 or 15)", row=r)
            index, folder = min(ints), max(ints)
        else:
            others = [n for n in ints if n != folder] or ints
            if not others:
                raise sheet.error(f"folder s{folder} has no subject index", row=r)
            index = min(others)
        if mapping.setdefault(index, folder) != folder:
            raise sheet.error(f"subject index {index} maps to s{mapping[index]} and to s{folder}", row=r)
    if not mapping:
        raise AnnotationError(sheet.file, "no subject index -> folder rows", sheet=sheet.name)
    return mapping


def video_codes(sheet: Sheet) -> dict[str, str]:
    """Sheet 3: video name (lowercase) -> 4-digit code (``disgust1`` -> ``0101``).

    The code is the cell holding only digits (a number loses its leading zero, so it is padded
    back to four digits); the name is the other text cell. Rows without both are skipped.

    Raises:
        AnnotationError: a name given two different codes.
    """
    mapping: dict[str, str] = {}
    for r, cells in enumerate(sheet.rows):
        code = next((n for n in (_whole(v) for v in cells) if n is not None), None)
        name = next(
            (v.strip() for v in cells if isinstance(v, str) and v.strip() and not v.strip().isdigit()), None
        )
        if code is None or name is None:
            continue
        key, value = name.lower(), f"{code:04d}"
        if mapping.setdefault(key, value) != value:
            raise sheet.error(f"video name {name!r} has codes {mapping[key]} and {value}", row=r)
    if not mapping:
        raise AnnotationError(sheet.file, "no video code -> name rows", sheet=sheet.name)
    return mapping


def frames_root(root: Path) -> Path:
    """The folder that holds ``s15`` ...: `root` itself or its ``rawpic`` folder."""
    rawpic = find_child(root, "rawpic")
    if (
        rawpic is not None
        and rawpic.is_dir()
        and not any(_SUBJECT_FOLDER.match(p.name) for p in root.iterdir() if p.is_dir())
    ):
        return rawpic
    return root


def frames_dir(root: Path, folder: int, code: str) -> Path:
    """``<root>/s15/15_0101<name>``.

    Raises:
        FramesNotFound: no subject folder, no video folder, or several candidates.
    """
    video = f"{folder}_{code}"
    subject_dir = find_child(root, f"s{folder}")
    if subject_dir is None or not subject_dir.is_dir():
        raise FramesNotFound(video, root / f"s{folder}", "no such subject folder under the dataset root")
    found = sorted(
        p for p in subject_dir.iterdir() if p.is_dir() and p.name.lower().startswith(video.lower())
    )
    if not found:
        raise FramesNotFound(video, subject_dir / f"{video}*", "no video folder with this prefix")
    if len(found) > 1:
        raise FramesNotFound(
            video, subject_dir / f"{video}*", f"several folders match: {[p.name for p in found]}"
        )
    return found[0]


@DATASETS.register("casme2")
def load(annotation_path: str | Path, *, root: Path | None = None, missing_offset_frames: int = 0) -> Dataset:
    """Load CAS(ME)^2 from its annotation workbook.

    Args:
        annotation_path: ``CAS(ME)^2code_final.xlsx`` or ``CASME_sq_gt.xlsx``.
        root: the folder holding ``s15`` ... ``s40`` (or ``rawpic``); None leaves frames_dir unset.
        missing_offset_frames: a missing offset (0) becomes apex + this many frames.

    Raises:
        AnnotationNotFound: no such file.
        AnnotationError: a missing sheet, an unknown subject index or video name, a non-numeric
            frame, an unknown type, an onset after its offset that no documented repair covers.
        FramesNotFound: `root` given but a video's folder is not there.
    """
    if missing_offset_frames < 0:
        raise ValueError(f"missing_offset_frames={missing_offset_frames} must be >= 0")
    book = read_workbook(annotation_path)
    codes = book.sheet_at(0, "the annotation rows")
    folders = subject_folders(book.sheet_at(1, "the subject naming rule (index -> folder)"))
    names = video_codes(book.sheet_at(2, "the video naming rule (code -> name)"))
    repairs = RepairLog(log)
    plus = f" + {missing_offset_frames}" if missing_offset_frames else ""

    rows: dict[str, list[Row]] = {}
    subject_of: dict[str, tuple[int, str]] = {}
    for r in range(len(codes.rows)):
        if codes.row_is_blank(r):
            continue
        if r == 0 and _is_title(codes.cell(0, SUBJECT.index)) and _is_title(codes.cell(0, ONSET.index)):
            # The layout has no header, but a copy with one ("subject", ..., "onset") still loads.
            log.info("%s: row 1 holds column titles; skipped", codes.file)
            continue
        index = frame(codes, r, SUBJECT)
        assert index is not None
        if index not in folders:
            raise codes.error(f"subject index {index} is not in the subject naming sheet", row=r, col=SUBJECT)
        clip = text(codes, r, CLIP)
        assert clip is not None
        base = clip.rsplit("_", 1)[0] if "_" in clip else clip
        if base.lower() not in names:
            raise codes.error(f"video name {base!r} is not in the video naming sheet", row=r, col=CLIP)
        folder, code = folders[index], names[base.lower()]
        video = f"{folder}_{code}"

        onset = frame(codes, r, ONSET)
        apex = frame(codes, r, APEX, required=False)
        offset = frame(codes, r, OFFSET, required=False)
        kind = expression_type(codes, r, TYPE, TYPES)
        assert onset is not None
        if apex == 0:
            repairs.add(codes, r, APEX.name, video, "apex 0 (not annotated)", "apex set to unknown")
            apex = None
        if not offset:
            if apex is None:
                repairs.add(
                    codes,
                    r,
                    OFFSET.name,
                    video,
                    "offset 0 or empty and no apex: the extent is unknown",
                    "row dropped",
                )
                continue
            offset = apex + missing_offset_frames
            repairs.add(
                codes,
                r,
                OFFSET.name,
                video,
                "offset 0 or empty (not annotated)",
                f"offset set to apex{plus} = {offset}",
            )
        elif apex is not None and offset < apex:
            if offset >= onset:
                repairs.add(
                    codes,
                    r,
                    APEX.name,
                    video,
                    f"offset {offset} is before the apex {apex}",
                    f"kept the annotated extent [{onset}, {offset}]; apex set to unknown",
                )
                apex = None
            else:
                old, offset = offset, apex + missing_offset_frames
                repairs.add(
                    codes,
                    r,
                    OFFSET.name,
                    video,
                    f"offset {old} is before the apex {apex} and the onset {onset}",
                    f"offset set to apex{plus} = {offset}",
                )
        rows.setdefault(video, []).append(
            make_interval(codes, r, video, onset, apex, offset, kind, repairs, onset_col=ONSET, apex_col=APEX)
        )
        subject_of[video] = (folder, code)

    if not rows:
        raise AnnotationError(codes.file, "has no annotation rows", sheet=codes.name)
    base_dir = frames_root(Path(root)) if root is not None else None
    videos = []
    for video, video_rows in rows.items():
        folder, code = subject_of[video]
        where = frames_dir(base_dir, folder, code) if base_dir is not None else None
        videos.append(
            build_video(
                video, f"s{folder}", FPS, video_rows, repairs, frames_dir=where, first_frame=FIRST_FRAME
            )
        )
    dataset = Dataset("casme2", FPS, tuple(videos), tuple(repairs.items), book.file)
    log.info("loaded %s: %s; %d rows repaired", book.file, dataset.counts(), len(repairs.items))
    return dataset
