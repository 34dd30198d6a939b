"""Flow estimators by name and the incremental skip-k stage, on real face crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.errors import ConfigError
from stream.flow import FLOWS, SkipKFlow


@pytest.fixture(scope="module")
def crops(face_frames: list[np.ndarray]) -> list[np.ndarray]:
    # a fixed window around the face, resized like the aligner's output
    return [
        cv2.resize(cv2.cvtColor(f[40:320, 180:460], cv2.COLOR_BGR2GRAY), (128, 128)) for f in face_frames[:12]
    ]


def bump_pair(img: np.ndarray, amp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """img and img deformed by a smooth local displacement (true flow returned)."""
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    g = np.exp(-((xx - 45) ** 2 + (yy - 95) ** 2) / (2 * 10**2))
    u, v = 0.8 * amp * g, -0.6 * amp * g
    nxt = cv2.remap(img.astype(np.float32), xx - u, yy - v, cv2.INTER_CUBIC)
    return img, np.clip(nxt, 0, 255).astype(np.uint8), np.dstack([u, v])


def test_registry_lists_the_estimators() -> None:
    assert {"dis", "farneback", "tvl1"} <= set(FLOWS.names())
    with pytest.raises(ConfigError, match="unknown optical flow 'lk'"):
        FLOWS.get("lk")
    with pytest.raises(ValueError, match="already registered"):
        FLOWS.register("dis")(object)


@pytest.mark.parametrize("name,bound", [("dis", 0.12), ("farneback", 0.12)])
def test_subpixel_local_motion_is_recovered(crops: list[np.ndarray], name: str, bound: float) -> None:
    est = FLOWS.build(name)
    prev, nxt, true = bump_pair(crops[0], 0.5)
    flow = est(prev, nxt)
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32
    inside = np.hypot(*true.transpose(2, 0, 1)) > 0.2
    epe = np.hypot(*(flow - true).transpose(2, 0, 1))[inside].mean()
    assert epe < bound, epe
    # with a warm start from the answer itself it stays as good
    warm = est(prev, nxt, true.astype(np.float32))
    assert np.hypot(*(warm - true).transpose(2, 0, 1))[inside].mean() < bound


def test_shape_mismatch_is_an_error(crops: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match="one size"):
        FLOWS.build("dis")(crops[0], crops[1][:64])


def test_skip_k_pairs_and_reset(crops: list[np.ndarray]) -> None:
    calls: list[tuple[int, int, bool]] = []
    ids = {id(c): i for i, c in enumerate(crops)}

    class Recorder:
        def __call__(self, prev, nxt, init=None):
            calls.append((ids[id(prev)], ids[id(nxt)], init is not None))
            return np.zeros((*prev.shape, 2), np.float32)

    skip = SkipKFlow(Recorder(), k=3)
    outs = [skip.push(c) for c in crops[:6]]
    assert [o is None for o in outs] == [True, True, True, False, False, False]
    assert calls == [(0, 3, False), (1, 4, True), (2, 5, True)]
    skip.reset()
    assert skip.push(crops[6]) is None
    with pytest.raises(ConfigError, match="skip k"):
        SkipKFlow(Recorder(), k=0)
