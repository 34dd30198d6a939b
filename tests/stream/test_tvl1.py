"""TorchTVL1 (stream/tvl1.py) against OpenCV's DualTVL1 on real 128 px face crops, and its contract.

The bounds on the EPE to OpenCV come from benchmarks/tvl1_validate.py (70 real pairs: mean EPE
0.014 px, p95 0.035 px, about OpenCV's own spread when its input moves by one float ulp) with
a 2x margin.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stream.errors import ConfigError
from stream.tvl1 import TorchTVL1, _median_replicate, _median_unfold, _resize_linear, _warp_bicubic

# Fixed square face crops (x0, y0, side), as in benchmarks/tvl1_validate.py.
SINGLE_FACE_CROP = (192, 95, 200)
FACE_NOFACE_CROP = (290, 145, 296)


def face_crop(frame: np.ndarray, crop: tuple[int, int, int], size: int = 128) -> np.ndarray:
    """(size, size) uint8 grey crop of a BGR frame."""
    x0, y0, side = crop
    grey = cv2.cvtColor(frame[y0 : y0 + side, x0 : x0 + side], cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def faces(face_frames: list[np.ndarray]) -> list[np.ndarray]:
    """All 72 frames of single_face.mp4 as 128x128 grey face crops."""
    return [face_crop(f, SINGLE_FACE_CROP) for f in face_frames]


@pytest.fixture(scope="module")
def faces2(videos: Path) -> list[np.ndarray]:
    """The first 64 frames of face_noface.mov (a face throughout) as 128x128 grey crops."""
    cap = cv2.VideoCapture(str(videos / "face_noface.mov"))
    out = []
    while len(out) < 64:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(face_crop(frame, FACE_NOFACE_CROP))
    cap.release()
    assert len(out) == 64
    return out


@pytest.fixture(scope="module")
def tvl1() -> TorchTVL1:
    return TorchTVL1(device="cpu")


def opencv_tvl1(n_scales: int = 5, use_initial_flow: bool = False) -> cv2.optflow.DualTVL1OpticalFlow:
    """OpenCV's solver with TorchTVL1's defaults (positional: the binding names are unreliable)."""
    return cv2.optflow.DualTVL1OpticalFlow_create(
        0.25, 0.15, 0.3, n_scales, 5, 0.01, 30, 10, 0.8, 0.0, 5, use_initial_flow
    )


def epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) end-point error between two (H, W, 2) fields."""
    return np.linalg.norm(a - b, axis=-1)


def test_defaults_mirror_opencv() -> None:
    ref = cv2.optflow.DualTVL1OpticalFlow_create()
    tv = TorchTVL1(device="cpu")
    assert (tv.tau, tv.lam, tv.theta) == (ref.getTau(), ref.getLambda(), ref.getTheta())
    assert (tv.n_scales, tv.scale_step, tv.warps) == (
        ref.getScalesNumber(),
        ref.getScaleStep(),
        ref.getWarpingsNumber(),
    )
    assert (tv.epsilon, tv.inner_iterations, tv.outer_iterations, tv.median_filtering) == (
        ref.getEpsilon(),
        ref.getInnerIterations(),
        ref.getOuterIterations(),
        ref.getMedianFiltering(),
    )
    assert ref.getGamma() == 0.0  # no illumination term on either side
    # device=None picks CUDA when present, else the CPU
    assert TorchTVL1().device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_identical_images_give_zero_flow(faces: list[np.ndarray], tvl1: TorchTVL1) -> None:
    flow = tvl1(faces[10], faces[10])
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32
    assert np.abs(flow).max() == 0.0


