"""Tabular annotations: spreadsheets and CSV files read with their cell coordinates, and the
helpers every dataset loader shares (typed cell parsing, header lookup, one row-to-interval rule,
logged repairs, frames on disk). The layouts themselves are in `engine.data.generic` (the generic
CSV), `casme2`, `sammlv` and `casme3`.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from engine.data.errors import AnnotationError, AnnotationNotFound
from engine.data.records import Blink, Repair, VideoRecord, scan_frames
from stream.intervals import ExpressionType, Interval

log = logging.getLogger(__name__)

_XLSX_MAGIC = b"PK\x03\x04"
_XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


# -- sheets ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sheet:
    """One table of cells as read from a worksheet or a CSV file.

    Attributes:
        file: the file it came from.
        name: the worksheet name, or None for a CSV file.
        rows: cell values by row (None for empty cells), ragged rows allowed.
        row_numbers: the 1-based row (spreadsheet) or line (CSV) number of each row, as a user
            opening the file sees it.
    """

    file: Path
    name: str | None
    rows: tuple[tuple[object, ...], ...]
    row_numbers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.row_numbers:
            object.__setattr__(self, "row_numbers", tuple(range(1, len(self.rows) + 1)))

    def cell(self, row: int, col: int) -> object:
        """The value at 0-based (row, col); None when empty or outside the row."""
        cells = self.rows[row]
        if col >= len(cells):
            return None
        value = cells[col]
        return None if is_blank(value) else value

    def row_is_blank(self, row: int) -> bool:
        return all(is_blank(v) for v in self.rows[row])

    def error(
        self,
        problem: str,
        *,
        row: int | None = None,
        col: Col | None = None,
    ) -> AnnotationError:
        """An AnnotationError located at a 0-based row index and a column."""
        return AnnotationError(
            self.file,
            problem,
            sheet=self.name,
            row=None if row is None else self.row_numbers[row],
            column=None if col is None else col.name,
            column_index=None if col is None else col.index,
        )


class Col(NamedTuple):
    """A column: its name (header text or the layout's name for it) and 0-based index."""

    name: str
    index: int


@dataclass(frozen=True)
class Workbook:
    """The sheets of a spreadsheet file, in workbook order."""

    file: Path
    sheets: tuple[Sheet, ...]

    def names(self) -> list[str]:
        return [s.name or "" for s in self.sheets]

    def sheet(self, name: str) -> Sheet:
        """A sheet by name (case and surrounding spaces ignored).

        Raises:
            AnnotationError: no sheet of that name; the message lists the sheets there are.
        """
        want = name.strip().lower()
        for s in self.sheets:
            if (s.name or "").strip().lower() == want:
                return s
        raise AnnotationError(
            self.file, f"no sheet {name!r}; the workbook has: {', '.join(repr(n) for n in self.names())}"
        )

    def sheet_at(self, index: int, what: str) -> Sheet:
        """The sheet at a 0-based position; `what` says what the layout expects there.

        Raises:
            AnnotationError: the workbook has fewer sheets.
        """
        if index >= len(self.sheets):
            raise AnnotationError(
                self.file,
                f"expected {what} as sheet {index + 1}, but the workbook has {len(self.sheets)} sheet(s): "
                f"{', '.join(repr(n) for n in self.names())}",
            )
        return self.sheets[index]


def _existing_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise AnnotationNotFound(p, "no such file")
    if not p.is_file():
        raise AnnotationError(p, "is not a file")
    return p


def read_workbook(path: str | Path) -> Workbook:
    """Read every sheet of an .xlsx (openpyxl) or .xls (xlrd) workbook.

    The format is taken from the file's first bytes, not its suffix, so a renamed file still
    reads. Formulas give their cached values.

    Raises:
        AnnotationNotFound: no such file.
        AnnotationError: not a workbook, or it cannot be parsed.
    """
    p = _existing_file(path)
    with p.open("rb") as f:
        magic = f.read(8)
    if magic.startswith(_XLSX_MAGIC):
        return _read_xlsx(p)
    if magic == _XLS_MAGIC:
        return _read_xls(p)
    raise AnnotationError(p, "is not an Excel workbook (.xlsx or .xls)")


def _read_xlsx(p: Path) -> Workbook:
    import openpyxl  # lazy: only the spreadsheet loaders need it

    try:
        wb = openpyxl.load_workbook(p, read_only=False, data_only=True)
    except Exception as exc:  # openpyxl raises several unrelated types for damaged files
        raise AnnotationError(p, f"cannot be read as .xlsx: {exc}") from exc
    try:
        sheets = []
        for ws in wb.worksheets:
            rows = tuple(
                tuple(r)
                for r in ws.iter_rows(min_row=1, max_row=ws.max_row, max_col=ws.max_column, values_only=True)
            )
            sheets.append(Sheet(p, ws.title, rows))
    finally:
        wb.close()
    return Workbook(p, tuple(sheets))


def _read_xls(p: Path) -> Workbook:
    import xlrd  # lazy: only the CAS(ME)^3 loader needs it

    try:
        book = xlrd.open_workbook(str(p))
    except Exception as exc:  # xlrd.XLRDError, struct errors for truncated files
        raise AnnotationError(p, f"cannot be read as .xls: {exc}") from exc
    sheets = []
    for sh in book.sheets():
        rows = []
        for r in range(sh.nrows):
            cells: list[object] = []
            for ctype, value in zip(sh.row_types(r), sh.row_values(r), strict=True):
                if ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                    cells.append(None)
                elif ctype == xlrd.XL_CELL_ERROR:
                    cells.append(xlrd.error_text_from_code.get(value, "#ERROR"))
                elif ctype == xlrd.XL_CELL_BOOLEAN:
                    cells.append(bool(value))
                else:
                    cells.append(value)
            rows.append(tuple(cells))
        sheets.append(Sheet(p, sh.name, tuple(rows)))
    book.release_resources()
    return Workbook(p, tuple(sheets))


def read_csv(path: str | Path) -> Sheet:
    """Read a CSV file (comma, semicolon or tab separated, UTF-8 with or without BOM).

    Raises:
        AnnotationNotFound: no such file.
        AnnotationError: the file is empty or not text.
    """
    p = _existing_file(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(p, f"is not UTF-8 text: {exc}") from exc
    lines = text.splitlines()
    header = next((ln for ln in lines if ln.strip()), None)
    if header is None:
        raise AnnotationError(p, "is empty")
    # The separator that splits the header into the most fields (Excel writes ';' in some locales).
    delimiter = max(",;\t", key=lambda d: len(next(csv.reader([header], delimiter=d))))
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    rows: list[tuple[object, ...]] = []
    numbers: list[int] = []
    last_line = 0
    for record in reader:
        numbers.append(last_line + 1)  # a quoted field may span lines: number the record by its start
        last_line = reader.line_num
        rows.append(tuple(v if v.strip() else None for v in record))
    return Sheet(p, None, tuple(rows), tuple(numbers))


# -- cells ----------------------------------------------------------------------------------------


def is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def number(sheet: Sheet, row: int, col: Col) -> float | None:
    """A numeric cell (numbers stored as text are accepted); None when empty.

    Raises:
        AnnotationError: the cell holds something that is not a finite number.
    """
    value = sheet.cell(row, col.index)
    if value is None:
        return None
    if isinstance(value, bool):
        raise sheet.error(f"{value!r} is not a number", row=row, col=col)
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            raise sheet.error(f"{value.strip()!r} is not a number", row=row, col=col) from None
    else:
        raise sheet.error(f"{value!r} ({type(value).__name__}) is not a number", row=row, col=col)
    if not math.isfinite(x):
        raise sheet.error(f"{value!r} is not a finite number", row=row, col=col)
    return x


def frame(sheet: Sheet, row: int, col: Col, *, required: bool = True) -> int | None:
    """A whole frame number; None when empty and not required.

    Raises:
        AnnotationError: empty but required, not a number, or not whole.
    """
    x = number(sheet, row, col)
    if x is None:
        if required:
            raise sheet.error("is empty; a frame number is required", row=row, col=col)
        return None
    if x != int(x):
        raise sheet.error(f"{x:g} is not a whole frame number", row=row, col=col)
    return int(x)


def text(sheet: Sheet, row: int, col: Col, *, required: bool = True) -> str | None:
    """A cell as stripped text (whole numbers without '.0'); None when empty and not required."""
    value = sheet.cell(row, col.index)
    if value is None:
        if required:
            raise sheet.error("is empty", row=row, col=col)
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _norm_label(value: str) -> str:
    return re.sub(r"\s+", "", value.strip().lower())


def expression_type(sheet: Sheet, row: int, col: Col, accepted: dict[str, ExpressionType]) -> ExpressionType:
    """The expression type from a label cell; `accepted` maps labels (spaces ignored) to types.

    Raises:
        AnnotationError: empty or an unknown label (the message lists the accepted ones).
    """
    value = text(sheet, row, col)
    assert value is not None
    kind = accepted.get(_norm_label(value))
    if kind is None:
        raise sheet.error(
            f"unknown expression type {value!r}; expected one of: {', '.join(sorted(accepted))}",
            row=row,
            col=col,
        )
    return kind


def header_key(value: object) -> str:
    """A header cell reduced to lowercase letters and digits ('Expression type' -> 'expressiontype')."""
    return re.sub(r"[^0-9a-z]", "", str(value).lower()) if value is not None else ""


def find_header(
    sheet: Sheet,
    columns: dict[str, tuple[str, ...]],
    required: Iterable[str],
    *,
    max_rows: int = 30,
) -> tuple[int, dict[str, Col]]:
    """Locate the header row and the columns of a sheet.

    Args:
        sheet: the sheet.
        columns: column key -> accepted header spellings (compared by `header_key`).
        required: keys that must be present.
        max_rows: how many leading rows to search (SAMM-LV has nine preamble rows).

    Returns:
        (0-based header row index, key -> Col) for the columns found.

    Raises:
        AnnotationError: no header row, or a required column is missing (naming it).
    """
    required = list(required)
    wanted = {key: {header_key(a) for a in aliases} for key, aliases in columns.items()}
    for r in range(min(max_rows, len(sheet.rows))):
        found: dict[str, Col] = {}
        for c, value in enumerate(sheet.rows[r]):
            k = header_key(value)
            for key, spellings in wanted.items():
                if key not in found and k in spellings:
                    found[key] = Col(str(value).strip(), c)
        if sum(1 for key in required if key in found) >= min(2, len(required)):
            missing = [key for key in required if key not in found]
            if missing:
                names = ", ".join(repr(columns[m][0]) for m in missing)
                raise sheet.error(f"header row lacks the column(s) {names}", row=r)
            return r, found
    names = ", ".join(repr(columns[k][0]) for k in required)
    raise AnnotationError(
        sheet.file,
        f"no header row with the columns {names} in the first {max_rows} rows",
        sheet=sheet.name,
    )


# -- repairs and videos ---------------------------------------------------------------------------


@dataclass
class RepairLog:
    """Collects the repairs of one load; each is logged as a warning when it happens."""

    logger: logging.Logger = field(default=log)
    items: list[Repair] = field(default_factory=list)

    def add(self, sheet: Sheet, row: int | None, column: str, video: str, problem: str, action: str) -> None:
        item = Repair(
            file=str(sheet.file),
            sheet=sheet.name,
            row=None if row is None else sheet.row_numbers[row],
            column=column,
            video=video,
            problem=problem,
            action=action,
        )
        self.items.append(item)
        self.logger.warning("annotation repaired: %s", item)


@dataclass(frozen=True)
class Row:
    """An interval read from one annotation row, kept with its origin until its video is built."""

    interval: Interval
    sheet: Sheet
    row: int


def make_interval(
    sheet: Sheet,
    row: int,
    video: str,
    onset: int,
    apex: int | None,
    offset: int,
    kind: ExpressionType,
    repairs: RepairLog,
    *,
    onset_col: Col,
    apex_col: Col | None,
    repair_apex: bool = True,
) -> Row:
    """Validate one interval.

    An onset after the offset is an error. An apex outside [onset, offset] is discarded (set to
    unknown) with a logged repair when `repair_apex`, else an error: the extent is what scoring
    uses, the apex is auxiliary.

    Raises:
        AnnotationError: onset after offset, or (repair_apex=False) apex outside the interval.
    """
    if offset < onset:
        raise sheet.error(f"onset {onset} is after the offset {offset}", row=row, col=onset_col)
    if apex is not None and not onset <= apex <= offset:
        # a negative apex is the datasets' way of saying "not annotated" (SAMM-LV's -1)
        problem = (
            f"apex {apex} (not annotated)" if apex < 0 else f"apex {apex} lies outside [{onset}, {offset}]"
        )
        if not repair_apex:
            raise sheet.error(problem, row=row, col=apex_col)
        repairs.add(sheet, row, apex_col.name if apex_col else "apex", video, problem, "apex set to unknown")
        apex = None
    return Row(Interval(onset, offset, kind, apex), sheet, row)


def fit_to_frames(
    rows: Iterable[Row], video: str, first: int, last: int | None, repairs: RepairLog
) -> list[Interval]:
    """Clip intervals to the video's frames, logging each change.

    Frames before `first` or after `last` (when known) do not exist: an interval sticking out is
    cut at the video's edge; one wholly outside is dropped. Either is a logged repair.
    """
    out: list[Interval] = []
    for r in rows:
        iv = r.interval
        onset, offset, apex = iv.onset, iv.offset, iv.apex
        if offset < first or (last is not None and onset > last):
            span = f"[{first}, {last}]" if last is not None else f"from {first}"
            repairs.add(
                r.sheet,
                r.row,
                "onset/offset",
                video,
                f"interval [{onset}, {offset}] lies outside the frames {span}",
                "dropped",
            )
            continue
        if onset < first:
            repairs.add(
                r.sheet,
                r.row,
                "onset",
                video,
                f"onset {onset} is before the first frame {first}",
                f"onset set to {first}",
            )
            onset = first
        if last is not None and offset > last:
            repairs.add(
                r.sheet,
                r.row,
                "offset",
                video,
                f"offset {offset} is after the last frame {last}",
                f"offset set to {last}",
            )
            offset = last
        if apex is not None and not onset <= apex <= offset:
            apex = None  # the apex was cut away with the frames that do not exist
        out.append(Interval(onset, offset, iv.type, apex, iv.score))
    return out


def build_video(
    video: str,
    subject: str,
    fps: float,
    rows: Iterable[Row],
    repairs: RepairLog,
    *,
    frames_dir: Path | None,
    first_frame: int,
    numbering_from_files: bool = True,
    blinks: Iterable[Blink] = (),
    identity: str | None = None,
) -> VideoRecord:
    """A VideoRecord from its rows, with the frames on disk taken into account.

    Args:
        video, subject, fps: the record's identity and rate.
        rows: its intervals with their origins.
        repairs: where clipping repairs go.
        frames_dir: the frames folder (or video file), or None.
        first_frame: the layout's first frame number, used when the folder does not say.
        numbering_from_files: read first_frame and gaps from the image file names (dataset
            layouts), or keep `first_frame` and count images only (generic CSV: frames are
            positions).
        blinks: eye blinks of the video.
        identity: the real person (None: the subject).
    """
    n_frames: int | None = None
    runs = None
    if frames_dir is not None and frames_dir.is_dir():
        scan = scan_frames(frames_dir)
        n_frames = scan.n_frames
        if numbering_from_files and scan.first_frame is not None:
            first_frame, runs = scan.first_frame, scan.runs
    last = None
    if runs:
        last = runs[-1][1]
    elif n_frames:
        last = first_frame + n_frames - 1
    intervals = fit_to_frames(rows, video, first_frame, last, repairs)
    return VideoRecord(
        video=video,
        subject=subject,
        fps=fps,
        expressions=tuple(intervals),
        frames_dir=frames_dir,
        n_frames=n_frames,
        blinks=tuple(blinks),
        first_frame=first_frame,
        frame_runs=runs,
        identity=identity,
    )


def find_child(parent: Path, name: str) -> Path | None:
    """``parent / name`` if it exists, else the one entry whose name matches ignoring case."""
    exact = parent / name
    if exact.exists():
        return exact
    if not parent.is_dir():
        return None
    matches = [p for p in parent.iterdir() if p.name.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None
