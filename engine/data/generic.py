"""The generic CSV layout that users and the synthetic data generator write (the table helpers
it shares with the dataset loaders are in `engine.data.tables`).

Generic CSV layout (header row required, column order free, names case-insensitive)::

    video,subject,onset,apex,offset,type[,fps]
    clip01,p1,120,131,140,me
    clip01,p1,300,,420,mae
    clip02,p2,,,,

- ``type``: ``me`` / ``mae`` (also ``micro`` / ``macro`` and ``micro-expression`` /
  ``macro-expression``), case-insensitive.
- ``apex`` may be empty (unknown). The column itself may be left out.
- A row whose onset, apex, offset and type are all empty declares a video without expressions
  (a negative for training).
- ``fps``: optional column; a video whose rows give no rate (empty cells or no column) gets the
  loader's ``fps`` argument (default 30). The rates a video's rows give must agree.
- Frames are numbered as mespot's sources number them, from ``first_frame`` (default 0: the first
  frame of the video is frame 0). Pass ``first_frame=1`` for 1-based annotations.
- ``identity``: optional column, the real person a subject is (synthetic subjects are morphs of
  a few real photos, several subjects per person; evaluation holds out whole identities, see
  `engine.data.records`). An empty cell says nothing; the identities a video's rows give must
  agree, and all videos of a subject must have one identity.
- Without an ``identity`` column, a ``subjects.json`` beside the annotation file (what
  ``mespot synth`` writes: a list of ``{"name": subject, "base": photo name, ...}``, optionally
  with ``"person"``) gives each listed subject the identity ``person``, else ``base``: subjects
  morphed from one photo are one identity. Without either, or for a subject it does not list,
  the identity is the subject (each subject its own person, as in the real datasets).
- Other columns are ignored. Comma, semicolon or tab separated; UTF-8 (a BOM is fine).
"""

from __future__ import annotations

import json
import logging
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
    find_header,
    frame,
    make_interval,
    number,
    read_csv,
    text,
)
from stream.intervals import ExpressionType

log = logging.getLogger(__name__)


# -- the generic CSV layout -----------------------------------------------------------------------

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "video": ("video", "vid"),
    "subject": ("subject",),
    "onset": ("onset",),
    "apex": ("apex",),
    "offset": ("offset",),
    "type": ("type",),
    "fps": ("fps",),
    "identity": ("identity",),
}
CSV_REQUIRED = ("video", "subject", "onset", "offset", "type")
SUBJECTS_JSON = "subjects.json"

CSV_TYPES: dict[str, ExpressionType] = {
    "me": ExpressionType.ME,
    "micro": ExpressionType.ME,
    "micro-expression": ExpressionType.ME,
    "mae": ExpressionType.MAE,
    "macro": ExpressionType.MAE,
    "macro-expression": ExpressionType.MAE,
}


