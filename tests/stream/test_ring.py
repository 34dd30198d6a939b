"""Ring buffers and snippet assembly."""

from __future__ import annotations

import numpy as np
import pytest

from stream.features import FrameFeatures
from stream.ring import Ring, SnippetAssembler


def test_ring_keeps_the_newest_rows_by_absolute_index() -> None:
    ring = Ring(4, (2,))
    for i in range(10):
        assert ring.append(np.array([i, -i])) == i
    assert len(ring) == 4 and ring.first_index == 6 and ring.total == 10
    np.testing.assert_array_equal(ring.last(3)[:, 0], [7, 8, 9])
    np.testing.assert_array_equal(ring[6], [6, -6])
    with pytest.raises(IndexError, match="outside the held range"):
        ring[5]
    assert ring.last(100).shape == (4, 2)


def ff(i: int, value: float | None) -> FrameFeatures:
    if value is None:
        return FrameFeatures(i, None, None)
    return FrameFeatures(i, np.full(2, value, np.float32), np.full(3, -value, np.float32))


def test_snippets_summarise_mean_max_min() -> None:
    asm = SnippetAssembler(4, 4, 30.0, 2, 3)
    out = []
    for i in range(8):
        out += asm.push(ff(i, float(i)), capture_ns=i)
    assert [s.index for s in out] == [0, 1]
    s0 = out[0]
    assert s0.valid and s0.valid_frames == 4 and s0.capture_ns == 3
    np.testing.assert_allclose(s0.motion, [1.5, 1.5, 3, 3, 0, 0])
    np.testing.assert_allclose(s0.geometry[:3], [-1.5] * 3)
    assert s0.start_s == 0 and s0.end_s == pytest.approx(4 / 30)


def test_a_frame_without_features_invalidates_its_snippet() -> None:
    asm = SnippetAssembler(4, 4, 30.0, 2, 3)
    out = []
    for i in range(8):
        out += asm.push(ff(i, None if i == 5 else 1.0), capture_ns=i)
    assert [s.valid for s in out] == [True, False]
    assert out[1].valid_frames == 3
    assert not out[1].motion.any()  # zeros, never partial garbage


def test_holes_emit_every_snippet_once_in_order() -> None:
    asm = SnippetAssembler(4, 4, 30.0, 2, 3)
    out = []
    for i in [0, 1, 2, 3, 4, 17, 18, 19]:
        out += asm.push(ff(i, 1.0), capture_ns=i)
    assert [s.index for s in out] == [0, 1, 2, 3, 4]
    assert [s.valid for s in out] == [True, False, False, False, False]
    with pytest.raises(ValueError, match="arrived after"):
        asm.push(ff(3, 1.0), 0)


def test_snippet_ring_refuses_a_hole() -> None:
    from stream.ring import SnippetRing

    asm = SnippetAssembler(4, 4, 30.0, 2, 3)
    ring = SnippetRing(8, 6, 9)
    snippets = [s for i in range(12) for s in asm.push(ff(i, 1.0), i)]
    for s in snippets[:2]:
        ring.append(s)
    with pytest.raises(ValueError, match="contiguous"):
        ring.append(snippets[0])


def test_overlapping_windows_end_with_their_cell_and_never_look_ahead() -> None:
    # hop 4, window 8: snippet j summarises frames [4j - 4, 4j + 4) and closes on frame 4j + 3
    asm = SnippetAssembler(4, 8, 30.0, 2, 3)
    out: list = []
    closed_on: dict[int, int] = {}
    for i in range(16):
        for s in asm.push(ff(i, float(i)), capture_ns=i):
            closed_on[s.index] = i
            out.append(s)
    assert [s.index for s in out] == [0, 1, 2, 3]
    assert closed_on == {0: 3, 1: 7, 2: 11, 3: 15}  # the cell's last frame, no later
    assert not out[0].valid and out[0].valid_frames == 4  # its window reaches before frame 0
    s2 = out[2]  # frames 4..11
    assert s2.valid and s2.frames == 8
    np.testing.assert_allclose(s2.motion, [7.5, 7.5, 11, 11, 4, 4])
    assert s2.start_s == pytest.approx(8 / 30) and s2.end_s == pytest.approx(12 / 30)


def test_overlapping_windows_across_a_hole_are_invalid_until_refilled() -> None:
    asm = SnippetAssembler(2, 6, 30.0, 2, 3)
    frames = [*range(10), *range(14, 30)]  # frames 10-13 missing
    out = [s for i in frames for s in asm.push(ff(i, 1.0), i)]
    assert [s.index for s in out] == list(range(15))
    # snippet j covers the window [2j - 4, 2j + 2): valid from j = 2 until the hole, then again
    # once six frames after it are in (j with 2j - 4 >= 14)
    assert [j for j, s in enumerate(out) if s.valid] == [2, 3, 4, 9, 10, 11, 12, 13, 14]


def test_assembler_refuses_a_window_shorter_than_its_hop() -> None:
    from stream.errors import ConfigError

    with pytest.raises(ConfigError, match="hop"):
        SnippetAssembler(8, 4, 30.0, 2, 3)
