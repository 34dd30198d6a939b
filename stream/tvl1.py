"""Dual TV-L1 optical flow in PyTorch, numerically matched to OpenCV's DualTVL1OpticalFlow.

The solver follows the Zach-Pock-Bischof (2007) duality-based TV-L1 scheme in the formulation of
Wedel et al. (2009) and Sánchez et al. (IPOL 2013), step for step as OpenCV's CPU implementation
(``cv2.optflow.DualTVL1OpticalFlow``) runs it, so that its parameters mean the same thing:

* images in float32 on a 0..255 scale (uint8 as is; float32 taken as 0..1 and multiplied by 255,
  exactly like OpenCV's ``convertTo``), so ``lam`` keeps OpenCV's meaning;
* a pyramid of bilinear reductions by ``scale_step`` (OpenCV's ``resize`` sampling positions,
  replicated borders; coarsening stops before a side drops below 16 px);
* per scale, ``warps`` warpings of I1 and its centred gradient by bicubic interpolation with
  zero outside the image (OpenCV's ``remap(INTER_CUBIC, BORDER_CONSTANT)``, including its
  quantisation of sampling positions to 1/32 px), then up to ``outer_iterations`` x
  ``inner_iterations`` primal-dual steps with a median filter on the flow before each outer
  iteration, stopped early once the mean squared change of the flow falls under epsilon².

Everything is vectorised over (batch, channel, y, x); the only Python loops are the
iteration counters (and, on CPU only, the B·2 planes handed to cv2.medianBlur). A batch is
solved in lock step, each sample leaving as soon as its own stopping test passes, so
``batch(...)[b]`` equals ``self(prev[b], nxt[b])``.

Validated against OpenCV 4.11 on real 128x128 grey face crops (single_face.mp4 and the face
part of face_noface.mov, skip-1 and skip-3 pairs, default parameters) with::

    python benchmarks/tvl1_validate.py --device cpu --warm-scales 1 2

* cold start, 70 pairs: mean EPE 0.0136 px, median 0.0088 px, p95 0.035 px, 0.044 % of
  pixels above 0.5 px (max 4.8 px, at the mouth); mean EPE / mean |flow| = 0.027 (mean |flow|
  0.50 px). This is OpenCV's own numerical spread: OpenCV against itself with every input pixel
  moved by one float32 ulp gives mean 0.0123, p95 0.032, 0.041 % above 0.5 px, max 4.5 px
  (early stopping, the median filter and the thresholding step amplify rounding differences).
  Single operations agree to float rounding (warp 5e-5 grey levels, resize and median exact),
  one warping of 100 primal-dual steps to < 1e-6 px, a whole one-scale solve (5 warps, median,
  early stop) to 3e-5 px mean; the gap grows only through the chaotic amplification above.
* warm start (init_flow = previous field, warm_scales=1) along both clips, 270 frames: mean EPE
  0.027 px, median 0.015, p95 0.063 to OpenCV's cold 5-scale result (EPE / |flow| 0.057;
  warm_scales=2: 0.021 / 0.047), and 0.0004 px to OpenCV given the same warm start
  (useInitialFlow on one scale). The larger warm-vs-cold gaps sit where the lips part.
* CPU time (2 cores, one 128x128 pair, interleaved in one run): OpenCV 167 ms, TorchTVL1
  212 ms per call (ratio 1.27), 83 ms per pair through ``batch`` (0.50), 63 ms per warm-started
  frame (warm_scales=1).

``tests/stream/test_tvl1.py`` asserts a mean EPE under 0.03 px per real pair and a p95 under
0.07 px against OpenCV.
"""

from __future__ import annotations

import functools
import math
from typing import Final

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from stream.checks import check_number
from stream.errors import ConfigError

__all__ = ["TorchTVL1"]

# OpenCV stops coarsening once a side of the next level would be under 16 px.
_MIN_PYRAMID_SIDE: Final = 16
# cv::remap rounds sampling positions to 1/INTER_TAB_SIZE px before interpolating.
_REMAP_SUBPIXELS: Final = 32.0
# FLT_EPSILON: below this |grad I1|² the data term gives no direction (as in OpenCV).
_FLT_EPS: Final = float(np.finfo(np.float32).eps)
# Median sizes OpenCV's medianBlur accepts on float32 images (0/1 switch filtering off).
_MEDIAN_SIZES: Final = (0, 1, 3, 5)