@DATASETS.register("csv")
def load(
    annotation_path: str | Path,
    *,
    root: Path | None = None,
    fps: float = 30.0,
    first_frame: int = 0,
    name: str = "csv",
) -> Dataset:
    """Load a generic CSV annotation file (layout in this module's docstring).

    Args:
        annotation_path: the CSV file.
        root: folder holding each video's frames as ``root / video`` (an image folder or a video
            file); None leaves frames_dir unset.
        fps: frame rate of videos whose rows give none.
        first_frame: number of each video's first frame in the file (0: mespot's own numbering).
        name: the dataset name to record.

    Raises:
        AnnotationNotFound: no such file.
        AnnotationError: no header, a missing column, a bad value, inconsistent rows.
        FramesNotFound: `root` given but ``root / video`` does not exist.
    """
    if not fps > 0:
        raise ValueError(f"fps={fps} must be > 0")
    sheet = read_csv(annotation_path)
    first_row = next((r for r in range(len(sheet.rows)) if not sheet.row_is_blank(r)), None)
    if first_row is None:
        raise AnnotationError(sheet.file, "has no header row")
    header_row, cols = find_header(sheet, CSV_COLUMNS, CSV_REQUIRED, max_rows=first_row + 1)
    repairs = RepairLog(log)

    subjects: dict[str, str] = {}
    rates: dict[str, float] = {}
    identities: dict[str, str] = {}
    first_rows: dict[str, int] = {}
    rows: dict[str, list[Row]] = {}
    for r in range(header_row + 1, len(sheet.rows)):
        if sheet.row_is_blank(r):
            continue
        video = text(sheet, r, cols["video"])
        subject = text(sheet, r, cols["subject"])
        assert video is not None and subject is not None
        if subjects.setdefault(video, subject) != subject:
            raise sheet.error(
                f"video {video!r} has subject {subject!r} here but {subjects[video]!r} in an earlier row",
                row=r,
                col=cols["subject"],
            )
        first_rows.setdefault(video, r)
        person = text(sheet, r, cols["identity"], required=False) if "identity" in cols else None
        # An empty identity cell says nothing; only given identities must agree.
        if person and identities.setdefault(video, person) != person:
            raise sheet.error(
                f"video {video!r} has identity {person!r} here but {identities[video]!r} in an earlier row",
                row=r,
                col=cols["identity"],
            )
        given = number(sheet, r, cols["fps"]) if "fps" in cols else None
        if given is not None:
            # An empty fps cell says nothing; only given rates must agree within a video.
            if not given > 0:
                raise sheet.error(f"fps {given:g} must be > 0", row=r, col=cols["fps"])
            if rates.setdefault(video, given) != given:
                raise sheet.error(
                    f"video {video!r} has fps {given:g} here but {rates[video]:g} in an earlier row",
                    row=r,
                    col=cols["fps"],
                )
        rows.setdefault(video, [])
        event_cols = [cols[k] for k in ("onset", "apex", "offset", "type") if k in cols]
        if all(sheet.cell(r, c.index) is None for c in event_cols):
            continue  # a video without expressions
        onset = frame(sheet, r, cols["onset"])
        offset = frame(sheet, r, cols["offset"])
        apex = frame(sheet, r, cols["apex"], required=False) if "apex" in cols else None
        kind = expression_type(sheet, r, cols["type"], CSV_TYPES)
        assert onset is not None and offset is not None
        if onset < first_frame:
            raise sheet.error(
                f"onset {onset} is before the first frame {first_frame}", row=r, col=cols["onset"]
            )
        rows[video].append(
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
                apex_col=cols.get("apex"),
                repair_apex=False,
            )
        )

    if "identity" in cols:
        _check_subject_identities(sheet, cols["identity"], subjects, identities, first_rows)
    else:
        persons = read_subjects_json(sheet.file.parent / SUBJECTS_JSON)
        if persons is not None:
            unlisted = sorted({s for s in subjects.values() if s not in persons})
            if unlisted:
                log.warning(
                    "%s lists no subject(s) %s: each is taken as its own identity",
                    sheet.file.parent / SUBJECTS_JSON,
                    ", ".join(unlisted),
                )
            identities = {v: persons[s] for v, s in subjects.items() if s in persons}
    videos = []
    for video, video_rows in rows.items():
        frames_dir = None
        if root is not None:
            frames_dir = Path(root) / video
            if not frames_dir.exists():
                raise FramesNotFound(video, frames_dir, "no such folder or file under the dataset root")
        videos.append(
            build_video(
                video,
                subjects[video],
                rates.get(video, fps),
                video_rows,
                repairs,
                frames_dir=frames_dir,
                first_frame=first_frame,
                numbering_from_files=False,
                identity=identities.get(video),
            )
        )
    if not videos:
        raise AnnotationError(sheet.file, "has a header but no rows")
    distinct = {v.fps for v in videos}
    dataset = Dataset(
        name, distinct.pop() if len(distinct) == 1 else fps, tuple(videos), tuple(repairs.items), sheet.file
    )
    log.info(
        "loaded %s: %d videos, %d expressions",
        sheet.file,
        len(videos),
        sum(len(v.expressions) for v in videos),
    )
    return dataset


def _check_subject_identities(
    sheet: Sheet,
    col: Col,
    subjects: dict[str, str],
    identities: dict[str, str],
    first_rows: dict[str, int],
) -> None:
    """Every video of a subject must have one identity (given, or the subject where none is).

    Raises:
        AnnotationError: a subject whose videos have different identities, at the first row of
            the video that disagrees.
    """
    seen: dict[str, tuple[str, str]] = {}  # subject -> (identity, the video that set it)
    for video, subject in subjects.items():
        identity = identities.get(video, subject)
        first = seen.setdefault(subject, (identity, video))
        if first[0] != identity:
            raise sheet.error(
                f"subject {subject!r} has identity {identity!r} in video {video!r} but {first[0]!r} in "
                f"video {first[1]!r} (an empty identity is the subject); a subject is one person",
                row=first_rows[video],
                col=col,
            )


def read_subjects_json(path: Path) -> dict[str, str] | None:
    """Subject -> identity from a synthetic dataset's ``subjects.json``, or None without one.

    Accepts what ``mespot synth`` writes (a list of subject entries ``{"name": ..., "base": ...}``),
    also wrapped as ``{"subjects": [...]}`` or keyed by subject name. An entry's identity is its
    ``person`` when given, else its ``base`` (the base photo's name).

    Raises:
        AnnotationError: the file is not JSON, or an entry has no name or neither person nor base.
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(path, f"cannot be read as JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("subjects"), list | dict):
        data = data["subjects"]
    if isinstance(data, dict):
        entries = [{"name": k, **v} if isinstance(v, dict) else v for k, v in data.items()]
    elif isinstance(data, list):
        entries = data
    else:
        raise AnnotationError(path, f"must hold a list of subjects, not {type(data).__name__}")
    out: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("name") in (None, ""):
            raise AnnotationError(path, f"subject entry {i + 1} has no 'name'")
        name = str(entry["name"]).strip()
        person = next(
            (str(entry[k]).strip() for k in ("person", "base") if entry.get(k) not in (None, "")), None
        )
        if person is None:
            raise AnnotationError(path, f"subject {name!r} has neither 'person' nor 'base'")
        if out.setdefault(name, person) != person:
            raise AnnotationError(path, f"subject {name!r} is listed twice, as {out[name]!r} and {person!r}")
    log.info("%s: %d subjects of %d identities", path, len(out), len(set(out.values())))
    return out
