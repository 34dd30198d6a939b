"""Flow estimators by name and the incremental skip-k stage, on real face crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.errors import ConfigError
from stream.flow import FLOWS, MultiScaleFlow, SkipKFlow, compose_flows


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
    assert {"dis", "dis-lean", "farneback", "tvl1"} <= set(FLOWS.names())
    with pytest.raises(ConfigError, match="unknown optical flow 'lk'"):
        FLOWS.get("lk")
    with pytest.raises(ValueError, match="already registered"):
        FLOWS.register("dis")(object)


@pytest.mark.parametrize("name,bound", [("dis", 0.12), ("dis-lean", 0.12), ("farneback", 0.12)])
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


def test_lean_dis_is_medium_with_sparser_patches_and_fewer_iterations(crops: list[np.ndarray]) -> None:
    lean, medium = FLOWS.build("dis-lean"), FLOWS.build("dis")
    assert (lean._dis.getFinestScale(), lean._dis.getPatchSize()) == (
        medium._dis.getFinestScale(),
        medium._dis.getPatchSize(),
    )
    assert lean._dis.getPatchStride() > medium._dis.getPatchStride()
    assert lean._dis.getGradientDescentIterations() < medium._dis.getGradientDescentIterations()
    # its fields differ from medium's by a fraction of the motion, not by a different answer
    prev, nxt, true = bump_pair(crops[0], 1.5)
    inside = np.hypot(*true.transpose(2, 0, 1)) > 0.5
    gap = np.hypot(*(lean(prev, nxt) - medium(prev, nxt)).transpose(2, 0, 1))[inside].mean()
    assert gap < 0.2 * np.hypot(*true.transpose(2, 0, 1))[inside].mean(), gap
    with pytest.raises(ConfigError, match="dis preset='slow'"):
        FLOWS.build("dis", preset="slow")


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


def test_multi_scale_pairs_warm_starts_and_reset(crops: list[np.ndarray]) -> None:
    """Per frame one field per scale, from the crop k back, each warm-started from its own scale."""
    calls: list[tuple[int, int, int | None]] = []
    ids = {id(c): i for i, c in enumerate(crops)}
    fields: dict[int, tuple[int, int]] = {}

    class Recorder:
        def __call__(self, prev, nxt, init=None):
            calls.append((ids[id(prev)], ids[id(nxt)], None if init is None else fields[id(init)]))
            out = np.zeros((*prev.shape, 2), np.float32)
            fields[id(out)] = (ids[id(prev)], ids[id(nxt)])
            return out

    multi = MultiScaleFlow(Recorder(), (2, 4))
    outs = [multi.push(c) for c in crops[:6]]
    assert [[o is not None for o in per] for per in outs] == [
        [False, False],
        [False, False],
        [True, False],
        [True, False],
        [True, True],
        [True, True],
    ]
    assert calls == [
        (0, 2, None),
        (1, 3, (0, 2)),
        (2, 4, (1, 3)),
        (0, 4, None),
        (3, 5, (2, 4)),
        (1, 5, (0, 4)),
    ]
    multi.reset()
    assert multi.push(crops[6]) == [None, None]
    # the same fields as one SkipKFlow per scale
    dis = FLOWS.build("dis")
    multi, singles = MultiScaleFlow(dis, (1, 3)), [SkipKFlow(dis, 1), SkipKFlow(dis, 3)]
    for c in crops[:8]:
        got, want = multi.push(c), [s.push(c) for s in singles]
        for g, w in zip(got, want, strict=True):
            assert (g is None and w is None) or np.array_equal(g, w)
    for bad in [(), (3, 2), (0, 2), (2, 2)]:
        with pytest.raises(ConfigError, match="flow scales"):
            MultiScaleFlow(Recorder(), bad)


def test_compose_flows_chains_translations_and_a_bump() -> None:
    a = np.zeros((32, 32, 2), np.float32)
    a[..., 0], a[..., 1] = 0.5, -0.25
    b = np.zeros((32, 32, 2), np.float32)
    b[..., 0], b[..., 1] = 0.25, 1.0
    np.testing.assert_allclose(compose_flows([a, b]), a + b, atol=1e-6)
    # B is sampled where A moved each point: a field that varies in x, after a shift of 2 px in x
    ramp = np.zeros((32, 32, 2), np.float32)
    ramp[..., 0] = np.arange(32, dtype=np.float32)[None, :] * 0.01
    shift = np.zeros((32, 32, 2), np.float32)
    shift[..., 0] = 2.0
    chained = compose_flows([shift, ramp])
    np.testing.assert_allclose(
        chained[:, :10, 0], np.broadcast_to(2.0 + (np.arange(10) + 2.0) * 0.01, (32, 10)), atol=1e-3
    )
    # the first field is not modified
    assert np.all(shift[..., 0] == 2.0)


def test_a_composed_scale_is_the_chain_of_the_shortest_scales_fields(crops: list[np.ndarray]) -> None:
    """With compose, k = 2 k0 is chained from the k0 fields at t - k0 and t; the shortest scale is
    estimated exactly as without it, and the scales appear on the same frames."""
    plain = MultiScaleFlow(FLOWS.build("dis"), (2, 4))
    chained = MultiScaleFlow(FLOWS.build("dis"), (2, 4), compose=True)
    outs_plain = [plain.push(c) for c in crops[:9]]
    outs_chained = [chained.push(c) for c in crops[:9]]
    assert [[o is None for o in per] for per in outs_plain] == [
        [o is None for o in per] for per in outs_chained
    ]
    for t in range(9):
        if outs_plain[t][0] is not None:
            np.testing.assert_array_equal(outs_plain[t][0], outs_chained[t][0])
        if outs_chained[t][1] is not None:
            expected = compose_flows([outs_chained[t - 2][0], outs_chained[t][0]])
            np.testing.assert_array_equal(outs_chained[t][1], expected)
    chained.reset()
    assert [chained.push(c) for c in crops[:4]][-1][1] is None  # history is forgotten


def test_composed_flow_recovers_a_known_motion_as_well_as_estimating_it(crops: list[np.ndarray]) -> None:
    """A bump of 0.5 px per step over two steps: the chain of the two one-step fields is as close
    to the true 1 px field as DIS estimating it in one go."""
    img0 = crops[0]
    _, img1, _ = bump_pair(img0, 0.5)
    _, img2, true2 = bump_pair(img0, 1.0)
    dis = FLOWS.build("dis")
    direct = dis(img0, img2)
    chained = compose_flows([dis(img0, img1), dis(img1, img2)])
    inside = np.hypot(*true2.transpose(2, 0, 1)) > 0.2
    err_direct = np.hypot(*(direct - true2).transpose(2, 0, 1))[inside].mean()
    err_chained = np.hypot(*(chained - true2).transpose(2, 0, 1))[inside].mean()
    assert err_chained < max(0.12, 1.5 * err_direct), (err_chained, err_direct)