class TorchTVL1:
    """Dual TV-L1 optical flow (Zach, Pock, Bischof 2007; Wedel et al. 2009 formulation, as in
    OpenCV's DualTVL1OpticalFlow), in PyTorch so it runs on CUDA when present and on CPU otherwise.

    Defaults are those of ``cv2.optflow.DualTVL1OpticalFlow_create()`` (OpenCV 4.11: tau 0.25,
    lambda 0.15, theta 0.3, 5 scales with step 0.8, 5 warps, epsilon 0.01, 30 inner and 10 outer
    iterations, 5x5 median), so both give the same field for the same parameters.

    Args:
        lam: weight of the data term (OpenCV's lambda); larger follows the images more closely.
        tau: time step of the primal-dual scheme, in (0, 0.25] (stable up to 1/4).
        theta: coupling between the flow and its auxiliary variable, > 0.
        n_scales: pyramid levels for a cold start (fewer if a side would drop under 16 px).
        scale_step: size ratio between consecutive levels, in (0, 1).
        warps: warpings of I1 per level.
        epsilon: stopping threshold on the root mean squared change of the flow per step
            (0 runs every iteration).
        inner_iterations: primal-dual steps per outer iteration.
        outer_iterations: outer iterations per warping (each starts with the median filter).
        median_filtering: median kernel size, 3 or 5; 0 or 1 turns it off.
        warm_scales: pyramid levels used when ``init_flow`` is given, in [1, n_scales].
        device: torch device; None picks "cuda" when available, else "cpu".

    Raises:
        ConfigError: a parameter is out of range, or the device is unknown or unavailable.
    """

    def __init__(
        self,
        *,
        lam: float = 0.15,
        tau: float = 0.25,
        theta: float = 0.3,
        n_scales: int = 5,
        scale_step: float = 0.8,
        warps: int = 5,
        epsilon: float = 0.01,
        inner_iterations: int = 30,
        outer_iterations: int = 10,
        median_filtering: int = 5,
        warm_scales: int = 1,
        device: str | None = None,
    ) -> None:
        self.lam = _real("lam", lam, 0.0, math.inf, lo_open=True)
        self.tau = _real("tau", tau, 0.0, 0.25, lo_open=True)
        self.theta = _real("theta", theta, 0.0, math.inf, lo_open=True)
        self.scale_step = _real("scale_step", scale_step, 0.0, 1.0, lo_open=True, hi_open=True)
        self.epsilon = _real("epsilon", epsilon, 0.0, math.inf)
        self.n_scales = _integer("n_scales", n_scales, 1, 64)
        self.warps = _integer("warps", warps, 1, 1000)
        self.inner_iterations = _integer("inner_iterations", inner_iterations, 1, 100_000)
        self.outer_iterations = _integer("outer_iterations", outer_iterations, 1, 100_000)
        self.warm_scales = _integer("warm_scales", warm_scales, 1, self.n_scales)
        if (
            isinstance(median_filtering, bool)
            or not isinstance(median_filtering, int | np.integer)
            or int(median_filtering) not in _MEDIAN_SIZES
        ):
            raise ConfigError(
                f"tvl1 median_filtering={median_filtering!r}: must be one of 0, 1 (off), 3 or 5 "
                "(the kernel sizes OpenCV's medianBlur supports on float images)"
            )
        self.median_filtering = int(median_filtering)
        self.device = _pick_device(device)

    def __repr__(self) -> str:
        return (
            f"TorchTVL1(lam={self.lam}, tau={self.tau}, theta={self.theta}, n_scales={self.n_scales}, "
            f"scale_step={self.scale_step}, warps={self.warps}, epsilon={self.epsilon}, "
            f"inner_iterations={self.inner_iterations}, outer_iterations={self.outer_iterations}, "
            f"median_filtering={self.median_filtering}, warm_scales={self.warm_scales}, "
            f"device='{self.device}')"
        )

    # ------------------------------------------------------------------ public API

    @torch.no_grad()
    def __call__(self, prev: np.ndarray, nxt: np.ndarray, init_flow: np.ndarray | None = None) -> np.ndarray:
        """Flow from ``prev`` to ``nxt``.

        Args:
            prev: (H, W) uint8 (0..255) or float32 (0..1, OpenCV's convention) grey image.
            nxt: (H, W) image of the same shape and dtype.
            init_flow: optional (H, W, 2) float warm start (the previous field). When given, the
                coarse-to-fine pyramid uses only the ``warm_scales`` finest scales, starting from
                it (this is what makes incremental/streaming use cheap).

        Returns:
            (H, W, 2) float32 flow in OpenCV's convention: prev(x, y) ~ nxt(x + u, y + v).

        Raises:
            ValueError: shapes or dtypes differ or are not supported.
        """
        _check_images(prev, nxt, batched=False)
        i0 = self._to_tensor(prev[None])  # (1, H, W)
        i1 = self._to_tensor(nxt[None])
        init = None
        if init_flow is not None:
            init = self._flow_to_tensor(init_flow, (*prev.shape, 2), "init_flow")  # (1, 2, H, W)
        flow = self.batch_tensor(i0, i1, init)  # (1, 2, H, W)
        return flow[0].permute(1, 2, 0).contiguous().cpu().numpy()

    @torch.no_grad()
    def batch(self, prev: np.ndarray, nxt: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        """Flows of B image pairs at once (one launch per step for the whole batch).

        Args:
            prev: (B, H, W) uint8 or float32 (0..1) grey images.
            nxt: (B, H, W) images of the same shape and dtype.
            init: optional (B, H, W, 2) warm starts; as ``init_flow`` in ``__call__``.

        Returns:
            (B, H, W, 2) float32 flows; sample b equals ``self(prev[b], nxt[b], init[b])``.
        """
        _check_images(prev, nxt, batched=True)
        i0 = self._to_tensor(prev)
        i1 = self._to_tensor(nxt)
        init_t = None if init is None else self._flow_to_tensor(init, (*prev.shape, 2), "init")
        flow = self.batch_tensor(i0, i1, init_t)  # (B, 2, H, W)
        return flow.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    @torch.no_grad()
    def batch_tensor(
        self, i0: torch.Tensor, i1: torch.Tensor, init: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tensor-level entry point (no host copies; for callers that keep frames on the GPU).

        Args:
            i0: (B, H, W) float32 images on a 0..255 scale, on ``self.device``.
            i1: (B, H, W) float32 images, same scale and device.
            init: optional (B, 2, H, W) float32 warm start (channel 0 = x, 1 = y).

        Returns:
            (B, 2, H, W) float32 flow, channel 0 = horizontal, 1 = vertical.
        """
        if i0.shape != i1.shape or i0.dim() != 3:
            raise ValueError(f"i0 {tuple(i0.shape)} and i1 {tuple(i1.shape)} must both be (B, H, W)")
        b, h, w = i0.shape
        if init is not None and tuple(init.shape) != (b, 2, h, w):
            raise ValueError(f"init {tuple(init.shape)} must be (B, 2, H, W) = {(b, 2, h, w)}")
        images = torch.stack((i0, i1), dim=1).to(self.device, torch.float32)  # (B, 2, H, W)

        # Pyramid: level 0 is full size; OpenCV keeps a level only if both sides stay >= 16.
        n_levels = self.n_scales if init is None else self.warm_scales
        pyramid = [images]
        for _ in range(1, n_levels):
            ph, pw = pyramid[-1].shape[-2:]
            nh, nw = _scaled_size(ph, self.scale_step), _scaled_size(pw, self.scale_step)
            if nh < _MIN_PYRAMID_SIDE or nw < _MIN_PYRAMID_SIDE:
                break
            pyramid.append(_resize_linear(pyramid[-1], nh, nw, 1.0 / self.scale_step, 1.0 / self.scale_step))

        # Starting field at the coarsest level: zeros, or the warm start reduced like the images.
        coarse_h, coarse_w = pyramid[-1].shape[-2:]
        if init is None:
            u = torch.zeros((b, 2, coarse_h, coarse_w), dtype=torch.float32, device=self.device)
        else:
            u = init.to(self.device, torch.float32)
            for level in pyramid[1:]:
                lh, lw = level.shape[-2:]
                u = _resize_linear(u, lh, lw, 1.0 / self.scale_step, 1.0 / self.scale_step) * self.scale_step

        for s in range(len(pyramid) - 1, -1, -1):
            u = self._solve_level(pyramid[s][:, 0:1], pyramid[s][:, 1:2], u)
            if s > 0:
                # Bilinear zoom to the finer level; vectors grow by 1/scale_step as in OpenCV.
                fh, fw = pyramid[s - 1].shape[-2:]
                u = _resize_linear(u, fh, fw, u.shape[-2] / fh, u.shape[-1] / fw) * (1.0 / self.scale_step)
        return u

    # ------------------------------------------------------------------ internals

    def _to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W) uint8 / float32 (0..1) -> float32 tensor on a 0..255 scale, on the device."""
        t = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        t = t.to(torch.float32)
        if images.dtype == np.float32:
            t = t * 255.0  # OpenCV's convertTo(..., 255.0) for float input
        return t

    def _flow_to_tensor(self, flow: np.ndarray, expected: tuple[int, ...], name: str) -> torch.Tensor:
        """(H, W, 2) or (B, H, W, 2) numpy field -> (B, 2, H, W) float32 tensor, after checks."""
        flow = np.asarray(flow)
        if flow.shape != expected:
            raise ValueError(f"{name} has shape {flow.shape}, expected {expected} to match the images")
        if not np.issubdtype(flow.dtype, np.floating):
            raise ValueError(f"{name} must be a float array, got {flow.dtype}")
        if not np.isfinite(flow).all():
            raise ValueError(f"{name} holds NaN or infinite values")
        t = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).to(self.device)
        if t.dim() == 3:
            t = t[None]
        return t.permute(0, 3, 1, 2).contiguous()

    def _solve_level(self, i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """TV-L1 at one pyramid level.

        Args:
            i0: (B, 1, h, w) first image.
            i1: (B, 1, h, w) second image.
            u: (B, 2, h, w) starting flow.

        Returns:
            (B, 2, h, w) refined flow.
        """
        b, _, h, w = i0.shape
        dev = i0.device
        l_t = self.lam * self.theta
        taut = self.tau / self.theta
        theta = self.theta
        # OpenCV stops when the summed squared change of (u1, u2) is <= epsilon² · area.
        stop = float(np.float32(self.epsilon * self.epsilon * h * w))

        # I1 and its centred gradient, warped together: (B, 3, h, w).
        i1_stack = torch.cat((i1, _centred_gradient(i1)), dim=1)
        ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
        xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)

        u = u.contiguous().clone()  # (B, 2, h, w), written in place below
        # Dual variable p[:, k, d] for flow component k and direction d (0 = x, 1 = y); reset at
        # each level as in OpenCV.
        p = torch.zeros((b, 2, 2, h, w), dtype=torch.float32, device=dev)  # (B, 2, 2, h, w)

        for _ in range(self.warps):
            warped = _warp_bicubic(i1_stack, u, xs, ys)  # (B, 3, h, w)
            i1w, grad_i = warped[:, 0:1], warped[:, 1:3]  # (B, 1, h, w), (B, 2, h, w)
            grad2 = (grad_i * grad_i).sum(1, keepdim=True)  # |∇I1(x+u0)|², (B, 1, h, w)
            # Linearised residual rho(u) = rho_c + ∇I1w · u, with the u-independent part here.
            rho_c = i1w - (grad_i * u).sum(1, keepdim=True) - i0  # (B, 1, h, w)
            # -1/|∇I|² where the gradient carries information, 0 where it does not. (Where
            # |∇I|² <= FLT_EPSILON OpenCV may still step by ±lambda·theta·∇I, i.e. < 2e-5 px.)
            neg_inv_grad2 = torch.where(grad2 > _FLT_EPS, -1.0 / grad2.clamp_min(_FLT_EPS), 0.0)
            self._iterate_warp(u, p, rho_c, grad_i, neg_inv_grad2, l_t, taut, theta, stop)
        return u

    def _iterate_warp(
        self,
        u: torch.Tensor,
        p: torch.Tensor,
        rho_c: torch.Tensor,
        grad_i: torch.Tensor,
        neg_inv_grad2: torch.Tensor,
        l_t: float,
        taut: float,
        theta: float,
        stop: float,
    ) -> None:
        """Outer/inner primal-dual iterations of one warping; updates u and p in place.

        A sample leaves the working set as soon as its own stopping test passes (where OpenCV's
        loops for that image would end), so the rest of the batch does not pay for it.

        Args:
            u: (B, 2, h, w) flow. p: (B, 2, 2, h, w) dual variable.
            rho_c: (B, 1, h, w) constant part of the linearised residual.
            grad_i: (B, 2, h, w) warped gradient of I1.
            neg_inv_grad2: (B, 1, h, w) -1/|grad_i|² (0 where the gradient vanishes).
            l_t, taut, theta, stop: lambda·theta, tau/theta, theta, stopping threshold.
        """
        b = u.shape[0]
        idx = torch.arange(b, device=u.device)  # batch indices of the working set
        wu, wp = u, p  # working copies (the full tensors while every sample is still active)
        grad_buf = torch.zeros_like(p)  # forward differences; the far edge stays 0 (Neumann)

        def retire(keep: torch.Tensor) -> None:
            """Writes the samples not in `keep` back and shrinks the working set to `keep`."""
            nonlocal idx, wu, wp, rho_c, grad_i, neg_inv_grad2, grad_buf
            done = ~keep
            u[idx[done]] = wu[done]
            p[idx[done]] = wp[done]
            idx, wu, wp = idx[keep], wu[keep], wp[keep]
            rho_c, grad_i, neg_inv_grad2 = rho_c[keep], grad_i[keep], neg_inv_grad2[keep]
            grad_buf = grad_buf[keep]

        for _outer in range(self.outer_iterations):
            if self.median_filtering > 1:
                wu = _median_replicate(wu, self.median_filtering)
            for _inner in range(self.inner_iterations):
                # Thresholding: v = u + c·∇I1w, c = -rho/|∇I|² projected onto [-l_t, l_t].
                rho = torch.addcmul(rho_c, grad_i[:, 0:1], wu[:, 0:1]).addcmul_(grad_i[:, 1:2], wu[:, 1:2])
                c = rho.mul_(neg_inv_grad2).clamp_(-l_t, l_t)  # (n, 1, h, w)
                # u_new = v + theta·div p, div by backward differences with p = 0 outside.
                div = wp.sum(2)  # (n, 2, h, w)
                div[..., :, 1:] -= wp[:, :, 0, :, :-1]
                div[..., 1:, :] -= wp[:, :, 1, :-1, :]
                u_new = torch.addcmul(wu, c, grad_i).add_(div, alpha=theta)  # (n, 2, h, w)
                err = (u_new - wu).square_().sum(dim=(1, 2, 3))  # (n,)
                # p = (p + taut·∇u) / (1 + taut·|∇u|), forward differences, 0 at the far edge.
                torch.sub(u_new[..., :, 1:], u_new[..., :, :-1], out=grad_buf[:, :, 0, :, :-1])
                torch.sub(u_new[..., 1:, :], u_new[..., :-1, :], out=grad_buf[:, :, 1, :-1, :])
                gx, gy = grad_buf[:, :, 0], grad_buf[:, :, 1]
                # |∇u| by hand: vector_norm over the middle dim hits a very slow CPU kernel.
                denom = torch.addcmul(gx * gx, gy, gy).sqrt_().mul_(taut).add_(1.0).unsqueeze(2)
                wp = torch.add(wp, grad_buf, alpha=taut).div_(denom)
                wu = u_new
                keep = err > stop
                if not bool(keep.all()):
                    retire(keep)
                    if idx.numel() == 0:
                        return
        u[idx] = wu
        p[idx] = wp


# ---------------------------------------------------------------------- parameter checks


def _real(
    name: str, value: object, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
) -> float:
    """A real parameter checked by mespot's one range check (NumPy scalars accepted), as float."""
    check_number("tvl1", name, value, lo, hi, lo_open=lo_open, hi_open=hi_open)
    return float(value)  # type: ignore[arg-type]


def _integer(name: str, value: object, lo: int, hi: int) -> int:
    """An integer parameter checked by mespot's one range check (NumPy integers accepted), as int."""
    check_number("tvl1", name, value, lo, hi, integer=True)
    return int(value)  # type: ignore[call-overload]


def _pick_device(device: str | None) -> torch.device:
    """None -> cuda if available else cpu; an unknown or absent device is a ConfigError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={device!r}: not a torch device (use 'cpu', 'cuda' or 'cuda:N')") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: CUDA is not available to this torch build or machine")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r}: must be 'cpu' or 'cuda[:N]'")
    return dev


def _check_images(prev: np.ndarray, nxt: np.ndarray, *, batched: bool) -> None:
    """Raises ValueError unless prev and nxt are equal-shaped uint8 / float32 (0..1) images."""
    for name, img in (("prev", prev), ("nxt", nxt)):
        if not isinstance(img, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(img).__name__}")
    want = "(B, H, W)" if batched else "(H, W)"
    if prev.shape != nxt.shape:
        raise ValueError(f"prev has shape {prev.shape} but nxt has shape {nxt.shape}; they must be equal")
    if prev.ndim != (3 if batched else 2):
        raise ValueError(f"prev and nxt have shape {prev.shape}; expected {want} grey images")
    if prev.shape[-1] < 3 or prev.shape[-2] < 3:
        raise ValueError(f"prev and nxt have shape {prev.shape}; both sides must be at least 3 px")
    if prev.dtype != nxt.dtype:
        raise ValueError(f"prev has dtype {prev.dtype} but nxt has dtype {nxt.dtype}; they must be equal")
    if prev.dtype not in (np.uint8, np.float32):
        raise ValueError(f"prev and nxt have dtype {prev.dtype}; expected uint8 or float32")
    if prev.dtype == np.float32:
        for name, img in (("prev", prev), ("nxt", nxt)):
            lo, hi = float(img.min()), float(img.max())
            # OpenCV multiplies float input by 255; a 0..255 float image would be off by 255x.
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -0.5 or hi > 1.5:
                raise ValueError(
                    f"{name} is float32 with values in [{lo:g}, {hi:g}]; float images must be on a "
                    "0..1 scale (OpenCV's convention) - pass uint8 for 0..255"
                )


# ---------------------------------------------------------------------- numerical kernels


def _scaled_size(n: int, factor: float) -> int:
    """OpenCV's resize(dsize=Size(), fx=factor): cvRound (half to even) of n·factor."""
    return round(n * factor)


@functools.lru_cache(maxsize=64)
def _linear_taps_np(n_in: int, n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of OpenCV's INTER_LINEAR resize along one axis.

    Output index d samples the input at (d + 0.5)·scale - 0.5 (float32), clamped to the edge
    pixels (which makes the border replicated).

    Returns:
        (i0, i1, f): (n_out,) int64 left/right taps and (n_out,) float32 weight of the right tap.
    """
    pos = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(pos)
    f = (pos - i0).astype(np.float32)
    i0 = i0.astype(np.int64)
    low = i0 < 0
    f[low], i0[low] = 0.0, 0
    high = i0 >= n_in - 1
    f[high], i0[high] = 0.0, n_in - 1
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, f


@functools.lru_cache(maxsize=128)
def _linear_taps(
    n_in: int, n_out: int, scale: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensor form of `_linear_taps_np` on `device`: (i0, i1, 1 - f, f), each (n_out,)."""
    i0, i1, f = _linear_taps_np(n_in, n_out, scale)
    f_t = torch.from_numpy(f).to(device)
    return torch.from_numpy(i0).to(device), torch.from_numpy(i1).to(device), 1.0 - f_t, f_t


def _resize_linear(x: torch.Tensor, out_h: int, out_w: int, scale_y: float, scale_x: float) -> torch.Tensor:
    """Separable bilinear resize with OpenCV's sampling positions (horizontal pass first, as it does).

    Args:
        x: (N, C, H, W) tensor.
        out_h, out_w: output size.
        scale_y, scale_x: input pixels per output pixel (1/fx for resize(fx=...), in/out for dsize).

    Returns:
        (N, C, out_h, out_w) tensor.
    """
    h, w = x.shape[-2:]
    jx0, jx1, wx0, wx1 = _linear_taps(w, out_w, scale_x, x.device)
    x = x.index_select(3, jx0) * wx0 + x.index_select(3, jx1) * wx1  # (N, C, H, out_w)
    jy0, jy1, wy0, wy1 = _linear_taps(h, out_h, scale_y, x.device)
    return x.index_select(2, jy0) * wy0[:, None] + x.index_select(2, jy1) * wy1[:, None]


def _centred_gradient(img: torch.Tensor) -> torch.Tensor:
    """Central differences, one-sided (still halved) on the border rows/columns, as in OpenCV.

    Args:
        img: (B, 1, H, W).

    Returns:
        (B, 2, H, W): d/dx, d/dy.
    """
    # Replicating the border makes the central formula give OpenCV's 0.5·(I[1] - I[0]) at x = 0.
    pad = F.pad(img, (1, 1, 1, 1), mode="replicate")  # (B, 1, H+2, W+2)
    dx = 0.5 * (pad[..., 1:-1, 2:] - pad[..., 1:-1, :-2])
    dy = 0.5 * (pad[..., 2:, 1:-1] - pad[..., :-2, 1:-1])
    return torch.cat((dx, dy), dim=1)


def _warp_bicubic(stack: torch.Tensor, u: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Samples `stack` at (x + u1, y + u2) like cv::remap(INTER_CUBIC, BORDER_CONSTANT = 0).

    grid_sample's bicubic mode is OpenCV's kernel (Keys, a = -0.75) and its zero padding is
    OpenCV's constant border. Positions are first rounded to 1/32 px as remap does.

    Args:
        stack: (B, C, h, w) float32 images to warp.
        u: (B, 2, h, w) flow.
        xs: (1, 1, w) column indices. ys: (1, h, 1) row indices.

    Returns:
        (B, C, h, w) float32 warped images.
    """
    h, w = stack.shape[-2:]
    mx = torch.round((xs + u[:, 0]) * _REMAP_SUBPIXELS) / _REMAP_SUBPIXELS  # (B, h, w)
    my = torch.round((ys + u[:, 1]) * _REMAP_SUBPIXELS) / _REMAP_SUBPIXELS
    # Normalised coordinates in float64: in float32 their round trip misses pixel centres by
    # ~1e-5 px, enough that even a zero flow would not reproduce the image exactly.
    grid = torch.stack(
        (mx.double() * (2.0 / max(w - 1, 1)) - 1.0, my.double() * (2.0 / max(h - 1, 1)) - 1.0), dim=-1
    )  # (B, h, w, 2)
    out = F.grid_sample(stack.double(), grid, mode="bicubic", padding_mode="zeros", align_corners=True)
    return out.float()


def _median_replicate(u: torch.Tensor, k: int) -> torch.Tensor:
    """k x k median per channel with replicated borders (cv::medianBlur on float32).

    On CPU this calls cv::medianBlur itself (same result, ~50x faster than a torch median over
    unfolded windows on small images); elsewhere it stays on the device.

    Args:
        u: (B, C, h, w).

    Returns:
        (B, C, h, w).
    """
    if u.device.type == "cpu":
        planes = u.contiguous().numpy()  # shares memory with u
        out = np.empty_like(planes)
        for idx in np.ndindex(*planes.shape[:2]):  # loop over the B·C planes, not over pixels
            cv2.medianBlur(planes[idx], k, dst=out[idx])
        return torch.from_numpy(out)
    return _median_unfold(u, k)


def _median_unfold(u: torch.Tensor, k: int) -> torch.Tensor:
    """Device-agnostic k x k median with replicated borders (one sort per pixel; fast on GPU).

    Args:
        u: (B, C, h, w).

    Returns:
        (B, C, h, w).
    """
    r = k // 2
    b, c, h, w = u.shape
    pad = F.pad(u, (r, r, r, r), mode="replicate")  # (B, C, h+2r, w+2r)
    patches = pad.unfold(2, k, 1).unfold(3, k, 1)  # (B, C, h, w, k, k)
    return patches.reshape(b, c, h, w, k * k).median(dim=-1).values
