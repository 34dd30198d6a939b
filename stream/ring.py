"""Fixed-size ring buffers and the assembly of frames into snippets.

Live streams run for hours: everything kept per frame or per snippet lives in preallocated
rings of fixed capacity, addressed by the absolute index of the item.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stream.errors import ConfigError
from stream.features import FrameFeatures


class Ring:
    """A preallocated ring of fixed-shape rows addressed by absolute index.

    Args:
        capacity: rows kept.
        shape: shape of one row.
        dtype: numpy dtype.
    """

    def __init__(self, capacity: int, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> None:
        if capacity < 1:
            raise ConfigError(f"ring capacity={capacity}: must be >= 1")
        self.capacity = capacity
        self._data = np.zeros((capacity, *shape), dtype=dtype)
        self.total = 0  # rows ever appended; the next row's absolute index

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    @property
    def first_index(self) -> int:
        """Absolute index of the oldest row still held."""
        return self.total - len(self)

    def append(self, row: np.ndarray) -> int:
        """Store a row; returns its absolute index."""
        self._data[self.total % self.capacity] = row
        self.total += 1
        return self.total - 1

    def __getitem__(self, index: int) -> np.ndarray:
        if not self.first_index <= index < self.total:
            raise IndexError(f"ring index {index} outside the held range [{self.first_index}, {self.total})")
        return self._data[index % self.capacity]

    def last(self, n: int) -> np.ndarray:
        """(min(n, len), *shape) copy of the newest rows, oldest first."""
        n = min(n, len(self))
        idx = np.arange(self.total - n, self.total) % self.capacity
        return self._data[idx]


@dataclass(frozen=True, slots=True)
class Snippet:
    """One cell of the snippet grid, with the features of the frames that end with it.

    Attributes:
        index: snippet number: the grid cell of canonical frames [j * hop, (j + 1) * hop).
        start_s: media time of the cell's first frame.
        end_s: media time just after the cell's last frame (start_s + hop / fps).
        motion: (3 * Dm,) float32: mean, max and min of each motion feature over the snippet's
            window (the `frames` frames ending with the cell's last); zeros when not valid.
        geometry: (3 * Dg,) float32: likewise for geometry / appearance.
        frames: frames in the window (window >= hop; equal for back-to-back snippets).
        valid_frames: frames of the window that had features (face present, flow warmed up).
        capture_ns: capture time of the newest frame seen for the snippet (latency reference).
    """

    index: int
    start_s: float
    end_s: float
    motion: np.ndarray = field(repr=False)
    geometry: np.ndarray = field(repr=False)
    frames: int
    valid_frames: int
    capture_ns: int

    @property
    def valid(self) -> bool:
        """Only snippets whose every frame had features count; the others are reported gaps."""
        return self.valid_frames == self.frames


class SnippetRing:
    """The most recent snippets as fixed-size rings: the window a causal scorer reads.

    Args:
        capacity: snippets kept (256 at a 4-frame hop and 30 fps is about 34 s).
        motion_dim: snippet motion dimension (3 * Dm).
        geometry_dim: snippet geometry dimension (3 * Dg).
    """

    def __init__(self, capacity: int, motion_dim: int, geometry_dim: int) -> None:
        self.motion = Ring(capacity, (motion_dim,))
        self.geometry = Ring(capacity, (geometry_dim,))
        self.valid = Ring(capacity, (), dtype=bool)
        self.start_s = Ring(capacity, (), dtype=np.float64)
        self.end_s = Ring(capacity, (), dtype=np.float64)
        self.capture_ns = Ring(capacity, (), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def total(self) -> int:
        """Snippets ever appended (the next snippet's index)."""
        return self.valid.total

    def append(self, snippet: Snippet) -> None:
        if snippet.index != self.total:
            raise ValueError(
                f"snippet {snippet.index} appended after {self.total - 1}: snippets must be contiguous"
            )
        self.motion.append(snippet.motion)
        self.geometry.append(snippet.geometry)
        self.valid.append(snippet.valid)
        self.start_s.append(snippet.start_s)
        self.end_s.append(snippet.end_s)
        self.capture_ns.append(snippet.capture_ns)

    def window(self, n: int) -> dict[str, np.ndarray]:
        """The newest min(n, len) snippets, oldest first: motion (n, Dm), geometry (n, Dg), valid (n,),
        start_s (n,), end_s (n,), capture_ns (n,), and first_index (the absolute index of the
        first row)."""
        m = self.motion.last(n)
        return {
            "motion": m,
            "geometry": self.geometry.last(n),
            "valid": self.valid.last(n),
            "start_s": self.start_s.last(n),
            "end_s": self.end_s.last(n),
            "capture_ns": self.capture_ns.last(n),
            "first_index": np.int64(self.total - len(m)),
        }


def summarise(block: np.ndarray) -> np.ndarray:
    """(g, D) per-frame features -> (3D,) mean, max and min over time."""
    return np.concatenate([block.mean(0), block.max(0), block.min(0)]).astype(np.float32)


class SnippetAssembler:
    """Groups per-frame features into snippets on a hop grid of the canonical clock.

    Snippet j is closed when frame (j + 1) * hop - 1 arrives (or a later one, after a hole) and
    summarises the `window` frames ending there, so it depends on no frame after its cell. Frames
    arrive in increasing index order, possibly with holes (time gaps); every snippet index is
    emitted exactly once, in order, so the snippet axis stays continuous in time. A snippet is
    valid only when every frame of its window had features; windows reaching before frame 0 or
    into a hole are not.

    Args:
        hop: frames per grid cell.
        window: frames each snippet summarises (>= hop).
        fps: canonical rate.
        motion_dim: per-frame motion dimension Dm.
        geometry_dim: per-frame geometry dimension Dg.
    """

    def __init__(self, hop: int, window: int, fps: float, motion_dim: int, geometry_dim: int) -> None:
        if not 1 <= hop <= window:
            raise ConfigError(f"snippet assembler: need 1 <= hop ({hop}) <= window ({window}) frames")
        self.hop = hop
        self.window = window
        self.fps = fps
        # frame f lives in slot f % window; `_frame` says which frame a slot holds (-1: none)
        self._motion = np.zeros((window, motion_dim), np.float32)
        self._geometry = np.zeros((window, geometry_dim), np.float32)
        self._frame = np.full(window, -1, np.int64)
        self._have = np.zeros(window, bool)
        self._current = 0  # next snippet to close
        self._capture_ns = 0

    def push(self, feats: FrameFeatures, capture_ns: int) -> list[Snippet]:
        """Add frame features; returns the snippets this frame completed (possibly several)."""
        out: list[Snippet] = []
        j = feats.index // self.hop
        if j < self._current:
            raise ValueError(f"frame {feats.index} arrived after snippet {self._current} began")
        while j > self._current:  # a hole: close the snippet being filled and any skipped ones
            out.append(self._close())
        slot = feats.index % self.window
        self._frame[slot] = feats.index
        self._have[slot] = feats.valid
        if feats.valid:
            self._motion[slot] = feats.motion
            self._geometry[slot] = feats.geometry
        self._capture_ns = capture_ns
        if (feats.index + 1) % self.hop == 0:
            out.append(self._close())
        return out

    def _close(self) -> Snippet:
        j = self._current
        end = (j + 1) * self.hop  # one past the window's last frame
        frames = np.arange(end - self.window, end)  # (window,) oldest first
        slots = frames % self.window
        present = (frames >= 0) & (self._frame[slots] == frames) & self._have[slots]
        n = int(present.sum())
        if n == self.window:
            motion, geometry = summarise(self._motion[slots]), summarise(self._geometry[slots])
        else:
            motion = np.zeros(3 * self._motion.shape[1], np.float32)
            geometry = np.zeros(3 * self._geometry.shape[1], np.float32)
        snippet = Snippet(
            j,
            j * self.hop / self.fps,
            end / self.fps,
            motion,
            geometry,
            self.window,
            n,
            self._capture_ns,
        )
        self._current += 1
        return snippet
