"""The unit that flows through the pipeline: one image with its three clocks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

# The image files a frame folder may hold (the folder source, the dataset loaders); here, in a
# module without OpenCV, so that loading annotations does not import it.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


def frame_number(stem: str) -> int | None:
    """A frame image's number: the last integer in its file name stem (``img12`` -> 12,
    ``006_1_00012`` -> 12, ``frame12_l`` -> 12), or None without one. The folder source orders
    frames by it and the dataset loaders read a folder's numbering with it."""
    m = _LAST_INT.search(stem)
    return None if m is None else int(m.group(1))


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded image.

    Attributes:
        index: position in its stream. Sources number their own frames; after resampling it is
            the index on the canonical clock (media_time_s == index / fps).
        media_time_s: time of the image within the media, in seconds from the first frame.
        capture_ns: time.monotonic_ns() when the frame was read from its source (live latency
            is measured against it).
        image: (H, W, 3) uint8 BGR.
        source_index: index of the frame as the source delivered it, kept through resampling.
    """

    index: int
    media_time_s: float
    capture_ns: int
    image: np.ndarray = field(repr=False)
    source_index: int = -1


class SourceEventKind(StrEnum):
    DISCONNECTED = "disconnected"  # a live source stopped delivering (stall or error)
    RECONNECTED = "reconnected"  # frames flow again after a disconnection
    BAD_FRAME = "bad_frame"  # a frame could not be decoded and was skipped
    END = "end"  # a finite source has no more frames


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """Something that happened to the source, reported in-band with the frames.

    Attributes:
        kind: what happened.
        source: the source's name (path, URL, camera index).
        capture_ns: time.monotonic_ns() when it was noticed.
        detail: human-readable detail (error text, gap length, ...).
        gap_s: for RECONNECTED, seconds without frames.
    """

    kind: SourceEventKind
    source: str
    capture_ns: int
    detail: str = ""
    gap_s: float = 0.0


class StatusKind(StrEnum):
    FACE_FOUND = "face_found"
    FACE_LOST = "face_lost"
    TIME_GAP = "time_gap"  # canonical frames no source frame covered
    SOURCE = "source"  # a SourceEvent passed through (disconnect, reconnect, bad frame, end)


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """Something a subscriber or a log should know that is not a snippet.

    Attributes:
        kind: what happened.
        frame_index: canonical frame index it applies to (-1 when not tied to a frame).
        media_time_s: media time it applies to.
        capture_ns: monotonic capture time it was noticed at.
        detail: free text (for SOURCE: the SourceEvent kind and detail).
        source_event: the SourceEvent, for SOURCE.
    """

    kind: StatusKind
    frame_index: int
    media_time_s: float
    capture_ns: int
    detail: str = ""
    source_event: SourceEvent | None = None