@pytest.mark.parametrize("shift", [(0.35, -0.25), (1.3, -0.7)])
def test_recovers_a_subpixel_translation(
    faces: list[np.ndarray], tvl1: TorchTVL1, shift: tuple[float, float]
) -> None:
    dx, dy = shift
    prev = faces[20]
    # nxt(x + dx, y + dy) = prev(x, y): the true flow is (dx, dy) everywhere.
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    nxt = cv2.warpAffine(prev, m, (128, 128), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    inner = tvl1(prev, nxt)[16:-16, 16:-16]  # away from the reflected border
    assert np.abs(np.median(inner.reshape(-1, 2), axis=0) - [dx, dy]).max() < 0.03  # measured < 0.018
    assert epe(inner, np.float32([dx, dy])).mean() < 0.06  # measured 0.019 and 0.030


@pytest.mark.slow  # 10 s or more: run with -m slow
def test_matches_opencv_on_real_pairs(
    faces: list[np.ndarray], faces2: list[np.ndarray], tvl1: TorchTVL1
) -> None:
    ref_solver = opencv_tvl1()
    errors, mags = [], []
    # skip-1 and skip-3 pairs (the pipeline's skip-k flow) from both videos
    for frames, a, b in [(faces, 20, 21), (faces, 20, 23), (faces2, 40, 41), (faces2, 60, 63)]:
        ref = ref_solver.calc(frames[a], frames[b], None)
        e = epe(tvl1(frames[a], frames[b]), ref)
        assert e.mean() < 0.03, (a, b, e.mean())  # measured 0.003 .. 0.017 per pair
        errors.append(e)
        mags.append(np.linalg.norm(ref, axis=-1))
    e_all = np.stack(errors)
    assert np.percentile(e_all, 95) < 0.07  # measured 0.029
    assert e_all.mean() / np.stack(mags).mean() < 0.05  # measured 0.020


@pytest.mark.slow  # 10 s or more: run with -m slow
def test_warm_start_is_opencvs_initial_flow_and_stays_near_cold(faces: list[np.ndarray]) -> None:
    cold_ref = opencv_tvl1()
    warm = TorchTVL1(device="cpu", warm_scales=1)
    init = cold_ref.calc(faces[37], faces[40], None)
    flow = warm(faces[38], faces[41], init_flow=init)
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32
    # The same warm start given to OpenCV (useInitialFlow on one scale) gives the same field.
    same = opencv_tvl1(n_scales=1, use_initial_flow=True).calc(faces[38], faces[41], init.copy())
    assert epe(flow, same).mean() < 0.005  # measured 0.0004 over 270 frames
    # Streaming: each field warm-starts the next; it stays close to OpenCV's cold answer.
    field = flow
    errors = []
    for t in range(42, 46):
        field = warm(faces[t - 3], faces[t], init_flow=field)
        errors.append(epe(field, cold_ref.calc(faces[t - 3], faces[t], None)))
    assert np.mean(errors) < 0.06  # measured 0.021 here, 0.027 over 270 frames


def test_batch_equals_single_calls(faces: list[np.ndarray]) -> None:
    tv = TorchTVL1(device="cpu", n_scales=3)
    small = [cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in faces]
    prev = np.stack([small[5], small[30], small[50]])
    nxt = np.stack([small[8], small[31], small[50]])  # the last pair converges at once
    init = np.zeros((3, 64, 64, 2), np.float32)
    init[1] = tv(small[29], small[30])
    got = tv.batch(prev, nxt)
    assert got.shape == (3, 64, 64, 2) and got.dtype == np.float32
    for i in range(3):
        np.testing.assert_allclose(got[i], tv(prev[i], nxt[i]), atol=1e-5)
    warm = tv.batch(prev, nxt, init)
    np.testing.assert_allclose(warm[1], tv(prev[1], nxt[1], init_flow=init[1]), atol=1e-5)


def test_float_images_follow_opencvs_0_to_1_scale(faces: list[np.ndarray]) -> None:
    tv = TorchTVL1(device="cpu", n_scales=2, warps=2)
    a, b = faces[30], faces[33]
    as_float = tv(a.astype(np.float32) / 255, b.astype(np.float32) / 255)
    np.testing.assert_allclose(as_float, tv(a, b), atol=1e-4)
    with pytest.raises(ValueError, match=r"0\.\.1 scale"):
        tv(a.astype(np.float32), b.astype(np.float32))


def test_any_image_size_and_contiguous_output(faces: list[np.ndarray]) -> None:
    tv = TorchTVL1(device="cpu", n_scales=3, warps=2)
    prev, nxt = faces[30][10:58, 20:100], faces[33][10:58, 20:100]  # (48, 80) views
    flow = tv(prev, nxt)
    assert flow.shape == (48, 80, 2) and flow.dtype == np.float32 and flow.flags.c_contiguous
    flow = tv(faces[30][:9, :11], faces[33][:9, :11])  # smaller than the coarsest level allows
    assert flow.shape == (9, 11, 2) and np.isfinite(flow).all()


@pytest.mark.parametrize(
    "name,value",
    [
        ("lam", 0.0),
        ("lam", -1.0),
        ("tau", 0.3),
        ("tau", 0.0),
        ("theta", 0.0),
        ("n_scales", 0),
        ("n_scales", 2.0),
        ("scale_step", 1.0),
        ("scale_step", 0.0),
        ("warps", 0),
        ("epsilon", -0.1),
        ("epsilon", float("nan")),
        ("inner_iterations", 0),
        ("outer_iterations", 0),
        ("median_filtering", 4),
        ("median_filtering", 7),
        ("warm_scales", 0),
        ("warm_scales", 6),
        ("warps", True),
        ("lam", "0.15"),
    ],
)
def test_out_of_range_parameters_are_config_errors(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^tvl1 {name}=.*(must|one of)"):
        TorchTVL1(device="cpu", **{name: value})  # type: ignore[arg-type]


def test_unknown_or_absent_devices_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="device='tpu'"):
        TorchTVL1(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device='cuda'.*not available"):
            TorchTVL1(device="cuda")


def test_bad_inputs_are_value_errors(faces: list[np.ndarray], tvl1: TorchTVL1) -> None:
    a = faces[0]
    with pytest.raises(ValueError, match=r"\(128, 128\).*\(64, 128\)"):
        tvl1(a, a[:64])
    with pytest.raises(ValueError, match=r"dtype uint8.*float32"):
        tvl1(a, a.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        tvl1(np.stack([a, a]), np.stack([a, a]))
    with pytest.raises(ValueError, match="uint8 or float32"):
        tvl1(a.astype(np.int32), a.astype(np.int32))
    with pytest.raises(ValueError, match=r"init_flow has shape \(64, 64, 2\), expected \(128, 128, 2\)"):
        tvl1(a, a, init_flow=np.zeros((64, 64, 2), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        tvl1(a, a, init_flow=np.full((128, 128, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        tvl1.batch(a, a)
    with pytest.raises(ValueError, match=r"init has shape \(1, 128, 128, 2\), expected \(2, 128, 128, 2\)"):
        tvl1.batch(np.stack([a, a]), np.stack([a, a]), np.zeros((1, 128, 128, 2), np.float32))


def test_building_blocks_reproduce_opencv(faces: list[np.ndarray]) -> None:
    img = faces[25].astype(np.float32)
    t = torch.from_numpy(img)[None, None]  # (1, 1, 128, 128)
    # Pyramid reduction and flow zoom: cv2.resize INTER_LINEAR.
    down = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(_resize_linear(t, 102, 102, 1 / 0.8, 1 / 0.8)[0, 0].numpy(), down)
    up = cv2.resize(down, (128, 128), interpolation=cv2.INTER_LINEAR)
    got = _resize_linear(torch.from_numpy(down)[None, None], 128, 128, 102 / 128, 102 / 128)
    np.testing.assert_allclose(got[0, 0].numpy(), up, atol=1e-3)
    # Warping: cv2.remap INTER_CUBIC with a zero border, including positions far outside.
    rng = np.random.default_rng(0)
    flow = cv2.GaussianBlur(rng.normal(0, 1, (128, 128, 2)).astype(np.float32), (0, 0), 3) * 20
    flow[:8] += 150.0  # some rows sample entirely outside the image
    xs = np.arange(128, dtype=np.float32)
    ref = cv2.remap(img, xs[None, :] + flow[..., 0], xs[:, None] + flow[..., 1], cv2.INTER_CUBIC)
    u = torch.from_numpy(flow).permute(2, 0, 1)[None]
    ar = torch.arange(128, dtype=torch.float32)
    warped = _warp_bicubic(t, u, ar.view(1, 1, 128), ar.view(1, 128, 1))[0, 0].numpy()
    np.testing.assert_allclose(warped, ref, atol=2e-3)
    # Median: cv2.medianBlur on float32, both the CPU path and the device-agnostic one.
    u2 = torch.from_numpy(flow[..., 0].copy())[None, None]
    for k in (3, 5):
        want = cv2.medianBlur(flow[..., 0].copy(), k)
        np.testing.assert_array_equal(_median_replicate(u2, k)[0, 0].numpy(), want)
        np.testing.assert_array_equal(_median_unfold(u2, k)[0, 0].numpy(), want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_opencv(faces: list[np.ndarray]) -> None:
    tv = TorchTVL1(device="cuda")
    ref_solver = opencv_tvl1()
    errors = [
        epe(tv(faces[a], faces[a + 3]), ref_solver.calc(faces[a], faces[a + 3], None)) for a in (10, 40)
    ]
    assert np.mean(errors) < 0.03
    got = tv.batch(np.stack([faces[10], faces[40]]), np.stack([faces[13], faces[43]]))
    for i, a in enumerate((10, 40)):
        assert epe(got[i], ref_solver.calc(faces[a], faces[a + 3], None)).mean() < 0.03
