"""Typed errors of the dataset loaders. Every message names the file and, where one exists, the
sheet, the row (numbered as a spreadsheet or text editor shows it) and the column."""

from __future__ import annotations

from pathlib import Path

from stream.errors import MespotError


def column_letter(index: int) -> str:
    """Spreadsheet letters of a 0-based column index (0 -> A, 25 -> Z, 26 -> AA)."""
    if index < 0:
        raise ValueError(f"column index {index} is negative")
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


class AnnotationError(MespotError, ValueError):
    """An annotation file is missing, malformed or holds a value mespot cannot repair.

    Attributes:
        file: the annotation file.
        problem: what is wrong, in words.
        sheet: the worksheet name (None for CSV files and file-level problems).
        row: the 1-based row as a spreadsheet shows it (CSV: the line number, header = 1), or None.
        column: the column as the file names it (header text or the layout's name), or None.
        column_index: the 0-based column index, or None.
    """

    def __init__(
        self,
        file: str | Path,
        problem: str,
        *,
        sheet: str | None = None,
        row: int | None = None,
        column: str | None = None,
        column_index: int | None = None,
    ) -> None:
        self.file = Path(file)
        self.problem = problem
        self.sheet = sheet
        self.row = row
        self.column = column
        self.column_index = column_index
        super().__init__(f"{self.location()}: {problem}")

    def location(self) -> str:
        """'file, sheet 'S', row R, column L (name)' with the parts that are known."""
        parts = [str(self.file)]
        if self.sheet is not None:
            parts.append(f"sheet {self.sheet!r}")
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None or self.column_index is not None:
            letter = column_letter(self.column_index) if self.column_index is not None else None
            if letter and self.column:
                parts.append(f"column {letter} ({self.column})")
            else:
                parts.append(f"column {letter or self.column}")
        return ", ".join(parts)


class AnnotationNotFound(AnnotationError, FileNotFoundError):
    """The annotation file does not exist."""


class FramesNotFound(MespotError, FileNotFoundError):
    """A dataset root was given but a video's frames are not where the layout puts them.

    Attributes:
        video: the video id from the annotations.
        path: the folder (or pattern) that was searched.
    """

    def __init__(self, video: str, path: str | Path, problem: str) -> None:
        self.video = video
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"video {video}: {path}: {problem}")
