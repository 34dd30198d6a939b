"""Expression intervals: the one type ground truth, proposals, evaluation and events share.

It lives in stream/ (the lower layer) because synthetic ground truth and published events need it too.

Frames are counted inclusively in the video's own frame numbering (onset and offset both belong
to the interval), as the spotting datasets annotate them; seconds follow from the video's rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ExpressionType(StrEnum):
    ME = "me"  # micro-expression (<= 0.5 s)
    MAE = "mae"  # macro-expression (0.5 s to a few seconds)


# Durations in seconds (DESIGN: never in raw frames).
ME_MAX_SECONDS = 0.5
MAE_MAX_SECONDS = 4.0


@dataclass(frozen=True, slots=True)
class Interval:
    """An expression interval in frames, inclusive.

    Attributes:
        onset: first frame.
        offset: last frame (>= onset).
        type: ME or MaE.
        apex: apex frame if known (onset <= apex <= offset), else None.
        score: confidence (1.0 for ground truth).
    """

    onset: int
    offset: int
    type: ExpressionType
    apex: int | None = None
    score: float = 1.0

    def __post_init__(self) -> None:
        if self.offset < self.onset:
            raise ValueError(f"interval offset {self.offset} is before its onset {self.onset}")
        if self.apex is not None and not self.onset <= self.apex <= self.offset:
            raise ValueError(f"apex {self.apex} lies outside [{self.onset}, {self.offset}]")

    @property
    def length(self) -> int:
        """Frames in the interval, both ends counted."""
        return self.offset - self.onset + 1

    def seconds(self, fps: float) -> float:
        return self.length / fps

    def iou(self, other: Interval) -> float:
        """Temporal IoU with frames counted inclusively."""
        inter = min(self.offset, other.offset) - max(self.onset, other.onset) + 1
        if inter <= 0:
            return 0.0
        return inter / (self.length + other.length - inter)
